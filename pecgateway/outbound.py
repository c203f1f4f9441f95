"""One outbound unit of work: a claimed outbox file, checked, recorded, sent to SDI, filed.

Commits in the fixed order store -> folders -> ack (the outbox move). The Message-ID is generated
and stored (state ``sending``) before the SMTP transaction, so that after a crash an invoice is
reconciled by its ACCETTAZIONE and resent only when none came within ``resend_after_s``.

A unit begins by moving its file out of ``.processing/new/`` (``outbox.begin``): a file new from the
outbox is always checked, so the same bytes dropped again after a send are refused as a duplicate;
only a file found in ``.processing/`` itself resumes its record. A file that changes while it is
read, or that looks cut short and changes within ``stable_for_s``, goes back to the outbox before
anything is recorded. A file ``outbox.read`` refuses (a link, a FIFO, over 5 MB, a name that is not
UTF-8) goes to rejected/ unrecorded; one the service may not read waits in the outbox. The inbox
copy's ``.json`` is a snapshot of the send, never its later state.
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

from pecgateway import compose, invoice, lifecycle, outbound_checks, outbox, sink, smtp, validate
from pecgateway.errors import PermanentSendError, TransientError
from pecgateway.lifecycle import Event, State
from pecgateway.log import get_logger
from pecgateway.store import Item, Outgoing

if TYPE_CHECKING:
    from pecgateway.config import Account
    from pecgateway.service import Gateway

__all__ = [
    "ONCE_ATTEMPTS",
    "SENT_COPY_NOT_WRITTEN",
    "SMTP_DEFERRED",
    "SMTP_OUTCOME_UNKNOWN",
    "delivery_overdue",
    "overdue",
    "take",
]

ONCE_ATTEMPTS = 3  # `pecgateway once` gives up on a transient SMTP failure after this many tries
SMTP_DEFERRED = "smtp-deferred"  # audit note: the last attempt failed for sure, resend at once
SMTP_OUTCOME_UNKNOWN = "smtp-outcome-unknown"  # audit note: sent, reply lost; wait for a receipt
SENT_COPY_NOT_WRITTEN = "sent-copy-not-written"  # audit note: the inbox copy of a sent file failed
_RESUMABLE = (State.QUEUED, State.SENDING)
_log = get_logger()


async def take(gw: Gateway, account: Account, claimed: Path, stop: asyncio.Event) -> str:
    """Handles one claimed file from start to end (or resumes it); returns the outcome."""
    started = outbox.begin(claimed)
    if started is None:
        return _gone(claimed)
    path, new = started
    try:
        read = _read_settled(path)
    except outbox.Refused as refused:
        return _refused(gw, account, path, refused)
    except FileNotFoundError:
        return _gone(path)
    if read is None:
        return _still_changing(path)
    data = read[0]
    digest = hashlib.sha256(data).hexdigest()
    record = None if new else _unfinished(gw, account, path.name, digest)
    if record is None or record.state is State.REJECTED:
        checked = await _checked(gw, account, record, path, read, stop)
        if isinstance(checked, str):
            return checked
        record = checked
    if record.state in _RESUMABLE:
        return await _send(gw, account, record, path, data, stop)
    if record.state is State.NOT_ACCEPTED:
        return _reject(gw, record, path, (_refusal(gw, record),))
    return _finish(gw, account, record, path, data, reply="")


async def _checked(
    gw: Gateway,
    account: Account,
    rejected: Outgoing | None,
    path: Path,
    read: tuple[bytes, outbox.Signature],
    stop: asyncio.Event,
) -> Outgoing | str:
    """The file checked: its new record when it may be sent, else the outcome (rejected, put
    back). ``rejected``: its recorded rejection, when the move to rejected/ failed before."""
    data, seen = read
    digest = hashlib.sha256(data).hexdigest()
    facts, problems = outbound_checks.check(gw, account, path.name, data, digest)
    if problems and await _still_written(path, seen, problems, account, stop):
        return _still_changing(path)
    if rejected is not None:  # no second record: the rejection is finished
        return _reject(gw, rejected, path, problems or (_recorded(gw, rejected),))
    record = _record(gw, account, path.name, digest, facts, problems)
    return _reject(gw, record, path, problems) if problems else record


def _gone(path: Path) -> str:
    shown = outbox.display_name(path.name)
    _log.info("outbox_file_gone", file=shown, path=outbox.display_name(str(path)))
    return "gone"


def _read_settled(path: Path) -> tuple[bytes, outbox.Signature] | None:
    """The bytes and the signature they were read at; None when the file changed meanwhile.

    Raises ``outbox.Refused`` for a file that is never read (a link, a FIFO, too large, ...).
    """
    data, seen = outbox.read(path, max_bytes=validate.MAX_FILE_BYTES)
    if outbox.signature(path) != seen:
        return None
    _unreadable_told.discard(outbox.outbox_of(path) / path.name)
    return data, seen


_unreadable_told: set[Path] = set()  # outbox files whose permission problem was logged


def _refused(gw: Gateway, account: Account, path: Path, refused: outbox.Refused) -> str:
    """A file that is not read: one the service may not read goes back to the outbox and waits
    (logged once); any other (a link, a FIFO, too large) goes to rejected/ with the reason. Neither
    is recorded in the store (nothing of it was read)."""
    shown = outbox.display_name(path.name)
    problem = refused.refusal
    if refused.later:
        where = outbox.release(path)
        if where not in _unreadable_told:
            _unreadable_told.add(where)
            _log.warning(
                "outbox_file_unreadable",
                file=shown,
                reason=problem.message,
                hint=problem.hint,
                path=outbox.display_name(str(where)),
            )
        gw.failed(account, "outbox", f"{shown}: {problem.message}")
        return "unreadable"
    target = outbox.reject(path, (problem,), now=gw.clock())
    _log.warning(
        "invoice_rejected",
        file=shown,
        problems=1,
        reason=f"[{problem.code}] {problem.message}",
        path=outbox.display_name(str(target)),
    )
    return "rejected"


def _recorded(gw: Gateway, record: Outgoing) -> validate.Problem:
    """The rejection recorded for ``record`` (checks that now pass, e.g. after a schema update)."""
    words = [e.detail for e in gw.store.events(record.id) if e.event == Event.REJECTED.value]
    reason = words[-1] if words else "rejected by the checks"
    return validate.Problem("rejected", reason, None, None, _RECORDED_HINT)


_RECORDED_HINT = "fix the file as the reason says and drop it into the outbox again"


_CUT_SHORT = frozenset({"not-well-formed", "p7m", "encoding"})  # how a half-written file fails


async def _still_written(
    path: Path,
    seen: outbox.Signature,
    problems: tuple[validate.Problem, ...],
    account: Account,
    stop: asyncio.Event,
) -> bool:
    """For a file that looks cut short: whether it changes within ``stable_for_s`` once more."""
    if not any(problem.code in _CUT_SHORT for problem in problems):
        return False
    await _stopped_within(stop, account.stable_for_s)
    return outbox.signature(path) != seen


def _still_changing(path: Path) -> str:
    """A file whose writer is still at work goes back to the outbox and waits to settle again."""
    where = outbox.release(path)
    _log.warning(
        "outbox_file_still_changing", file=path.name, path=str(where), hint=_STILL_CHANGING_HINT
    )
    return "still-changing"


_STILL_CHANGING_HINT = (
    "the file changed after it had held still for stable_for_s: it is taken again once complete; "
    "write files under a temporary name (name.xml.tmp) and rename them when complete"
)


def _unfinished(gw: Gateway, account: Account, name: str, digest: str) -> Outgoing | None:
    """The record of a unit found in ``.processing/`` (a crash, a stop, a send waiting for its
    receipt, a rejection whose move failed): same name, same bytes. A file new from the outbox is
    never resumed."""
    found = gw.store.find_outgoing_by_file(account.name, name)
    return found if found is not None and found.sha256 == digest else None


def _record(
    gw: Gateway,
    account: Account,
    name: str,
    digest: str,
    facts: invoice.Invoice | None,
    problems: tuple[validate.Problem, ...],
) -> Outgoing:
    """The new file in the store: ``queued``, or ``rejected`` in the same transaction."""
    with gw.store.atomic():
        record = gw.store.record_outgoing(
            account.name,
            file_name=name,
            sha256=digest,
            at=gw.clock(),
            format=facts.format if facts else None,
            flow=facts.flow if facts else None,
        )
        if problems:
            record = gw.store.transition(
                record.id, Event.REJECTED, at=gw.clock(), source="checks", detail=_summary(problems)
            )
    _log.info("invoice_claimed", file=name, sha256=digest, outgoing_id=record.id)
    return record


def _summary(problems: tuple[validate.Problem, ...]) -> str:
    return "; ".join(f"[{p.code}] {p.message}" for p in problems[:5])


def _reject(
    gw: Gateway, record: Outgoing, claimed: Path, problems: tuple[validate.Problem, ...]
) -> str:
    """The file to ``rejected/`` beside its reasons (the store already says why)."""
    target = outbox.reject(claimed, problems, now=gw.clock())
    gw.store.record_path(Item.OUTGOING, record.id, str(target), at=gw.clock())
    _log.warning(
        "invoice_rejected",
        file=record.file_name,
        problems=len(problems),
        reason=_summary(problems),
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
    record = _fresh(gw, record)
    if record.state not in _RESUMABLE:  # a receipt or SDI's answer came: never send again
        return _finish(gw, account, record, claimed, data, reply="")
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
        return _reject(gw, record, claimed, (problem,))
    if reply is None:
        record = _fresh(gw, record)
        if record.state in _RESUMABLE:
            return "deferred"
        return _finish(gw, account, record, claimed, data, reply="")
    record = gw.store.transition(record.id, Event.SENT, at=gw.clock(), source="smtp", detail=reply)
    return _finish(gw, account, record, claimed, data, reply=reply)


def _fresh(gw: Gateway, record: Outgoing) -> Outgoing:
    """``record`` as the store has it now (receipts may have come in meanwhile)."""
    return gw.store.find_outgoing(record.id) or record


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
    """The server's reply, or None when it must wait: stop asked, `once` gave up, the outcome is
    unknown (the message went out, its reply did not come), or a receipt came meanwhile."""
    delay = account.smtp.retry_initial_s
    for attempt in range(1, 1_000_000):
        if attempt > 1 and _fresh(gw, record).state is not State.SENDING:
            return None  # a receipt or SDI's answer arrived while waiting: never resend
        try:
            return await smtp.send(message, account.smtp, password=account.smtp.password.reveal())
        except smtp.OutcomeUnknown as exc:
            _outcome_unknown(gw, account, record, exc)
            return None
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


def _outcome_unknown(
    gw: Gateway, account: Account, record: Outgoing, exc: smtp.OutcomeUnknown
) -> None:
    """Recorded like an interrupted send: still ``sending``, no ``smtp-deferred``; the message's
    ACCETTAZIONE reconciles it, and it is resent only after ``resend_after_s`` without one."""
    gw.store.note(record.id, SMTP_OUTCOME_UNKNOWN, at=gw.clock(), source="smtp", detail=str(exc))
    _log.warning(
        "send_outcome_unknown",
        file=record.file_name,
        message_id=record.message_id,
        reason=str(exc),
        resend_after_s=account.resend_after_s,
        hint=_OUTCOME_UNKNOWN_HINT,
    )


_OUTCOME_UNKNOWN_HINT = (
    "the provider may have taken the message: it is not sent again while its receipt "
    "(ACCETTAZIONE) may still come; without one it is resent after resend_after_s"
)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


def _finish(
    gw: Gateway, account: Account, record: Outgoing, claimed: Path, data: bytes, *, reply: str
) -> str:
    """Folders then ack: a copy under the inbox's sent folder, then the outbox file to sent/.

    Once sent, nothing rejects the file: a copy that cannot be written is logged and noted
    (``sent-copy-not-written``) and the file still goes to sent/, where its bytes are kept."""
    failure = _copy_to_inbox(gw, account, record, data, reply)
    target = outbox.done(claimed)
    if failure is not None:
        _copy_not_written(gw, record, target, failure)
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


def _copy_to_inbox(
    gw: Gateway, account: Account, record: Outgoing, data: bytes, reply: str
) -> OSError | None:
    """The copy and its sidecar under the inbox's sent folder; the error when it failed."""
    now = gw.clock()
    relpath = sink.route(sink.Kind.SENT, record.file_name, now, gw.config.inbox_language)
    try:
        copy = sink.write(account.inbox, relpath, data)
        sidecar = sink.write_json_sidecar(copy, _send_facts(gw, record, reply, now))
    except OSError as exc:
        return exc
    for path in (copy, sidecar):
        gw.store.record_path(Item.OUTGOING, record.id, str(path), at=now)
    return None


