"""The outbox's layout and its hand-off folders: ``sent/`` and ``rejected/`` with readable reasons.

Owns the moves out of ``.processing/`` (never overwriting) and the reason files. ``outbox.py`` owns
finding and claiming files; the service reaches both through ``outbox``.

Names: a clash in ``sent/`` or ``rejected/`` gets `` (2)``, `` (3)`` ... before the extensions, as
in the inbox (``sink``); nothing is ever overwritten. A rejected file's name is made safe first: bytes
that are not UTF-8 become ``_`` and a name too long for its ``.reason.json`` (NAME_MAX) is cut,
keeping a hash; its reasons give the name as dropped (``display_name``). When a file is sent, earlier rejections of the
same file name become history: each rejected file and its ``.reason.txt``/``.reason.json`` are
renamed ``<stem> (rejected <YYYYMMDDTHHMMSSZ>)<ext>`` (the time of that rejection), so that no
``rejected/<name>.reason.txt`` contradicts the send; the audit trail stays in the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pecgateway import filename, sink
from pecgateway.log import get_logger

__all__ = [
    "NEW",
    "PROCESSING",
    "REJECTED",
    "SENT",
    "Problem",
    "check_layout",
    "display_name",
    "done",
    "fsync_folder",
    "outbox_of",
    "reject",
    "rejected_name",
    "valid_name",
]

PROCESSING = ".processing"  # units of work, one file each (hidden from legacy software)
NEW = "new"  # inside .processing/: claimed from the outbox, the unit not begun yet
REJECTED = "rejected"  # failed our checks: the file beside <name>.reason.txt and <name>.reason.json
SENT = "sent"  # accepted by the SMTP server
_MAX_REJECTED_BYTES = 200  # + " (n)", " (rejected <time>)" and ".reason.json" stay within NAME_MAX
_log = get_logger()


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


def done(claimed_path: Path) -> Path:
    """Moves a claimed file to ``sent/`` (never overwriting) and returns where it went.

    Earlier rejections of the same file name in ``rejected/`` are renamed as history.
    """
    outbox = outbox_of(claimed_path)
    target = _move(_current(claimed_path), outbox / SENT)
    _retire_rejections(outbox / REJECTED, claimed_path.name)
    return target


def reject(
    claimed_path: Path, problems: Sequence[Problem], *, now: dt.datetime | None = None
) -> Path:
    """Moves a claimed file to ``rejected/`` after writing ``<name>.reason.txt`` and ``.json``.

    The reasons are written first, so that software watching ``rejected/`` finds them as soon as the
    file appears; when they cannot be written the file is moved all the same (and that is logged).
    The name is made safe (``rejected_name``). Returns the rejected file's new path.
    """
    claimed_path = _current(claimed_path)
    folder = _folder(outbox_of(claimed_path), REJECTED)
    target = _free_path(folder, rejected_name(claimed_path.name))
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    shown = display_name(claimed_path.name)
    reasons = {
        ".reason.txt": _reason_text(target.name, shown, problems),
        ".reason.json": _reason_json(shown, when, problems),
    }
    for suffix, data in reasons.items():
        try:
            _write_atomic(target.with_name(target.name + suffix), data)
        except OSError as exc:
            _log.error(
                "rejection_reason_not_written",
                file=shown,
                path=display_name(str(target) + suffix),
                reason=display_name(f"{exc.strerror or exc}"),
                hint="the file is moved to rejected/ all the same; the log says why",
            )
    try:
        claimed_path.rename(target)
    except OSError:  # no reasons without their file: the next try writes them again
        for suffix in reasons:
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        raise
    fsync_folder(folder)
    return target


def valid_name(name: str) -> bool:
    """False for a name whose bytes are not UTF-8 (``os`` gives such bytes as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_name(name: str) -> str:
    """``name`` as text for people, logs and the store: bytes that are not UTF-8 as ``\\xff``."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def rejected_name(name: str) -> str:
    """A name safe to create in ``rejected/`` beside its reasons: bytes that are not UTF-8 become
    ``_``; a name over 200 bytes is cut, keeping its extensions and a hash of the whole name."""
    safe = "".join("_" if "\udc80" <= ch <= "\udcff" else ch for ch in name)
    safe = safe.encode("utf-8", "replace").decode("utf-8")  # any other lone surrogate
    raw = safe.encode("utf-8")
    if len(raw) <= _MAX_REJECTED_BYTES:
        return safe
    stem, extension = _split(safe)
    mark = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    room = _MAX_REJECTED_BYTES - len((mark + extension).encode("utf-8"))
    if room < 1:  # an extension too long to keep
        stem, extension, room = safe, "", _MAX_REJECTED_BYTES - len(mark)
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore") + mark + extension


def check_layout(outbox: Path) -> None:
    """Raises ``NotADirectoryError`` naming what to do when ``.processing``, ``.processing/new``,
    ``rejected`` or ``sent`` is there and is not a folder: nothing must be claimed then."""
    for path in (outbox / PROCESSING, outbox / PROCESSING / NEW, outbox / REJECTED, outbox / SENT):
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            raise _not_a_folder(path)


def _not_a_folder(path: Path) -> NotADirectoryError:
    name = path.name if path.name != NEW else f"{PROCESSING}/{NEW}"
    message = f"the outbox needs a folder named {name}: move the file named {name} away"
    return NotADirectoryError(errno.ENOTDIR, message, display_name(str(path)))


def _folder(outbox: Path, name: str) -> Path:
    """``outbox/name``, made when missing; a clear error when a file has that name."""
    folder = outbox / name
    try:
        folder.mkdir(exist_ok=True)
    except FileExistsError:
        raise _not_a_folder(folder) from None
    return folder


def _reason_text(name: str, shown: str, problems: Sequence[Problem]) -> bytes:
    lines = [f"{name}: not sent to SDI, {len(problems)} problem(s) found.", ""]
    if shown != name:
        lines[1:1] = [f"Dropped into the outbox as: {shown}"]
    for number, problem in enumerate(problems, 1):
        where = f" (line {problem.line}, column {problem.column})" if problem.line else ""
        lines.append(f"{number}. [{problem.code}]{where} {problem.message}")
        lines.append(f"   Fix: {problem.hint}")
    lines += ["", _closing(problems), ""]
    return "\n".join(lines).encode("utf-8", "backslashreplace")  # e.g. an error naming a path


def _closing(problems: Sequence[Problem]) -> str:
    """What to do now; for a file refused only as already sent, nothing more than its Fix says."""
    if all(problem.code == "duplicate" for problem in problems):
        return "Nothing was sent again: do what the Fix line above says."
    return "Fix the file and drop it into the outbox again (a new file name if it was sent)."


def _reason_json(name: str, when: str, problems: Sequence[Problem]) -> bytes:
    items = [
        {"code": p.code, "message": p.message, "line": p.line, "column": p.column, "hint": p.hint}
        for p in problems
    ]
    document = {"file": name, "rejected_at": when, "problems": items}
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return text.encode("utf-8", "backslashreplace") + b"\n"


_REASONS = (".reason.txt", ".reason.json")
_NUMBERED = re.compile(r"(?P<head>.*) \((?P<n>\d+)\)(?P<tail>.*)")


def _retire_rejections(folder: Path, sent_name: str) -> None:
    """Renames each earlier rejection of ``sent_name`` (any `` (n)`` copy) as history."""
    if not folder.is_dir():
        return
    for reason in sorted(folder.glob("*.reason.json")):
        rejected = reason.with_name(reason.name.removesuffix(".reason.json"))
        if filename.same_invoice_file(_unnumbered(rejected.name), sent_name):
            stem, extension = _split(_unnumbered(rejected.name))
            history = _free_path(folder, f"{stem} (rejected {_rejected_at(reason)}){extension}")
            for suffix in ("", *_REASONS):
                with contextlib.suppress(FileNotFoundError):
                    rejected.with_name(rejected.name + suffix).rename(
                        history.with_name(history.name + suffix)
                    )
    fsync_folder(folder)


def _unnumbered(name: str) -> str:
    """``name (2).xml`` -> ``name.xml``: the name as dropped into the outbox."""
    numbered = _NUMBERED.fullmatch(name)
    if numbered is None:
        return name
    original = numbered["head"] + numbered["tail"]
    return original if sink.number_of(original, name) == int(numbered["n"]) else name


def _rejected_at(reason_json: Path) -> str:
    """When the rejection was made, as ``YYYYMMDDTHHMMSSZ`` (its reason file, else its mtime)."""
    try:
        when = dt.datetime.fromisoformat(json.loads(reason_json.read_bytes())["rejected_at"])
    except (OSError, ValueError, KeyError, TypeError):
        when = dt.datetime.fromtimestamp(reason_json.stat().st_mtime, dt.UTC)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y%m%dT%H%M%SZ")


def _current(claimed_path: Path) -> Path:
    """Where a claimed file is now: one claimed into ``.processing/new/`` may have been begun since
    (moved to ``.processing/``), e.g. when its unit failed and is set aside by the claimed path."""
    folder = claimed_path.parent
    begun = folder.parent / claimed_path.name
    if folder.name == NEW and folder.parent.name == PROCESSING and not claimed_path.exists():
        return begun
    return claimed_path


def outbox_of(claimed_path: Path) -> Path:
    """The outbox of a file in it, in ``.processing/`` or in ``.processing/new/``."""
    parent = claimed_path.parent
    if parent.name == NEW and parent.parent.name == PROCESSING:
        return parent.parent.parent
    return parent.parent if parent.name == PROCESSING else parent


def _move(source: Path, folder: Path) -> Path:
    folder = _folder(folder.parent, folder.name)
    target = _free_path(folder, source.name)
    source.rename(target)
    fsync_folder(folder)
    return target


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem> (2)<ext>`` ... when it or its reasons exist (``sink``)."""
    names = [name, *(name + suffix for suffix in _REASONS)]
    return folder / sink.numbered(name, sink.free_number(folder, names, anchor=name))


def _split(name: str) -> tuple[str, str]:
    """``IT01_00001.xml.p7m`` -> (``IT01_00001``, ``.xml.p7m``); ``a.pdf`` -> (``a``, ``.pdf``)."""
    stem = filename.invoice_stem(name)
    if stem != name:
        return stem, name[len(stem) :]
    head, dot, tail = name.rpartition(".")
    return (head, dot + tail) if dot and head else (name, "")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def fsync_folder(folder: Path) -> None:
    """Makes a rename or a new name in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
