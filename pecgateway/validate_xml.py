"""The checks SDI runs on one XML invoice document, and the ``Problem`` every check reports.

Owns the document rules: UTF-8 without BOM, XML 1.0 characters, well-formedness, no DOCTYPE,
versione/FormatoTrasmissione, CodiceDestinatario, xsi:schemaLocation and the XSD of the ``versione``.
File names, size and containers (p7m, zip) belong to ``validate``. Pure; never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AnyStr, cast

from lxml import etree

from pecgateway import invoice, safexml, xsderror
from pecgateway.errors import ConfigError, MalformedMessage

if TYPE_CHECKING:
    from pecgateway.schema import SchemaSet

__all__ = ["FORMATS", "MAX_SCHEMA_PROBLEMS", "SETUP_CODES", "Problem", "check_document"]

MAX_SCHEMA_PROBLEMS = 50
FORMATS = ("FPA12", "FPR12", "FSM10")  # the versione values SDI accepts today
SETUP_CODES = frozenset({"schema-missing"})  # about this machine's set-up, not about the file
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
_INSTALL_HINT = (
    "install the official schemas on this machine: `pecgateway schemas install --from DIR`, where "
    "DIR holds the XSD files downloaded from fatturapa.gov.it; then run the check again"
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: a stable ``code``, what is wrong, where (1-based), and how to fix it."""

    code: str
    message: str
    line: int | None
    column: int | None
    hint: str

    @property
    def location(self) -> str:
        """``line 3, column 7``, ``line 3`` or ``""``: never shows an unknown part."""
        if self.line is None:
            return ""
        return f"line {self.line}" + ("" if self.column is None else f", column {self.column}")

    @property
    def blames_file(self) -> bool:
        """False when the file may be fine and the trouble is this machine's set-up."""
        return self.code not in SETUP_CODES


def _problem(
    code: str, message: str, hint: str, line: int | None = None, column: int | None = None
) -> Problem:
    return Problem(code=code, message=message, line=line, column=column, hint=hint)


def _position(text: AnyStr, offset: int, newline: AnyStr) -> tuple[int, int]:
    """1-based line and column of ``offset`` (columns count bytes for bytes, characters for str)."""
    line = text.count(newline, 0, offset) + 1
    column = offset - (text.rfind(newline, 0, offset) + 1) + 1
    return line, column


# ---- bytes and characters ------------------------------------------------------------------------


def _check_declared(data: bytes) -> list[Problem]:
    declared = _DECLARED.match(data)
    if not declared or declared.group(1).decode("latin-1").strip().lower() in ("utf-8", "utf8"):
        return []
    line, column = _position(data, declared.start(1), b"\n")
    return [
        _problem(
            "encoding",
            f"the XML declaration says encoding {declared.group(1).decode('latin-1')!r}; SDI "
            "expects UTF-8",
            'save the file as UTF-8 (without BOM) and declare encoding="UTF-8"',
            line,
            column,
        )
    ]


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
    problems += _check_declared(data)
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
                line or None,
                column or None,
            )
        ], None


# ---- content checks ------------------------------------------------------------------------------


class _Document:
    """The parsed root with the text's lines, to put a column on an element's start tag."""

    def __init__(self, root: etree._Element, text: str) -> None:
        self.root = root
        self.lines = text.split("\n")

    def text(self, *path: str) -> str | None:
        element = self.root
        for name in path:
            found = next((c for c in element if safexml.local_name(c) == name), None)
            if found is None:
                return None
            element = found
        return (element.text or "").strip()

    def where(self, element: object) -> tuple[int | None, int | None]:
        """1-based line and column of ``element``'s start tag (lxml only knows the line)."""
        if not isinstance(element, etree._Element):
            return None, None
        line = element.sourceline
        if line is None or not 1 <= line <= len(self.lines):
            return line, None
        name = re.escape(safexml.local_name(element))
        found = re.search(rf"<(?:[\w.-]+:)?{name}(?=[\s/>]|$)", self.lines[line - 1])
        return line, found.start() + 1 if found else None


def _transmitter(doc: _Document) -> str | None:
    base = ("FatturaElettronicaHeader", "DatiTrasmissione", "IdTrasmittente")
    country, code = doc.text(*base, "IdPaese"), doc.text(*base, "IdCodice")
    return f"{country}{code}" if country and code else None


