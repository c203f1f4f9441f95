"""The mailbox loop of one account: connect, read every new message, wait for mail, reconnect.

Each message is one inbound unit (fetch, file, acknowledge, move); a message whose files could not
all be written stays unacknowledged and is tried again on every pass. After each pass: claimed
outbox files waiting for reconciliation, and invoices whose SDI outcome is overdue.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

from pecgateway import imap, inbound, outbound, sink
from pecgateway.config import Account
from pecgateway.errors import TransientError
from pecgateway.log import get_logger, unit
from pecgateway.outbox_loop import resume_claimed
from pecgateway.supervisor import Supervisor, backoff, stopped_within

if TYPE_CHECKING:
    from pecgateway.service import Gateway

__all__ = ["DELIVERY_OVERDUE_NOTE", "OVERDUE_NOTE", "flag_overdue", "serve_mailbox"]

OVERDUE_NOTE = "sdi-outcome-overdue"  # audit note: flagged (and logged) once, even across restarts
DELIVERY_OVERDUE_NOTE = "pec-delivery-overdue"  # the same for "accepted but never delivered to SDI"
_log = get_logger()


async def serve_mailbox(
    gateway: Gateway, account: Account, stop: asyncio.Event, supervisor: Supervisor
) -> None:
    """Connects, reads, waits for mail; after any drop backs off and connects again."""
    settings = account.imap
    delay = settings.reconnect_initial_s
    sink.clean_temporary(account.inbox)
    while not stop.is_set():
        try:
            await _mailbox_session(gateway, account, stop, supervisor)
            return
        except TransientError as exc:
            wait_s, delay = backoff(delay, settings.reconnect_max_s)
            _log.warning("mailbox_dropped", reason=str(exc), retry_in_s=round(wait_s, 1))
            gateway.failed(account, "mailbox", f"cannot read the mailbox: {exc}")
            if gateway.once or await stopped_within(stop, wait_s):
                return


async def _mailbox_session(
    gateway: Gateway, account: Account, stop: asyncio.Event, supervisor: Supervisor
) -> None:
    settings = account.imap
    password = settings.password.reveal()
    async with imap.Mailbox(settings, password=password) as mailbox:
        _log.info("mailbox_connected", folder=settings.folder, uidvalidity=mailbox.uidvalidity)
        floor = 0
        while not stop.is_set():
            floor = await _mailbox_pass(gateway, account, mailbox, floor, stop)
            await _maintain(gateway, account, stop)
            supervisor.healthy()
            if gateway.once:
                return
            renew_s = min(settings.idle_renew_s, settings.poll_interval_s)
            if settings.idle and mailbox.can_idle:
                await mailbox.wait_for_mail(renew_s, stop)
            else:
                await stopped_within(stop, settings.poll_interval_s)
                await mailbox.noop()


async def _mailbox_pass(
    gateway: Gateway, account: Account, mailbox: imap.Mailbox, floor: int, stop: asyncio.Event
) -> int:
    """Handles every message above ``floor`` not yet processed; returns the new floor.

    The floor stops below the first message left unacknowledged, so the next pass tries it again.
    """
    folder = account.imap.folder
    complete = True
    for uid in await mailbox.uids_after(floor):
        if stop.is_set():
            return floor
        if not gateway.store.is_processed(account.name, folder, mailbox.uidvalidity, uid):
            complete = await _inbound_unit(gateway, account, mailbox, uid) and complete
        if complete:
            floor = uid
    return floor


async def _inbound_unit(
    gateway: Gateway, account: Account, mailbox: imap.Mailbox, uid: int
) -> bool:
    """One message: fetch, file (store, folders), mark processed, move. Drops propagate, and so
    does a failing store (the account's loop backs off). False: left unacknowledged.

    Filing is idempotent (inbound.file_message), so a message handled again after a crash, a
    UIDVALIDITY change or a move back is only acknowledged again.
    """
    source = inbound.Source(account.imap.folder, mailbox.uidvalidity, uid)
    with unit(uid=uid, uidvalidity=mailbox.uidvalidity):
        raw = await mailbox.fetch(uid)
        if raw is None:
            _log.info("message_vanished")
            return True
        outcome = _file(gateway, account, source, raw)
        if outcome is None:
            return False  # recorded, files incomplete: not acknowledged, the next pass completes it
        gateway.store.mark_processed(
            account.name,
            source.folder,
            source.uidvalidity,
            uid,
            at=gateway.clock(),
            outcome=outcome,
        )
        await _move(account, mailbox, uid)
        _log.info("unit_done", outcome=outcome)
        return True


def _file(gateway: Gateway, account: Account, source: inbound.Source, raw: bytes) -> str | None:
    """The outcome; an unexpected failure quarantines the message, unless its effects were
    already recorded (then None: the files are retried on the next pass, nothing is lost)."""
    try:
        return inbound.file_message(gateway, account, source, raw)
    except sqlite3.Error:
        raise
    except Exception as exc:  # noqa: BLE001 -- the unit-of-work boundary: quarantine, go on
        if inbound.is_filed(gateway, account, raw):
            _incomplete(gateway, account, source, exc)
            return None
        _log.exception("unit_failed")
        reason = f"internal error while filing: {type(exc).__name__}: {exc}"
        gateway.failed(account, "mailbox", f"uid {source.uid}: quarantined after {reason}")
        return inbound.quarantine(gateway, account, source, raw, reason)


def _incomplete(gateway: Gateway, account: Account, source: inbound.Source, exc: Exception) -> None:
    """Recorded, but its files could not all be written: logged once per message and reason
    (every pass tries again), with what to do."""
    reason = f"{type(exc).__name__}: {exc}"
    gateway.failed(account, "mailbox", f"uid {source.uid}: files not written: {reason}")
    key = f"{account.name} {source.uidvalidity} {source.uid} {reason}"
    if key in gateway.incomplete:
        _log.debug("unit_still_incomplete", reason=reason)
        return
    gateway.incomplete.add(key)
    where = getattr(exc, "filename", None) or account.inbox
    _log.error(
        "unit_incomplete",
        reason=reason,
        hint=f"make {where} a writable folder again; the message is filed on the next pass and "
        "acknowledged only then",
    )


async def _move(account: Account, mailbox: imap.Mailbox, uid: int) -> None:
    target = account.imap.move_to
    if not target or not mailbox.can_move:
        return
    await mailbox.move(uid, target)


async def _maintain(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    """After each mailbox pass: claimed files waiting for reconciliation, overdue SDI outcomes."""
    flag_overdue(gateway, account)
    lock = gateway.lock(account)
    if lock.locked() or gateway.once:
        return  # the outbox loop is busy (or will resume them itself in `once`)
    await resume_claimed(gateway, account, stop)


def flag_overdue(gateway: Gateway, account: Account) -> None:
    """Invoices stuck on their way, each logged once and kept as an audit note (which seeds the
    flags at start): no SDI outcome 5 days after delivery to SDI (``outbound.overdue`` skips the
    ids in ``gateway.flagged``), and taken by the PEC provider but not delivered after 24 hours."""
    before = set(gateway.flagged)
    for item in outbound.overdue(gateway, account):
        if item.id not in before:
            gateway.store.note(
                item.id,
                OVERDUE_NOTE,
                at=gateway.clock(),
                source="service",
                detail=f"no SDI outcome since delivery to SDI at {item.delivered_at}",
            )
    for item, since in outbound.delivery_overdue(gateway, account):
        if item.id in gateway.delivery_flagged:
            continue
        gateway.delivery_flagged.add(item.id)
        _log.warning("pec_delivery_overdue", file=item.file_name, accepted_at=since.isoformat())
        gateway.store.note(
            item.id,
            DELIVERY_OVERDUE_NOTE,
            at=gateway.clock(),
            source="service",
            detail=f"taken by the PEC provider at {since.isoformat()}, not delivered to SDI",
        )
