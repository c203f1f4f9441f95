"""Tolerant reading of FatturaPA invoices (FPA12, FPR12, FSM10, the old SDI10/SDI11) for inbound files.

Owns the repairs real files need (BOMs, junk before the root, wrong or missing encodings, bad namespace
URIs) and the facts ``inspect`` shows. Never validates: that is ``validate``'s job for what we send.
Pure: bytes in, an ``Invoice`` out, or ``MalformedMessage``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from pecgateway import safexml
from pecgateway.errors import MalformedMessage

__all__ = ["Document", "Invoice", "Party", "decode_text", "is_invoice_root", "parse"]

_INVOICE_ROOTS = frozenset({"FatturaElettronica", "FatturaElettronicaSemplificata"})
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_LEADING_JUNK = b" \t\r\n\x00"
_DECLARATION = re.compile(r"<\?xml\b[^>]*?\?>")
_ENCODING = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")
_FORMAT = re.compile(r"F[A-Z]{2}\d{2}")
_OLD_VERSIONS = {"1.0": "SDI10", "1.1": "SDI11"}


@dataclass(frozen=True, slots=True)
class Party:
    """Seller (CedentePrestatore) or buyer (CessionarioCommittente)."""

    vat: str | None
    codice_fiscale: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class Document:
    """The DatiGeneraliDocumento of one FatturaElettronicaBody."""

    tipo_documento: str | None
    numero: str | None
    data: str | None
    importo_totale: str | None
    divisa: str | None


@dataclass(frozen=True, slots=True)
class Invoice:
    """The facts of one invoice file; ``warnings`` lists every repair made to read it."""

    format: str
    versione: str | None
    formato_trasmissione: str | None
    transmitter: str | None
    progressivo_invio: str | None
    codice_destinatario: str | None
    pec_destinatario: str | None
    seller: Party
    buyer: Party
    documents: tuple[Document, ...]
    warnings: tuple[str, ...]

    @property
    def flow(self) -> str:
        """``PA`` for FPA12 and the old PA-only SDI10/SDI11 formats, else ``B2B``."""
        return "PA" if self.format.startswith(("FPA", "SDI")) else "B2B"


# ---- decoding ------------------------------------------------------------------------------------


def decode_text(data: bytes) -> tuple[bytes, tuple[str, ...]]:
    """Clean UTF-8 bytes starting at the first ``<``, without XML declaration, plus the repairs made.

    Strips BOMs (also several), leading whitespace, NULs and junk; decodes BOM'd UTF-16; honours the
    declared encoding; falls back to cp1252 when the bytes are not valid in the declared (or default)
    encoding. Raises MalformedMessage when there is no markup at all.
    """
    warnings: list[str] = []
    if data.startswith(_UTF16_BOMS):
        data = _from_utf16(data)
        warnings.append("decoded UTF-16 document")
    data = _strip_leading(data, warnings)
    declared = _declared_encoding(data)
    text = _decode(data, declared, warnings)
    text = _DECLARATION.sub("", text, count=1) if text.startswith("<?xml") else text
    return text.encode("utf-8"), tuple(warnings)


def _from_utf16(data: bytes) -> bytes:
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(
            f"starts with a UTF-16 byte order mark but is not UTF-16: {exc}"
        ) from exc


def _strip_leading(data: bytes, warnings: list[str]) -> bytes:
    boms = 0
    while True:
        stripped = data.lstrip(_LEADING_JUNK)
        if not stripped.startswith(_UTF8_BOM):
            break
        data = stripped[len(_UTF8_BOM) :]
        boms += 1
    if boms:
        warnings.append("stripped UTF-8 BOM" if boms == 1 else f"stripped {boms} UTF-8 BOMs")
    start = stripped.find(b"<")
    if start < 0:
        raise MalformedMessage("no XML markup found: the content has no '<' at all")
    if start:
        warnings.append(f"dropped {start} byte(s) of junk before the first '<'")
    return stripped[start:]


def _declared_encoding(data: bytes) -> str | None:
    head = data[:200].decode("latin-1")
    declaration = _DECLARATION.match(head)
    if declaration is None:
        return None
    encoding = _ENCODING.search(declaration.group())
    return encoding.group(1).strip() if encoding else None


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL inside the declared name
        return None


def _decode(data: bytes, declared: str | None, warnings: list[str]) -> str:
    codec = _codec(declared) if declared else "utf-8"
    if codec is None:
        warnings.append(f"unknown encoding {declared!r} declared: read as UTF-8")
    elif codec != "utf-8":
        try:
            text = data.decode(codec)
        except (UnicodeError, LookupError, ValueError):
            text = ""
        if text.startswith("<"):
            warnings.append(f"converted from the declared {declared} to UTF-8")
            return text
        warnings.append(f"declared encoding {declared!r} does not fit the bytes: read as UTF-8")
        declared = None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_8bit(data, declared, warnings)


def _decode_8bit(data: bytes, declared: str | None, warnings: list[str]) -> str:
    try:
        text, used = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        text, used = data.decode("latin-1"), "latin-1"
    if declared is None:
        warnings.append(f"no encoding declared and not valid UTF-8: decoded as {used}")
    else:
        shown = "UTF-8" if _codec(declared) == "utf-8" else declared
        warnings.append(f"declared {shown} but not valid {shown}: decoded as {used}")
    return text


# ---- parsing -------------------------------------------------------------------------------------

_BAD_NAMESPACES: tuple[tuple[re.Pattern[bytes], bytes, str], ...] = (
    (
        re.compile(rb'(\sxmlns(?::[\w.-]+)?\s*=\s*"[^"<]*?)&quot;"'),
        rb'\1"',
        "removed an escaped quote (&quot;) from a namespace URI",
    ),
    (
        re.compile(rb'\sxmlns:schemaLocation\s*=\s*"[^"<]*"'),
        b"",
        "removed a stray xmlns:schemaLocation declaration",
    ),
)
_SPACED_NAMESPACE = re.compile(rb'(\sxmlns(?::[\w.-]+)?\s*=\s*")([^"<]*\s[^"<]*)(")')


def _clean_namespaces(data: bytes) -> tuple[bytes, list[str]]:
    fixes: list[str] = []
    for pattern, replacement, note in _BAD_NAMESPACES:
        data, count = pattern.subn(replacement, data)
        if count:
            fixes.append(note)
    data, count = _SPACED_NAMESPACE.subn(
        lambda m: m[1] + re.sub(rb"\s+", b"%20", m[2].strip()) + m[3], data
    )
    if count:
        fixes.append("replaced spaces in a namespace URI")
    return data, fixes


def _parse_tree(text: bytes, warnings: list[str]) -> etree._Element:
    try:
        return safexml.parse(text)
    except MalformedMessage as strict_error:
        cleaned, fixes = _clean_namespaces(text)
        try:
            root = safexml.parse_recovering(cleaned)
        except MalformedMessage:
            raise MalformedMessage(f"unreadable invoice XML: {strict_error.reason}") from None
        _refuse_truncated(cleaned, safexml.local_name(root), strict_error.reason)
        warnings.extend(fixes)
        warnings.append(f"parsed with error recovery ({strict_error.reason})")
        return root


def _refuse_truncated(text: bytes, root_name: str, reason: str) -> None:
    """Recovery repairs odd markup, never a file cut short: the root's end tag must be there."""
    local = root_name.rsplit(":", 1)[-1]  # recovery keeps an unbound prefix in the name
    end_tag = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?" + re.escape(local.encode()) + rb"\s*>")
    if is_invoice_root(local) and end_tag.search(text) is None:
        raise MalformedMessage(
            f"the invoice XML is cut short: it ends before </{root_name}> ({reason}); "
            "ask the sender for the complete file"
        )


