"""Signed CAdES envelopes for tests: a throwaway CA and signer, and every envelope variant of the field.

Keys and certificates are made with `cryptography` at test time (once per session) and never leave
the process, except to the openssl CLI in the cross-checks. Test-only: the product's sandbox owns
its own CA. Plain functions, bytes in and bytes out.
"""

from __future__ import annotations

import base64
import datetime
import functools
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

__all__ = [
    "SIGNER_SUBJECT",
    "Identity",
    "base64_text",
    "ber_indefinite",
    "constructed_octets",
    "corrupt_signer_infos",
    "der_envelope",
    "detached_envelope",
    "identity",
    "nested",
    "non_octet_content",
    "openssl_sign",
    "pem",
    "sample_xml",
    "truncate_in_signer_infos",
    "version3_keyid",
    "without_signers",
]

SIGNER_SUBJECT = (
    "CN=Mario Rossi, serialNumber=TINIT-RSSMRA80A01H501U, O=Rossi\\, Bianchi & C. S.n.c., C=IT"
)
_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Identity:
    """A throwaway CA and one signer certificate issued by it (with a subjectKeyIdentifier)."""

    ca_certificate: x509.Certificate
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def key_identifier(self) -> bytes:
        extension = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return extension.value.digest


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(signing_key, hashes.SHA256())


@functools.cache
def identity() -> Identity:
    """The session's test CA and signer (EC P-256: fast to make)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pecgateway test CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, "pecgateway throwaway qualified CA"),
        ]
    )
    ca_certificate = _certificate(ca_name, ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Rossi, Bianchi & C. S.n.c."),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "TINIT-RSSMRA80A01H501U"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Mario Rossi"),
        ]
    )
    return Identity(ca_certificate, _certificate(name, ca_name, key, ca_key, ca=False), key)


def sample_xml(*, progressivo: str = "00001") -> bytes:
    """A small FatturaPA-shaped document: enough for the envelope layer (not a valid invoice)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<p:FatturaElettronica versione="FPR12" '
        'xmlns:p="http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2">\n'
        "  <FatturaElettronicaHeader><DatiTrasmissione>"
        f"<ProgressivoInvio>{progressivo}</ProgressivoInvio>"
        "</DatiTrasmissione></FatturaElettronicaHeader>\n"
        "  <FatturaElettronicaBody><DatiGenerali><Causale>Caffè, è così</Causale>"
        "</DatiGenerali></FatturaElettronicaBody>\n"
        "</p:FatturaElettronica>\n"
    ).encode()


# ---- envelopes made by cryptography ----------------------------------------------------------------


def _sign(content: bytes, options: Sequence[pkcs7.PKCS7Options]) -> bytes:
    ident = identity()
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(ident.certificate, ident.key, hashes.SHA256())
        .add_certificate(ident.ca_certificate)
    )
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary, *options])


def der_envelope(content: bytes, *, certificates: bool = True, attributes: bool = True) -> bytes:
    """Enveloping CAdES-like SignedData in DER (what most signing tools write)."""
    options = [] if certificates else [pkcs7.PKCS7Options.NoCerts]
    return _sign(content, options if attributes else [*options, pkcs7.PKCS7Options.NoAttributes])


def detached_envelope(content: bytes) -> bytes:
    """A signature without the content (a .p7s saved as .p7m)."""
    return _sign(content, [pkcs7.PKCS7Options.DetachedSignature])


def nested(content: bytes, layers: int = 2, *, base64_inside: bool = False) -> bytes:
    """Signed again and again (BL-07); base64_inside: each inner envelope is base64 text."""
    data = der_envelope(content)
    for _ in range(layers - 1):
        data = der_envelope(base64_text(data, width=76) if base64_inside else data)
    return data


# ---- re-encodings: the same envelope in BER, chunked, v3 ------------------------------------------


def _header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes([tag, length])
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big")


def _split(der: bytes) -> list[tuple[int, bytes]]:
    """The (tag byte, contents) of the DER TLVs concatenated in der."""
    items, pos = [], 0
    while pos < len(der):
        tag, first = der[pos], der[pos + 1]
        start, length = pos + 2, first
        if first & 0x80:
            start = pos + 2 + (first & 0x7F)
            length = int.from_bytes(der[pos + 2 : start], "big")
        items.append((tag, der[start : start + length]))
        pos = start + length
    return items


def _tlv(item: tuple[int, bytes]) -> bytes:
    return _header(item[0], len(item[1])) + item[1]


def _definite(tag: int, parts: Sequence[bytes]) -> bytes:
    return _tlv((tag, b"".join(parts)))


def _indefinite(tag: int, parts: Sequence[bytes]) -> bytes:
    return bytes([tag, 0x80]) + b"".join(parts) + b"\x00\x00"


Wrap = Callable[[int, Sequence[bytes]], bytes]


