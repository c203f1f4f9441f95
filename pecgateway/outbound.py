"""One outbound unit of work: a claimed outbox file, checked, recorded, sent to SDI, filed.

Commits in the fixed order store -> folders -> ack (the outbox move). The Message-ID is generated and
stored (state ``sending``) before the SMTP transaction, so that after a crash an invoice is reconciled
by its ACCETTAZIONE and resent only when none came within ``resend_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from pecgateway import compose, invoice, lifecycle, outbox, p7m, sink, smtp, validate
from pecgateway.errors import MalformedMessage, PermanentSendError, TransientError
from pecgateway.lifecycle import Event, State
from pecgateway.log import get_logger
from pecgateway.store import Item, Outgoing

if TYPE_CHECKING:
    from pecgateway.config import Account
    from pecgateway.service import Gateway

__all__ = ["ONCE_ATTEMPTS", "SMTP_DEFERRED", "take"]

ONCE_ATTEMPTS = 3  # `pecgateway once` gives up on a transient SMTP failure after this many tries
SMTP_DEFERRED = "smtp-deferred"  # audit note: the last attempt failed for sure, resend at once
_RESUMABLE = (State.QUEUED, State.SENDING)
_log = get_logger()


async def take(gw: Gateway, account: Account, claimed: Path, stop: asyncio.Event) -> str:
    """Handles one claimed file from start to end (or resumes it); returns the outcome."""
    data = _read(claimed)
    digest = hashlib.sha256(data).hexdigest()
    record = _unfinished(gw, account, claimed.name, digest)
    if record is None:
        record, problems = _check_and_record(gw, account, claimed.name, data, digest)
        if problems:
            return _reject(gw, record, claimed, problems)
    if record.state in _RESUMABLE:
        return await _send(gw, account, record, claimed, data, stop)
    if record.state is State.NOT_ACCEPTED:
        return _reject(gw, record, claimed, (_refusal(gw, record),), transition=False)
    return _finish(gw, account, record, claimed, data, reply="")


def _read(path: Path) -> bytes:
    return path.read_bytes()  # at most a few MB: SDI refuses files over 5 MB


def _unfinished(gw: Gateway, account: Account, name: str, digest: str) -> Outgoing | None:
    """This very file's record when a crash or a stop interrupted it (same name, same bytes)."""
    found = gw.store.find_outgoing_by_file(account.name, name)
    if found is None or found.sha256 != digest or found.state is State.REJECTED:
        return None
    return found


def _check_and_record(
    gw: Gateway, account: Account, name: str, data: bytes, digest: str
) -> tuple[Outgoing, tuple[validate.Problem, ...]]:
    duplicate = gw.store.duplicate_reason(account.name, name, digest)
    payload, problems = _payload(name, data)
    if duplicate:
        problems = (validate.Problem("duplicate", duplicate, None, None, _DUPLICATE_HINT),)
    elif payload is not None and not name.lower().endswith(".zip"):
        problems = validate.check(payload, name, gw.schemas)
    facts = _facts(payload)
    record = gw.store.record_outgoing(
        account.name,
        file_name=name,
        sha256=digest,
        at=gw.clock(),
        format=facts.format if facts else None,
        flow=facts.flow if facts else None,
    )
    _log.info("invoice_claimed", file=name, sha256=digest, outgoing_id=record.id)
    return record, problems


_DUPLICATE_HINT = "send a corrected invoice as a new file with a new progressivo in its name"


def _payload(name: str, data: bytes) -> tuple[bytes | None, tuple[validate.Problem, ...]]:
    if not name.lower().endswith((".p7m", ".pk7")):
        return data, ()
    try:
        return p7m.unwrap(data).payload, ()
    except MalformedMessage as exc:
        hint = "sign the invoice again with your signing software (CAdES, .xml.p7m)"
        return None, (
            validate.Problem("p7m", f"cannot open the signed file: {exc.reason}", None, None, hint),
        )


def _facts(payload: bytes | None) -> invoice.Invoice | None:
    if payload is None:
        return None
    try:
        return invoice.parse(payload)
    except MalformedMessage:
        return None


def _reject(
    gw: Gateway,
    record: Outgoing,
    claimed: Path,
    problems: tuple[validate.Problem, ...],
    *,
    transition: bool = True,
) -> str:
    summary = "; ".join(f"[{p.code}] {p.message}" for p in problems[:5])
    if transition:
        gw.store.transition(
            record.id, Event.REJECTED, at=gw.clock(), source="checks", detail=summary
        )
    target = outbox.reject(claimed, problems, now=gw.clock())
    gw.store.record_path(Item.OUTGOING, record.id, str(target), at=gw.clock())
    _log.warning(
        "invoice_rejected",
        file=record.file_name,
        problems=len(problems),
        reason=summary,
        path=str(target),
    )
    return "rejected"


_REFUSED_HINT = "read the provider's words; fix the cause and drop the file into the outbox again"


def _refusal(gw: Gateway, record: Outgoing) -> validate.Problem:
    """The SMTP refusal recorded for ``record`` (resuming after a crash before the move)."""
    words = [e.detail for e in gw.store.events(record.id) if e.event == Event.SEND_FAILED.value]
    reason = words[-1] if words else f"state {record.state.value}"
    return validate.Problem("smtp-refused", reason, None, None, _REFUSED_HINT)


# ---- sending ----------------------------------------------------------------------------------


