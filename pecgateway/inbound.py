"""One inbound unit of work: a mailbox message, classified, correlated, recorded and filed.

Receipts are correlated by the Message-ID they refer to, SDI notifications by NomeFile then by
IdentificativoSdI; suppliers' invoices are filed with their MT and inspect facts; anything else goes to
quarantine. Store first, then the inbox folder; the caller acknowledges (mark processed, UID MOVE).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pecgateway import filename, lifecycle, report, sink
from pecgateway.classify import Kind, Node, classify, walk
from pecgateway.errors import InvalidTransition
from pecgateway.filename import NotificationType
from pecgateway.log import get_logger
from pecgateway.pec import PecMessage
from pecgateway.store import Item, Outgoing

if TYPE_CHECKING:
    from pecgateway.config import Account
    from pecgateway.sdi import Notification
    from pecgateway.service import Gateway

__all__ = ["Source", "file_message", "quarantine"]

_log = get_logger()


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: ``imap:<uidvalidity>/<uid>`` in the audit trail."""

    folder: str
    uidvalidity: int
    uid: int

    def __str__(self) -> str:
        return f"imap:{self.uidvalidity}/{self.uid}"

    @property
    def eml_name(self) -> str:
        return f"imap-{self.uidvalidity}-{self.uid}.eml"


def file_message(gw: Gateway, account: Account, source: Source, raw: bytes) -> str:
    """Records and files one raw message; returns the outcome (``receipt``, ``quarantined`` ...)."""
    node = classify(raw, source.eml_name)
    message = node.pec
    if message is not None and message.sdi_address:
        _learn_sdi_address(gw, account, message.sdi_address, source)
    event = lifecycle.event_for_receipt(message.type.value) if message and message.type else None
    if message is not None and event is not None:
        return _receipt(gw, account, source, node, message, event)
    notifications = [n for n in walk(node) if n.notification and not _is_mt(n.notification)]
    invoices = [n for n in walk(node) if n.kind is Kind.INVOICE and n is not node]
    if notifications:
        for child in notifications:
            _notification(gw, account, source, child)
        return "notification"
    if invoices:
        _supplier_invoices(gw, account, source, node, invoices)
        return "invoice"
    return quarantine(gw, account, source, raw, _why_quarantined(node))


def _is_mt(notification: Notification) -> bool:
    return notification.type is NotificationType.MT


def _why_quarantined(node: Node) -> str:
    if node.error:
        return f"unreadable ({node.kind.value}): {node.error}"
    if node.pec is not None and node.pec.type is not None:
        return (
            f"PEC message of type {node.pec.type.value} carrying no receipt, SDI notification "
            "or invoice"
        )
    return "not a PEC receipt, SDI notification or invoice (a plain e-mail)"


def _learn_sdi_address(gw: Gateway, account: Account, address: str, source: Source) -> None:
    if gw.store.set_sdi_address(account.name, address, at=gw.clock(), source=str(source)):
        _log.warning("sdi_address_changed", sdi_address=address.lower(), source=str(source))


# ---- PEC receipts ------------------------------------------------------------------------------


def _receipt(
    gw: Gateway,
    account: Account,
    source: Source,
    node: Node,
    message: PecMessage,
    event: lifecycle.Event,
) -> str:
    reference = message.riferimento_message_id
    outgoing = gw.store.find_outgoing_by_message_id(reference, account.name) if reference else None
    detail = message.errore_esteso or message.errore or ""
    if outgoing is not None:
        _advance(gw, outgoing, event, source, detail)
    item_id = gw.store.record_notification(
        account.name,
        kind=message.type.value if message.type else "pec",
        file_name=outgoing.file_name if outgoing else None,
        received=gw.clock(),
        source=str(source),
        outgoing_id=outgoing.id if outgoing else None,
        message_id=reference,
        detail=detail,
    )
    stem = filename.invoice_stem(outgoing.file_name) if outgoing else f"uid{source.uid}"
    name = f"{stem}_{event.value}.eml"
    path = sink.write(account.inbox, _route(gw, sink.Kind.PEC_RECEIPT, name), node.data)
    gw.store.record_path(Item.NOTIFICATION, item_id, str(path), at=gw.clock())
    if outgoing is None:
        _log.info(
            "orphan_receipt_recorded", receipt=event.value, refers_to=reference, path=str(path)
        )
        return "orphan"
    _log.info("receipt_recorded", receipt=event.value, file=outgoing.file_name, path=str(path))
    return "receipt"