def _respine(der: bytes, wrap: Wrap, chunk_size: int) -> bytes:
    """Re-encode ContentInfo > SignedData > encapContentInfo with wrap; content as OCTET STRING chunks."""
    [(_, info)] = _split(der)
    oid, explicit = _split(info)
    [(_, signed_data)] = _split(explicit[1])
    fields = _split(signed_data)
    content_oid, content_explicit = _split(fields[2][1])
    [(_, content)] = _split(content_explicit[1])
    chunks = [_tlv((0x04, content[i : i + chunk_size])) for i in range(0, len(content), chunk_size)]
    encapsulated = wrap(0x30, [_tlv(content_oid), wrap(0xA0, [wrap(0x24, chunks)])])
    body = [*map(_tlv, fields[:2]), encapsulated, *map(_tlv, fields[3:])]
    return wrap(0x30, [_tlv(oid), wrap(0xA0, [wrap(0x30, body)])])


def ber_indefinite(der: bytes, chunk_size: int = 1000) -> bytes:
    """BER as `openssl cms -stream` writes it: indefinite lengths, content in OCTET STRING chunks."""
    return _respine(der, _indefinite, chunk_size)


def constructed_octets(der: bytes, chunk_size: int = 100) -> bytes:
    """Definite lengths, but the content is a constructed OCTET STRING of small chunks."""
    return _respine(der, _definite, chunk_size)


def _with_signed_data_fields(der: bytes, edit: Callable[[list[tuple[int, bytes]]], None]) -> bytes:
    [(_, info)] = _split(der)
    oid, explicit = _split(info)
    [(_, signed_data)] = _split(explicit[1])
    fields = _split(signed_data)
    edit(fields)
    return _definite(
        0x30, [_tlv(oid), _definite(0xA0, [_definite(0x30, [_tlv(f) for f in fields])])]
    )


def version3_keyid(der: bytes) -> bytes:
    """SignedData version 3 whose signers are named by subjectKeyIdentifier (`openssl cms -keyid`)."""
    key_identifier = identity().key_identifier

    def rekey(fields: list[tuple[int, bytes]]) -> None:
        fields[0] = (0x02, b"\x03")
        infos = []
        for _, info in _split(fields[-1][1]):
            parts = _split(info)
            parts[0], parts[1] = (0x02, b"\x03"), (0x80, key_identifier)
            infos.append(_definite(0x30, [_tlv(part) for part in parts]))
        fields[-1] = (0x31, b"".join(infos))

    return _with_signed_data_fields(der, rekey)


def without_signers(der: bytes) -> bytes:
    """The same envelope with an empty SignerInfos set (nobody signed it)."""

    def drop(fields: list[tuple[int, bytes]]) -> None:
        fields[-1] = (0x31, b"")

    return _with_signed_data_fields(der, drop)


def non_octet_content(der: bytes) -> bytes:
    """PKCS#7-style: the content sits in the [0] as a UTF8String instead of an OCTET STRING."""

    def restyle(fields: list[tuple[int, bytes]]) -> None:
        content_oid, content_explicit = _split(fields[2][1])
        [(_, content)] = _split(content_explicit[1])
        wrapped = _definite(0xA0, [_tlv((0x0C, content))])
        fields[2] = (0x30, _tlv(content_oid) + wrapped)

    return _with_signed_data_fields(der, restyle)


# ---- damaged envelopes ---------------------------------------------------------------------------------


def truncate_in_signer_infos(der: bytes, cut: int = 40) -> bytes:
    """The file ends inside the SignerInfos: strict parsers fail, the content is intact."""
    return der[:-cut]


def corrupt_signer_infos(der: bytes) -> bytes:
    """The SignerInfos SET carries a wrong tag (OCTET STRING): strict parsers fail after the content."""

    def retag(fields: list[tuple[int, bytes]]) -> None:
        fields[-1] = (0x04, fields[-1][1])

    return _with_signed_data_fields(der, retag)


# ---- text encodings ------------------------------------------------------------------------------------


def base64_text(
    data: bytes,
    *,
    width: int | None = None,
    newline: bytes = b"\n",
    padding: bool = True,
    final_newline: bool = True,
) -> bytes:
    """base64 in any layout: one line (width None) or wrapped, LF/CRLF, with or without padding."""
    text = base64.b64encode(data)
    if not padding:
        text = text.rstrip(b"=")
    lines = [text] if width is None else [text[i : i + width] for i in range(0, len(text), width)]
    return newline.join(lines) + (newline if final_newline else b"")


def pem(data: bytes, label: str = "PKCS7") -> bytes:
    """PEM armour (-----BEGIN label-----), 64 columns."""
    body = base64_text(data, width=64)
    return f"-----BEGIN {label}-----\n".encode() + body + f"-----END {label}-----\n".encode()


# ---- openssl CLI cross-checks ---------------------------------------------------------------------------


def openssl_sign(content: bytes, workdir: Path, *options: str) -> bytes | None:
    """`openssl cms -sign -binary -nodetach -outform DER` plus options; None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    ident = identity()
    paths = {name: workdir / name for name in ("in.xml", "cert.pem", "key.pem", "out.p7m")}
    paths["in.xml"].write_bytes(content)
    paths["cert.pem"].write_bytes(ident.certificate.public_bytes(serialization.Encoding.PEM))
    paths["key.pem"].write_bytes(
        ident.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    command = [openssl, "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", *options]
    command += ["-in", str(paths["in.xml"]), "-signer", str(paths["cert.pem"])]
    command += ["-inkey", str(paths["key.pem"]), "-out", str(paths["out.p7m"])]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return paths["out.p7m"].read_bytes()
