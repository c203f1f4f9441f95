"""The outbox loop of one account: resume claimed files, then take each new complete file.

One outbound unit at a time per account (``Gateway.lock``). The unit-of-work wrapper is here: a
failing store propagates to the account's supervisor (the file stays claimed and is resumed), any
other unexpected failure sets the file aside in rejected/ with the error as its reason.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from pecgateway import outbound, outbox, validate
from pecgateway.config import Account
from pecgateway.log import get_logger, unit
from pecgateway.supervisor import Supervisor

if TYPE_CHECKING:
    from pecgateway.service import Gateway

__all__ = ["resume_claimed", "serve_outbox"]

_log = get_logger()


async def serve_outbox(
    gateway: Gateway, account: Account, stop: asyncio.Event, supervisor: Supervisor
) -> None:
    """Resumes claimed files, then takes each new complete file, one unit at a time."""
    account.outbox.mkdir(parents=True, exist_ok=True)  # a file in its place fails here
    await resume_claimed(gateway, account, stop)
    supervisor.healthy()
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


async def resume_claimed(gateway: Gateway, account: Account, stop: asyncio.Event) -> None:
    for claimed in outbox.claimed(account.outbox):
        if stop.is_set():
            return
        await _outbound_unit(gateway, account, claimed, stop)


async def _outbound_unit(
    gateway: Gateway, account: Account, claimed: Path, stop: asyncio.Event
) -> None:
    """One outbox file. A failing store propagates (the file stays claimed, the account's loop
    backs off and resumes it); any other unexpected failure sets the file aside in rejected/."""
    async with gateway.lock(account):
        with unit(file=claimed.name):
            try:
                outcome = await outbound.take(gateway, account, claimed, stop)
            except sqlite3.Error:
                raise
            except Exception as exc:  # noqa: BLE001 -- the unit-of-work boundary: log, go on
                _log.exception("unit_failed")
                outcome = _set_aside(claimed, exc)
            _log.info("unit_done", outcome=outcome)
            if outcome in _UNFINISHED:
                gateway.failed(account, "outbox", f"{claimed.name}: {_UNFINISHED[outcome]}")


_UNFINISHED = {  # outcomes that leave a `once` pass incomplete
    "deferred": "not sent: the SMTP server did not take it (see send_deferred); tried again on "
    "the next run",
    "set-aside": "failed with an internal error and was moved to rejected/ (see unit_failed)",
    "left-claimed": "failed and stays in .processing/; tried again on the next run",
}


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
