"""The outbox folder: where other software drops invoice files for SDI.

Owns the folder and nothing else: it finds complete files (inotify through watchfiles plus a
periodic rescan), claims them atomically by rename, reads them safely, and moves them on to
``sent/`` or to ``rejected/`` beside a readable reason (``outbox_folders``, re-exported here). It
makes no decision about a file's content.

What is taken: regular files directly in the outbox. Sub-folders, temporary and hidden names
(``*.tmp``, ``*.part``, ``~*``, ``*~``, ``.*``) and desktop junk (``Thumbs.db``, ``desktop.ini``)
are never claimed, never rejected, never counted; links, FIFOs and names that are not UTF-8: see
``outbox_entries`` (re-exported here, with ``read``). While ``.processing``, ``rejected`` or
``sent`` is a file or a symbolic link, nothing is claimed (a link would let anyone who may write
to the outbox make the service write into any folder it may write). A watcher failure (watchfiles cannot decode a name) is
logged once and a rescan stands in for its batch.

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
import datetime as dt
import errno
import os
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import watchfiles
from watchfiles._rust_notify import WatchfilesRustInternalError  # only named there

from pecgateway.outbox_entries import (
    NAME_NOT_UTF8,
    NOT_A_FILE,
    SYMLINK,
    UNREADABLE,
    Refusal,
    Refused,
    Signature,
    entry_signature,
    forget,
    read,
    resumable,
    signature,
    takeable,
    tell_once,
)
from pecgateway.outbox_folders import (
    NEW,
    PROCESSING,
    REJECTED,
    SENT,
    Problem,
    display_name,
    fsync_folder,
    outbox_of,
    valid_name,
)
from pecgateway.outbox_folders import check_layout as _check_files_in_place
from pecgateway.outbox_folders import done as _done
from pecgateway.outbox_folders import reject as _reject

__all__ = [
    "NAME_NOT_UTF8",
    "NEW",
    "NOT_A_FILE",
    "PROCESSING",
    "REJECTED",
    "SENT",
    "SYMLINK",
    "UNREADABLE",
    "Problem",
    "Refusal",
    "Refused",
    "Signature",
    "begin",
    "check_layout",
    "claim",
    "claimed",
    "display_name",
    "done",
    "is_candidate",
    "outbox_of",
    "read",
    "reject",
    "release",
    "signature",
    "valid_name",
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
            current = entry_signature(path)
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
        if entry_signature(path) not in (None, yielded):
            self.add([path])


def _scan(outbox: Path) -> list[Path]:
    """The files (and links) directly in the outbox that it may take (creates the folder).

    ``os.scandir`` gives a name whose bytes are not UTF-8 with surrogates: it is refused by ``claim``.
    """
    outbox.mkdir(parents=True, exist_ok=True)
    with os.scandir(outbox) as entries:
        paths = [Path(entry.path) for entry in entries if is_candidate(entry.name)]
    return [path for path in paths if entry_signature(path) is not None]


def _from_changes(outbox: Path, changes: set[tuple[watchfiles.Change, str]]) -> list[Path]:
    paths = {Path(raw) for change, raw in changes if change != watchfiles.Change.deleted}
    return [p for p in paths if p.parent == outbox and is_candidate(p.name) and entry_signature(p)]


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
    async with contextlib.aclosing(_batches(outbox, stop)) as batches:
        async for changes in batches:
            if stop.is_set():
                return
            if changes is None or time.monotonic() >= next_rescan:
                pending.add(_scan(outbox))
                next_rescan = time.monotonic() + rescan_interval_s
            else:
                pending.add(_from_changes(outbox, changes))
            for path, seen in pending.ready():
                yield path
                pending.again_if_changed(path, seen)
                if stop.is_set():
                    return


_Changes = set[tuple[watchfiles.Change, str]]


async def _batches(outbox: Path, stop: asyncio.Event) -> AsyncGenerator[_Changes | None, None]:
    """inotify's changes (an empty set every tick); None when the watcher failed on a batch (e.g.
    a name that is not UTF-8): a rescan stands in for it and a new watcher is started."""
    while not stop.is_set():
        changes_iter = watchfiles.awatch(
            outbox,
            watch_filter=None,
            recursive=False,
            debounce=100,
            step=20,
            rust_timeout=int(_TICK_S * 1000),
            yield_on_timeout=True,
        )
        try:
            async with contextlib.aclosing(changes_iter) as changes_stream:
                async for changes in changes_stream:
                    yield changes
            return
        except Exception as exc:  # noqa: BLE001 -- only the watcher's own failure is handled
            _watcher_failed(outbox, exc)
        yield None
        await asyncio.sleep(_TICK_S)


def _watcher_failed(outbox: Path, exc: Exception) -> None:
    """Logs the watcher's failure once per message; re-raises anything else."""
    failures = [exc]
    if isinstance(exc, BaseExceptionGroup):  # awatch runs the watcher in an anyio task group
        matched, rest = exc.split(WatchfilesRustInternalError)
        if matched is None or rest is not None:
            raise exc
        failures = list(matched.exceptions)
    elif not isinstance(exc, WatchfilesRustInternalError):
        raise exc
    tell_once("outbox_watch_failed", outbox, reason=str(failures[0]), hint=_WATCH_FAILED_HINT)


