"""Raw BER reading of a CMS SignedData envelope, byte by byte, without an ASN.1 library.

Owns the few tag-length-value steps that recognise a signedData ContentInfo and reach its
encapsulated OCTET STRING (primitive or chunked, definite or indefinite lengths), even when the
envelope is damaged after the content. Pure: bytes in, values out; raises only MalformedMessage.
"""

from __future__ import annotations

from pecgateway.errors import MalformedMessage

__all__ = [
    "MAX_CHUNKS",
    "MAX_DEPTH",
    "PKCS7_OID_PREFIX",
    "SIGNED_DATA_OID",
    "explicit_octets",
    "header_length",
    "is_signed_data",
    "walk_to_content",
]

MAX_DEPTH = 16  # constructed OCTET STRINGs inside each other
MAX_CHUNKS = 500_000  # OCTET STRING pieces of one content (openssl writes ~1 KB pieces)

PKCS7_OID_PREFIX = bytes.fromhex("06092a864886f70d0107")  # 1.2.840.113549.1.7.x, DER TLV
SIGNED_DATA_OID = PKCS7_OID_PREFIX + b"\x02"


def header_length(data: bytes) -> int | None:
    """Length of the tag+length header of the first TLV (tag in one byte), None if unusable."""
    if len(data) < 2:
        return None
    first = data[1]
    if first <= 0x80:
        return 2
    count = first & 0x7F
    return 2 + count if count <= 4 else None


def is_signed_data(data: bytes) -> bool:
    """A SEQUENCE whose first element is the signedData OID: a CMS SignedData ContentInfo."""
    if data[:1] != b"\x30":
        return False
    header = header_length(data)
    return header is not None and data[header : header + 11] == SIGNED_DATA_OID


def walk_to_content(data: bytes) -> bytes | None:
    """The encapsulated content found by a raw walk, whatever is broken after it."""
    start = data.find(PKCS7_OID_PREFIX, (header_length(data) or 2) + len(SIGNED_DATA_OID))
    if start < 0:
        return None
    return explicit_octets(data, start + len(SIGNED_DATA_OID))


def explicit_octets(data: bytes, pos: int) -> bytes | None:
    """The OCTET STRING (primitive or chunked) inside the [0] at pos; None if there is none."""
    wrapper = _tlv(data, pos)
    if wrapper is None or wrapper[0] != 0xA0:
        return None
    inner = _tlv(data, wrapper[1])
    if inner is None or inner[0] not in (0x04, 0x24):
        return None
    chunks: list[bytes] = []
    _collect_octets(data, wrapper[1], wrapper[2], 0, chunks)
    return b"".join(chunks)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int | None] | None:
    """(tag byte, start of the contents, end of the contents or None when indefinite)."""
    if pos + 2 > len(data) or data[pos] & 0x1F == 0x1F:
        return None
    tag, first = data[pos], data[pos + 1]
    if first == 0x80:
        return tag, pos + 2, None
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    if count > 4 or pos + 2 + count > len(data):
        return None
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _collect_octets(data: bytes, pos: int, end: int | None, depth: int, out: list[bytes]) -> int:
    """Append the OCTET STRING chunks from pos to end (None: to end-of-contents); return where it stopped."""
    limit = len(data) if end is None else min(end, len(data))
    while pos < limit:
        tlv = _tlv(data, pos)
        if tlv is None:
            break
        tag, body, body_end = tlv
        if tag == 0x00 and body_end == body:  # end-of-contents of an indefinite length
            return body
        if tag == 0x04 and body_end is not None:
            out.append(data[body : min(body_end, len(data))])
            pos = body_end
            if len(out) > MAX_CHUNKS:
                raise MalformedMessage(
                    f"the signed content is cut into more than {MAX_CHUNKS} pieces; no signing "
                    "tool does that: ask the sender for a new copy"
                )
        elif tag == 0x24 and depth < MAX_DEPTH:  # constructed OCTET STRING: chunks
            pos = max(body, _collect_octets(data, body, body_end, depth + 1, out))
        else:
            break
    return pos if end is None else end
