"""CAdES ``.p7m`` envelopes: take out the signed content, whatever the encoding, and name the signers.

Decides by content, never by file name: DER or BER CMS SignedData, base64 in any layout (also encoded
more than once), PEM armour, nested envelopes, damaged ones (content recovered by `ber`'s raw walk).
Pure: bytes in, values out; raises only MalformedMessage. Never verifies signatures.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from asn1crypto import cms, core, parser, x509

from pecgateway import ber
from pecgateway.errors import MalformedMessage

__all__ = [
    "MAX_BASE64_PEELS",
    "MAX_INPUT_BYTES",
    "MAX_LAYERS",
    "PLAIN_XML_WARNING",
    "Signer",
    "Unwrapped",
    "looks_like_envelope",
    "unwrap",
]

MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_BASE64_PEELS = 4  # base64 inside base64 inside ...: more than this is not a real file
MAX_LAYERS = 5  # envelopes inside envelopes

PLAIN_XML_WARNING = "not signed: plain XML in a file named like a signed envelope (.p7m)"

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_PEM = re.compile(rb"-----BEGIN [^\r\n]*?-----(.*?)(?:-----END [^\r\n]*?-----|\Z)", re.DOTALL)
_WHITESPACE = re.compile(rb"\s+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+")
_ROOT_START = re.compile(rb"\s*<([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)[\s/>]")
_PROLOG_ITEM = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->)", re.DOTALL)

# What asn1crypto raises on bad input (it parses lazily, so these surface on access).
_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


@dataclass(frozen=True, slots=True)
class Signer:
    """One signer of one envelope layer, as written in the envelope (not verified)."""

    subject: str  # "CN=..., O=..., C=IT", most specific first
    signing_time: str | None  # ISO 8601 from the signed attributes, when present


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """The innermost content and what it took to reach it."""

    payload: bytes
    layers: tuple[tuple[Signer, ...], ...]  # one tuple of signers per envelope, outermost first
    warnings: tuple[str, ...]

    @property
    def signed(self) -> bool:
        return bool(self.layers)


# ---- asn1crypto specs: the content is taken raw, whatever PKCS#7 or CMS says it should be ----------


class _Encapsulated(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("content_type", cms.ContentType),
        ("content", core.Any, {"explicit": 0, "optional": True}),
    ]


class _SignedData(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("version", cms.CMSVersion),
        ("digest_algorithms", cms.DigestAlgorithms),
        ("encap_content_info", _Encapsulated),
        ("certificates", cms.CertificateSet, {"implicit": 0, "optional": True}),
        ("crls", cms.RevocationInfoChoices, {"implicit": 1, "optional": True}),
        ("signer_infos", cms.SignerInfos),
    ]


class _ContentInfo(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("content_type", cms.ContentType),
        ("content", core.Any, {"explicit": 0, "optional": True}),
    ]


# ---- public API ----------------------------------------------------------------------------------


def looks_like_envelope(data: bytes) -> bool:
    """True when the bytes are (or base64/PEM-decode to) a CMS SignedData envelope; never raises."""
    if len(data) > MAX_INPUT_BYTES:
        return False
    found = _sniff(data)
    return found is not None and ber.is_signed_data(found[0])


def unwrap(data: bytes) -> Unwrapped:
    """Open every envelope layer and return the innermost content; raise MalformedMessage if none."""
    _check_input(data)
    layers: list[tuple[Signer, ...]] = []
    warnings: list[str] = []
    current = data
    while True:
        found = _sniff(current)
        if found is None:
            if not layers:
                raise MalformedMessage(_explain_unknown(current))
            return _result(current, layers, warnings)
        current, notes = found
        warnings.extend(notes)
        if not ber.is_signed_data(current):
            if not layers:
                warnings.append(PLAIN_XML_WARNING)
            return _result(current, layers, warnings)
        if len(layers) == MAX_LAYERS:
            raise MalformedMessage(
                f"more than {MAX_LAYERS} envelopes nested inside each other; this is not a file "
                "a supplier would send: ask the sender for a new copy"
            )
        current, signers, notes = _open_layer(current)
        layers.append(signers)
        warnings.extend(notes)


def _result(payload: bytes, layers: list[tuple[Signer, ...]], warnings: list[str]) -> Unwrapped:
    if len(layers) > 1:
        warnings.append(f"p7m inside p7m: {len(layers)} envelope layers opened")
    return Unwrapped(payload, tuple(layers), tuple(warnings))


def _check_input(data: bytes) -> None:
    if len(data) > MAX_INPUT_BYTES:
        raise MalformedMessage(
            f"the file is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MB; no invoice is that "
            "large: check that this is the right file"
        )
    if not data:
        raise MalformedMessage("the file is empty (0 bytes): ask the sender to send it again")
    if not data.strip():
        raise MalformedMessage(
            "the file holds only blanks, no signed envelope: ask the sender to send it again"
        )


def _explain_unknown(data: bytes) -> str:
    if data[:1] == b"\x30":
        return (
            "binary ASN.1 data, but not a CMS signed-data envelope (.p7m): ask the sender for the "
            "signed invoice file"
        )
    return (
        "not a signed envelope: neither DER/BER CMS, base64, PEM nor XML; the file may be "
        "damaged or of another kind: ask the sender for a new copy"
    )


# ---- sniffing: envelope prefix, XML, base64 text ---------------------------------------------------


def _is_xml(data: bytes) -> bool:
    for bom in _BOMS:
        if data.startswith(bom):
            data = data[len(bom) :]
            break
    data = data.lstrip(b" \t\r\n\x00")
    return data[:1] == b"<"


def _sniff(data: bytes) -> tuple[bytes, list[str]] | None:
    """The envelope or XML the bytes are, or decode to through base64/PEM layers; else None."""
    notes: list[str] = []
    current, peels = data, 0
    while not (ber.is_signed_data(current) or _is_xml(current)):
        if ber.is_signed_data(stripped := current.lstrip(b" \t\r\n\x00")):
            notes.append(
                f"ignored {len(current) - len(stripped)} blank byte(s) before the envelope"
            )
            current = stripped
            continue
        decoded = _decode_base64_text(current) if peels < MAX_BASE64_PEELS else None
        if decoded is None:
            return None
        current, armoured = decoded
        peels += 1
        if armoured:
            notes.append("removed PEM armour (-----BEGIN ...-----)")
    if peels:
        notes.append(_peel_note(peels))
    return current, notes


def _peel_note(peels: int) -> str:
    if peels == 1:
        return "base64-decoded (the envelope was sent as base64 text)"
    counts = {2: "twice", 3: "three times"}
    return f"base64-decoded {counts.get(peels, f'{peels} times')} (base64 inside base64)"


def _decode_base64_text(data: bytes) -> tuple[bytes, bool] | None:
    """Decode base64 in any layout (lines, CRLF, blanks, no padding, PEM); None if it is not base64."""
    text = data[3:] if data.startswith(_BOMS[0]) else data
    armour = _PEM.search(text)
    if armour is not None:
        lines = armour.group(1).splitlines()
        text = b"".join(line for line in lines if b":" not in line)  # drop RFC 1421 headers
    text = _WHITESPACE.sub(b"", text).translate(bytes.maketrans(b"-_", b"+/")).rstrip(b"=")
    if not text or len(text) % 4 == 1 or not _BASE64.fullmatch(text):
        return None
    # The checks above leave only well-formed base64: decoding cannot fail.
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True), armour is not None


# ---- one envelope layer ------------------------------------------------------------------------------


def _open_layer(data: bytes) -> tuple[bytes, tuple[Signer, ...], list[str]]:
    """Content, signers and notes of one SignedData envelope (strict first, then a raw BER walk)."""
    try:
        info = _ContentInfo.load(data, strict=False)
        signed_data = info["content"].parse(_SignedData)
        content = _encapsulated_content(signed_data["encap_content_info"])
        consumed = _encoded_length(data)
    except _ASN1_ERRORS as exc:
        return _recover_layer(data, _first_line(exc))
    notes = []
    if consumed < len(data):
        notes.append(f"ignored {len(data) - consumed} byte(s) of trailing data after the envelope")
    signers, signer_notes = _signers(signed_data)
    return content, signers, notes + signer_notes


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _encoded_length(data: bytes) -> int:
    """How many bytes the outermost TLV takes (BER indefinite lengths included)."""
    _, _, _, header, contents, trailer = parser.parse(data, strict=False)
    return len(header) + len(contents) + len(trailer)


def _encapsulated_content(encapsulated: _Encapsulated) -> bytes:
    value = encapsulated["content"]
    if isinstance(value, core.Void) or value.contents is None:
        raise MalformedMessage(
            "detached signature: the .p7m holds no content, only the signature; ask the sender "
            "for the enveloping (.xml.p7m) file that contains the invoice"
        )
    encoded = value._header + value.contents + value._trailer  # as read: BER stays BER
    content = ber.explicit_octets(encoded, 0)
    if content is None:
        raise MalformedMessage(
            "the envelope's content is not an OCTET STRING (an unusual PKCS#7 form this reader "
            "does not open); ask the sender for a standard CAdES .p7m"
        )
    if not content:
        raise MalformedMessage(
            "the envelope's signed content is empty: there is no invoice inside; ask the sender "
            "for a new copy"
        )
    return content


# ---- signers (read, never verified; a problem here never blocks the content) ---------------------

_NAME_KEYS = {  # asn1crypto's attribute names -> the short names people know (as OpenSSL)
    "common_name": "CN",
    "surname": "SN",
    "given_name": "GN",
    "serial_number": "serialNumber",
    "title": "title",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "organization_identifier": "organizationIdentifier",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "street_address": "STREET",
    "country_name": "C",
    "domain_component": "DC",
    "email_address": "emailAddress",
    "dn_qualifier": "dnQualifier",
    "pseudonym": "pseudonym",
    "user_id": "UID",
}
_RFC4514_SPECIAL = re.compile(r'([\\"+,;<>])')


def _signers(signed_data: _SignedData) -> tuple[tuple[Signer, ...], list[str]]:
    try:
        certificates = _certificates(signed_data)
        signers = tuple(_signer(info, certificates) for info in signed_data["signer_infos"])
    except _ASN1_ERRORS as exc:
        reason = _first_line(exc)
        return (), [f"signer information unreadable ({reason}); the content was extracted anyway"]
    if not signers:
        return (), ["the envelope names no signer"]
    return signers, []


def _certificates(signed_data: _SignedData) -> list[x509.Certificate]:
    choices = signed_data["certificates"]
    if isinstance(choices, core.Void):
        return []
    return [choice.chosen for choice in choices if choice.name == "certificate"]


def _signer(info: cms.SignerInfo, certificates: list[x509.Certificate]) -> Signer:
    sid = info["sid"]
    certificate = next((cert for cert in certificates if _identifies(sid, cert)), None)
    subject = _unknown_signer(sid) if certificate is None else _rfc4514(certificate.subject)
    return Signer(subject=subject, signing_time=_signing_time(info))


def _identifies(sid: cms.SignerIdentifier, certificate: x509.Certificate) -> bool:
    try:
        if sid.name == "subject_key_identifier":
            return bool(certificate.key_identifier == sid.chosen.native)
        chosen = sid.chosen
        return bool(
            certificate.serial_number == chosen["serial_number"].native
            and certificate.issuer == chosen["issuer"]
        )
    except _ASN1_ERRORS:
        return False


def _unknown_signer(sid: cms.SignerIdentifier) -> str:
    if sid.name == "subject_key_identifier":
        return f"unknown signer (certificate not in the envelope; key id {sid.chosen.native.hex()})"
    chosen = sid.chosen
    issuer = _rfc4514(chosen["issuer"])
    serial = chosen["serial_number"].native
    return f"unknown signer (certificate not in the envelope; issuer {issuer}, serial {serial})"


def _signing_time(info: cms.SignerInfo) -> str | None:
    for attribute in info["signed_attrs"]:
        if attribute["type"].native == "signing_time":
            value = attribute["values"][0].native
            return value.isoformat() if isinstance(value, datetime) else None
    return None


def _rfc4514(name: x509.Name) -> str:
    """``CN=Mario Rossi, O=Example, C=IT``: most specific first, RFC 4514 escaping."""
    rdns = ("+".join(_attribute(pair) for pair in rdn) for rdn in reversed(name.chosen))
    return ", ".join(rdns)


def _attribute(pair: x509.NameTypeAndValue) -> str:
    kind = pair["type"]
    key = _NAME_KEYS.get(kind.native, kind.dotted)
    value = pair["value"].native
    if not isinstance(value, str):
        return f"{key}=#{pair['value'].dump().hex()}"
    escaped = _RFC4514_SPECIAL.sub(r"\\\1", value).replace("\x00", "\\00")
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return f"{key}={escaped}"


# ---- damaged envelopes: the content from ber.walk_to_content, junk after the root cut ----------


def _recover_layer(data: bytes, reason: str) -> tuple[bytes, tuple[Signer, ...], list[str]]:
    content = ber.walk_to_content(data)
    if not content:
        raise MalformedMessage(
            f"damaged signed envelope ({reason}) and no content could be recovered from it; "
            "ask the sender for a new copy"
        )
    notes = [f"damaged envelope ({reason}): content recovered by a raw BER walk, signers unknown"]
    content, cut = _cut_after_root(content)
    if cut:
        notes.append(f"removed {cut} byte(s) of junk after the XML root element's end tag")
    return content, (), notes


def _cut_after_root(content: bytes) -> tuple[bytes, int]:
    """Drop junk after the XML root element's end tag; (content, bytes removed)."""
    name = _root_name(content)
    if name is None:
        return content, 0
    end_tag = re.compile(rb"</" + re.escape(name) + rb"\s*>")
    pos = content.rfind(b"</" + name)
    while pos >= 0:
        match = end_tag.match(content, pos)
        if match is not None:
            tail = content[match.end() :]
            return (content, 0) if not tail.strip() else (content[: match.end()], len(tail))
        pos = content.rfind(b"</" + name, 0, pos)
    return content, 0


def _root_name(content: bytes) -> bytes | None:
    if not _is_xml(content):
        return None
    text = content[3:] if content.startswith(_BOMS[0]) else content
    pos = len(text) - len(text.lstrip(b" \t\r\n\x00"))
    while (item := _PROLOG_ITEM.match(text, pos)) is not None:
        pos = item.end()
    root = _ROOT_START.match(text, pos)
    return None if root is None else root.group(1)
