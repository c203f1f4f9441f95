"""What lies in the outbox and how it is read: files taken, links and bad names refused, FIFOs left.

A regular file with a UTF-8 name is taken; a symbolic link or a name that is not UTF-8 is moved to
``rejected/`` with its reason; a FIFO, socket or device is never opened nor moved, only logged once.
``read`` opens without following links or blocking, checks the opened file and reads at most
``max_bytes`` + 1 bytes, so a file swapped after the checks is refused all the same.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pecgateway.log import get_logger
from pecgateway.outbox_folders import display_name, reject, valid_name

__all__ = [
    "NAME_NOT_UTF8",
    "NOT_A_FILE",
    "SYMLINK",
    "UNREADABLE",
    "Refusal",
    "Refused",
    "Signature",
    "entry_signature",
    "forget",
    "read",
    "resumable",
    "signature",
    "takeable",
    "tell_once",
]

_log = get_logger()


@dataclass(frozen=True, slots=True)
class Signature:
    """What tells two states of a file apart: its size, modification time and inode."""

    size: int
    mtime_ns: int
    inode: int


def signature(path: Path) -> Signature | None:
    """The file's signature now; None when it is gone or not a regular file (folder, symlink)."""
    st = _lstat(path)
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    return Signature(st.st_size, st.st_mtime_ns, st.st_ino)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.stat(follow_symlinks=False)
    except OSError:
        return None


# ---- why a file is not taken -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an outbox file is not read (a ``Problem`` for its reason file)."""

    code: str
    message: str
    hint: str
    line: int | None = None
    column: int | None = None


class Refused(Exception):
    """``read`` will not read this file: ``refusal`` says why; ``later`` when it may work later
    (permission denied: the file stays in the outbox), else the file belongs in ``rejected/``."""

    def __init__(self, refusal: Refusal, *, later: bool = False) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.later = later


SYMLINK = Refusal(
    "symlink",
    "symbolic links are not taken: copy the file into the outbox",
    "copy the invoice file itself into the outbox; the link was moved here, its target was not "
    "touched",
)
NAME_NOT_UTF8 = Refusal(
    "file-name",
    "the file name is not valid UTF-8: rename the file using letters, digits and _ only (SDI "
    "accepts only [A-Za-z0-9_.])",
    "rename it as SDI names invoices (e.g. IT01234567890_00001.xml) and drop it into the outbox "
    "again",
)
NOT_A_FILE = Refusal(
    "not-a-file",
    "not a regular file (a FIFO, socket or device): only ordinary files are taken",
    "write the invoice as an ordinary file into the outbox",
)
UNREADABLE = Refusal(
    "permission",
    "permission denied: make the file readable by the service user (pecgateway)",
    "e.g. chgrp pecgateway FILE; chmod g+r FILE: it stays in the outbox and is taken once readable",
)


def _too_large(size: int, max_bytes: int) -> Refusal:
    return Refusal(
        "size",
        f"the file is {size} bytes; SDI accepts at most {max_bytes} bytes (5 MB): it was not read",
        "make the file smaller: remove or compress large attachments (Allegati), or send them "
        "outside the invoice",
    )


_told: set[tuple[str, str]] = set()  # (event, path): what was logged once for a name


def tell_once(event: str, path: Path, **fields: Any) -> None:
    if (event, str(path)) not in _told:
        _told.add((event, str(path)))
        _log.warning(event, file=display_name(path.name), path=display_name(str(path)), **fields)


def forget(path: Path) -> None:
    """``path`` was taken: a later wait or ignore of that name is logged again."""
    for event in ("outbox_file_waiting", "outbox_entry_ignored"):
        _told.discard((event, str(path)))


def _refuse(path: Path, refusal: Refusal) -> Path:
    """Moves a file that is never read to ``rejected/`` beside its reason; logs it."""
    target = reject(path, (refusal,))
    _log.warning(
        "outbox_file_refused",
        file=display_name(path.name),
        reason=refusal.message,
        hint=refusal.hint,
        path=display_name(str(target)),
    )
    return target


def _ignore(path: Path) -> None:
    """A FIFO, socket or device in the outbox: never opened nor moved, logged once per name."""
    tell_once("outbox_entry_ignored", path, reason=NOT_A_FILE.message, hint=_IGNORED_HINT)


_IGNORED_HINT = (
    "pecgateway neither opens nor moves it (its writer may be using it); remove it and write the "
    "invoice as an ordinary file"
)


def entry_signature(path: Path) -> Signature | None:
    """The lstat signature of something the outbox handles (a regular file, or a symbolic link
    to refuse); None for a folder or what is gone; a FIFO, socket or device is logged once."""
    st = _lstat(path)
    if st is None or stat.S_ISDIR(st.st_mode):
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        _ignore(path)
        return None
    return Signature(st.st_size, st.st_mtime_ns, st.st_ino)


def takeable(path: Path) -> bool:
    """Whether ``claim`` takes ``path``: links and bad names are refused, FIFOs ignored."""
    return _regular_with_a_valid_name(path, _ignore)


def resumable(path: Path) -> bool:
    """Whether a file found in ``.processing/`` is resumed; anything else is refused there."""
    return _regular_with_a_valid_name(path, _refuse_special)


def _refuse_special(path: Path) -> None:
    _refuse(path, NOT_A_FILE)  # our own folder: nobody else holds it


def _regular_with_a_valid_name(path: Path, special: Callable[[Path], None]) -> bool:
    """True for a regular file with a valid name; a link or a bad name is refused, a FIFO, socket
    or device goes to ``special``; a folder or what is gone is False."""
    st = _lstat(path)
    if st is None or stat.S_ISDIR(st.st_mode):
        return False
    if stat.S_ISLNK(st.st_mode):
        _refuse(path, SYMLINK)
    elif not stat.S_ISREG(st.st_mode):
        special(path)
    elif not valid_name(path.name):
        _refuse(path, NAME_NOT_UTF8)
    else:
        return True
    return False


def read(path: Path, *, max_bytes: int) -> tuple[bytes, Signature]:
    """The file's bytes and its signature as opened; raises ``Refused`` instead of reading a name
    that is not UTF-8, a symbolic link, a FIFO, socket or device, a file over ``max_bytes`` (never
    read whole) or one the service may not read (``later``); ``FileNotFoundError`` when gone."""
    if not valid_name(path.name):
        raise Refused(NAME_NOT_UTF8)
    fd = _open(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(NOT_A_FILE)
        if st.st_size > max_bytes:
            raise Refused(_too_large(st.st_size, max_bytes))
        data = _read_at_most(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew after fstat
        raise Refused(_too_large(len(data), max_bytes))
    return data, Signature(st.st_size, st.st_mtime_ns, st.st_ino)


def _open(path: Path) -> int:
    """Opens without following a link nor waiting for a FIFO's writer."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        raise Refused(UNREADABLE, later=True) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(SYMLINK) from None
        raise


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
