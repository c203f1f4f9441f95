"""The checks SDI runs on a file we are about to send, run here first, explained for non-programmers.

Owns the outbound rules: size, UTF-8 without BOM, XML 1.0 characters, well-formedness, the XSD of
the file's ``versione``, file name and its consistency with the content. Pure apart from using the
already loaded schemas; ``check`` never raises: every finding is a ``Problem``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AnyStr, cast

from lxml import etree

from pecgateway import filename, invoice, safexml
from pecgateway.errors import ConfigError, MalformedMessage

if TYPE_CHECKING:
    from pecgateway.schema import SchemaSet

__all__ = ["MAX_FILE_BYTES", "MAX_SCHEMA_PROBLEMS", "Problem", "check"]

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_SCHEMA_PROBLEMS = 50
_MAX_CHAR_PROBLEMS = 20
_UTF8_BOM = b"\xef\xbb\xbf"
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_INVALID_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DECLARED = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
_SCHEMA_HINT = (
    "correct the element shown (its name, order or value) in the program that produced the invoice; "
    "the rules are those of the official FatturaPA schema"
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: a stable ``code``, what is wrong, where (1-based), and how to fix it."""

    code: str
    message: str
    line: int | None
    column: int | None
    hint: str


def _problem(
    code: str, message: str, hint: str, line: int | None = None, column: int | None = None
) -> Problem:
    return Problem(code=code, message=message, line=line, column=column, hint=hint)


def _position(text: AnyStr, offset: int, newline: AnyStr) -> tuple[int, int]:
    """1-based line and column of ``offset`` (columns count bytes for bytes, characters for str)."""
    line = text.count(newline, 0, offset) + 1
    column = offset - (text.rfind(newline, 0, offset) + 1) + 1
    return line, column


# ---- file-level checks ---------------------------------------------------------------------------


def _check_size(data: bytes) -> list[Problem]:
    if len(data) <= MAX_FILE_BYTES:
        return []
    return [
        _problem(
            "size",
            f"the file is {len(data)} bytes; SDI accepts at most {MAX_FILE_BYTES} bytes (5 MB)",
            "make the file smaller: remove or compress large attachments (Allegati), or send them "
            "outside the invoice",
        )
    ]


def _check_name(name: str, transmitter: str | None) -> list[Problem]:
    parsed = filename.parse_invoice_name(name, strict=True)
    if parsed is None:
        return [
            _problem(
                "file-name",
                f"file name {name!r} is not a valid SDI name (CCidcodice_xxxxx.xml)",
                "rename the file as country code + transmitter's VAT or tax code, underscore, a "
                "progressive of 1-5 letters or digits, then .xml (e.g. IT01234567890_00001.xml)",
            )
        ]
    if transmitter is not None and parsed.transmitter != transmitter:
        return [
            _problem(
                "file-name-transmitter",
                f"file name starts with {parsed.transmitter} but the invoice's IdTrasmittente is "
                f"{transmitter}",
                "the file name must begin with the transmitter's IdPaese and IdCodice; rename the "
                "file or correct IdTrasmittente",
            )
        ]
    return []


def _check_encoding(data: bytes) -> tuple[list[Problem], str | None]:
    problems: list[Problem] = []
    if data.startswith(_UTF8_BOM):
        problems.append(
            _problem(
                "bom",
                "the file starts with a byte order mark (BOM); SDI rejects it (error 00200)",
                "save as UTF-8 without BOM (in Notepad++: Encoding > UTF-8; in other editors "
                "'UTF-8' rather than 'UTF-8 with BOM')",
                1,
                1,
            )
        )
        data = data[len(_UTF8_BOM) :]
    declared = _DECLARED.match(data)
    if declared and declared.group(1).decode("latin-1").strip().lower() not in ("utf-8", "utf8"):
        shown = declared.group(1).decode("latin-1")
        problems.append(
            _problem(
                "encoding",
                f"the XML declaration says encoding {shown!r}; SDI expects UTF-8",
                'save the file as UTF-8 (without BOM) and declare encoding="UTF-8"',
                1,
            )
        )
    try:
        return problems, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start, b"\n")
        problems.append(
            _problem(
                "encoding",
                f"byte 0x{data[exc.start]:02X} is not valid UTF-8 (the file was saved in another "
                "encoding, e.g. Windows-1252 or Latin-1)",
                "save the file as UTF-8 without BOM; check accented letters and symbols such as ° or €",
                line,
                column,
            )
        )
        return problems, None


def _check_characters(text: str) -> list[Problem]:
    problems = []
    for match in _INVALID_XML_CHAR.finditer(text):
        line, column = _position(text, match.start(), "\n")
        problems.append(
            _problem(
                "xml-char",
                f"control character U+{ord(match.group()):04X} is not allowed in XML",
                "delete the invisible character (often pasted from another program) at the "
                "position shown",
                line,
                column,
            )
        )
        if len(problems) >= _MAX_CHAR_PROBLEMS:
            break
    return problems


def _parse(data: bytes) -> tuple[list[Problem], etree._Element | None]:
    if _DOCTYPE.search(data[:4096]):
        return [
            _problem(
                "doctype",
                "the file contains a DOCTYPE declaration, which invoices must not have",
                "remove the <!DOCTYPE ...> line from the file",
            )
        ], None
    try:
        return [], safexml.parse(data)
    except MalformedMessage as exc:
        cause = exc.__cause__
        if isinstance(cause, etree.XMLSyntaxError):
            (line, column), detail = cause.position, cause.msg
        else:
            line, column, detail = None, None, exc.reason
        return [
            _problem(
                "not-well-formed",
                f"the file is not well-formed XML: {detail}",
                "open the file in an XML editor and fix the tag shown (missing closing tag, "
                "misspelt name, stray '&' or '<')",
                line,
                column,
            )
        ], None