async def _send(
    gw: Gateway, account: Account, record: Outgoing, claimed: Path, data: bytes, stop: asyncio.Event
) -> str:
    if record.state is State.SENDING and not _may_resend(gw, account, record):
        _log.debug(
            "invoice_awaiting_reconciliation",
            file=record.file_name,
            message_id=record.message_id,
            sending_since=record.sending_since,
        )
        return "awaiting-reconciliation"
    record, message = _prepare(gw, account, record, data)
    try:
        reply = await _deliver(gw, account, record, message, stop)
    except PermanentSendError as exc:
        record = gw.store.transition(
            record.id, Event.SEND_FAILED, at=gw.clock(), source="smtp", detail=exc.reason
        )
        problem = validate.Problem("smtp-refused", exc.reason, None, None, _REFUSED_HINT)
        _log.error("invoice_send_failed", file=record.file_name, reason=exc.reason)
        return _reject(gw, record, claimed, (problem,), transition=False)
    if reply is None:
        return "deferred"
    record = gw.store.transition(record.id, Event.SENT, at=gw.clock(), source="smtp", detail=reply)
    return _finish(gw, account, record, claimed, data, reply=reply)


def _may_resend(gw: Gateway, account: Account, record: Outgoing) -> bool:
    """A `sending` invoice is resent only when its last try surely failed or the wait is over."""
    events = gw.store.events(record.id)
    if events and events[-1].event == SMTP_DEFERRED:
        return True
    since = datetime.fromisoformat(record.sending_since) if record.sending_since else None
    return since is None or (gw.clock() - since).total_seconds() >= account.resend_after_s


def _prepare(
    gw: Gateway, account: Account, record: Outgoing, data: bytes
) -> tuple[Outgoing, EmailMessage]:
    address = gw.store.sdi_address(account.name, account.sdi_address)
    resend = record.state is State.SENDING
    message_id = record.message_id or compose.new_message_id(gw.new_token(), _domain(account))
    record = gw.store.transition(
        record.id,
        Event.SENDING,
        at=gw.clock(),
        source="outbox",
        detail=f"{'resent' if resend else 'sending'} to {address}",
        message_id=message_id,
        sdi_address=address,
    )
    if resend:
        _log.warning("invoice_resent", file=record.file_name, message_id=message_id)
    if not gw.store.sdi_address_history(account.name):  # field quirk F2
        _log.warning("sdi_address_not_learned", sdi_address=address, hint=_NOT_LEARNED_HINT)
    message = compose.compose(
        file_name=record.file_name,
        data=data,
        sender=account.address,
        recipient=address,
        message_id=message_id,
        date=gw.clock(),
    )
    return record, message


_NOT_LEARNED_HINT = (
    "no SDI message has arrived yet, so SDI's own address (sdiNN) is not known: this file goes "
    "to the configured address; from SDI's first answer on, its address is used by itself"
)


def _domain(account: Account) -> str:
    return account.address.rsplit("@", 1)[-1]


async def _deliver(
    gw: Gateway, account: Account, record: Outgoing, message: EmailMessage, stop: asyncio.Event
) -> str | None:
    """The server's reply, or None when it must wait (stop asked, or `once` gave up)."""
    delay = account.smtp.retry_initial_s
    for attempt in range(1, 1_000_000):
        try:
            return await smtp.send(message, account.smtp, password=account.smtp.password.reveal())
        except TransientError as exc:
            gw.store.note(record.id, SMTP_DEFERRED, at=gw.clock(), source="smtp", detail=str(exc))
            wait_s = delay * random.uniform(0.5, 1.0)
            _log.warning(
                "send_deferred",
                file=record.file_name,
                attempt=attempt,
                reason=str(exc),
                retry_in_s=round(wait_s, 1),
            )
            if (gw.once and attempt >= ONCE_ATTEMPTS) or await _stopped_within(stop, wait_s):
                return None
            delay = min(delay * 2, account.smtp.retry_max_s)
    return None


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


def _finish(
    gw: Gateway, account: Account, record: Outgoing, claimed: Path, data: bytes, *, reply: str
) -> str:
    """Folders then ack: a copy under the inbox's sent folder, then the outbox file to sent/."""
    now = gw.clock()
    relpath = sink.route(sink.Kind.SENT, record.file_name, now, gw.config.inbox_language)
    copy = sink.write(account.inbox, relpath, data)
    facts = {
        "file": record.file_name,
        "message_id": record.message_id,
        "sdi_address": record.sdi_address,
        "sha256": record.sha256,
        "sent_at": now.isoformat(),
        "smtp_reply": reply,
        "state": record.state.value,
    }
    sidecar = sink.write_json_sidecar(copy, facts)
    for path in (copy, sidecar):
        gw.store.record_path(Item.OUTGOING, record.id, str(path), at=now)
    outbox.done(claimed)
    if reply:
        _log.info(
            "invoice_sent",
            file=record.file_name,
            message_id=record.message_id,
            sdi_address=record.sdi_address,
            reply=reply,
        )
    else:
        _log.info("invoice_filed", file=record.file_name, state=record.state.value)
    return "sent"


def overdue(gw: Gateway, account: Account) -> list[Outgoing]:
    """Invoices with no SDI outcome 5 days after reaching SDI (each logged once per process)."""
    now = gw.clock()
    late = [
        item
        for item in gw.store.find_outgoing_in_state(account.name, *lifecycle.AWAITING_SDI)
        if lifecycle.overdue(item.state, _when(item.delivered_at), now)
    ]
    for item in late:
        if item.id not in gw.flagged:
            gw.flagged.add(item.id)
            _log.warning("sdi_outcome_overdue", file=item.file_name, delivered_at=item.delivered_at)
    return late


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
