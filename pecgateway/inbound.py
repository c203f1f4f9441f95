"""One inbound unit of work: a mailbox message, classified, correlated, recorded and filed.

Only a trusted origin acts (inbound_trust.py): a PEC-shaped receipt, correlated by the Message-ID it
refers to; SDI's message through PEC, whose every part is handled: notifications correlated by
NomeFile then IdentificativoSdI, suppliers' invoices filed with their MT, inspect facts and HTML,
and the raw message quarantined too when a part cannot be handled. Anything else is quarantined. Store first (effects, dedup key and planned files in one
transaction; see inbound_files.py), then the inbox folder; the caller acknowledges.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pecgateway import filename, inbound_invoice, inbound_trust, lifecycle, sink
from pecgateway.classify import Kind, Node, classify, walk
from pecgateway.errors import InvalidTransition
from pecgateway.inbound_files import Source, Unit, write_pending
from pecgateway.inbound_parts import notification_name, sort_parts
from pecgateway.inbound_quarantine import (
    bounded,
    describe,
    foreign_receipt,
    identificativo_conflict,
    not_from_sdi,
    partly_filed,
    plan_quarantine,
    untrusted_receipt,
    why_quarantined,
)
from pecgateway.inbound_trust import Origin, Trust
from pecgateway.log import get_logger
from pecgateway.pec import PecMessage
from pecgateway.store import Item, Outgoing

if TYPE_CHECKING:
    from pecgateway.config import Account
    from pecgateway.sdi import Notification
    from pecgateway.service import Gateway

__all__ = ["Source", "file_message", "is_filed", "quarantine"]

_log = get_logger()


def file_message(gw: Gateway, account: Account, source: Source, raw: bytes) -> str:
    """Records and files one raw message; returns the outcome (``receipt``, ``quarantined`` ...).

    Idempotent (inbound_files.py): a message already recorded is not recorded again; only the
    files an interrupted pass left unwritten are written, and its first outcome is returned.
    """
    digest = hashlib.sha256(raw).hexdigest()
    seen = gw.store.find_inbound_message(account.name, digest)
    if seen is not None:
        missing = write_pending(gw, account, seen.id, recovering=True)
        _log.info(
            "message_already_filed", outcome=seen.outcome, first_seen=seen.source, completed=missing
        )
        return seen.outcome
    node = classify(raw, source.eml_name)
    unit = Unit(gw, account, source)
    with gw.store.atomic():
        outcome = _record(unit, node, raw)
        inbound_id = _remember(unit, digest, node, outcome)
    write_pending(gw, account, inbound_id, recovering=False)
    return outcome


def is_filed(gw: Gateway, account: Account, raw: bytes) -> bool:
    """Whether this raw message's effects are recorded (its files may still be missing)."""
    digest = hashlib.sha256(raw).hexdigest()
    return gw.store.find_inbound_message(account.name, digest) is not None


def _remember(unit: Unit, digest: str, node: Node | None, outcome: str) -> int:
    message_id = node.pec.message_id if node is not None and node.pec is not None else None
    return unit.gw.store.record_inbound_message(
        unit.account.name,
        sha256=digest,
        message_id=message_id,
        outcome=outcome,
        source=str(unit.source),
        at=unit.gw.clock(),
        outputs=unit.plan.outputs,
    )


def _record(unit: Unit, node: Node, raw: bytes) -> str:
    """The message's effects in the store and its planned files; returns the outcome.

    Only a trusted origin (inbound_trust.py) changes state, files an invoice or teaches the SDI
    address: a PEC-shaped receipt, or SDI's own message through PEC. Anything else is quarantined.
    """
    message = node.pec
    trust = inbound_trust.assess(raw, message)
    if trust.origin in (Origin.RECEIPT, Origin.SDI):
        _log.info(
            "pec_origin_accepted",
            origin=trust.origin.value,
            sender=trust.sender,
            signature=inbound_trust.SIGNATURE_NOT_VERIFIED,
        )
    event = lifecycle.event_for_receipt(message.type.value) if message and message.type else None
    if message is not None and event is not None:
        if trust.origin is Origin.RECEIPT:
            return _receipt(unit, node, message, event)
        return plan_quarantine(unit, raw, untrusted_receipt(message, trust), node)
    if trust.origin is Origin.SDI:
        return _from_sdi(unit, node, raw, trust)
    carried = [n for n in walk(node) if n is not node and n.kind in _SDI_CONTENT]
    reason = not_from_sdi(trust, carried) if carried else why_quarantined(node)
    return plan_quarantine(unit, raw, reason, node)


