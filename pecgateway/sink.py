"""The inbox folder: where each output goes, and atomic writes.

Owns the layout (``route``, pure: kind, then year/month, Italian or English folder names) and the
writing (temporary dot-name in the same folder, fsync, link into place, fsync the folder). Never
overwrites: a clash gets `` (2)`` before the extensions. Never reads anything back as state.
"""

from __future__ import annotations

import enum
import errno
import itertools
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path, PurePosixPath

__all__ = [
    "FOLDERS",
    "TEMPORARY_PREFIX",
    "Kind",
    "Language",
    "clean_temporary",
    "free_number",
    "number_of",
    "numbered",
    "route",
    "safe_name",
    "write",
    "write_json_sidecar",
    "write_sidecar",
]

TEMPORARY_PREFIX = ".pecgateway-tmp-"
_MAX_NAME = 200
_FORBIDDEN = frozenset('/\\:*?"<>|')  # also unsafe on the Windows shares legacy software uses
_EXTENSIONS = frozenset(
    {"xml", "p7m", "pk7", "zip", "eml", "json", "txt", "html", "pdf", "p7s", "reason"}
)


class Language(enum.Enum):
    """``inbox_language``: the language of the folder names."""

    IT = "it"
    EN = "en"


class Kind(enum.Enum):
    """What a written file is; each kind has its own top folder."""

    RECEIVED_INVOICE = "received-invoice"  # suppliers' invoices: original, unwrapped XML, MT, .json
    SDI_NOTIFICATION = "sdi-notification"  # RC NS MC NE DT AT about our invoices (+ orphans)
    PEC_RECEIPT = "pec-receipt"  # accettazione, consegna, errori: the raw .eml
    QUARANTINE = "quarantine"  # what we could not understand: raw .eml/file + .reason.txt
    SENT = "sent"  # a copy of each file we sent + a .json sidecar


FOLDERS: Mapping[Language, Mapping[Kind, str]] = {
    Language.IT: {
        Kind.RECEIVED_INVOICE: "fatture-ricevute",
        Kind.SDI_NOTIFICATION: "notifiche-sdi",
        Kind.PEC_RECEIPT: "ricevute-pec",
        Kind.QUARANTINE: "quarantena",
        Kind.SENT: "inviate",
    },
    Language.EN: {
        Kind.RECEIVED_INVOICE: "received-invoices",
        Kind.SDI_NOTIFICATION: "sdi-notifications",
        Kind.PEC_RECEIPT: "pec-receipts",
        Kind.QUARANTINE: "quarantine",
        Kind.SENT: "sent",
    },
}


