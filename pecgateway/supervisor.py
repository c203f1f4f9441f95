"""Supervision of one account's loop, and the record of what failed in a ``once`` pass.

Any failure of an account's own folders, servers or store rows is logged once per distinct problem
(with what to do), the loop backs off (bounded exponential backoff with jitter) and starts again,
while the other accounts go on. ``PassReport`` collects what kept a ``once`` pass from completing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pecgateway.log import get_logger

__all__ = [
    "INITIAL_S",
    "MAXIMUM_S",
    "Failure",
    "PassReport",
    "Supervisor",
    "backoff",
    "explain",
    "stopped_within",
]

INITIAL_S = 5.0  # first wait after a loop failed; doubles up to MAXIMUM_S
MAXIMUM_S = 300.0
_log = get_logger()


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that kept an account's loop from completing its pass."""

    account: str
    loop: str  # "outbox" | "mailbox"
    reason: str

    @property
    def line(self) -> str:
        return f"account {self.account}: {self.loop}: {self.reason}"


@dataclass(slots=True)
class PassReport:
    """What failed during a ``once`` pass; ``ok`` when nothing did."""

    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, account: str, loop: str, reason: str) -> None:
        failure = Failure(account, loop, reason)
        if failure not in self.failures:
            self.failures.append(failure)

    def summary(self) -> str:
        """One line per failure; empty when the pass completed."""
        return "\n".join(failure.line for failure in self.failures)


def explain(exc: BaseException) -> tuple[str, str]:
    """``(reason, what to do)`` for a failure of an account's loop."""
    if isinstance(exc, sqlite3.Error):
        return f"the store failed: {type(exc).__name__}: {exc}", (
            "check the disk holding the store (space, I/O errors); if the store is damaged, "
            "stop pecgateway and restore it from your backup; this account is retried"
        )
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "a folder of this account"
        return f"{where}: {exc.strerror or exc}", _os_hint(exc, str(where))
    return f"{type(exc).__name__}: {exc}", (
        "unexpected: report it as a bug with this log line; this account is retried"
    )


def _os_hint(exc: OSError, where: str) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return f"{where} must be a folder: move the file there aside; this account is retried"
    if isinstance(exc, PermissionError):
        return (
            f"give the user running pecgateway read and write access to {where}; "
            "this account is retried"
        )
    return f"check {where} (it exists, is a folder, the disk has space); this account is retried"


class Supervisor:
    """Runs one loop of one account again after any failure (not ``CancelledError``)."""

    def __init__(self, account: str, loop: str, report: PassReport | None) -> None:
        self.account = account
        self.loop = loop
        self.report = report  # None outside `once`: nothing to collect
        self._seen: set[str] = set()
        self._delay = INITIAL_S

    async def run(
        self, body: Callable[[], Awaitable[None]], stop: asyncio.Event, *, once: bool
    ) -> None:
        """Awaits ``body`` until it returns; after a failure backs off and starts it again.

        With ``once`` a failure is recorded in the report and the loop ends.
        """
        while not stop.is_set():
            try:
                await body()
                return
            except Exception as exc:  # noqa: BLE001 -- an account's trouble never ends the others
                wait_s = self.failed(exc)
            if once or await stopped_within(stop, wait_s):
                return

    def failed(self, exc: Exception) -> float:
        """Logs ``exc`` once per distinct problem; returns how long to wait before retrying."""
        reason, hint = explain(exc)
        wait_s, self._delay = backoff(self._delay, MAXIMUM_S)
        if self.report is not None:
            self.report.add(self.account, self.loop, reason)
        key = f"{type(exc).__name__}: {exc}"
        if key in self._seen:
            _log.debug(
                "account_loop_still_failing",
                account=self.account,
                loop=self.loop,
                reason=reason,
                retry_in_s=round(wait_s, 1),
            )
            return wait_s
        self._seen.add(key)
        known = isinstance(exc, OSError | sqlite3.Error)
        _log.error(
            "account_loop_failed",
            account=self.account,
            loop=self.loop,
            reason=reason,
            hint=hint,
            retry_in_s=round(wait_s, 1),
            exc_info=not known,
        )
        return wait_s

    def healthy(self) -> None:
        """The loop did its work again: log the recovery once, reset the backoff."""
        self._delay = INITIAL_S
        if self._seen:
            self._seen.clear()
            _log.info("account_loop_recovered", account=self.account, loop=self.loop)


def backoff(delay_s: float, maximum_s: float) -> tuple[float, float]:
    """(this wait with jitter, the next base delay): exponential, bounded."""
    return delay_s * random.uniform(0.5, 1.0), min(delay_s * 2, maximum_s)


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Waits up to ``seconds`` for ``stop``; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