# ---- content checks ------------------------------------------------------------------------------


def _text(root: etree._Element, *path: str) -> str | None:
    element = root
    for name in path:
        found = next((c for c in element if safexml.local_name(c) == name), None)
        if found is None:
            return None
        element = found
    return (element.text or "").strip()


def _transmitter(root: etree._Element) -> str | None:
    base = ("FatturaElettronicaHeader", "DatiTrasmissione", "IdTrasmittente")
    country, code = _text(root, *base, "IdPaese"), _text(root, *base, "IdCodice")
    return f"{country}{code}" if country and code else None


def _check_versione(root: etree._Element) -> list[Problem]:
    versione = root.get("versione")
    formato = _text(root, "FatturaElettronicaHeader", "DatiTrasmissione", "FormatoTrasmissione")
    if formato is None or versione == formato:
        return []
    return [
        _problem(
            "versione-formato",
            f"versione={versione!r} on the root does not match FormatoTrasmissione {formato!r} "
            "(SDI error 00428)",
            "use the same value in both: FPA12 for public administrations, FPR12 for businesses "
            "and consumers",
            root.sourceline,
        )
    ]


def _check_codice_destinatario(root: etree._Element) -> list[Problem]:
    codice = _text(root, "FatturaElettronicaHeader", "DatiTrasmissione", "CodiceDestinatario")
    expected = {"FPA12": 6, "FPR12": 7}.get(root.get("versione") or "")
    if codice is None or expected is None or len(codice) == expected:
        return []
    return [
        _problem(
            "codice-destinatario",
            f"CodiceDestinatario {codice!r} has {len(codice)} characters; {root.get('versione')} "
            f"needs {expected} (SDI error 00427)",
            "public administrations have a 6-character office code (FPA12); businesses a "
            "7-character code or 0000000 (FPR12)",
        )
    ]


def _check_schema_location(root: etree._Element) -> list[Problem]:
    value = root.get(f"{_XSI}schemaLocation")
    if value is None:
        return []
    tokens = value.split()
    if tokens and len(tokens) % 2 == 0:
        return []
    return [
        _problem(
            "schema-location",
            f"xsi:schemaLocation must hold pairs of namespace and location, found {len(tokens)} "
            "item(s)",
            "remove the xsi:schemaLocation attribute, or write the namespace, a space, then the "
            "schema file name",
            root.sourceline,
        )
    ]


def _tag_column(lines: list[str], line: int | None, element: object) -> int | None:
    """1-based column of ``element``'s start tag on ``line`` (lxml only knows the line)."""
    if line is None or not 1 <= line <= len(lines) or not isinstance(element, etree._Element):
        return None
    name = re.escape(safexml.local_name(element))
    found = re.search(rf"<(?:[\w.-]+:)?{name}(?=[\s/>]|$)", lines[line - 1])
    return found.start() + 1 if found else None


def _check_schema(root: etree._Element, schemas: SchemaSet, text: str) -> list[Problem]:
    versione = root.get("versione") or ""
    try:
        schema = schemas.for_invoice(versione)
    except ConfigError as exc:
        return [_problem("schema-missing", exc.reason, "reinstall the official schemas")]
    if schema is None:
        return [
            _problem(
                "schema-missing",
                f"no installed schema accepts versione={versione!r}",
                "use versione FPA12, FPR12 or FSM10, and install the official schemas with "
                "`pecgateway schemas install`",
                root.sourceline,
            )
        ]
    problems: list[Problem] = []
    lines = text.split("\n")
    try:
        for error in schema.iter_errors(cast("Any", root)):
            line = getattr(error, "sourceline", None)
            column = _tag_column(lines, line, getattr(error, "elem", None))
            reason = error.reason or error.message
            message = f"{error.path}: {reason}"
            problems.append(_problem("schema", message, _SCHEMA_HINT, line, column))
            if len(problems) >= MAX_SCHEMA_PROBLEMS:
                break
    except Exception as exc:  # noqa: BLE001 - check() never raises: the failure becomes a Problem
        problems.append(
            _problem("schema", f"the schema check could not complete: {exc}", _SCHEMA_HINT)
        )
    return problems


def _check_content(root: etree._Element, schemas: SchemaSet, text: str) -> list[Problem]:
    root_name = safexml.local_name(root)
    if not invoice.is_invoice_root(root_name):
        return [
            _problem(
                "not-an-invoice",
                f"the root element is {root_name!r}, not FatturaElettronica",
                "check that this is the invoice file and not a notification or another document",
            )
        ]
    return [
        *_check_versione(root),
        *_check_codice_destinatario(root),
        *_check_schema_location(root),
        *_check_schema(root, schemas, text),
    ]


def check(data: bytes, filename: str, schemas: SchemaSet) -> tuple[Problem, ...]:
    """Every reason SDI would reject ``data`` sent as ``filename``; ``()`` when it is clean."""
    problems = _check_size(data)
    encoding_problems, text = _check_encoding(data)
    problems += encoding_problems
    root = None
    if text is not None:
        problems += _check_characters(text)
        if not any(p.code == "xml-char" for p in problems):
            parse_problems, root = _parse(text.encode("utf-8"))
            problems += parse_problems
    problems += _check_name(filename, None if root is None else _transmitter(root))
    if root is not None and text is not None:
        problems += _check_content(root, schemas, text)
    return tuple(problems)