_SDI_CONTENT = (Kind.NOTIFICATION, Kind.INVOICE)


def _from_sdi(unit: Unit, node: Node, raw: bytes, trust: Trust) -> str:
    """Every part of SDI's message handled: notifications and invoices filed; when a part cannot
    be handled, or a notification's IdentificativoSdI belongs to another of our files, the raw
    message is quarantined too, its reason naming that part."""
    parts = sort_parts(node)
    correlated: list[bool] = []
    conflicts: list[str] = []
    for child in parts.notifications:
        conflict = _conflict(unit, child)
        if conflict is None:
            correlated.append(_notification(unit, child))
        else:
            conflicts.append(conflict)
    if parts.invoices:
        inbound_invoice.file_invoices(unit, node, parts.invoices)
    outcomes = ["notification"] * bool(correlated) + ["invoice"] * bool(parts.invoices)
    problems = _unhandled(node, parts.unhandled, outcomes)
    if not outcomes and not conflicts:
        return plan_quarantine(unit, raw, why_quarantined(node, from_sdi=True), node)
    if problems or conflicts:
        plan_quarantine(unit, raw, "; ".join(conflicts + problems), node)
        return "+".join([*outcomes, "quarantined"])
    if trust.sdi_address and (any(correlated) or (parts.invoices and parts.metadata)):
        _learn_sdi_address(unit, trust.sdi_address)  # never from orphans: anyone can write those
    return "+".join(outcomes)


def _unhandled(node: Node, unhandled: list[Node], outcomes: list[str]) -> list[str]:
    if not unhandled:
        return []
    return [partly_filed(unhandled, outcomes) if outcomes else why_quarantined(node, from_sdi=True)]


def _conflict(unit: Unit, node: Node) -> str | None:
    """Why a notification must not be applied: its IdentificativoSdI is already held by another
    of our outgoing files (applying it would give two invoices the same id); None when it may."""
    notification = node.notification
    assert notification is not None
    identificativo = notification.identificativo_sdi
    outgoing = _correlate(unit, notification) if identificativo else None
    if outgoing is None or identificativo is None:
        return None
    holder = unit.gw.store.find_outgoing_by_identificativo_sdi(unit.account.name, identificativo)
    if holder is None or holder.id == outgoing.id:
        return None
    _log.warning(
        "notification_conflict",
        notification=notification.type.value,
        file=outgoing.file_name,
        identificativo_sdi=identificativo,
        held_by=holder.file_name,
    )
    return identificativo_conflict(
        node.filename, notification.type.value, identificativo, outgoing.file_name, holder.file_name
    )


def _learn_sdi_address(unit: Unit, address: str) -> None:
    source = str(unit.source)
    if unit.gw.store.set_sdi_address(unit.account.name, address, at=unit.gw.clock(), source=source):
        _log.warning("sdi_address_changed", sdi_address=address.lower(), source=source)


# ---- PEC receipts ------------------------------------------------------------------------------


def _receipt(unit: Unit, node: Node, message: PecMessage, event: lifecycle.Event) -> str:
    gw, account = unit.gw, unit.account
    reference = message.riferimento_message_id
    outgoing = gw.store.find_outgoing_by_message_id(reference, account.name) if reference else None
    foreign = _foreign_mittente(message, account.address) if outgoing is not None else None
    if foreign is not None:
        assert outgoing is not None
        _log.warning("receipt_untrusted", file=outgoing.file_name, mittente=bounded(foreign))
        reason = foreign_receipt(message, foreign, outgoing.file_name, account.address)
        return plan_quarantine(unit, node.data, reason, node)
    detail = message.errore_esteso or message.errore or ""
    if outgoing is not None:
        _advance(unit, outgoing, event, detail)
    item_id = gw.store.record_notification(
        account.name,
        kind=message.type.value if message.type else "pec",
        file_name=outgoing.file_name if outgoing else None,
        received=gw.clock(),
        source=str(unit.source),
        outgoing_id=outgoing.id if outgoing else None,
        message_id=reference,
        detail=detail,
    )
    if outgoing is not None:
        name = f"{filename.invoice_stem(outgoing.file_name)}_{event.value}.eml"
    else:  # about a file we never sent: named as a person sees it in the mail client
        described = describe(node.data, node, gw.clock())
        name = described.file_name(gw.config.inbox_language)
    relpath = unit.route(sink.Kind.PEC_RECEIPT, name)
    unit.plan.add(Item.NOTIFICATION, item_id, relpath, node.data)
    if outgoing is None:
        _log.info(
            "orphan_receipt_recorded",
            receipt=event.value,
            refers_to=reference,
            path=unit.shown(relpath),
        )
        return "orphan"
    _log.info(
        "receipt_recorded", receipt=event.value, file=outgoing.file_name, path=unit.shown(relpath)
    )
    return "receipt"


