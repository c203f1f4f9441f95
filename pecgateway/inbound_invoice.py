"""Suppliers' invoices received through SDI: recorded once (by the file's SHA-256) and filed.

Per invoice: the original byte for byte, the unwrapped XML of a p7m, an HTML rendering for people
(official stylesheet, when installed; a rendering failure is logged and skipped), the matching MT
with its Hash checked, and the inspect facts as JSON. Plans the files; inbound_files writes them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pecgateway import filename, render, report, sink
from pecgateway.classify import walk
from pecgateway.errors import PecGatewayError
from pecgateway.filename import NotificationType
from pecgateway.inbound_files import Unit, json_bytes
from pecgateway.log import get_logger
from pecgateway.store import Item

if TYPE_CHECKING:
    from pecgateway.classify import Node
    from pecgateway.sdi import Notification

__all__ = ["file_invoices", "is_mt"]

_log = get_logger()


def is_mt(notification: Notification) -> bool:
    """Whether an SDI file is the metadata (``_MT_``) that comes with a supplier's invoice."""
    return notification.type is NotificationType.MT


def file_invoices(unit: Unit, envelope: Node, invoices: list[Node]) -> None:
    """Records each invoice not received before and plans its files (the MT matched by name)."""
    metadata = [n for n in walk(envelope) if n.notification and is_mt(n.notification)]
    for node in invoices:
        if unit.gw.store.find_incoming(unit.account.name, sha256=_dedup_key(node)) is not None:
            _log.info("invoice_already_received", received_file=node.filename)
            continue
        _file_invoice(unit, node, _matching_mt(node, metadata))


def _dedup_key(node: Node) -> str:
    """SHA-256 of the unwrapped XML (field quirk BL-41): a re-signed copy is the same invoice."""
    return hashlib.sha256(node.payload).hexdigest() if node.payload is not None else node.sha256


def _matching_mt(node: Node, metadata: list[Node]) -> Node | None:
    for mt in metadata:
        nome = mt.notification.nome_file if mt.notification else None
        if nome and node.filename and filename.same_invoice_file(nome, node.filename):
            return mt
    return metadata[0] if len(metadata) == 1 else None


def _file_invoice(unit: Unit, node: Node, mt: Node | None) -> None:
    """The original byte for byte, the unwrapped XML, its HTML, the MT and the inspect facts."""
    gw, plan = unit.gw, unit.plan
    name = node.filename or "invoice.xml"
    notification = mt.notification if mt else None
    identificativo = notification.identificativo_sdi if notification else None
    item_id = gw.store.record_incoming(
        unit.account.name,
        file_name=name,
        sha256=_dedup_key(node),
        identificativo_sdi=identificativo,
        received=gw.clock(),
        source=str(unit.source),
    )
    original = plan.add(
        Item.INCOMING, item_id, unit.route(sink.Kind.RECEIVED_INVOICE, name), node.data
    )
    stem = filename.invoice_stem(name)
    if node.payload is not None:
        plan.beside(Item.INCOMING, item_id, original, stem + ".xml", node.payload)
    html = _html(unit, node, name)
    if html is not None:
        plan.beside(Item.INCOMING, item_id, original, stem + ".html", html)
    if mt is not None:
        plan.beside(Item.INCOMING, item_id, original, mt.filename or "metadata.xml", mt.data)
    check = _hash_check(node, notification)
    facts = {**report.to_json(node, name), "mt_hash_check": check, "source": str(unit.source)}
    plan.beside(Item.INCOMING, item_id, original, original.name + ".json", json_bytes(facts))
    if check == "mismatch":
        _log.warning("invoice_hash_mismatch", received_file=name, identificativo_sdi=identificativo)
    _log.info(
        "invoice_received",
        received_file=name,
        identificativo_sdi=identificativo,
        path=unit.shown(original),
    )


def _html(unit: Unit, node: Node, name: str) -> bytes | None:
    """The invoice rendered for people with the installed official stylesheet; None without one
    or when rendering fails (logged: the invoice is filed anyway)."""
    stylesheet = unit.gw.schemas.stylesheet_for(node.invoice.format) if node.invoice else None
    if stylesheet is None:
        return None
    xml = node.payload if node.payload is not None else node.data
    try:
        return render.render_html(xml, stylesheet)
    except PecGatewayError as exc:
        _log.warning("invoice_not_rendered", received_file=name, reason=str(exc))
        return None


def _hash_check(node: Node, notification: Notification | None) -> str:
    """``ok`` / ``mismatch`` of the MT's Hash (SHA-256 of the file as sent), ``absent`` without."""
    expected = (notification.hash or "").strip().lower() if notification else ""
    if not expected:
        return "absent"
    return "ok" if expected == hashlib.sha256(node.data).hexdigest() else "mismatch"