_WATCH_FAILED_HINT = (
    "the folder watcher failed on a change (e.g. a file name that is not UTF-8): the outbox was "
    "rescanned instead and watching goes on; a file with such a name is moved to rejected/"
)


# ---- the outbox's own folders -------------------------------------------------------------------


def check_layout(outbox: Path) -> None:
    """Raises ``NotADirectoryError`` saying what to do when ``.processing``, ``.processing/new``,
    ``rejected`` or ``sent`` is there and is not a real folder (a file, a symbolic link)."""
    _refuse_links(outbox)
    _check_files_in_place(outbox)


def _refuse_links(outbox: Path) -> None:
    for path in (outbox / PROCESSING, outbox / PROCESSING / NEW, outbox / REJECTED, outbox / SENT):
        if path.is_symlink():
            raise _linked_folder(path)


def _linked_folder(path: Path) -> NotADirectoryError:
    name = path.name if path.name != NEW else f"{PROCESSING}/{NEW}"
    message = (
        f"the outbox needs a real folder named {name}, not a symbolic link: remove the link "
        f"{name} (pecgateway makes the folder itself)"
    )
    return NotADirectoryError(errno.ENOTDIR, message, display_name(str(path)))


def done(claimed_path: Path) -> Path:
    """Moves a claimed file to ``sent/`` (``outbox_folders.done``), never through a link."""
    _refuse_links(outbox_of(claimed_path))
    return _done(claimed_path)


def reject(
    claimed_path: Path, problems: Sequence[Problem], *, now: dt.datetime | None = None
) -> Path:
    """Moves a claimed file to ``rejected/`` beside its reasons (``outbox_folders.reject``),
    never through a link."""
    _refuse_links(outbox_of(claimed_path))
    return _reject(claimed_path, problems, now=now)


# ---- claim, begin, release -----------------------------------------------------------------------


def claimed(outbox: Path) -> list[Path]:
    """Files claimed and not finished (a crash, a stop, a send waiting): resume these first.

    A symbolic link, a FIFO, socket or device, or a name that is not UTF-8 found there is moved to
    ``rejected/`` with its reason instead (it may have been swapped in after ``claim``).
    """
    check_layout(outbox)
    found: list[Path] = []
    for folder in (outbox / PROCESSING, outbox / PROCESSING / NEW):
        if folder.is_dir():
            found += [
                path
                for path in sorted(folder.iterdir())
                if is_candidate(path.name) and resumable(path)
            ]
    return found


def claim(path: Path) -> Path | None:
    """Takes ``path`` atomically by rename into ``.processing/new/``; None when it is not taken.

    Not taken: gone, a folder, a FIFO, socket or device (logged once), a symbolic link or a name
    that is not UTF-8 (moved to ``rejected/`` with the reason), or a name still busy: a file of that
    name in ``.processing/`` is finished first and this one is taken after (logged once). Raises
    ``NotADirectoryError`` saying what to do while ``.processing``, ``rejected`` or ``sent`` is a
    file (``check_layout``).
    """
    check_layout(path.parent)
    if not takeable(path):
        return None
    folder = path.parent / PROCESSING / NEW
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists() or (folder.parent / path.name).exists():
        tell_once("outbox_file_waiting", path, hint=_WAITING_HINT)
        return None
    try:
        path.rename(target)
    except FileNotFoundError:
        return None
    forget(path)
    fsync_folder(folder)
    fsync_folder(path.parent)
    return target


_WAITING_HINT = (
    "a file of this name is still being handled (in .processing/, e.g. waiting for its receipt): "
    "this one is taken once that one is finished"
)


def begin(claimed_path: Path) -> tuple[Path, bool] | None:
    """A unit's first step: ``(the file in .processing/, True when new)``; None when it is gone.

    New: claimed from the outbox and never begun, even if a crash came between. A file already in
    ``.processing/`` is an unfinished unit to resume (False). None also when its name is busy.
    """
    folder = claimed_path.parent
    if folder.name != NEW or folder.parent.name != PROCESSING:
        return (claimed_path, False) if os.path.lexists(claimed_path) else None
    check_layout(outbox_of(claimed_path))
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
