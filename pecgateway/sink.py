"""The inbox folder: where each output goes, and atomic writes.

Owns the layout (``route``, pure: kind, then year/month, Italian or English folder names) and the
writing (temporary dot-name in the same folder, fsync, link into place, fsync the folder). Never
overwrites: a clash gets `` (2)`` before the extensions. Never reads anything back as state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path, PurePosixPath

__all__ = [
    "FOLDERS",
    "TEMPORARY_PREFIX",
    "Kind",
    "Language",
    "clean_temporary",
    "route",
    "safe_name",
    "write",
    "write_json_sidecar",
    "write_sidecar",
]

TEMPORARY_PREFIX = ".pecgateway-tmp-"


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

    Empty or unusable names become ``unnamed``; names are cut to 200 characters keeping the
    extensions.
    """
    raise NotImplementedError


def route(kind: Kind, file_name: str, when: date | datetime, language: Language) -> PurePosixPath:
    """Relative path for ``file_name`` of ``kind`` received or sent at ``when``.

    ``<kind folder>/<YYYY>/<MM>/<safe name>``, relative to the account's inbox folder. (The
    outbox's own ``rejected/`` and ``sent/`` folders belong to ``outbox.py``.)
    """
    raise NotImplementedError


def write(root: Path, relpath: PurePosixPath, data: bytes) -> Path:
    """Write ``data`` at ``root / relpath`` atomically and return the path actually written.

    Never overwrites: when the name is taken, ``name (2).xml.p7m``, ``name (3).xml.p7m`` ...
    Creates missing folders. The bytes are written exactly as given.
    """
    raise NotImplementedError


def write_sidecar(path: Path, suffix: str, data: bytes) -> Path:
    """Write ``data`` beside ``path`` as ``<path.name><suffix>`` (e.g. ``.reason.txt``)."""
    raise NotImplementedError


def write_json_sidecar(path: Path, facts: Mapping[str, object], suffix: str = ".json") -> Path:
    """Write ``facts`` as indented UTF-8 JSON beside ``path`` (``<path.name>.json``)."""
    raise NotImplementedError


def clean_temporary(root: Path) -> list[Path]:
    """Remove temporary files left under ``root`` by a crash mid-write; return what was removed."""
    raise NotImplementedError