def _check_versione(doc: _Document) -> list[Problem]:
    versione = doc.root.get("versione")
    formato = doc.text("FatturaElettronicaHeader", "DatiTrasmissione", "FormatoTrasmissione")
    if formato is None or versione == formato:
        return []
    return [
        _problem(
            "versione-formato",
            f"versione={versione!r} on the root does not match FormatoTrasmissione {formato!r} "
            "(SDI error 00428)",
            "use the same value in both: FPA12 for public administrations, FPR12 for businesses "
            "and consumers",
            *doc.where(doc.root),
        )
    ]


def _check_codice_destinatario(doc: _Document) -> list[Problem]:
    codice = doc.text("FatturaElettronicaHeader", "DatiTrasmissione", "CodiceDestinatario")
    versione = doc.root.get("versione") or ""
    expected = {"FPA12": 6, "FPR12": 7}.get(versione)
    if codice is None or expected is None or len(codice) == expected:
        return []
    return [
        _problem(
            "codice-destinatario",
            f"CodiceDestinatario {codice!r} has {len(codice)} characters; {versione} needs "
            f"{expected} (SDI error 00427)",
            "public administrations have a 6-character office code (FPA12); businesses a "
            "7-character code or 0000000 (FPR12)",
        )
    ]


def _check_schema_location(doc: _Document) -> list[Problem]:
    value = doc.root.get(f"{_XSI}schemaLocation")
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
            *doc.where(doc.root),
        )
    ]


def _schema_missing(versione: str, doc: _Document) -> Problem:
    if versione in FORMATS:
        return _problem(
            "schema-missing",
            f"the file is {versione}, but no schema for {versione} is installed on this machine, "
            "so it could not be checked against the official rules (this says nothing about the "
            "file itself)",
            _INSTALL_HINT,
        )
    return _problem(
        "versione",
        f"versione={versione!r} is not a FatturaPA format SDI accepts, so SDI would reject "
        "the file",
        'write versione="FPA12" (public administrations), "FPR12" (businesses and consumers) '
        'or "FSM10" (simplified invoice) on the root element, the same as FormatoTrasmissione',
        *doc.where(doc.root),
    )


def _check_schema(doc: _Document, schemas: SchemaSet) -> list[Problem]:
    versione = doc.root.get("versione") or ""
    try:
        schema = schemas.for_invoice(versione)
    except ConfigError as exc:
        return [_problem("schema-missing", exc.reason, _INSTALL_HINT)]
    if schema is None:
        return [_schema_missing(versione, doc)]
    problems: list[Problem] = []
    try:
        for error in schema.iter_errors(cast("Any", doc.root)):
            line, column = doc.where(xsderror.position_element(error))
            problem = _problem("schema", xsderror.explain(error), _SCHEMA_HINT, line, column)
            if problem not in problems:
                problems.append(problem)
            if len(problems) >= MAX_SCHEMA_PROBLEMS:
                break
    except Exception as exc:  # noqa: BLE001 - check() never raises: the failure becomes a Problem
        problems.append(
            _problem("schema", f"the schema check could not complete: {exc}", _SCHEMA_HINT)
        )
    return problems


def _check_content(doc: _Document, schemas: SchemaSet) -> list[Problem]:
    root_name = safexml.local_name(doc.root)
    if not invoice.is_invoice_root(root_name):
        return [
            _problem(
                "not-an-invoice",
                f"the root element is {root_name!r}, not FatturaElettronica",
                "check that this is the invoice file and not a notification or another document",
            )
        ]
    return [
        *_check_versione(doc),
        *_check_codice_destinatario(doc),
        *_check_schema_location(doc),
        *_check_schema(doc, schemas),
    ]


def check_document(data: bytes, schemas: SchemaSet) -> tuple[list[Problem], str | None]:
    """The problems of one XML invoice document and its IdTrasmittente (None when unreadable)."""
    problems, text = _check_encoding(data)
    if text is None:
        return problems, None
    problems += _check_characters(text)
    if any(p.code == "xml-char" for p in problems):
        return problems, None
    parse_problems, root = _parse(text.encode("utf-8"))
    if root is None:
        return problems + parse_problems, None
    doc = _Document(root, text)
    return problems + _check_content(doc, schemas), _transmitter(doc)
