"""The outbox folder: where other software drops invoice files for SDI.

Owns the folder and nothing else: it finds complete files (inotify through watchfiles plus a
periodic rescan), claims them atomically by rename, and moves them on to ``sent/`` or to
``rejected/`` beside a readable reason (``outbox_folders``, re-exported here). It makes no decision
about a file's content.

What is taken: regular files directly in the outbox. Sub-folders, symlinks, temporary and hidden
names (``*.tmp``, ``*.part``, ``~*``, ``*~``, ``.*``) and desktop junk (``Thumbs.db``,
``desktop.ini``) are never claimed, never rejected, never counted.

Where a unit stands is where its file is. ``claim`` renames ``<outbox>/<name>`` to
``.processing/new/<name>``; ``begin``, a unit's first step, renames it to ``.processing/<name>`` and
says that it is new. A file found in ``.processing/`` itself is an unfinished unit (a crash, a stop,
a send waiting for its receipt) and is resumed; a file in ``.processing/new/`` is new even after a
crash. So the same bytes dropped again under a name already sent are a new file (refused as a
duplicate by the unit), never mistaken for a unit to resume.

Complete files are a guess: a file is taken once its size and mtime held still for
``stable_for_s``, and a writer that pauses longer is caught half-way. The unit compares the file
after reading it with what it saw first (``signature``: size, mtime, inode), and once more
``stable_for_s`` later before rejecting it as cut short; a file that changed goes back with
``release`` and waits again. A writer that pauses longer than that still loses. The reliable way:
write under a temporary name (``IT..._00001.xml.tmp``) in the outbox itself, then rename it: the
rename is atomic, and the outbox never takes a temporary name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from pecgateway.outbox_folders import (
    NEW,
    PROCESSING,
    REJECTED,
    SENT,
    Problem,
    done,
    fsync_folder,
    outbox_of,
    reject,
)

__all__ = [
    "NEW",
    "PROCESSING",
    "REJECTED",
    "SENT",
    "Problem",
    "Signature",
    "begin",
    "claim",
    "claimed",
    "done",
    "is_candidate",
    "reject",
    "release",
    "signature",
    "watch",
]

_OWN_FOLDERS = frozenset({PROCESSING, REJECTED, SENT})
_JUNK = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})  # written by file managers
_TICK_S = 0.25  # how often pending files are re-checked for stability and `stop` is looked at


def is_candidate(name: str) -> bool:
    """True for a name the outbox may take: not temporary, hidden, desktop junk or our folder."""
    lowered = name.lower()
    return not (
        name.startswith((".", "~"))
        or lowered.endswith((".tmp", ".part", "~"))
        or name in _OWN_FOLDERS
        or lowered in _JUNK
    )


@dataclass(frozen=True, slots=True)
class Signature:
    """What tells two states of a file apart: its size, modification time and inode."""

    size: int
    mtime_ns: int
    inode: int


def signature(path: Path) -> Signature | None:
    """The file's signature now; None when it is gone or not a regular file (folder, symlink)."""
    try:
        st = path.stat(follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Signature(st.st_size, st.st_mtime_ns, st.st_ino)


# ---- finding complete files ----------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    seen: Signature | None
    since: float


class _Stability:
    """Files seen in the outbox, each waiting until its signature holds still long enough."""

    def __init__(self, stable_for_s: float) -> None:
        self._stable_for_s = stable_for_s
        self._pending: dict[Path, _Pending] = {}

    def add(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._pending.setdefault(path, _Pending(None, time.monotonic()))

    def __bool__(self) -> bool:
        return bool(self._pending)

    def ready(self) -> list[tuple[Path, Signature]]:
        """Pops the complete files; forgets those gone or no longer regular files."""
        now = time.monotonic()
        done: list[tuple[Path, Signature]] = []
        for path, pending in list(self._pending.items()):
            current = signature(path)
            if current is None:
                del self._pending[path]
            elif current != pending.seen:
                self._pending[path] = _Pending(current, now)
            elif now - pending.since >= self._stable_for_s:
                del self._pending[path]
                done.append((path, current))
        return sorted(done, key=lambda item: item[0])

    def again_if_changed(self, path: Path, yielded: Signature) -> None:
        """A file yielded and back in the outbox changed (``release``): it waits again."""
        if signature(path) not in (None, yielded):
            self.add([path])


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
    return [
        p for p in paths if p.parent == outbox and is_candidate(p.name) and signature(p) is not None
    ]


async def watch(
    outbox: Path,
    stop: asyncio.Event,
    *,
    stable_for_s: float = 1.0,
    rescan_interval_s: float = 30.0,
    once: bool = False,
) -> AsyncGenerator[Path, None]:
    """Yields each complete file dropped into ``outbox`` until ``stop`` is set.

    A file is complete when its size and mtime have not changed for ``stable_for_s``. With
    ``once=True`` no watcher is started: the files present now are yielded as they settle and the
    iterator ends when none is left. A file yielded and not claimed is yielded again after a rescan;
    a file yielded and put back changed (``release``) waits to settle again.
    """
    pending = _Stability(stable_for_s)
    pending.add(_scan(outbox))
    if once:
        while pending and not stop.is_set():
            for path, seen in pending.ready():
                yield path
                pending.again_if_changed(path, seen)
                if stop.is_set():
                    return
            if pending:
                await asyncio.sleep(min(_TICK_S, stable_for_s))
        return
    async for path in _watch_forever(outbox, stop, pending, rescan_interval_s):
        yield path


async def _watch_forever(
    outbox: Path, stop: asyncio.Event, pending: _Stability, rescan_interval_s: float
) -> AsyncGenerator[Path, None]:
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
            for path, seen in pending.ready():
                yield path
                pending.again_if_changed(path, seen)
                if stop.is_set():
                    return


# ---- claim, begin, release -----------------------------------------------------------------------


def claimed(outbox: Path) -> list[Path]:
    """Files claimed and not finished (a crash, a stop, a send waiting): resume these first."""
    found: list[Path] = []
    for folder in (outbox / PROCESSING, outbox / PROCESSING / NEW):
        if folder.is_dir():
            found += sorted(
                p for p in folder.iterdir() if is_candidate(p.name) and signature(p) is not None
            )
    return found


def claim(path: Path) -> Path | None:
    """Takes ``path`` atomically by rename into ``.processing/new/``; None when it is gone or is no
    regular file, or when its name is busy: a file of that name still in ``.processing/`` is
    finished first, and this one is taken after."""
    if signature(path) is None:
        return None
    folder = path.parent / PROCESSING / NEW
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists() or (folder.parent / path.name).exists():
        return None
    try:
        path.rename(target)
    except FileNotFoundError:
        return None
    fsync_folder(folder)
    fsync_folder(path.parent)
    return target


def begin(claimed_path: Path) -> tuple[Path, bool] | None:
    """A unit's first step: ``(the file in .processing/, True when new)``; None when it is gone.

    New: claimed from the outbox and never begun, even if a crash came between. A file already in
    ``.processing/`` is an unfinished unit to resume (False). None also when its name is busy.
    """
    folder = claimed_path.parent
    if folder.name != NEW or folder.parent.name != PROCESSING:
        return (claimed_path, False) if signature(claimed_path) is not None else None
    target = folder.parent / claimed_path.name
    if target.exists():
        return None
    try:
        claimed_path.rename(target)
    except FileNotFoundError:
        return None
    fsync_folder(folder.parent)
    fsync_folder(folder)
    return target, True


def release(claimed_path: Path) -> Path:
    """Puts a claimed file back into the outbox (its writer is still at work); returns where it is.

    Never overwrites: when the outbox holds a new file of that name, this one stays claimed and is
    resumed later.
    """
    target = outbox_of(claimed_path) / claimed_path.name
    try:
        os.link(claimed_path, target)
    except FileExistsError:
        return claimed_path
    except OSError:  # no hard links on this file system: check, then rename
        if target.exists():
            return claimed_path
        claimed_path.rename(target)
    else:
        claimed_path.unlink()
    fsync_folder(target.parent)
    fsync_folder(claimed_path.parent)
    return target
