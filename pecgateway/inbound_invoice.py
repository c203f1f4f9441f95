"""Suppliers' invoices received through SDI: each SDI delivery recorded once and filed.

Per invoice: the original byte for byte, the unwrapped XML of a p7m, an HTML rendering for people
(official stylesheet, when installed; a rendering failure is logged and skipped), the matching MT
with its Hash checked, and the inspect facts as JSON. Plans the files; inbound_files writes them.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, NamedTuple

from pecgateway import filename, render, report, sink
from pecgateway.classify import walk
from pecgateway.errors import PecGatewayError
from pecgateway.filename import NotificationType
from pecgateway.inbound_files import Unit, json_bytes
from pecgateway.log import get_logger
from pecgateway.store import Item
from pecgateway.store_inbound import same_content_warning

if TYPE_CHECKING:
    from pecgateway.classify import Node
    from pecgateway.sdi import Notification
    from pecgateway.store import Incoming

__all__ = ["file_invoices", "is_mt"]

_log = get_logger()


def is_mt(notification: Notification) -> bool:
    """Whether an SDI file is the metadata (``_MT_``) that comes with a supplier's invoice."""
    return notification.type is NotificationType.MT


def file_invoices(unit: Unit, envelope: Node, invoices: list[Node]) -> None:
    """Records and plans each invoice of a new SDI delivery (the MT matched by name).

    An invoice is left out only when the same SDI delivery was filed before: same content (SHA-256
    of the unwrapped XML), same file name and same IdentificativoSdI, as when SDI's message comes
    again with a new signature (field quirk BL-41). The same content under a new name or a new
    IdentificativoSdI is a new delivery: filed, with a warning naming the first one.
    """
    metadata = [n for n in walk(envelope) if n.notification and is_mt(n.notification)]
    for node in invoices:
        mt = _matching_mt(node, metadata)
        delivery = _Delivery(node.filename or "invoice.xml", _identificativo(envelope, mt))
        earlier = unit.gw.store.incoming_by_sha256(unit.account.name, _dedup_key(node))
        same = [e for e in earlier if (e.file_name, e.identificativo_sdi) == delivery]
        if same:
            _log.info(
                "invoice_already_received",
                received_file=delivery.file_name,
                identificativo_sdi=delivery.identificativo_sdi,
                first_received=same[0].received,
            )
            continue
        _file_invoice(unit, node, mt, delivery, earlier[0] if earlier else None)


class _Delivery(NamedTuple):
    """What tells one SDI delivery from another: the file name and the IdentificativoSdI."""

    file_name: str
    identificativo_sdi: str | None


def _identificativo(envelope: Node, mt: Node | None) -> str | None:
    """The IdentificativoSdI from the MT, else from SDI's subject ``Invio File <IdSdI>``."""
    if mt is not None and mt.notification is not None and mt.notification.identificativo_sdi:
        return mt.notification.identificativo_sdi
    subject = envelope.pec.oggetto if envelope.pec is not None else None
    found = _INVIO_FILE.search(subject or "")
    return found.group(1) if found else None


_INVIO_FILE = re.compile(r"\bInvio File (\d+)\b", re.IGNORECASE)


def _dedup_key(node: Node) -> str:
    """SHA-256 of the unwrapped XML (field quirk BL-41): a re-signed copy is the same invoice."""
    return hashlib.sha256(node.payload).hexdigest() if node.payload is not None else node.sha256


def _matching_mt(node: Node, metadata: list[Node]) -> Node | None:
    for mt in metadata:
        nome = mt.notification.nome_file if mt.notification else None
        if nome and node.filename and filename.same_invoice_file(nome, node.filename):
            return mt
    return metadata[0] if len(metadata) == 1 else None


def _file_invoice(
    unit: Unit, node: Node, mt: Node | None, delivery: _Delivery, first: Incoming | None
) -> None:
    """The original byte for byte, the unwrapped XML, its HTML, the MT and the inspect facts."""
    gw, plan, name = unit.gw, unit.plan, delivery.file_name
    item_id = gw.store.record_incoming(
        unit.account.name,
        file_name=name,
        sha256=_dedup_key(node),
        identificativo_sdi=delivery.identificativo_sdi,
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
    facts = _facts(unit, node, delivery, mt, first)
    plan.beside(Item.INCOMING, item_id, original, original.name + ".json", json_bytes(facts))
    _log.info(
        "invoice_received",
        received_file=name,
        identificativo_sdi=delivery.identificativo_sdi,
        path=unit.shown(original),
    )


def _facts(
    unit: Unit, node: Node, delivery: _Delivery, mt: Node | None, first: Incoming | None
) -> dict[str, object]:
    """The sidecar: inspect facts, the MT's hash check, the source and, for an invoice received
    before under another name or IdentificativoSdI, a warning and that first delivery."""
    notification = mt.notification if mt else None
    check = _hash_check(node, notification)
    facts = {**report.to_json(node, delivery.file_name), "mt_hash_check": check}
    facts["identificativo_sdi"] = delivery.identificativo_sdi
    facts["source"] = str(unit.source)
    warnings = list(node.warnings)
    if check == "mismatch":
        _log.warning("invoice_hash_mismatch", received_file=delivery.file_name)
        warnings.append("the SHA-256 of the file differs from the Hash in SDI's metadata (MT)")
    if first is not None:
        warning = same_content_warning(first.received, first.file_name)
        _log.warning("invoice_received_again", received_file=delivery.file_name, detail=warning)
        warnings.append(warning)
        facts["same_content_as"] = {
            "file": first.file_name,
            "identificativo_sdi": first.identificativo_sdi,
            "received": first.received,
            "paths": list(first.paths),
        }
    facts["warnings"] = warnings
    return facts


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
