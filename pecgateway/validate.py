"""The checks SDI runs on a file we are about to send, run here first, explained for non-programmers.

Owns the file-level rules: size, the SDI file name and its agreement with the content, and the
containers SDI accepts: a signed ``.xml.p7m`` (its signed XML is checked) and a ``.zip`` (each entry is
checked, within classify's zip bounds). What the content is, is decided by the bytes, not the name.
The XML document rules live in ``validate_xml``. Pure; ``check`` never raises.
"""

from __future__ import annotations

import enum
from dataclasses import replace
from typing import TYPE_CHECKING

from pecgateway import classify, filename, p7m, validate_xml
from pecgateway.errors import MalformedMessage
from pecgateway.validate_xml import MAX_SCHEMA_PROBLEMS, Problem

if TYPE_CHECKING:
    from pecgateway.schema import SchemaSet

__all__ = ["MAX_FILE_BYTES", "MAX_SCHEMA_PROBLEMS", "Problem", "check"]

MAX_FILE_BYTES = 5 * 1024 * 1024
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_P7M_HINT = (
    "sign the invoice again with your signing software, choosing CAdES (.p7m) with the XML "
    "inside (not a detached signature), and check the result opens in a signature viewer"
)
_ZIP_HINT = (
    "make the archive again with an ordinary zip program: no password, no folders inside, only "
    "invoice files (.xml or .xml.p7m) named like IT01234567890_00001.xml"
)


class _Content(enum.Enum):
    """What the bytes are (the name does not decide)."""

    XML = "xml"
    SIGNED = "xml.p7m"
    ARCHIVE = "zip"


def check(data: bytes, filename: str, schemas: SchemaSet) -> tuple[Problem, ...]:
    """Every reason SDI would reject ``data`` sent as ``filename``; ``()`` when it is clean."""
    return tuple(_check_file(data, filename, schemas, in_archive=False))


def _problem(
    code: str, message: str, hint: str, line: int | None = None, column: int | None = None
) -> Problem:
    return Problem(code=code, message=message, line=line, column=column, hint=hint)


def _content(data: bytes, name: str) -> _Content:
    if data.startswith(_ZIP_MAGIC):
        return _Content.ARCHIVE
    if p7m.looks_like_envelope(data):
        return _Content.SIGNED
    named_signed = name.lower().endswith((".p7m", ".pk7"))
    return _Content.SIGNED if named_signed and not _looks_like_xml(data) else _Content.XML


def _looks_like_xml(data: bytes) -> bool:
    head = data[:4096]
    for bom in _BOMS:
        head = head.removeprefix(bom)
    return head.lstrip(b" \t\r\n\x00").startswith(b"<")


def _check_file(data: bytes, name: str, schemas: SchemaSet, *, in_archive: bool) -> list[Problem]:
    problems = _check_size(data)
    content = _content(data, name)
    transmitter = None
    if content is _Content.ARCHIVE:
        problems += _check_nested_archive() if in_archive else _check_archive(data, schemas)
    elif content is _Content.SIGNED:
        found, transmitter = _check_signed(data, schemas)
        problems += found
    else:
        found, transmitter = validate_xml.check_document(data, schemas)
        problems += found
    return problems + _check_name(name, transmitter, content, in_archive=in_archive)


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


# ---- the file name -------------------------------------------------------------------------------


def _check_name(
    name: str, transmitter: str | None, content: _Content, *, in_archive: bool
) -> list[Problem]:
    parsed = filename.parse_invoice_name(name, strict=True)
    if parsed is None:
        return [
            _problem(
                "file-name",
                f"file name {name!r} is not a valid SDI name (CCidcodice_xxxxx.xml)",
                "rename the file as country code + transmitter's VAT or tax code, underscore, a "
                "progressive of 1-5 letters or digits, then .xml, .xml.p7m (signed) or .zip "
                "(e.g. IT01234567890_00001.xml)",
            )
        ]
    problems = _check_extension(name, parsed.extension, content, lenient=not in_archive)
    if transmitter is not None and parsed.transmitter != transmitter:
        problems.append(
            _problem(
                "file-name-transmitter",
                f"file name starts with {parsed.transmitter} but the invoice's IdTrasmittente is "
                f"{transmitter}",
                "the file name must begin with the transmitter's IdPaese and IdCodice; rename the "
                "file or correct IdTrasmittente",
            )
        )
    return problems