def safe_name(name: str) -> str:
    """A file name safe to create: basename only, no control characters, no leading dot.

    Empty or unusable names become ``unnamed``; names are cut to 200 bytes (UTF-8) keeping the
    extensions.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join("_" if _unsafe(ch) else ch for ch in base).strip().lstrip(".").strip()
    if not cleaned:
        return "unnamed"
    if len(cleaned.encode("utf-8")) > _MAX_NAME:  # file systems count bytes (255 at most)
        stem, extension = _split_extension(cleaned)
        stem = _cut(stem, max(1, _MAX_NAME - len(extension.encode("utf-8"))))
        cleaned = _cut(stem + extension, _MAX_NAME)
    return cleaned


def _cut(text: str, size: int) -> str:
    """``text`` cut to at most ``size`` UTF-8 bytes, never inside a character; no end spaces."""
    return text.encode("utf-8")[:size].decode("utf-8", "ignore").rstrip() or "unnamed"


def _unsafe(ch: str) -> bool:
    return not ch.isprintable() or ch in _FORBIDDEN


def _split_extension(name: str) -> tuple[str, str]:
    """``IT01_00001.xml.p7m`` -> (``IT01_00001``, ``.xml.p7m``): up to 3 known extensions."""
    stem, extension = name, ""
    for _ in range(3):
        head, dot, last = stem.rpartition(".")
        if not dot or not head or last.lower() not in _EXTENSIONS:
            break
        stem, extension = head, f".{last}{extension}"
    if not extension:
        head, dot, last = name.rpartition(".")
        if dot and head and 0 < len(last) <= 5 and last.isalnum():
            return head, f".{last}"
    return stem, extension


def route(kind: Kind, file_name: str, when: date | datetime, language: Language) -> PurePosixPath:
    """Relative path for ``file_name`` of ``kind`` received or sent at ``when``.

    ``<kind folder>/<YYYY>/<MM>/<safe name>``, relative to the account's inbox folder. (The
    outbox's own ``rejected/`` and ``sent/`` folders belong to ``outbox.py``.)
    """
    folder = FOLDERS[language][kind]
    return PurePosixPath(folder, f"{when.year:04d}", f"{when.month:02d}", safe_name(file_name))


def numbered(name: str, number: int, anchor: str | None = None) -> str:
    """``name`` with the clash counter `` (number)``; number 1 leaves it unchanged.

    The counter goes before the extensions (``a (2).xml.p7m``). With ``anchor``, the first file of
    a set, a name that continues the anchor's stem with extensions gets the counter where the
    anchor gets it, so a set stays recognisable: ``a (2).xml.p7m``, ``a (2).xml``,
    ``a (2).xml.p7m.json``; other names (``a_MT_001.xml``) get it before their own extensions.
    """
    if number == 1:
        return name
    at = _counter_position(name, anchor)
    return f"{name[:at]} ({number}){name[at:]}"


def number_of(name: str, written: str, anchor: str | None = None) -> int | None:
    """The counter ``numbered(name, n, anchor)`` gave ``written``: 1 for the name itself, None
    when ``written`` is no numbered form of ``name``."""
    if written == name:
        return 1
    at = _counter_position(name, anchor)
    head, tail = name[:at] + " (", ")" + name[at:]
    fits = len(written) > len(head) + len(tail) and written.startswith(head)
    middle = written[len(head) : len(written) - len(tail)] if fits else ""
    if not (written.endswith(tail) and middle.isascii() and middle.isdigit()):
        return None
    return int(middle) if int(middle) >= 2 else None


def _counter_position(name: str, anchor: str | None) -> int:
    stem = _split_extension(anchor)[0] if anchor else ""
    if stem and name.startswith(stem) and name[len(stem) : len(stem) + 1] in ("", "."):
        return len(stem)
    return len(_split_extension(name)[0])


def free_number(folder: Path, names: Sequence[str], anchor: str | None = None) -> int:
    """The smallest counter for which every name of a set is free in ``folder`` (1: as named)."""
    for number in itertools.count(1):
        if not any(os.path.lexists(folder / numbered(n, number, anchor)) for n in names):
            return number
    raise AssertionError("unreachable")  # pragma: no cover


def write(root: Path, relpath: PurePosixPath, data: bytes) -> Path:
    """Write ``data`` at ``root / relpath`` atomically and return the path actually written.

    Never overwrites: when the name is taken, ``name (2).xml.p7m``, ``name (3).xml.p7m`` ...
    Creates missing folders. The bytes are written exactly as given.
    """
    if relpath.is_absolute() or ".." in relpath.parts or not relpath.parts:
        raise ValueError(f"{relpath}: not a relative path inside the inbox folder")
    target = root.joinpath(*relpath.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _write_temporary(target.parent, data)
    try:
        written = _link_unique(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return written


def _write_temporary(folder: Path, data: bytes) -> Path:
    temporary = folder / f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _candidates(target: Path) -> Iterator[Path]:
    for number in itertools.count(1):
        yield target.with_name(numbered(target.name, number))


def _link_unique(temporary: Path, target: Path) -> Path:
    """Hard-link ``temporary`` to the first free name: atomic and never overwriting."""
    for candidate in _candidates(target):
        try:
            os.link(temporary, candidate)
        except FileExistsError:
            continue
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if candidate.exists():  # no hard links here (FAT, some shares): check, then rename
                continue
            temporary.rename(candidate)
        return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_sidecar(path: Path, suffix: str, data: bytes) -> Path:
    """Write ``data`` beside ``path`` as ``<path.name><suffix>`` (e.g. ``.reason.txt``)."""
    return write(path.parent, PurePosixPath(safe_name(path.name + suffix)), data)


def write_json_sidecar(path: Path, facts: Mapping[str, object], suffix: str = ".json") -> Path:
    """Write ``facts`` as indented UTF-8 JSON beside ``path`` (``<path.name>.json``)."""
    text = json.dumps(facts, indent=2, ensure_ascii=False, sort_keys=False, default=str) + "\n"
    return write_sidecar(path, suffix, text.encode("utf-8"))


def clean_temporary(root: Path) -> list[Path]:
    """Remove temporary files left under ``root`` by a crash mid-write; return what was removed."""
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.rglob(f"{TEMPORARY_PREFIX}*")):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
