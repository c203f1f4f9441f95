"""The sandbox PEC provider's work in the event loop, and the queue on disk behind it.

Owns two kinds of task: a step (work begun, run to its end: ``stop`` waits for it and a client
hanging up does not cancel it) and a timer (a step not due yet: ``stop`` cancels it, its entry in
the queue on disk waits for the next start). Knows nothing of PEC: the provider says what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pecgateway.sandbox.spool import Spool

__all__ = ["Make", "Replay", "WorkQueue"]

Task = asyncio.Task[None]
Make = Callable[[], Coroutine[Any, Any, None]]  # makes the coroutine once its time has come
Replay = Callable[[dict[str, Any]], tuple[Make, str]]  # an entry's data -> (work, what)


class WorkQueue:
    """The steps and timers of one provider; with a ``spool``, timers survive a restart."""

    def __init__(self, *, log: Any, clock: Callable[[], datetime], spool: Spool | None) -> None:
        self._log = log
        self._clock = clock
        self._spool = spool
        self._timers: set[Task] = set()
        self._steps: set[Task] = set()
        self._stopping = False

    @property
    def pending(self) -> int:
        return len(self._timers) + len(self._steps)

    def step(self, work: Coroutine[Any, Any, None], what: str, entry: Path | None = None) -> Task:
        """Runs ``work`` now to its end; its queue ``entry`` is removed when it succeeds."""
        task = asyncio.get_running_loop().create_task(self._run(work, entry), name=what)
        self._steps.add(task)
        task.add_done_callback(self._finished)
        return task

    def later(
        self, delay_s: float, make: Make, what: str, data: dict[str, Any] | None
    ) -> Path | None:
        """``make()``'s work as a step after ``delay_s``; ``data`` (JSON) describes it in the queue
        on disk so that ``resume`` can make it after a restart. Returns the queue entry."""
        entry = self._write(delay_s, data) if data is not None else None
        self._schedule(delay_s, make, what, entry)
        return entry

    async def resume(self, replay: Replay) -> int:
        """Schedules the entries an earlier run left in the queue; returns how many."""
        if self._spool is None:
            return 0
        entries, unreadable = self._spool.entries()
        for path in unreadable:
            self._unreadable(path, "not JSON as the provider writes it")
        now = self._clock()
        for entry in entries:
            try:
                make, what = replay(entry.data)
                delay_s = max(0.0, (entry.due - now).total_seconds())
            except (ValueError, KeyError, TypeError) as exc:
                self._unreadable(self._spool.set_aside(entry.path), str(exc))
                continue
            self._log.info("provider_queue_resumed", task=what, after_s=delay_s)
            self._schedule(delay_s, make, what, entry.path)
        return len(entries)

    async def stop(self) -> None:
        """Cancels the timers (their queue entries stay) and waits for the steps begun."""
        self._stopping = True
        timers = list(self._timers)
        if timers:
            self._log.warning(
                "provider_stopped_with_work_pending",
                pending=sorted(task.get_name() for task in timers),
                what_happens="made at the next start in this directory"
                if self._spool is not None
                else "dropped: the provider has no queue on disk",
            )
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        while self._steps:
            await asyncio.gather(*self._steps, return_exceptions=True)

    async def idle(self) -> None:
        """Waits until nothing is scheduled or running."""
        while self._timers or self._steps:
            await asyncio.gather(*self._timers, *self._steps, return_exceptions=True)

    # ---- internals -----------------------------------------------------------------------------

    async def _run(self, work: Coroutine[Any, Any, None], entry: Path | None) -> None:
        await work
        if entry is not None and self._spool is not None:
            self._spool.remove(entry)

    def _schedule(self, delay_s: float, make: Make, what: str, entry: Path | None) -> None:
        if self._stopping:
            return  # its entry waits for the next start
        timer = asyncio.get_running_loop().create_task(
            self._timer(delay_s, make, what, entry), name=what
        )
        self._timers.add(timer)
        timer.add_done_callback(self._finished)

    async def _timer(self, delay_s: float, make: Make, what: str, entry: Path | None) -> None:
        await asyncio.sleep(delay_s)
        await asyncio.shield(self.step(make(), what, entry))

    def _finished(self, task: Task) -> None:
        timer = task in self._timers  # a timer's failure is its step's, logged by the step
        self._timers.discard(task)
        self._steps.discard(task)
        if timer or task.cancelled() or task.exception() is None:
            return
        self._log.error(
            "provider_task_failed",
            task=task.get_name(),
            error=repr(task.exception()),
            what_happens="kept in the provider's queue: made again at the next start"
            if self._spool is not None
            else "lost: the provider has no queue on disk",
        )

    def _write(self, delay_s: float, data: dict[str, Any]) -> Path | None:
        if self._spool is None:
            return None
        try:
            return self._spool.add(self._clock() + timedelta(seconds=delay_s), data)
        except OSError as exc:
            self._log.error(
                "provider_queue_write_failed",
                directory=str(self._spool.directory),
                error=str(exc),
                what_happens="kept in memory only: lost if the sandbox stops before it is done",
            )
            return None

    def _unreadable(self, path: Path, reason: str) -> None:
        self._log.error(
            "provider_queue_entry_unreadable",
            file=str(path),
            reason=reason,
            what_to_do="it is kept aside and not made; look at it, then delete it",
        )