_WHAT = {
    _Content.XML: "a plain XML file",
    _Content.SIGNED: "a signed envelope (CAdES .p7m)",
    _Content.ARCHIVE: "a zip archive",
}


def _check_extension(
    name: str, extension: str, content: _Content, *, lenient: bool
) -> list[Problem]:
    """SDI opens a file by its name: the extension must say what the bytes are.

    ``lenient`` lets a ``.xml.p7m`` name on plain XML through: the outbox may check the unwrapped
    XML under the signed file's name.
    """
    unwrapped = lenient and extension == "xml.p7m" and content is _Content.XML
    if extension == content.value or unwrapped:
        return []
    stem = name[: -len(extension) - 1]
    return [
        _problem(
            "file-name-extension",
            f"the file is {_WHAT[content]} but its name ends in .{extension}; SDI opens a file "
            "according to its name and would reject it",
            f"rename the file {stem}.{content.value}",
        )
    ]


# ---- signed files (.xml.p7m) ---------------------------------------------------------------------


def _check_signed(data: bytes, schemas: SchemaSet) -> tuple[list[Problem], str | None]:
    try:
        unwrapped = p7m.unwrap(data)
    except MalformedMessage as exc:
        message = f"the signed file (.p7m) cannot be opened: {exc.reason}"
        return [_problem("p7m", message, _P7M_HINT)], None
    if not unwrapped.signed:
        message = "the file is named as signed (.p7m) but holds no signed envelope, only XML"
        return [_problem("p7m", message, _P7M_HINT)], None
    if not all(unwrapped.layers):
        notes = "; ".join(unwrapped.warnings) or "no signer"
        message = f"the signed file (.p7m) is damaged: SDI checks the signature and would reject it ({notes})"
        return [_problem("p7m", message, _P7M_HINT)], None
    problems, transmitter = validate_xml.check_document(unwrapped.payload, schemas)
    return [_inside_signature(problem) for problem in problems], transmitter


def _inside_signature(problem: Problem) -> Problem:
    if not problem.blames_file:
        return problem
    return replace(
        problem,
        message=f"in the signed XML: {problem.message}",
        hint=f"{problem.hint}; then sign the corrected XML again",
    )


# ---- archives (.zip) -----------------------------------------------------------------------------


def _check_archive(data: bytes, schemas: SchemaSet) -> list[Problem]:
    node = classify.classify(data)  # opens the archive within classify's bounds (MAX_ENTRIES ...)
    if node.kind is not classify.Kind.ARCHIVE:
        return [_problem("zip", f"the zip archive cannot be opened: {node.error}", _ZIP_HINT)]
    if not node.contents:
        return [_problem("zip", "the zip archive holds no files", _ZIP_HINT)]
    problems: list[Problem] = []
    for number, entry in enumerate(node.contents, 1):
        name = entry.filename or f"entry {number}"
        if entry.kind is classify.Kind.MALFORMED and not entry.data:
            problems.append(_problem("zip", f"{name}: {entry.error}", _ZIP_HINT))
            continue
        found = _check_file(entry.data, name, schemas, in_archive=True)
        problems += [replace(problem, message=f"{name}: {problem.message}") for problem in found]
    return problems


def _check_nested_archive() -> list[Problem]:
    return [
        _problem(
            "zip",
            "a zip archive inside the zip archive: SDI does not open archives within archives",
            _ZIP_HINT,
        )
    ]
