"""What stops an outbox file from being sent: its p7m, an earlier file, our checks; its facts.

A file is a duplicate when a non-rejected invoice has its bytes (the reason says when that one was
sent, as what, its state now, and that nothing was sent again) or its SDI file name (error 00002).
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pecgateway import invoice, p7m, validate
from pecgateway.errors import MalformedMessage
from pecgateway.lifecycle import Event, State

if TYPE_CHECKING:
    from pecgateway.config import Account
    from pecgateway.service import Gateway
    from pecgateway.store import Outgoing

__all__ = ["check", "sent_at"]


def check(
    gw: Gateway, account: Account, name: str, data: bytes, digest: str
) -> tuple[invoice.Invoice | None, tuple[validate.Problem, ...]]:
    """The invoice's facts (when readable) and what stops it from being sent."""
    payload, problems = _payload(name, data)
    duplicate = _duplicate(gw, account, name, digest)
    if duplicate is not None:
        problems = (duplicate,)
    elif payload is not None:
        problems = validate.check(payload, name, gw.schemas) + _entry_paths(payload)
    return _facts(payload), problems


def _entry_paths(data: bytes) -> tuple[validate.Problem, ...]:
    """A zip entry named with a folder or ``..`` (``../x.xml``, ``/etc/x.xml``): SDI wants plain
    names, and ``validate`` reads each entry by its base name only. Checked for any zip content."""
    if not data.startswith(b"PK"):
        return ()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [info.filename for info in archive.infolist()[:_MAX_NAMES_READ]]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return ()  # validate.check already says the archive cannot be opened
    bad = [name for name in names if _has_path(name)]
    if not bad:
        return ()
    shown = ", ".join(repr(name) for name in bad[:3]) + (" ..." if len(bad) > 3 else "")
    message = f"the zip archive names entries with a folder or '..': {shown}"
    return (validate.Problem("zip", message, None, None, _ENTRY_PATH_HINT),)


_MAX_NAMES_READ = 1000  # more entries than this are refused by validate anyway


def _has_path(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return len(parts) > 1 or ".." in parts or name.startswith("/") or ":" in name


_ENTRY_PATH_HINT = (
    "make the archive again with an ordinary zip program from the invoice files themselves: "
    "no folders inside, plain file names only"
)


def _duplicate(gw: Gateway, account: Account, name: str, digest: str) -> validate.Problem | None:
    """Why this file must not be sent because of an earlier one; None when it is new."""
    same_bytes = gw.store.find_outgoing_by_sha256(account.name, digest)
    when = sent_at(gw, same_bytes) if same_bytes is not None else None
    if same_bytes is not None and when is not None:
        message = _already_sent(name, same_bytes, when)
        return validate.Problem("duplicate", message, None, None, _ALREADY_SENT_HINT)
    reason = gw.store.duplicate_reason(account.name, name, digest)
    if reason is None:
        return None
    return validate.Problem("duplicate", reason, None, None, _DUPLICATE_HINT)


def _already_sent(name: str, earlier: Outgoing, at: str) -> str:
    when = datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    called = "" if earlier.file_name == name else f" as {earlier.file_name}"
    return (
        f"{name}: these very bytes were already sent{called} on {when} (Message-ID "
        f"{earlier.message_id}) and that invoice is now {earlier.state.value}; nothing was sent "
        "again"
    )


_ALREADY_SENT_HINT = (
    "nothing to do if this is the same invoice (`pecgateway status` shows its state); a corrected "
    "invoice is a new file with a new progressivo in its name"
)
_DUPLICATE_HINT = "send a corrected invoice as a new file with a new progressivo in its name"


def _payload(name: str, data: bytes) -> tuple[bytes | None, tuple[validate.Problem, ...]]:
    if not name.lower().endswith((".p7m", ".pk7")):
        return data, ()
    try:
        return p7m.unwrap(data).payload, ()
    except MalformedMessage as exc:
        hint = "sign the invoice again with your signing software (CAdES, .xml.p7m)"
        return None, (
            validate.Problem("p7m", f"cannot open the signed file: {exc.reason}", None, None, hint),
        )


def _facts(payload: bytes | None) -> invoice.Invoice | None:
    if payload is None:
        return None
    try:
        return invoice.parse(payload)
    except MalformedMessage:
        return None


_NEVER_SENT = frozenset({State.QUEUED, State.REJECTED, State.SENDING, State.NOT_ACCEPTED})


def sent_at(gw: Gateway, record: Outgoing) -> str | None:
    """When the SMTP server took the file: its `sent` event; a send confirmed only by its receipt
    (after a restart): when its last attempt began. None when it was never sent."""
    sent = [e.at for e in gw.store.events(record.id) if e.event == Event.SENT.value]
    if sent:
        return sent[-1]
    return None if record.state in _NEVER_SENT else record.sending_since
