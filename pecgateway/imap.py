"""The PEC mailbox over IMAP (aioimaplib; imported only here).

Owns one IMAP connection: TLS (implicit or STARTTLS, verification on), login, SELECT, UID SEARCH,
UID FETCH BODY.PEEK[] (flags never touched), UID MOVE, IDLE with a polling fallback. Every command runs
under a timeout and any drop (BYE, EOF, timeout) becomes ``TransientError``: the caller closes the
Mailbox and opens a new one after a backoff. The pure response parsing sits apart, at the top.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

import aioimaplib

from pecgateway import tls
from pecgateway.errors import TransientError

__all__ = [
    "ImapEndpoint",
    "Mailbox",
    "SelectInfo",
    "parse_fetch",
    "parse_search",
    "parse_select",
    "push_says",
]

Line = bytes | bytearray

# ---- pure response parsing (no I/O) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectInfo:
    """What SELECT tells: ``uidvalidity`` (None if the server omitted it), ``uidnext``, ``exists``."""

    uidvalidity: int | None
    uidnext: int | None
    exists: int


_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE)
_EXISTS = re.compile(rb"^(\d+) EXISTS\b", re.IGNORECASE)
_FETCH_START = re.compile(rb"^(\d+) FETCH \(", re.IGNORECASE)
_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\}$")


def _first_int(pattern: re.Pattern[bytes], lines: Sequence[Line]) -> int | None:
    for line in lines:
        found = pattern.search(bytes(line))
        if found:
            return int(found.group(1))
    return None


def parse_select(lines: Sequence[Line]) -> SelectInfo:
    """The UIDVALIDITY, UIDNEXT and EXISTS of a SELECT response."""
    exists = _first_int(_EXISTS, lines)
    return SelectInfo(_first_int(_UIDVALIDITY, lines), _first_int(_UIDNEXT, lines), exists or 0)


def parse_search(lines: Sequence[Line]) -> list[int]:
    """The UIDs of a (UID) SEARCH response, ascending; aioimaplib drops the SEARCH keyword."""
    uids: set[int] = set()
    for line in lines:
        words = bytes(line).split()
        if words and words[0].upper() == b"SEARCH":
            words = words[1:]
        if words and all(word.isdigit() for word in words):
            uids.update(int(word) for word in words)
    return sorted(uids)


def parse_fetch(lines: Sequence[Line]) -> dict[int, bytes]:
    """UID -> message bytes of a UID FETCH BODY.PEEK[] response.

    The literal is the item right after a line ending in ``{size}``, whether it comes as bytes or
    bytearray; a literal shorter than announced is left out (a torn read is not a message).
    """
    found: dict[int, bytes] = {}
    uid: int | None = None
    literal: bytes | None = None
    expected: int | None = None
    for item in lines:
        data = bytes(item)
        if expected is not None:
            literal = data if len(data) == expected else None
            expected = None
            continue
        if _FETCH_START.match(data):
            uid, literal = None, None
        uid_match = _UID.search(data)
        uid = int(uid_match.group(1)) if uid_match else uid
        size = _LITERAL.search(data)
        expected = int(size.group(1)) if size else None
        if uid is not None and literal is not None:
            found[uid] = literal
    return found


def push_says(lines: Sequence[Line]) -> tuple[bool, bool]:
    """(new mail, goodbye) for the lines of an IDLE push: ``* N EXISTS`` / ``* BYE``."""
    texts = [bytes(line).strip().upper() for line in lines]
    new_mail = any(_EXISTS.match(text) for text in texts)
    goodbye = any(text.startswith(b"BYE") for text in texts)
    return new_mail, goodbye


# ---- the client --------------------------------------------------------------------------------


class ImapEndpoint(Protocol):
    """The ``[accounts.imap]`` settings the Mailbox needs (see config.py)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def security(self) -> object: ...  # "tls" | "starttls"
    @property
    def username(self) -> str: ...
    @property
    def ca_file(self) -> object: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def folder(self) -> str: ...


_LIBRARY_ERRORS = (aioimaplib.AioImapException, OSError, TimeoutError, ValueError)
_CONNECTING = frozenset({"connect", "starttls"})  # failures here are about host, port, security


