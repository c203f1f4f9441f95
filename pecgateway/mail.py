"""Tolerant reading of raw e-mail: header values, MIME parts, payloads and embedded messages.

Owns every contact with the stdlib email package: headers are read raw and decoded here (RFC 2047,
8-bit, unknown charsets) so no stdlib header class can raise; part access degrades into warnings.
Pure: bytes in, values out; raises only MalformedMessage (not an e-mail message at all).
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from email import errors as email_errors
from email import policy
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

from pecgateway.errors import MalformedMessage

__all__ = [
    "FAILURES",
    "MAX_DEPTH",
    "Headers",
    "children",
    "content_type",
    "decode_words",
    "disposition",
    "embedded_message",
    "filename",
    "is_message_part",
    "leaves",
    "message_bytes",
    "parse_bytes",
    "payload_bytes",
    "safe_name",
    "transfer_encoding",
    "unfold",
    "unsurrogate",
]

# The stdlib mail code raises these on hostile input (bad charsets, broken encoded words, parser bugs).
FAILURES = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    AssertionError,
    RecursionError,
    email_errors.MessageError,
)
MAX_DEPTH = 20


def unsurrogate(text: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: read them as UTF-8, else as cp1252."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def unfold(value: str) -> str:
    """A header value on one line, runs of white space collapsed, 8-bit bytes decoded."""
    return re.sub(r"\s+", " ", unsurrogate(value)).strip()


def _decode_chunk(chunk: bytes | str, charset: str | None, warnings: list[str]) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset is None or charset == "unknown-8bit":
        return chunk.decode("utf-8", "replace") if charset else chunk.decode("latin-1")
    try:
        return chunk.decode(charset, "replace")
    except (LookupError, ValueError):  # ValueError: a NUL inside the charset name
        warnings.append(f"unknown charset {charset!r} in an encoded header word, read as latin-1")
        return chunk.decode("latin-1")


def decode_words(value: str, warnings: list[str]) -> str:
    """Decode RFC 2047 encoded words; a broken word is kept as written, with a warning."""
    text = unfold(value)
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except FAILURES as exc:
        warnings.append(f"undecodable encoded words in a header kept as written ({exc})")
        return text
    decoded = unfold("".join(_decode_chunk(c, cs, warnings) for c, cs in chunks))
    if not decoded:
        warnings.append(f"encoded words decode to nothing; header kept as written: {text!r}")
        return text
    return decoded


class Headers:
    """Case-insensitive access to the raw header values, never through the stdlib header classes."""

    def __init__(self, message: Message) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            self._values.setdefault(name.strip().lower(), []).append(str(value))

    def raw(self, name: str) -> str | None:
        """The first value, unfolded and stripped, encoded words left as they are."""
        values = self._values.get(name.lower())
        return unfold(values[0]) if values else None

    def text(self, name: str, warnings: list[str]) -> str | None:
        """The first value, unfolded and RFC 2047-decoded."""
        values = self._values.get(name.lower())
        return decode_words(values[0], warnings) if values else None

    def addresses(self, name: str, warnings: list[str]) -> list[tuple[str, str]]:
        """(decoded display name, address) pairs of every occurrence of an address header."""
        found: list[tuple[str, str]] = []
        for value in self._values.get(name.lower(), []):
            try:
                pairs = getaddresses([unfold(value)])
            except FAILURES as exc:
                warnings.append(f"unreadable {name} header ignored ({exc})")
                continue
            found += [(decode_words(n, warnings), a.strip()) for n, a in pairs if "@" in a]
        return found


# ---------------------------------------------------------------- MIME structure


def content_type(part: Message) -> str:
    """The part's lowercase content type; application/octet-stream when unreadable."""
    try:
        return part.get_content_type()
    except FAILURES:
        return "application/octet-stream"