def is_invoice_root(local_name: str) -> bool:
    """Whether an XML root's local name is a FatturaPA invoice (ordinaria or semplificata)."""
    return local_name in _INVOICE_ROOTS


def parse(data: bytes) -> Invoice:
    """Read an invoice file (already unwrapped from any p7m); raises MalformedMessage only."""
    text, decoded = decode_text(data)
    warnings = list(decoded)
    root = _parse_tree(text, warnings)
    root_name = safexml.local_name(root)
    if not is_invoice_root(root_name):
        notes = [w for w in warnings if w.startswith("parsed with error recovery")]
        recovered = f" ({notes[0]})" if notes else ""
        raise MalformedMessage(
            f"not a FatturaPA invoice: root element is {root_name or '?'}{recovered}"
        )
    return _invoice(root, tuple(warnings))


# ---- facts ---------------------------------------------------------------------------------------


def _children(element: etree._Element, name: str) -> Iterator[etree._Element]:
    return (child for child in element if safexml.local_name(child) == name)


def _child(element: etree._Element | None, *path: str) -> etree._Element | None:
    for name in path:
        if element is None:
            return None
        element = next(_children(element, name), None)
    return element


def _text(element: etree._Element | None, *path: str) -> str | None:
    found = _child(element, *path)
    if found is None or not isinstance(found.text, str):
        return None
    return found.text.strip() or None


