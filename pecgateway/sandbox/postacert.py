"""``postacert.eml``: the user's message as a PEC provider transports it.

Owns the header rewrite real providers apply to the carried message (our Message-ID moves to
``X-Riferimento-Message-ID``, the provider's ``identificativo`` becomes the Message-ID, Bcc and
Return-Path go) and the ``breve`` reduction (attachments replaced by their SHA-256 digests).
"""

from __future__ import annotations

import hashlib
from email import message_from_bytes, policy
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO
from typing import TYPE_CHECKING

from pecgateway.sandbox.smime import crlf

if TYPE_CHECKING:
    from pecgateway.sandbox.envelope import Original

__all__ = ["breve", "postacert", "split_headers"]

_DROPPED = {b"message-id", b"x-riferimento-message-id", b"bcc", b"return-path", b"delivered-to"}


def split_headers(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields of ``raw`` (each with its continuation lines, CRLF-ended) and its body."""
    raw = crlf(raw)
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator and not raw.endswith(b"\r\n"):
        head, body = raw, b""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif line:
            fields.append(line + b"\r\n")
    return fields, body


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def postacert(original: Original) -> bytes:
    """``original.raw`` with the transport headers of the sender's provider."""
    fields, body = split_headers(original.raw)
    kept = [f for f in fields if _name(f) not in _DROPPED]
    added = [f"Message-ID: <{original.identificativo}>\r\n".encode("ascii")]
    if original.msgid:
        added.append(f"X-Riferimento-Message-ID: {original.msgid}\r\n".encode("ascii"))
    received = [original.received.encode("ascii") + b"\r\n"] if original.received else []
    return b"".join(received + kept + added) + b"\r\n" + body


def _is_attachment(part: Message) -> bool:
    return not part.is_multipart() and part.get_filename() is not None


def breve(message: bytes) -> bytes:
    """``message`` with every attachment's content replaced by its SHA-256 digest (hex)."""
    parsed = message_from_bytes(message, policy=policy.compat32)
    for part in parsed.walk():
        if _is_attachment(part):
            content = part.get_payload(decode=True)
            data = content if isinstance(content, bytes) else b""
            del part["Content-Transfer-Encoding"]
            part["Content-Transfer-Encoding"] = "7bit"
            part.set_payload(f"SHA-256: {hashlib.sha256(data).hexdigest()}\r\n")
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=policy.compat32.clone(linesep="\r\n")).flatten(
        parsed
    )
    return out.getvalue()
