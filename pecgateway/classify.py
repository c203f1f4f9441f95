"""What a file or message is: raw bytes in, the ``inspect`` tree out (contracts.md section 1).

Decides by content, never by the name alone, and composes the parsers (pec, p7m, invoice, sdi); opens
zip archives within fixed bounds. Total: ``classify`` never raises; a parser's ``MalformedMessage``
becomes a ``malformed`` node, and any other exception (a parser bug) is flagged ``internal_error``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from pecgateway import filename as sdi_filename
from pecgateway import invoice, p7m, pec, safexml, sdi
from pecgateway.errors import MalformedMessage
from pecgateway.invoice import Invoice
from pecgateway.p7m import Signer
from pecgateway.pec import PecMessage
from pecgateway.sdi import Notification

__all__ = [
    "MAX_ENTRIES",
    "MAX_ENTRY_BYTES",
    "MAX_NESTING",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "Kind",
    "Node",
    "classify",
    "walk",
]

MAX_ENTRIES = 100
MAX_ENTRY_BYTES = 50 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_RATIO = 200
MAX_NESTING = 3  # containers (zip, mail) are opened at depth 0..3 only
_RATIO_FLOOR_BYTES = 1024  # entries this small cannot be bombs, whatever their ratio
_MAX_DEPTH = 8  # any recursion (p7m payloads, base64 layers) stops here

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_HEADER = re.compile(rb"([!-9;-~]{1,76}):")
_MAIL_HEADERS = frozenset(
    b"from to cc subject date message-id mime-version received return-path content-type "
    b"reply-to delivered-to x-trasporto x-ricevuta x-riferimento-message-id".split()
)
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]+")
_SIGNED_SUFFIX = re.compile(r"\.(p7m|pk7)$", re.IGNORECASE)
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


class Kind(enum.Enum):
    """The ``kind`` of contracts.md section 1."""

    INVOICE = "invoice"
    NOTIFICATION = "sdi-notification"
    PEC = "pec"
    EMAIL = "email"
    ARCHIVE = "archive"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Node:
    """One classified file; ``data`` is the bytes given, ``payload`` the unwrapped content of a p7m.

    ``internal_error`` is True only when a parser raised something other than MalformedMessage: a
    bug to fix, never expected (the property tests assert it never happens).
    """

    kind: Kind
    filename: str | None
    sha256: str
    data: bytes
    payload: bytes | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    invoice: Invoice | None = None
    signers: tuple[Signer, ...] = ()
    signed: bool = False
    notification: Notification | None = None
    pec: PecMessage | None = None
    contents: tuple[Node, ...] = ()
    internal_error: bool = False


def walk(node: Node) -> Iterator[Node]:
    """The node and all nodes below it, depth first."""
    yield node
    for child in node.contents:
        yield from walk(child)


def classify(data: bytes, filename: str | None = None, *, depth: int = 0) -> Node:
    """Tell what ``data`` is; never raises."""
    try:
        return _classify(data, filename, depth)
    except MalformedMessage as exc:
        return _failed(Kind.MALFORMED, data, filename, exc.reason)
    except Exception as exc:  # noqa: BLE001 -- a parser bug: report it, never crash the caller
        reason = f"internal error: {type(exc).__name__}: {exc}; please report this file as a bug"
        return replace(_failed(Kind.MALFORMED, data, filename, reason), internal_error=True)


# ---- dispatch -------------------------------------------------------------------------------------


def _classify(data: bytes, filename: str | None, depth: int) -> Node:
    if depth > _MAX_DEPTH:
        return _failed(Kind.MALFORMED, data, filename, "content nested too deeply to be opened")
    if not data or data.isspace():
        return _failed(Kind.MALFORMED, data, filename, "empty file: there is nothing to read")
    for sniff, handler in _HANDLERS:
        if sniff(data):
            return handler(data, filename, depth)
    if filename and _SIGNED_SUFFIX.search(filename):
        reason = "named like a signed file (.p7m) but is neither a signed envelope nor XML"
        return _failed(Kind.MALFORMED, data, filename, reason)
    reason = "not an invoice, a signed file, an SDI notification, an e-mail or a zip archive"
    return _failed(Kind.UNKNOWN, data, filename, reason)


def _node(kind: Kind, data: bytes, filename: str | None) -> Node:
    return Node(kind=kind, filename=filename, sha256=hashlib.sha256(data).hexdigest(), data=data)


def _failed(kind: Kind, data: bytes, filename: str | None, reason: str) -> Node:
    return replace(_node(kind, data, filename), error=reason)


def _strip_head(data: bytes) -> bytes:
    head = data[:4096]
    for bom in _BOMS:
        head = head.removeprefix(bom)
    return head.lstrip(b" \t\r\n\x00")


def _is_zip(data: bytes) -> bool:
    return data.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _is_xml(data: bytes) -> bool:
    return _strip_head(data).startswith(b"<")


def _is_junk_prefixed_xml(data: bytes) -> bool:
    return b"<?xml" in data[:256]


def _is_mail(data: bytes) -> bool:
    lines = data[:65536].split(b"\n", 200)[:200]
    if lines[0].startswith(b"From "):  # mbox separator line
        lines = lines[1:]
    names: list[bytes] = []
    for raw in lines:
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t") and names:
            continue
        match = _HEADER.match(line)
        if match is None:
            return False
        names.append(match.group(1).lower())
    return any(name in _MAIL_HEADERS for name in names)


def _is_base64_xml(data: bytes) -> bool:
    """Base64 text (any line layout) whose first bytes decode to XML; only the head is decoded."""
    head = b"".join(data[:8192].split())[:4096]
    if len(head) < 8 or _BASE64.fullmatch(head) is None:
        return False
    decoded = _decode_base64(head[: len(head) // 4 * 4])
    return decoded is not None and _is_xml(decoded)


def _decode_base64(text: bytes) -> bytes | None:
    """Strict alphabet, but tolerant of line breaks and of missing ``=`` padding (field quirk Q3)."""
    compact = b"".join(text.split()).rstrip(b"=")
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# ---- XML: invoices and notifications ----------------------------------------------------------------


def _classify_xml(data: bytes, filename: str | None, depth: int) -> Node:
    name, broken = _root_name(data)
    by_name = filename is not None and sdi_filename.parse_notification_name(filename) is not None
    warnings: tuple[str, ...] = ()
    if filename and _SIGNED_SUFFIX.search(filename):
        warnings = ("named like a signed file (.p7m) but holds plain XML: it is not signed",)
    if name is not None and invoice.is_invoice_root(name):
        return _with_warnings(_invoice_node(data, filename), warnings)
    if (name is not None and sdi.root_type(name) is not None) or by_name:
        return _with_warnings(_notification_node(data, filename), warnings)
    if broken is not None:
        return _failed(Kind.MALFORMED, data, filename, broken)
    reason = f"XML with root element {name} is neither an invoice nor an SDI notification"
    return _failed(Kind.UNKNOWN, data, filename, reason)


def _root_name(data: bytes) -> tuple[str | None, str | None]:
    """The root's local name (recovering if need be) and, if strict parsing fails, why."""
    try:
        clean, _ = invoice.decode_text(data)
    except MalformedMessage as exc:
        return None, exc.reason
    try:
        return safexml.local_name(safexml.parse(clean)), None
    except MalformedMessage as exc:
        broken = exc.reason
    try:
        name = safexml.local_name(safexml.parse_recovering(clean)).rsplit(":", 1)[-1]
    except MalformedMessage:
        return None, broken
    return name or None, broken


