"""Byte-exact MIME assembly and S/MIME signing for the sandbox's PEC provider messages.

Owns the wire layout of provider-generated messages (CRLF, boundaries, transfer encodings) and the
detached PKCS#7 signature (cryptography's pkcs7 builder) over the signed part's exact bytes. It knows
nothing about PEC semantics: `envelope.py` decides what goes in.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from email.header import Header
from email.quoprimime import body_encode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from pecgateway.sandbox.ca import KeyPair

__all__ = [
    "Headers",
    "base64_body",
    "boundary_for",
    "crlf",
    "header_value",
    "multipart",
    "part",
    "quoted_printable",
    "signed_message",
]

Headers = Sequence[tuple[str, str]]

_CRLF = b"\r\n"
# real providers still say micalg="sha1"; cryptography's builder no longer signs with SHA-1
_HASHES: dict[str, hashes.HashAlgorithm] = {"sha-256": hashes.SHA256(), "sha-512": hashes.SHA512()}


def crlf(data: bytes) -> bytes:
    """Every line ending (LF, CR, CRLF) as CRLF."""
    return re.sub(rb"\r\n|\r|\n", _CRLF, data)


def header_value(value: str) -> str:
    """RFC 2047-encodes ``value`` when it is not plain ASCII."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _header_block(headers: Headers) -> bytes:
    return b"".join(
        f"{name}: {header_value(value)}".encode("ascii") + _CRLF for name, value in headers
    )


def part(headers: Headers, body: bytes) -> bytes:
    """One MIME entity: headers, a blank line, the (already encoded) body."""
    return _header_block(headers) + _CRLF + crlf(body)


def boundary_for(seed: bytes, style: str = "mixed") -> str:
    """A boundary derived from the content it separates, so it cannot occur inside it."""
    digest = hashlib.sha256(seed).hexdigest()
    if style == "signed":
        return "----" + digest[:32].upper()
    return f"----------=_{int(digest[:8], 16)}-{int(digest[8:12], 16)}-{int(digest[12:16], 16)}"


def multipart(
    content_type: str, parts: Sequence[bytes], extra: Headers = (), preamble: bytes = b""
) -> bytes:
    """A ``multipart/*`` entity holding ``parts``; ``content_type`` like ``multipart/mixed``."""
    boundary = boundary_for(b"".join(parts))
    marker = b"--" + boundary.encode("ascii")
    body = preamble
    for child in parts:
        body += marker + _CRLF + child + _CRLF
    body += marker + b"--" + _CRLF
    headers = [("Content-Type", f'{content_type}; boundary="{boundary}"'), *extra]
    return _header_block(headers) + _CRLF + body


def quoted_printable(text: str) -> bytes:
    """``text`` as ISO-8859-1 quoted-printable with CRLF line ends (unmappable characters as ?)."""
    latin = text.encode("iso-8859-1", errors="replace").decode("iso-8859-1")
    return body_encode(latin, maxlinelen=76, eol="\r\n").encode("ascii")


def base64_body(data: bytes, line_length: int = 76) -> bytes:
    encoded = base64.b64encode(data)
    lines = [encoded[i : i + line_length] for i in range(0, len(encoded), line_length)]
    return _CRLF.join(lines) + _CRLF


def _signature(content: bytes, signer: KeyPair, micalg: str) -> bytes:
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(signer.certificate, signer.private_key, _HASHES[micalg])  # type: ignore[arg-type]
    )
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    return builder.sign(serialization.Encoding.DER, options)


def signed_message(
    headers: Headers, content: bytes, signer: KeyPair, micalg: str = "sha-256"
) -> bytes:
    """A complete ``multipart/signed`` S/MIME message: ``headers``, ``content`` (a MIME entity,
    signed byte for byte) and a detached DER ``smime.p7s`` signed by ``signer``."""
    content = crlf(content)
    p7s = part(
        [
            ("Content-Type", 'application/x-pkcs7-signature; name="smime.p7s"'),
            ("Content-Transfer-Encoding", "base64"),
            ("Content-Disposition", 'attachment; filename="smime.p7s"'),
        ],
        base64_body(_signature(content, signer, micalg), 64),
    )
    boundary = boundary_for(content, "signed")
    marker = b"--" + boundary.encode("ascii")
    content_type = (
        f'multipart/signed; protocol="application/x-pkcs7-signature"; micalg="{micalg}"; '
        f'boundary="{boundary}"'
    )
    top = [*headers, ("MIME-Version", "1.0"), ("Content-Type", content_type)]
    body = b"This is an S/MIME signed message" + _CRLF + _CRLF
    body += marker + _CRLF + content + _CRLF + marker + _CRLF + p7s + _CRLF + marker + b"--" + _CRLF
    return _header_block(top) + _CRLF + body
