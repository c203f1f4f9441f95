"""The gateway service: per account an outbox loop and a mailbox loop, all in one TaskGroup.

Owns the loops, the unit-of-work wrapper (the one place where an exception type picks the action),
and the stop rule (``stop`` is looked at between units only). Each account's loops are supervised
(supervisor.py), so one account's trouble never stops the others; the store's lock (instance.py) is
held throughout. ``run_once`` is the same code with every loop doing one full pass, and returns a
``PassReport`` of what failed. The loops live in outbox_loop.py and mailbox_loop.py, the work of
one unit in outbound.py and inbound.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pecgateway import imap, schema, smtp
from pecgateway.config import Account, Config
from pecgateway.errors import TransientError
from pecgateway.instance import AlreadyRunning, instance_lock
from pecgateway.lifecycle import State
from pecgateway.log import get_logger, unit
from pecgateway.mailbox_loop import DELIVERY_OVERDUE_NOTE, OVERDUE_NOTE, serve_mailbox
from pecgateway.outbox_loop import serve_outbox
from pecgateway.schema import SchemaSet
from pecgateway.store import Store
from pecgateway.supervisor import PassReport, Supervisor, stopped_within

__all__ = [
    "OVERDUE_NOTE",
    "AlreadyRunning",
    "Clock",
    "Gateway",
    "Notify",
    "PassReport",
    "TokenFactory",
    "check_servers",
    "instance_lock",
    "open_gateway",
    "run",
    "run_once",
]

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
    delivery_flagged: set[int] = field(default_factory=set)  # not delivered to SDI, logged
    busy: dict[str, asyncio.Lock] = field(default_factory=dict)  # one outbound unit per account
    report: PassReport = field(default_factory=PassReport)  # what failed (collected in `once`)
    incomplete: set[str] = field(default_factory=set)  # inbound units left incomplete, logged

    def lock(self, account: Account) -> asyncio.Lock:
        return self.busy.setdefault(account.name, asyncio.Lock())

    def failed(self, account: Account, loop: str, reason: str) -> None:
        """Something kept ``account``'s pass from completing: collected for ``once``'s report."""
        if self.once:
            self.report.add(account.name, loop, reason)


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
    return Gateway(
        config,
        store,
        schemas,
        clock=clock,
        new_token=new_token,
        once=once,
        flagged=store.outgoing_with_event(OVERDUE_NOTE),
        delivery_flagged=store.outgoing_with_event(DELIVERY_OVERDUE_NOTE),
    )


async def run_once(
    config: Config, *, clock: Clock = _now, new_token: TokenFactory = _token
) -> PassReport:
    """One full pass: the outbox drained and the mailbox read up to now, for every account.

    Returns what kept any account from completing its pass (``report.ok`` when nothing did;
    ``report.summary()`` says what, one line each). Raises ``AlreadyRunning`` (a ``ConfigError``)
    when another pecgateway holds the store.
    """
    return await run(config, asyncio.Event(), once=True, clock=clock, new_token=new_token)


async def run(
    config: Config,
    stop: asyncio.Event,
    *,
    once: bool = False,
    notify: Notify | None = None,
    clock: Clock = _now,
    new_token: TokenFactory = _token,
) -> PassReport:
    """Serves every account until ``stop`` is set (or, with ``once``, until all is done).

    Holds the store's lock (``AlreadyRunning`` when another pecgateway has it). Cancelled while
    ``stop`` is set (a second signal), it logs ``service_stopped_immediately`` and re-raises.
    """
    with instance_lock(config.store_path):
        gateway = open_gateway(config, once=once, clock=clock, new_token=new_token)
        try:
            _log_interrupted_sends(gateway)
            await _serve(gateway, stop, notify)
        except asyncio.CancelledError:
            if stop.is_set():
                _log.warning("service_stopped_immediately", hint=_CUT_SHORT_HINT)
            raise
        finally:
            gateway.store.close()
    return gateway.report


_CUT_SHORT_HINT = (
    "work in progress was cut short and is resumed at the next start: claimed files stay in "
    ".processing/, messages not yet acknowledged are read again"
)


async def _serve(gateway: Gateway, stop: asyncio.Event, notify: Notify | None) -> None:
    """Every account's loops, each supervised, in one TaskGroup (which only the process's own
    machinery can end)."""
    async with asyncio.TaskGroup() as group:
        for account in gateway.config.accounts:
            for loop, body in (("outbox", serve_outbox), ("mailbox", serve_mailbox)):
                group.create_task(_supervised(gateway, account, loop, body, stop))
        if notify is not None and not gateway.once:
            group.create_task(_heartbeat(gateway, stop, notify))


LoopBody = Callable[[Gateway, Account, asyncio.Event, Supervisor], Awaitable[None]]


async def _supervised(
    gateway: Gateway, account: Account, loop: str, body: LoopBody, stop: asyncio.Event
) -> None:
    report = gateway.report if gateway.once else None
    supervisor = Supervisor(account.name, loop, report)
    with unit(account=account.name, loop=loop):
        await supervisor.run(
            lambda: body(gateway, account, stop, supervisor), stop, once=gateway.once
        )


def _log_interrupted_sends(gateway: Gateway) -> None:
    """At start: each invoice whose send was cut short (no server reply recorded), once."""
    for account in gateway.config.accounts:
        for item in gateway.store.find_outgoing_in_state(account.name, State.SENDING):
            if gateway.store.send_interrupted(item):
                _log.warning(
                    "send_interrupted",
                    account=account.name,
                    file=item.file_name,
                    message_id=item.message_id,
                    sending_since=item.sending_since,
                    resend_at=gateway.store.resend_at(item, account.resend_after_s),
                    hint=gateway.store.next_action(item, account.resend_after_s),
                )


async def _heartbeat(gateway: Gateway, stop: asyncio.Event, notify: Notify) -> None:
    notify("READY=1")
    accounts = ", ".join(a.name for a in gateway.config.accounts)
    notify(f"STATUS=serving {accounts}")
    while not await stopped_within(stop, 10.0):
        notify("WATCHDOG=1")
    notify("STOPPING=1")


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