def _invoice_node(data: bytes, filename: str | None) -> Node:
    parsed = invoice.parse(data)
    return replace(_node(Kind.INVOICE, data, filename), invoice=parsed, warnings=parsed.warnings)


def _notification_node(data: bytes, filename: str | None) -> Node:
    parsed = sdi.parse(data, filename)
    node = _node(Kind.NOTIFICATION, data, filename)
    return replace(node, notification=parsed, warnings=parsed.warnings, signed=parsed.signed)


def _with_warnings(node: Node, warnings: tuple[str, ...]) -> Node:
    return replace(node, warnings=warnings + node.warnings) if warnings else node


def _classify_base64_xml(data: bytes, filename: str | None, depth: int) -> Node:
    decoded = _decode_base64(data)
    if decoded is None:
        reason = "base64 text of an XML file, but damaged: it cannot be decoded"
        return _failed(Kind.MALFORMED, data, filename, reason)
    inner = classify(decoded, filename, depth=depth + 1)
    note = "the content is base64 text of an XML file; decoded it"
    return replace(
        inner,
        data=data,
        sha256=_node(inner.kind, data, None).sha256,
        payload=decoded,
        warnings=(note, *inner.warnings),
    )


# ---- p7m envelopes -------------------------------------------------------------------------------------


def _classify_envelope(data: bytes, filename: str | None, depth: int) -> Node:
    try:
        unwrapped = p7m.unwrap(data)
    except MalformedMessage as exc:
        return _failed(
            Kind.MALFORMED, data, filename, f"cannot extract the signed content: {exc.reason}"
        )
    inner_name = _SIGNED_SUFFIX.sub("", filename) if filename else None
    inner = classify(unwrapped.payload, inner_name, depth=depth + 1)
    signers = tuple(signer for layer in unwrapped.layers for signer in layer)
    node = replace(
        inner,
        filename=filename,
        data=data,
        sha256=_node(inner.kind, data, None).sha256,
        payload=unwrapped.payload,
        signers=signers,
        signed=unwrapped.signed or inner.signed,
        warnings=unwrapped.warnings + inner.warnings,
    )
    if inner.kind is Kind.MALFORMED:
        return replace(node, error=f"the signed content cannot be read: {inner.error}")
    if inner.kind is Kind.UNKNOWN:
        who = "; ".join(s.subject for s in signers) or "an unnamed signer"
        reason = f"signed by {who}, but the signed content is not an invoice ({inner.error})"
        return replace(node, error=reason)
    return node


