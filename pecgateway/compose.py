"""The outbound PEC message: one invoice file, addressed to SDI.

Pure: builds an ``EmailMessage`` from values (file name and bytes, addresses, Message-ID, date);
no clock, no randomness (the caller injects the Message-ID token and the date), no I/O.
Raises ``ValueError`` only when an argument cannot go into a mail header (a programming error).
"""

from __future__ import annotations

import email.policy
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["compose", "content_type_for", "new_message_id"]

_CONTENT_TYPES = {
    ".xml": ("application", "xml"),
    ".p7m": ("application", "pkcs7-mime"),
    ".pk7": ("application", "pkcs7-mime"),
    ".zip": ("application", "zip"),
}
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_MESSAGE_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")
_ADDRESS = re.compile(r"[^<>@\s,;\"]+@[^<>@\s,;\"]+")
_BODY = (
    "Invio al Sistema di Interscambio del file {name}.\n"
    "Sending file {name} to the Italian exchange system (SDI).\n"
)


def content_type_for(file_name: str) -> tuple[str, str]:
    """(maintype, subtype) of the attachment: xml, pkcs7-mime (.p7m), zip, else octet-stream."""
    for suffix, content_type in _CONTENT_TYPES.items():
        if file_name.lower().endswith(suffix):
            return content_type
    return ("application", "octet-stream")


def new_message_id(token: str, domain: str) -> str:
    """``<token@domain>`` with the domain in lower case; the caller supplies a unique token."""
    if not _ATOM.fullmatch(token) or not _ATOM.fullmatch(domain) or ".." in domain:
        raise ValueError(f"cannot build a Message-ID from token {token!r} and domain {domain!r}")
    return f"<{token}@{domain.lower()}>"


def _check(file_name: str, sender: str, recipient: str, message_id: str, date: datetime) -> None:
    if not file_name or any(ch in file_name for ch in '\r\n\0/\\"') or not file_name.isprintable():
        raise ValueError(f"file name {file_name!r} cannot be a mail subject and attachment name")
    for role, address in (("sender", sender), ("recipient", recipient)):
        if not _ADDRESS.fullmatch(address):
            raise ValueError(f"{role} {address!r} is not a plain mail address")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"Message-ID {message_id!r} is not of the form <token@domain>")
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the date must carry a time zone")


def compose(
    *, file_name: str, data: bytes, sender: str, recipient: str, message_id: str, date: datetime
) -> EmailMessage:
    """The message that carries ``file_name`` to SDI.

    From = the PEC account (``sender``, also the SMTP MAIL FROM), To = the SDI address, Subject =
    the file name, a short text body, the file attached byte for byte (base64); no Cc, no Bcc, as
    PEC providers require. ``bytes(message)`` uses CRLF line endings (the SMTP policy).
    """
    _check(file_name, sender, recipient, message_id, date)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = file_name
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message.set_content(_BODY.format(name=file_name), charset="utf-8")
    maintype, subtype = content_type_for(file_name)
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=file_name)
    return message