def _advance(
    gw: Gateway,
    outgoing: Outgoing,
    event: lifecycle.Event,
    source: Source,
    detail: str,
    identificativo_sdi: str | None = None,
) -> None:
    try:
        after = gw.store.transition(
            outgoing.id,
            event,
            at=gw.clock(),
            source=str(source),
            detail=detail,
            identificativo_sdi=identificativo_sdi,
        )
    except InvalidTransition as exc:
        gw.store.note(
            outgoing.id,
            event.value,
            at=gw.clock(),
            source=str(source),
            detail=f"ignored: {exc.reason}",
        )
        _log.warning(
            "event_ignored",
            file=outgoing.file_name,
            event_name=event.value,
            state=outgoing.state.value,
        )
        return
    if after.state is not outgoing.state:
        _log.info(
            "invoice_state_changed",
            file=outgoing.file_name,
            state=after.state.value,
            previous=outgoing.state.value,
            event_name=event.value,
        )


def _route(gw: Gateway, kind: sink.Kind, name: str) -> PurePosixPath:
    return sink.route(kind, name, gw.clock(), gw.config.inbox_language)


# ---- SDI notifications -------------------------------------------------------------------------


def _notification(gw: Gateway, account: Account, source: Source, node: Node) -> None:
    notification = node.notification
    assert notification is not None
    outgoing = _correlate(gw, account, notification)
    event = lifecycle.event_for_notification(notification.type.value, notification.esito)
    detail = _describe(notification)
    if outgoing is not None and event is not None:
        _advance(gw, outgoing, event, source, detail, notification.identificativo_sdi)
    item_id = gw.store.record_notification(
        account.name,
        kind=notification.type.value,
        file_name=notification.nome_file,
        received=gw.clock(),
        source=str(source),
        outgoing_id=outgoing.id if outgoing else None,
        identificativo_sdi=notification.identificativo_sdi,
        message_id=notification.message_id,
        detail=detail,
    )
    name = node.filename or f"{notification.nome_file or 'unknown'}_{notification.type.value}.xml"
    path = sink.write(account.inbox, _route(gw, sink.Kind.SDI_NOTIFICATION, name), node.data)
    gw.store.record_path(Item.NOTIFICATION, item_id, str(path), at=gw.clock())
    if outgoing is None:
        _log.info(
            "orphan_notification_recorded",
            notification=notification.type.value,
            nome_file=notification.nome_file,
            path=str(path),
        )
    else:
        _log.info(
            "notification_recorded",
            notification=notification.type.value,
            file=outgoing.file_name,
            detail=detail,
            path=str(path),
        )


def _correlate(gw: Gateway, account: Account, notification: Notification) -> Outgoing | None:
    """By NomeFile (with or without .p7m, any case), then by IdentificativoSdI."""
    found = None
    if notification.nome_file:
        found = gw.store.find_outgoing_by_file(account.name, notification.nome_file)
    if found is None and notification.identificativo_sdi:
        found = gw.store.find_outgoing_by_identificativo_sdi(
            account.name, notification.identificativo_sdi
        )
    return found