def _copy_not_written(gw: Gateway, record: Outgoing, kept: Path, exc: OSError) -> None:
    reason = f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": ")
    gw.store.note(record.id, SENT_COPY_NOT_WRITTEN, at=gw.clock(), source="inbox", detail=reason)
    _log.error(
        "sent_copy_not_written",
        file=record.file_name,
        reason=reason,
        kept=str(kept),
        hint=_COPY_NOT_WRITTEN_HINT,
    )


_COPY_NOT_WRITTEN_HINT = (
    "the invoice WAS sent to SDI; only its copy in the inbox's sent folder is missing: fix the "
    "inbox folder (permissions, a file where a folder belongs) and copy the file kept in the "
    "outbox's sent/ folder there; do not drop it into the outbox again"
)


def _send_facts(gw: Gateway, record: Outgoing, reply: str, now: datetime) -> dict[str, object]:
    """The sidecar of the inbox copy: the facts of the send, never its later state."""
    return {
        "file": record.file_name,
        "sha256": record.sha256,
        "message_id": record.message_id,
        "sdi_address": record.sdi_address,
        "sent_at": outbound_checks.sent_at(gw, record) or now.isoformat(),
        "smtp_reply": reply,  # empty when the send was confirmed by its receipt after a restart
        "filed_at": now.isoformat(),
        "note": _SNAPSHOT_NOTE,
    }


_SNAPSHOT_NOTE = (
    "the facts of the send, written once and never updated; `pecgateway status` shows the "
    "invoice's current state (receipts, SDI's outcome)"
)


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


def delivery_overdue(gw: Gateway, account: Account) -> list[tuple[Outgoing, datetime]]:
    """Invoices the PEC provider took (or SMTP accepted) 24 hours ago and never delivered to SDI,
    with the time they were taken: neither CONSEGNA nor an error came (``lifecycle.accepted_at``)."""
    now = gw.clock()
    late = []
    for item in gw.store.find_outgoing_in_state(account.name, *lifecycle.AWAITING_DELIVERY):
        trail = ((e.event, datetime.fromisoformat(e.at)) for e in gw.store.events(item.id))
        since = lifecycle.accepted_at(trail)
        if since is not None and lifecycle.delivery_overdue(item.state, since, now):
            late.append((item, since))
    return late


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