def _descendant(element: etree._Element | None, name: str) -> etree._Element | None:
    """First descendant called ``name``, not looking inside a RappresentanteFiscale."""
    if element is None:
        return None
    for child in element:
        child_name = safexml.local_name(child)
        if child_name == name:
            return child
        if (
            child_name != "RappresentanteFiscale"
            and (found := _descendant(child, name)) is not None
        ):
            return found
    return None


def _vat(id_fiscale: etree._Element | None) -> str | None:
    country, code = _text(id_fiscale, "IdPaese"), _text(id_fiscale, "IdCodice")
    if country is None and code is None:
        return None
    return f"{country or ''}{code or ''}"


def _party(element: etree._Element | None) -> Party:
    name = _text(_descendant(element, "Denominazione"))
    if name is None:
        parts = (_text(_descendant(element, part)) for part in ("Nome", "Cognome"))
        name = " ".join(part for part in parts if part) or None
    return Party(
        vat=_vat(_descendant(element, "IdFiscaleIVA")),
        codice_fiscale=_text(_descendant(element, "CodiceFiscale")),
        name=name,
    )


def _document(body: etree._Element) -> Document:
    general = _child(body, "DatiGenerali", "DatiGeneraliDocumento")
    return Document(
        tipo_documento=_text(general, "TipoDocumento"),
        numero=_text(general, "Numero"),
        data=_text(general, "Data"),
        importo_totale=_text(general, "ImportoTotaleDocumento"),
        divisa=_text(general, "Divisa"),
    )


def _format(versione: str | None, formato_trasmissione: str | None) -> str:
    if versione and _FORMAT.fullmatch(versione.strip()):
        return versione.strip()
    if formato_trasmissione:
        return formato_trasmissione
    if versione and versione.strip() in _OLD_VERSIONS:
        return _OLD_VERSIONS[versione.strip()]
    return (versione or "").strip() or "unknown"


def _invoice(root: etree._Element, warnings: tuple[str, ...]) -> Invoice:
    header = _child(root, "FatturaElettronicaHeader")
    transmission = _child(header, "DatiTrasmissione")
    versione = root.get("versione")
    formato = _text(transmission, "FormatoTrasmissione")
    return Invoice(
        format=_format(versione, formato),
        versione=versione,
        formato_trasmissione=formato,
        transmitter=_vat(_child(transmission, "IdTrasmittente")),
        progressivo_invio=_text(transmission, "ProgressivoInvio"),
        codice_destinatario=_text(transmission, "CodiceDestinatario"),
        pec_destinatario=_text(transmission, "PECDestinatario"),
        seller=_party(_child(header, "CedentePrestatore")),
        buyer=_party(_child(header, "CessionarioCommittente")),
        documents=tuple(_document(body) for body in _children(root, "FatturaElettronicaBody")),
        warnings=warnings,
    )