def filename(part: Message, warnings: list[str]) -> str | None:
    """The decoded file name (Content-Disposition filename, else Content-Type name), if any."""
    try:
        name = part.get_filename()  # falls back to the Content-Type name; decodes RFC 2231
    except FAILURES as exc:
        warnings.append(f"unreadable attachment file name ignored ({exc})")
        return None
    return decode_words(name, warnings) or None if name else None


def transfer_encoding(part: Message) -> str:
    """The raw Content-Transfer-Encoding value, lowercase; "" when absent."""
    for name, value in part.raw_items():
        if name.strip().lower() == "content-transfer-encoding":
            return unfold(str(value)).lower()
    return ""


def payload_bytes(part: Message, warnings: list[str]) -> bytes:
    """Decoded payload; identity or unknown CTEs (7bit, 8bit, binary, x-foo) are no-ops."""
    try:
        data = part.get_payload(decode=True)
    except FAILURES as exc:
        warnings.append(f"undecodable part kept raw ({exc})")
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def children(part: Message) -> list[Message]:
    """The sub-parts of a multipart, or the message inside a parsed message/* part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def is_message_part(part: Message) -> bool:
    """True for message/* parts (an embedded e-mail)."""
    return content_type(part).startswith("message/")


def leaves(message: Message, depth: int = 0) -> list[Message]:
    """The leaf parts of a message (message/* parts are leaves: never walked into here)."""
    if depth > MAX_DEPTH:
        return []
    if message.is_multipart() and not is_message_part(message):
        found: list[Message] = []
        for child in children(message):
            found += leaves(child, depth + 1)
        return found
    return [message]


def _has_headers(message: Message) -> bool:
    return next(iter(message.raw_items()), None) is not None


def parse_bytes(raw: bytes) -> Message:
    """Parse a raw mail; MalformedMessage when there is not a single header line."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except FAILURES as exc:
        raise MalformedMessage(f"not an e-mail message: the MIME parser failed ({exc})") from exc
    if not _has_headers(message):
        raise MalformedMessage("not an e-mail message: no header lines before the body")
    return message


def embedded_message(part: Message, warnings: list[str]) -> Message | None:
    """The message inside a postacert.eml part, whatever its content type or CTE."""
    inner = children(part) if is_message_part(part) else []
    if inner and _has_headers(inner[0]):
        return inner[0]
    if inner:  # message/rfc822 sent with a base64 / quoted-printable CTE: the parser saw no headers
        data = _decode_transfer(payload_bytes(inner[0], warnings), transfer_encoding(part))
    else:  # application/octet-stream (or anything) named postacert.eml
        data = payload_bytes(part, warnings)
    try:
        return parse_bytes(data)
    except MalformedMessage:
        warnings.append("postacert.eml is not a readable e-mail message; its content is ignored")
        return None


def _decode_transfer(data: bytes, cte: str) -> bytes:
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    if cte != "base64":
        return data
    try:
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        return base64.b64decode(clean + b"=" * (-len(clean) % 4))
    except (binascii.Error, ValueError):
        return data


def message_bytes(message: Message, warnings: list[str]) -> bytes | None:
    """Serialise a parsed message without refolding its headers (as close to the source as we can)."""
    out = policy.default.clone(refold_source="none", cte_type="8bit", max_line_length=0)
    try:
        return message.as_bytes(policy=out)
    except FAILURES as exc:
        warnings.append(f"the embedded message could not be re-serialised ({exc})")
        return None


def disposition(part: Message) -> str | None:
    """ "inline", "attachment" or None (absent or unreadable)."""
    try:
        return part.get_content_disposition()
    except FAILURES:
        return None


def safe_name(name: str) -> str:
    """A file name that is one printable path component: never a directory, never a dot-file.

    Path separators join the parts with ``_`` (``%E8/etc/passwd`` -> ``%E8_etc_passwd``) so a person
    still recognises the sender's name; ``.`` and ``..`` parts are dropped.
    """
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".", "..")]
    joined = "_".join(parts)
    return "".join(ch for ch in joined if ch.isprintable()).strip().lstrip(".")