# ---- mail ---------------------------------------------------------------------------------------------


def _classify_mail(data: bytes, filename: str | None, depth: int) -> Node:
    if depth > MAX_NESTING:
        return _failed(Kind.MALFORMED, data, filename, "e-mail nested too deeply to be opened")
    message = pec.parse(data)
    kind = Kind.EMAIL if message.type is None else Kind.PEC
    contents = tuple(
        classify(item.data, _safe_name(item.filename, n), depth=depth + 1)
        for n, item in enumerate(message.attachments, 1)
    )
    node = _node(kind, data, filename)
    return replace(node, pec=message, warnings=message.warnings, contents=contents)


# ---- zip ----------------------------------------------------------------------------------------------


def _safe_name(name: str | None, number: int) -> str:
    base = re.split(r"[/\\]", name or "")[-1]
    base = _UNSAFE_NAME_CHARS.sub("", base).strip().lstrip(".")
    return base[:255] or f"entry-{number}"


def _classify_zip(data: bytes, filename: str | None, depth: int) -> Node:
    if depth > MAX_NESTING:
        return _failed(Kind.MALFORMED, data, filename, "archive nested too deeply to be opened")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = _read_entries(archive)
    except _ZIP_ERRORS as exc:
        return _failed(Kind.MALFORMED, data, filename, f"not a readable zip archive: {exc}")
    except _LimitExceeded as exc:
        return _failed(Kind.MALFORMED, data, filename, f"zip archive refused: {exc}")
    contents = tuple(
        entry if isinstance(entry, Node) else classify(entry[1], entry[0], depth=depth + 1)
        for entry in entries
    )
    return replace(_node(Kind.ARCHIVE, data, filename), contents=contents)


class _LimitExceeded(Exception):
    """A zip archive over one of the bounds (entries, sizes, ratio)."""


def _read_entries(archive: zipfile.ZipFile) -> list[Node | tuple[str, bytes]]:
    infos = [info for info in archive.infolist() if not info.is_dir()]
    if len(infos) > MAX_ENTRIES:
        raise _LimitExceeded(f"{len(infos)} entries, more than {MAX_ENTRIES}")
    entries: list[Node | tuple[str, bytes]] = []
    total = 0
    for number, info in enumerate(infos, 1):
        name = _safe_name(info.filename, number)
        if info.flag_bits & 0x1:
            entries.append(
                _failed(Kind.MALFORMED, b"", name, "encrypted zip entry: cannot be read")
            )
            continue
        content = _read_entry(archive, info, name)
        if isinstance(content, Node):
            entries.append(content)
            continue
        total += len(content)
        if total > MAX_TOTAL_BYTES:
            raise _LimitExceeded(f"more than {MAX_TOTAL_BYTES} bytes once uncompressed")
        entries.append((name, content))
    return entries


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes | Node:
    try:
        with archive.open(info) as stream:
            content = stream.read(MAX_ENTRY_BYTES + 1)
    except _ZIP_ERRORS as exc:
        return _failed(Kind.MALFORMED, b"", name, f"zip entry cannot be extracted: {exc}")
    if len(content) > MAX_ENTRY_BYTES:
        raise _LimitExceeded(f"entry {name} is larger than {MAX_ENTRY_BYTES} bytes uncompressed")
    ratio = len(content) / max(info.compress_size, 1)
    if len(content) > _RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
        raise _LimitExceeded(f"entry {name} expands {ratio:.0f} times (limit {MAX_RATIO})")
    return content


_Handler = Callable[[bytes, "str | None", int], Node]
_HANDLERS: tuple[tuple[Callable[[bytes], bool], _Handler], ...] = (
    (_is_zip, _classify_zip),
    (_is_xml, _classify_xml),
    (_is_mail, _classify_mail),
    (_is_base64_xml, _classify_base64_xml),
    (p7m.looks_like_envelope, _classify_envelope),
    (_is_junk_prefixed_xml, _classify_xml),
)