def _describe(notification: Notification) -> str:
    parts = [f"IdentificativoSdI {notification.identificativo_sdi}"]
    if notification.esito:
        parts.append(f"esito {notification.esito}")
    for error in notification.errors:
        hint = f" ({error.suggerimento})" if error.suggerimento else ""
        parts.append(f"error {error.codice}: {error.descrizione or ''}{hint}")
    if notification.descrizione:
        parts.append(notification.descrizione)
    return "; ".join(parts)


# ---- suppliers' invoices -----------------------------------------------------------------------


def _supplier_invoices(
    gw: Gateway, account: Account, source: Source, envelope: Node, invoices: list[Node]
) -> None:
    metadata = [n for n in walk(envelope) if n.notification and _is_mt(n.notification)]
    for node in invoices:
        if gw.store.find_incoming(account.name, sha256=node.sha256) is not None:
            _log.info("invoice_already_received", received_file=node.filename)
            continue
        mt = _matching_mt(node, metadata)
        _file_invoice(gw, account, source, node, mt)


def _matching_mt(node: Node, metadata: list[Node]) -> Node | None:
    for mt in metadata:
        nome = mt.notification.nome_file if mt.notification else None
        if nome and node.filename and filename.same_invoice_file(nome, node.filename):
            return mt
    return metadata[0] if len(metadata) == 1 else None


def _file_invoice(
    gw: Gateway, account: Account, source: Source, node: Node, mt: Node | None
) -> None:
    name = node.filename or "invoice.xml"
    notification = mt.notification if mt else None
    identificativo = notification.identificativo_sdi if notification else None
    item_id = gw.store.record_incoming(
        account.name,
        file_name=name,
        sha256=node.sha256,
        identificativo_sdi=identificativo,
        received=gw.clock(),
        source=str(source),
    )
    original = sink.write(account.inbox, _route(gw, sink.Kind.RECEIVED_INVOICE, name), node.data)
    written = [original]
    if node.payload is not None:
        xml_name = filename.invoice_stem(name) + ".xml"
        written.append(_write_beside(account, original, xml_name, node.payload))
    if mt is not None:
        written.append(_write_beside(account, original, mt.filename or "metadata.xml", mt.data))
    check = _hash_check(node, notification)
    facts = {**report.to_json(node, name), "mt_hash_check": check, "source": str(source)}
    written.append(sink.write_json_sidecar(original, facts))
    for path in written:
        gw.store.record_path(Item.INCOMING, item_id, str(path), at=gw.clock())
    if check == "mismatch":
        _log.warning("invoice_hash_mismatch", received_file=name, identificativo_sdi=identificativo)
    _log.info(
        "invoice_received",
        received_file=name,
        identificativo_sdi=identificativo,
        path=str(original),
    )


def _write_beside(account: Account, original: Path, name: str, data: bytes) -> Path:
    relative = original.parent.relative_to(account.inbox) / sink.safe_name(name)
    return sink.write(account.inbox, PurePosixPath(relative.as_posix()), data)


def _hash_check(node: Node, notification: Notification | None) -> str:
    """``ok`` / ``mismatch`` of the MT's Hash (SHA-256 of the file as sent), ``absent`` without."""
    expected = (notification.hash or "").strip().lower() if notification else ""
    if not expected:
        return "absent"
    return "ok" if expected == hashlib.sha256(node.data).hexdigest() else "mismatch"


# ---- quarantine --------------------------------------------------------------------------------


def quarantine(gw: Gateway, account: Account, source: Source, raw: bytes, reason: str) -> str:
    """Keeps the raw message and its reason under the quarantine folder; records it."""
    path = sink.write(account.inbox, _route(gw, sink.Kind.QUARANTINE, source.eml_name), raw)
    sink.write_sidecar(path, ".reason.txt", (reason + "\n").encode("utf-8"))
    gw.store.record_quarantine(
        account.name,
        what=f"imap uid {source.uid} ({source.folder})",
        reason=reason,
        path=str(path),
        at=gw.clock(),
    )
    _log.warning("message_quarantined", reason=reason, path=str(path))
    return "quarantined"
