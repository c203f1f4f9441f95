"""The outbox folder: where other software drops invoice files for SDI.

Owns the folder and nothing else: it finds complete files (inotify through watchfiles plus a periodic
rescan), claims them atomically by rename into ``.processing/``, and moves them on to ``sent/`` or to
``rejected/`` beside a readable reason. It makes no decision about a file's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import watchfiles

from pecgateway import filename

__all__ = [
    "PROCESSING",
    "REJECTED",
    "SENT",
    "Problem",
    "claim",
    "claimed",
    "done",
    "is_candidate",
    "reject",
    "watch",
]

PROCESSING = ".processing"  # claimed files, one unit of work each (hidden from legacy software)
REJECTED = "rejected"  # failed our checks: the file beside <name>.reason.txt and <name>.reason.json
SENT = "sent"  # accepted by the SMTP server
_OWN_FOLDERS = frozenset({PROCESSING, REJECTED, SENT})
_TICK_S = 0.25  # how often pending files are re-checked for stability and `stop` is looked at


class Problem(Protocol):
    """What ``reject`` needs of each finding (``validate.Problem`` has these fields)."""

    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def line(self) -> int | None: ...
    @property
    def column(self) -> int | None: ...
    @property
    def hint(self) -> str: ...


def is_candidate(name: str) -> bool:
    """True for a name the outbox may take: not temporary (``*.tmp``, ``~*``), not hidden."""
    lowered = name.lower()
    return not (
        name.startswith((".", "~"))
        or lowered.endswith((".tmp", ".part", "~"))
        or name in _OWN_FOLDERS
    )


@dataclass(slots=True)
class _Pending:
    size: int
    mtime_ns: int
    since: float


class _Stability:
    """Files seen in the outbox, each waiting until its size and mtime hold still long enough."""

    def __init__(self, stable_for_s: float) -> None:
        self._stable_for_s = stable_for_s
        self._pending: dict[Path, _Pending] = {}

    def add(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._pending.setdefault(path, _Pending(-1, -1, time.monotonic()))

    def __bool__(self) -> bool:
        return bool(self._pending)

    def ready(self) -> list[Path]:
        """Pops and returns the files that are complete; forgets those that went away."""
        now = time.monotonic()
        done: list[Path] = []
        for path, seen in list(self._pending.items()):
            try:
                st = path.stat(follow_symlinks=False)
            except OSError:
                del self._pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
                self._pending[path] = _Pending(st.st_size, st.st_mtime_ns, now)
            elif now - seen.since >= self._stable_for_s:
                del self._pending[path]
                done.append(path)
        return sorted(done)


def _scan(outbox: Path) -> list[Path]:
    """The regular files directly in the outbox that the outbox may take (creates the folder)."""
    outbox.mkdir(parents=True, exist_ok=True)
    found: list[Path] = []
    with os.scandir(outbox) as entries:
        for entry in entries:
            if is_candidate(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return found


def _from_changes(outbox: Path, changes: set[tuple[watchfiles.Change, str]]) -> list[Path]:
    paths = {Path(raw) for change, raw in changes if change != watchfiles.Change.deleted}
    return [p for p in paths if p.parent == outbox and is_candidate(p.name)]


async def watch(
    outbox: Path,
    stop: asyncio.Event,
    *,
    stable_for_s: float = 1.0,
    rescan_interval_s: float = 30.0,
    once: bool = False,
) -> AsyncIterator[Path]:
    """Yields each complete file dropped into ``outbox`` until ``stop`` is set.

    A file is complete when its size and mtime have not changed for ``stable_for_s``. With
    ``once=True`` no watcher is started: the files present now are yielded as they settle and the
    iterator ends when none is left. A file yielded and not claimed is yielded again after a rescan.
    """
    pending = _Stability(stable_for_s)
    pending.add(_scan(outbox))
    if once:
        while pending and not stop.is_set():
            for path in pending.ready():
                yield path
            if pending:
                await asyncio.sleep(min(_TICK_S, stable_for_s))
        return
    async for path in _watch_forever(outbox, stop, pending, rescan_interval_s):
        yield path


async def _watch_forever(
    outbox: Path, stop: asyncio.Event, pending: _Stability, rescan_interval_s: float
) -> AsyncIterator[Path]:
    next_rescan = time.monotonic() + rescan_interval_s
    changes_iter = watchfiles.awatch(
        outbox,
        watch_filter=None,
        recursive=False,
        debounce=100,
        step=20,
        rust_timeout=int(_TICK_S * 1000),
        yield_on_timeout=True,
    )
    async with contextlib.aclosing(changes_iter) as changes_stream:
        async for changes in changes_stream:
            if stop.is_set():
                return
            pending.add(_from_changes(outbox, changes))
            if time.monotonic() >= next_rescan:
                pending.add(_scan(outbox))
                next_rescan = time.monotonic() + rescan_interval_s
            for path in pending.ready():
                yield path
                if stop.is_set():
                    return


# ---- claim and hand-off --------------------------------------------------------------------------


def claimed(outbox: Path) -> list[Path]:
    """Files claimed earlier and not finished (a crash or a stop mid-unit): resume these first."""
    folder = outbox / PROCESSING
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_candidate(p.name))


def claim(path: Path) -> Path | None:
    """Takes ``path`` atomically by rename into ``.processing/``; None when it is gone or taken.

    A file whose name is already waiting in ``.processing/`` stays where it is: it is taken after the
    earlier one has been finished.
    """
    folder = path.parent / PROCESSING
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():
        return None
    try:
        path.rename(target)
    except FileNotFoundError:
        return None
    _fsync_dir(folder)
    _fsync_dir(path.parent)
    return target


def done(claimed_path: Path) -> Path:
    """Moves a claimed file to ``sent/`` (never overwriting) and returns where it went."""
    return _move(claimed_path, _outbox_of(claimed_path) / SENT)


def reject(
    claimed_path: Path, problems: Sequence[Problem], *, now: dt.datetime | None = None
) -> Path:
    """Moves a claimed file to ``rejected/`` after writing ``<name>.reason.txt`` and ``.json``.

    The reasons are written first, so that software watching ``rejected/`` finds them as soon as the
    file appears. Returns the rejected file's new path.
    """
    folder = _outbox_of(claimed_path) / REJECTED
    folder.mkdir(exist_ok=True)
    target = _free_path(folder, claimed_path.name)
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    _write_atomic(
        target.with_name(target.name + ".reason.txt"), _reason_text(target.name, problems)
    )
    document = _reason_json(claimed_path.name, when, problems)
    _write_atomic(target.with_name(target.name + ".reason.json"), document)
    claimed_path.rename(target)
    _fsync_dir(folder)
    return target


def _reason_text(name: str, problems: Sequence[Problem]) -> bytes:
    lines = [f"{name}: not sent to SDI, {len(problems)} problem(s) found.", ""]
    for number, problem in enumerate(problems, 1):
        where = f" (line {problem.line}, column {problem.column})" if problem.line else ""
        lines.append(f"{number}. [{problem.code}]{where} {problem.message}")
        lines.append(f"   Fix: {problem.hint}")
    lines += [
        "",
        "Fix the file and drop it into the outbox again (a new file name if it was sent).",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def _reason_json(name: str, when: str, problems: Sequence[Problem]) -> bytes:
    items = [
        {"code": p.code, "message": p.message, "line": p.line, "column": p.column, "hint": p.hint}
        for p in problems
    ]
    document = {"file": name, "rejected_at": when, "problems": items}
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def _outbox_of(claimed_path: Path) -> Path:
    parent = claimed_path.parent
    return parent.parent if parent.name == PROCESSING else parent


def _move(source: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    target = _free_path(folder, source.name)
    source.rename(target)
    _fsync_dir(folder)
    return target


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>-2<ext>`` ... when the name is taken (never overwrite)."""
    stem = filename.invoice_stem(name)
    if stem == name:
        stem, extension = Path(name).stem, Path(name).suffix
    else:
        extension = name[len(stem) :]
    candidate, number = folder / name, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".reason.json").exists():
        number += 1
        candidate = folder / f"{stem}-{number}{extension}"
    return candidate


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
