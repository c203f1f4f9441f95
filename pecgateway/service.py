"""The gateway service: per account an outbox loop and a mailbox loop, all in one TaskGroup.

Owns the loops, the unit-of-work wrapper (the one place where an exception type picks the action),
backoff, and the stop rule (``stop`` is looked at between units only). ``run_once`` is the same code
with every loop doing one full pass. The work of one unit lives in outbound.py and inbound.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pecgateway import imap, inbound, outbound, outbox, schema, sink, smtp, validate
from pecgateway.config import Account, Config
from pecgateway.errors import TransientError
from pecgateway.log import get_logger, unit
from pecgateway.schema import SchemaSet
from pecgateway.store import Store

__all__ = [
    "OVERDUE_NOTE",
    "Clock",
    "Gateway",
    "Notify",
    "TokenFactory",
    "check_servers",
    "open_gateway",
    "run",
    "run_once",
]

OVERDUE_NOTE = "sdi-outcome-overdue"  # audit note: flagged (and logged) once, even across restarts
Notify = Callable[[str], None]  # systemd notifications ("READY=1", "STATUS=...", "WATCHDOG=1")
_log = get_logger()


def _now() -> datetime:
    return datetime.now(UTC)


def _token() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class Gateway:
    """The collaborators every unit gets: config, the one store, schemas, clock, id factory."""

    config: Config
    store: Store
    schemas: SchemaSet
    clock: Callable[[], datetime] = _now
    new_token: Callable[[], str] = _token
    once: bool = False
    flagged: set[int] = field(default_factory=set)  # overdue invoices already logged
    busy: dict[str, asyncio.Lock] = field(default_factory=dict)  # one outbound unit per account

    def lock(self, account: Account) -> asyncio.Lock:
        return self.busy.setdefault(account.name, asyncio.Lock())


Clock = Callable[[], datetime]
TokenFactory = Callable[[], str]


def open_gateway(
    config: Config, *, once: bool = False, clock: Clock = _now, new_token: TokenFactory = _token
) -> Gateway:
    """Opens the store and loads the schemas once (``ConfigError`` when they are missing)."""
    store = Store(config.store_path)
    try:
        schemas = schema.load(config.schema_dir)
    except BaseException:
        store.close()
        raise
    flagged = store.outgoing_with_event(OVERDUE_NOTE)
    return Gateway(
        config, store, schemas, clock=clock, new_token=new_token, once=once, flagged=flagged
    )


async def run_once(
    config: Config, *, clock: Clock = _now, new_token: TokenFactory = _token
) -> None:
    """One full pass: the outbox drained and the mailbox read up to now, for every account."""
    await run(config, asyncio.Event(), once=True, clock=clock, new_token=new_token)


async def run(
    config: Config,
    stop: asyncio.Event,
    *,
    once: bool = False,
    notify: Notify | None = None,
    clock: Clock = _now,
    new_token: TokenFactory = _token,
) -> None:
    """Serves every account until ``stop`` is set (or, with ``once``, until all is done)."""
    gateway = open_gateway(config, once=once, clock=clock, new_token=new_token)
    try:
        for account in config.accounts:
            sink.clean_temporary(account.inbox)
        async with asyncio.TaskGroup() as group:
            for account in config.accounts:
                group.create_task(_outbox_loop(gateway, account, stop))
                group.create_task(_mailbox_loop(gateway, account, stop))
            if notify is not None and not once:
                group.create_task(_heartbeat(gateway, stop, notify))
    finally:
        gateway.store.close()


async def _heartbeat(gateway: Gateway, stop: asyncio.Event, notify: Notify) -> None:
    notify("READY=1")
    accounts = ", ".join(a.name for a in gateway.config.accounts)
    notify(f"STATUS=serving {accounts}")
    while not await _stopped_within(stop, 10.0):
        notify("WATCHDOG=1")
    notify("STOPPING=1")


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


def _backoff(delay_s: float, maximum_s: float) -> tuple[float, float]:
    """(this wait with jitter, the next base delay): exponential, bounded."""
    return delay_s * random.uniform(0.5, 1.0), min(delay_s * 2, maximum_s)


# ---- outbox --------------------------------------------------------------------------------------


async def _outbox_loop(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    """Resumes claimed files, then takes each new complete file, one unit at a time."""
    with unit(account=account.name, loop="outbox"):
        await _resume_claimed(gateway, account, stop)
        async for path in outbox.watch(
            account.outbox,
            stop,
            stable_for_s=account.stable_for_s,
            rescan_interval_s=account.rescan_interval_s,
            once=gateway.once,
        ):
            taken = outbox.claim(path)
            if taken is not None:
                await _outbound_unit(gateway, account, taken, stop)
            if stop.is_set():
                return


async def _resume_claimed(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    for claimed in outbox.claimed(account.outbox):
        if stop.is_set():
            return
        await _outbound_unit(gateway, account, claimed, stop)


async def _outbound_unit(
    gateway: Gateway, account: Account, claimed: Path, stop: asyncio.Event
) -> None:
    """One outbox file; any unexpected failure is logged and the file stays claimed for later."""
    async with gateway.lock(account):
        with unit(file=claimed.name):
            try:
                outcome = await outbound.take(gateway, account, claimed, stop)
            except Exception as exc:  # noqa: BLE001 -- the unit-of-work boundary: log, go on
                _log.exception("unit_failed")
                outcome = _set_aside(claimed, exc)
            _log.info("unit_done", outcome=outcome)


def _set_aside(claimed: Path, exc: Exception) -> str:
    """An outbox file whose unit failed unexpectedly goes to rejected/ with the error as reason."""
    reason = f"internal error while handling the file: {type(exc).__name__}: {exc}"
    hint = "report this as a bug with the file attached; then drop the file again"
    try:
        outbox.reject(claimed, (validate.Problem("internal-error", reason, None, None, hint),))
    except OSError as move_error:
        _log.error("file_left_claimed", reason=str(move_error))
        return "left-claimed"
    return "set-aside"


# ---- mailbox -------------------------------------------------------------------------------------


async def _mailbox_loop(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    """Connects, reads, waits for mail; after any drop backs off and connects again."""
    settings = account.imap
    delay = settings.reconnect_initial_s
    with unit(account=account.name, loop="mailbox"):
        while not stop.is_set():
            try:
                await _mailbox_session(gateway, account, stop)
                return
            except TransientError as exc:
                wait_s, delay = _backoff(delay, settings.reconnect_max_s)
                _log.warning("mailbox_dropped", reason=str(exc), retry_in_s=round(wait_s, 1))
                if gateway.once or await _stopped_within(stop, wait_s):
                    return


async def _mailbox_session(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    settings = account.imap
    password = settings.password.reveal()
    async with imap.Mailbox(settings, password=password) as mailbox:
        _log.info("mailbox_connected", folder=settings.folder, uidvalidity=mailbox.uidvalidity)
        floor = 0
        while not stop.is_set():
            floor = await _mailbox_pass(gateway, account, mailbox, floor, stop)
            await _maintain(gateway, account, stop)
            if gateway.once:
                return
            renew_s = min(settings.idle_renew_s, settings.poll_interval_s)
            if settings.idle and mailbox.can_idle:
                await mailbox.wait_for_mail(renew_s, stop)
            else:
                await _stopped_within(stop, settings.poll_interval_s)
                await mailbox.noop()


async def _mailbox_pass(
    gateway: Gateway, account: Account, mailbox: imap.Mailbox, floor: int, stop: asyncio.Event
) -> int:
    """Handles every message above ``floor`` not yet processed; returns the new floor."""
    folder = account.imap.folder
    for uid in await mailbox.uids_after(floor):
        if stop.is_set():
            return floor
        if not gateway.store.is_processed(account.name, folder, mailbox.uidvalidity, uid):
            await _inbound_unit(gateway, account, mailbox, uid)
        floor = uid
    return floor


async def _inbound_unit(
    gateway: Gateway, account: Account, mailbox: imap.Mailbox, uid: int
) -> None:
    """One message: fetch, file (store, folders), mark processed, move. Drops propagate.

    Filing is idempotent (inbound.file_message), so a message handled again after a crash, a
    UIDVALIDITY change or a move back is only acknowledged again.
    """
    source = inbound.Source(account.imap.folder, mailbox.uidvalidity, uid)
    with unit(uid=uid, uidvalidity=mailbox.uidvalidity):
        raw = await mailbox.fetch(uid)
        if raw is None:
            _log.info("message_vanished")
            return
        outcome = _file(gateway, account, source, raw)
        if outcome is None:
            return  # recorded, files incomplete: not acknowledged, the next pass completes it
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


def _file(gateway: Gateway, account: Account, source: inbound.Source, raw: bytes) -> str | None:
    """The outcome; an unexpected failure quarantines the message, unless its effects were
    already recorded (then None: the files are retried on the next pass, nothing is lost)."""
    try:
        return inbound.file_message(gateway, account, source, raw)
    except Exception as exc:  # noqa: BLE001 -- the unit-of-work boundary: quarantine, go on
        _log.exception("unit_failed")
        if inbound.is_filed(gateway, account, raw):
            _log.error("unit_incomplete", reason=f"{type(exc).__name__}: {exc}")
            return None
        reason = f"internal error while filing: {type(exc).__name__}: {exc}"
        return inbound.quarantine(gateway, account, source, raw, reason)


async def _move(account: Account, mailbox: imap.Mailbox, uid: int) -> None:
    target = account.imap.move_to
    if not target or not mailbox.can_move:
        return
    await mailbox.move(uid, target)


async def _maintain(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    """After each mailbox pass: claimed files waiting for reconciliation, overdue SDI outcomes."""
    _flag_overdue(gateway, account)
    lock = gateway.lock(account)
    if lock.locked() or gateway.once:
        return  # the outbox loop is busy (or will resume them itself in `once`)
    await _resume_claimed(gateway, account, stop)


def _flag_overdue(gateway: Gateway, account: Account) -> None:
    """No SDI outcome 5 days after delivery to SDI: logged once (``outbound.overdue`` skips the
    ids in ``gateway.flagged``) and kept as an audit note, which seeds ``flagged`` at start."""
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


async def check_servers(config: Config) -> list[tuple[str, str | None]]:
    """Logs in to the SMTP and IMAP server of every account: ``(what, None | why it failed)``."""
    results: list[tuple[str, str | None]] = []
    for account in config.accounts:
        for what, probe in (("SMTP", _probe_smtp), ("IMAP", _probe_imap)):
            try:
                await probe(account)
            except TransientError as exc:
                results.append((f"account {account.name}: {what}", str(exc)))
            else:
                results.append((f"account {account.name}: {what}", None))
    return results


async def _probe_smtp(account: Account) -> None:
    await smtp.check_login(account.smtp, password=account.smtp.password.reveal())


async def _probe_imap(account: Account) -> None:
    async with imap.Mailbox(account.imap, password=account.imap.password.reveal()):
        pass