def _foreign_mittente(message: PecMessage, address: str) -> str | None:
    """The daticert ``mittente`` of a receipt when it is not our account (a receipt is about a
    message WE sent, so its certified sender is us); None when it is us or not written."""
    daticert = message.daticert
    mittente = (daticert.mittente or "").strip().strip("<>") if daticert is not None else ""
    if not mittente or mittente.lower() == address.strip().lower():
        return None
    return mittente


def _advance(
    unit: Unit,
    outgoing: Outgoing,
    event: lifecycle.Event,
    detail: str,
    identificativo_sdi: str | None = None,
) -> None:
    gw, source = unit.gw, str(unit.source)
    try:
        after = gw.store.transition(
            outgoing.id,
            event,
            at=gw.clock(),
            source=source,
            detail=detail,
            identificativo_sdi=identificativo_sdi,
        )
    except InvalidTransition as exc:
        detail = f"ignored: {exc.reason}"
        gw.store.note(outgoing.id, event.value, at=gw.clock(), source=source, detail=detail)
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


# ---- SDI notifications -------------------------------------------------------------------------


def _notification(unit: Unit, node: Node) -> bool:
    """Records one SDI notification; True when it is about one of our outgoing files."""
    gw, account = unit.gw, unit.account
    notification = node.notification
    assert notification is not None
    outgoing = _correlate(unit, notification)
    event = lifecycle.event_for_notification(notification.type.value, notification.esito)
    detail = _describe(notification)
    if outgoing is not None and event is not None:
        _advance(unit, outgoing, event, detail, notification.identificativo_sdi)
    item_id = gw.store.record_notification(
        account.name,
        kind=notification.type.value,
        file_name=notification.nome_file,
        received=gw.clock(),
        source=str(unit.source),
        outgoing_id=outgoing.id if outgoing else None,
        identificativo_sdi=notification.identificativo_sdi,
        message_id=notification.message_id,
        detail=detail,
    )
    name = notification_name(node)
    relpath = unit.plan.add(
        Item.NOTIFICATION, item_id, unit.route(sink.Kind.SDI_NOTIFICATION, name), node.data
    )
    if outgoing is None:  # an NS matching nothing we sent is an alert (field quirk BL-33)
        orphan = _log.warning if notification.type.value == "NS" else _log.info
        orphan(
            "orphan_notification_recorded",
            notification=notification.type.value,
            nome_file=notification.nome_file,
            path=unit.shown(relpath),
        )
    else:
        _log.info(
            "notification_recorded",
            notification=notification.type.value,
            file=outgoing.file_name,
            detail=detail,
            path=unit.shown(relpath),
        )
    return outgoing is not None


def _correlate(unit: Unit, notification: Notification) -> Outgoing | None:
    """By NomeFile (with or without .p7m, any case), then by IdentificativoSdI."""
    store, account = unit.gw.store, unit.account.name
    found = None
    if notification.nome_file:
        found = store.find_outgoing_by_file(account, notification.nome_file)
    if found is None and notification.identificativo_sdi:
        found = store.find_outgoing_by_identificativo_sdi(account, notification.identificativo_sdi)
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


# ---- quarantine (inbound_quarantine.py) ---------------------------------------------------------


def quarantine(gw: Gateway, account: Account, source: Source, raw: bytes, reason: str) -> str:
    """Keeps the raw message and its reason under the quarantine folder; records it (once).

    For a message whose handling failed before anything was recorded (``is_filed`` is False).
    """
    unit = Unit(gw, account, source)
    node = _classified(raw, source)
    with gw.store.atomic():
        outcome = plan_quarantine(unit, raw, reason, node)
        inbound_id = _remember(unit, hashlib.sha256(raw).hexdigest(), None, outcome)
    write_pending(gw, account, inbound_id, recovering=False)
    return outcome


def _classified(raw: bytes, source: Source) -> Node | None:
    """The message classified again for its quarantine sidecar; None when that fails too."""
    try:
        return classify(raw, source.eml_name)
    except Exception:  # noqa: BLE001 -- the failure being quarantined may be this one
        return None