class Mailbox:
    """One logged-in IMAP connection with the configured folder selected.

    Use ``async with Mailbox(endpoint, password=...) as mailbox:``; after any ``TransientError`` the
    connection is unusable: leave the block (it closes cleanly) and open a new one.
    """

    def __init__(self, endpoint: ImapEndpoint, *, password: str) -> None:
        self._endpoint = endpoint
        self._password = password
        self._where = f"IMAP {endpoint.host}:{endpoint.port}"
        self._imap: Any = None
        self._lost: asyncio.Future[None] | None = None
        self._broken = False
        self.selected = SelectInfo(None, None, 0)

    async def __aenter__(self) -> Self:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def uidvalidity(self) -> int:
        return self.selected.uidvalidity or 0

    @property
    def can_idle(self) -> bool:
        return self._imap is not None and self._imap.has_capability("IDLE")

    @property
    def can_move(self) -> bool:
        return self._imap is not None and self._imap.has_capability("MOVE")

    # ---- connection -----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connects, upgrades to TLS, logs in and selects the folder; raises ``TransientError``."""
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._broken = False
        starttls = tls.security_of(self._endpoint.security) == "starttls"
        context = tls.context(self._endpoint.ca_file)
        self._imap = aioimaplib.IMAP4(
            host=self._endpoint.host,
            port=self._endpoint.port,
            timeout=self._endpoint.timeout_s,
            conn_lost_cb=self._connection_lost,
            ssl_context=None if starttls else context,
        )
        await self._call("connect", self._imap.wait_hello_from_server(), check=False)
        if starttls:
            await self._starttls(context)
        await self._login()
        response = await self._call("select", self._imap.select(_quoted(self._endpoint.folder)))
        self.selected = parse_select(response.lines)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self._imap.protocol
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        await self._call("starttls", protocol.execute(command))
        upgrade = protocol.loop.start_tls(
            protocol.transport, protocol, context, server_hostname=self._endpoint.host
        )
        protocol.transport = await self._call("starttls", upgrade, check=False)
        await self._call("capability", protocol.capability(), check=False)

    async def _login(self) -> None:
        response = await self._call(
            "login", self._imap.login(self._endpoint.username, self._password), check=False
        )
        if response.result != "OK":
            words = b" ".join(bytes(line) for line in response.lines).decode(errors="replace")
            raise TransientError(
                f"login as {self._endpoint.username} refused: {words}", subject=self._where
            )

    async def close(self) -> None:
        """Logs out when still connected, closes the transport and waits until it is gone."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        lost = self._lost
        try:
            alive = lost is not None and not lost.done() and not self._broken
            if alive and imap.get_state() in ("AUTH", "SELECTED"):
                with contextlib.suppress(*_LIBRARY_ERRORS, TransientError):
                    await self._call("logout", imap.logout(), check=False, imap=imap)
        finally:
            await _shut(imap, lost, broken=self._broken)

    # ---- commands -------------------------------------------------------------------------------

    async def uids_after(self, last_uid: int) -> list[int]:
        """The UIDs above ``last_uid`` (all of them when it is 0), ascending. Flags are ignored."""
        response = await self._call(
            "search", self._imap.uid_search("UID", f"{last_uid + 1}:*", charset=None)
        )
        return [uid for uid in parse_search(response.lines) if uid > last_uid]

    async def fetch(self, uid: int) -> bytes | None:
        """The raw message with this UID (BODY.PEEK[]: \\Seen is not set); None when it is gone."""
        response = await self._call("fetch", self._imap.uid("fetch", str(uid), "BODY.PEEK[]"))
        return parse_fetch(response.lines).get(uid)

    async def move(self, uid: int, folder: str) -> None:
        """UID MOVE to ``folder`` (never a delete); raises ``TransientError`` when refused."""
        await self._call("move", self._imap.uid("move", str(uid), _quoted(folder)))

    async def noop(self) -> None:
        await self._call("noop", self._imap.noop())

    async def wait_for_mail(self, timeout_s: float, stop: asyncio.Event) -> bool:
        """Waits until new mail may be there (IDLE push), ``timeout_s`` passes or ``stop`` is set.

        Returns True when the server announced new mail. Without IDLE it sleeps and returns True (a
        poll). A BYE or a lost connection raises ``TransientError``.
        """
        if not self.can_idle:
            await _sleep_or_stop(timeout_s, stop)
            await self.noop()
            return True
        return await self._idle(timeout_s, stop)

    async def _idle(self, timeout_s: float, stop: asyncio.Event) -> bool:
        imap = self._imap
        queue = imap.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()  # pushes of an earlier IDLE: the caller searched since
        idle = await self._call("idle", imap.idle_start(timeout=timeout_s + 60), check=False)
        try:
            return await self._wait_push(timeout_s, stop)
        finally:
            if not self._is_lost():
                imap.idle_done()
                await self._call("idle", _wait(idle), check=False)

    async def _wait_push(self, timeout_s: float, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            lines = await _first_of(
                self._imap.protocol.idle_queue.get(), self._lost, stop, remaining
            )
            if self._is_lost():
                raise TransientError("connection lost while idling", subject=self._where)
            new_mail, goodbye = push_says(lines or [])
            if goodbye:
                raise TransientError(
                    "the server said goodbye (BYE) while idling", subject=self._where
                )
            if new_mail:
                return True
        return False

    def _is_lost(self) -> bool:
        return self._lost is None or self._lost.done()

    async def _call(
        self, what: str, operation: Awaitable[Any], *, check: bool = True, imap: Any = None
    ) -> Any:
        """Runs one command under the timeout, racing the connection loss; maps every failure."""
        if imap is None and self._imap is None:
            raise TransientError(f"{what}: not connected", subject=self._where)
        try:
            return await self._guarded(what, operation, check)
        except TransientError:
            self._broken = True
            raise

    async def _guarded(self, what: str, operation: Awaitable[Any], check: bool) -> Any:
        task = asyncio.ensure_future(operation)
        try:
            async with asyncio.timeout(self._endpoint.timeout_s):
                await asyncio.wait(
                    {task, *([self._lost] if self._lost else [])},
                    return_when=asyncio.FIRST_COMPLETED,
                )
        except TimeoutError as exc:
            if what in _CONNECTING:
                raise TransientError(self._connection_failure(exc), subject=self._where) from None
            raise TransientError(
                f"{what}: no answer in time (timeout_s)", subject=self._where
            ) from None
        finally:
            if not task.done():
                await _cancel(task)
        if task.cancelled():
            raise TransientError(f"{what}: connection lost", subject=self._where)
        return self._result(what, task, check)

    def _connection_failure(self, error: BaseException) -> str:
        return tls.connection_failure(
            error,
            protocol="IMAP",
            host=self._endpoint.host,
            port=self._endpoint.port,
            security=tls.security_of(self._endpoint.security),
        )

    def _result(self, what: str, task: asyncio.Future[Any], check: bool) -> Any:
        error = task.exception()
        if what in _CONNECTING and isinstance(error, OSError | TimeoutError):
            raise TransientError(self._connection_failure(error), subject=self._where) from error
        if isinstance(error, _LIBRARY_ERRORS):
            raise TransientError(
                f"{what} failed: {error or type(error).__name__}", subject=self._where
            ) from error
        response = task.result()
        if check and getattr(response, "result", "OK") != "OK":
            words = b" ".join(bytes(line) for line in response.lines).decode(errors="replace")
            raise TransientError(f"{what} refused: {response.result} {words}", subject=self._where)
        return response


def _quoted(name: str) -> str:
    return str(aioimaplib.quoted(name))


async def _wait(future: asyncio.Future[Any]) -> None:
    await asyncio.wait({future})


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: it is reported through the caller's own error


async def _first_of(
    get: Awaitable[Any], lost: asyncio.Future[None] | None, stop: asyncio.Event, timeout_s: float
) -> Any:
    """The result of ``get``, or None when ``lost`` / ``stop`` / the timeout come first."""
    getter = asyncio.ensure_future(get)
    stopper = asyncio.ensure_future(stop.wait())
    waiters: set[asyncio.Future[Any]] = {getter, stopper, *([lost] if lost else [])}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (getter, stopper):
            if not task.done():
                await _cancel(task)
    return getter.result() if getter.done() and not getter.cancelled() else None


async def _sleep_or_stop(timeout_s: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await stop.wait()


async def _shut(imap: Any, lost: asyncio.Future[None] | None, *, broken: bool) -> None:
    """Closes the transport (aborts a broken one), waits for the loss, cancels the library's tasks."""
    if imap._idle_waiter is not None:
        imap._idle_waiter.cancel()
    transport = imap.protocol.transport
    if transport is not None:
        if broken:
            transport.abort()
        elif not transport.is_closing():
            transport.close()
        if lost is not None and not await _within(lost, 1.0):
            transport.abort()  # the peer does not finish the TLS shutdown: do not wait for it
            await _within(lost, 1.0)
    client_task = imap._client_task
    leftovers = [t for t in (*imap.tasks, *imap.protocol.tasks, client_task) if not t.done()]
    for task in leftovers:
        await _cancel(task)
    if client_task.done() and not client_task.cancelled():
        client_task.exception()


async def _within(future: asyncio.Future[None], timeout_s: float) -> bool:
    done, _pending = await asyncio.wait({future}, timeout=timeout_s)
    return bool(done)
