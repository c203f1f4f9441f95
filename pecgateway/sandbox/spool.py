"""The sandbox PEC provider's queue on disk: deliveries and SDI answers not made yet.

Owns one JSON file per pending item (written through a temporary name, then renamed), read back at
the next start so a restart loses nothing the provider had accepted, and the JSON form of the two
kinds of item (a user's message to deliver, SDI's message to hand over). Decides nothing: the
provider adds, replays and removes.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from pecgateway.sandbox.envelope import Original, TipoRicevuta

__all__ = [
    "Entry",
    "Spool",
    "answer_from_json",
    "answer_json",
    "original_from_json",
    "original_json",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending item: its file, when it is due and what it is."""

    path: Path
    due: datetime
    data: dict[str, Any]


class Spool:
    """The files of ``directory``; created on the first ``add``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, due: datetime, data: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{due:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}.json"
        path = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        temporary.write_text(json.dumps({"due": due.isoformat(), **data}), encoding="utf-8")
        temporary.replace(path)
        return path

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def entries(self) -> tuple[list[Entry], list[Path]]:
        """The pending items in due order, and the files that could not be read (renamed
        ``*.unreadable`` so they are not tried again, and kept)."""
        if not self.directory.is_dir():
            return [], []
        found: list[Entry] = []
        bad: list[Path] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found.append(Entry(path, datetime.fromisoformat(data.pop("due")), data))
            except (OSError, UnicodeError, ValueError, TypeError, KeyError, AttributeError):
                bad.append(self.set_aside(path))
        return found, bad

    def set_aside(self, path: Path) -> Path:
        """Renames an entry that cannot be made ``*.unreadable`` (kept, never tried again)."""
        aside = path.with_name(path.name + ".unreadable")
        path.replace(aside)
        return aside


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from exc


def original_json(original: Original) -> dict[str, Any]:
    return {
        "mittente": original.mittente,
        "destinatari": list(original.destinatari),
        "oggetto": original.oggetto,
        "identificativo": original.identificativo,
        "msgid": original.msgid,
        "raw": _b64(original.raw),
        "risposte": original.risposte,
        "ricevuta": original.ricevuta.value,
        "received": original.received,
    }


def original_from_json(data: dict[str, Any]) -> Original:
    """ValueError/KeyError/TypeError when ``data`` is not what ``original_json`` wrote."""
    return Original(
        mittente=str(data["mittente"]),
        destinatari=tuple(str(r) for r in data["destinatari"]),
        oggetto=str(data["oggetto"]),
        identificativo=str(data["identificativo"]),
        msgid=None if data["msgid"] is None else str(data["msgid"]),
        raw=_unb64(data["raw"]),
        risposte=None if data["risposte"] is None else str(data["risposte"]),
        ricevuta=TipoRicevuta(data["ricevuta"]),
        received=str(data["received"]),
    )


def answer_json(sender: str, message: EmailMessage) -> dict[str, Any]:
    return {"sender": sender, "raw": _b64(message.as_bytes(policy=policy.SMTP))}


def answer_from_json(data: dict[str, Any]) -> tuple[str, EmailMessage]:
    """(sender, SDI's inner message); ValueError/KeyError/TypeError when not what
    ``answer_json`` wrote."""
    message = message_from_bytes(_unb64(data["raw"]), policy=policy.default)
    if not isinstance(message, EmailMessage):
        raise TypeError("not an e-mail message")
    return str(data["sender"]), message
