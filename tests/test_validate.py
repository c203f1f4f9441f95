"""Outbound checks: what SDI would reject, found before sending, with a hint for a non-programmer."""

from __future__ import annotations

import argparse
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pecgateway import classify, cli, sample, schema, validate
from pecgateway.schema import SchemaSet
from tests.conftest import CORPUS
from tests.factory import signing
from tests.factory.invoices import (
    big_invoice,
    manifest_rows,
    replace_once,
    with_declaration,
    without_declaration,
)

NAME = "IT01234567890_00001.xml"


@pytest.fixture(scope="module")
def schemas(schema_dir: Path) -> SchemaSet:
    return schema.load(schema_dir)


CLEAN = [
    pytest.param(sample.fpr12(), NAME, id="fpr12"),
    pytest.param(sample.fpa12(), "IT01234567890_abc12.xml", id="fpa12"),
    pytest.param(sample.fsm10(), "IT01234567890_Z.xml", id="fsm10"),
    pytest.param(
        sample.fpr12(lot=[sample.Body("1", "2024-01-01"), sample.Body("2", "2024-01-02")]),
        NAME,
        id="lot",
    ),
    pytest.param(without_declaration(sample.fpr12()), NAME, id="q8-no-declaration"),
    pytest.param(sample.fpr12(), "IT01234567890_00001.xml.p7m", id="signed-name"),
    pytest.param(
        sample.fpr12(codice_destinatario="0000000", pec_destinatario="beta@pec.example.it"),
        NAME,
        id="pec-destinatario",
    ),
]


@pytest.mark.parametrize(("data", "name"), CLEAN)
def test_sample_invoices_pass_every_check(schemas: SchemaSet, data: bytes, name: str) -> None:
    assert validate.check(data, name, schemas) == ()


def test_bl22_large_invoice_under_5_mb_passes(schemas: SchemaSet) -> None:
    assert validate.check(big_invoice(3 * 1024 * 1024), NAME, schemas) == ()


FPR = sample.fpr12()
FAULTS = [
    pytest.param(b"\xef\xbb\xbf" + FPR, NAME, "bom", (1, 1), id="bl16-bom"),
    pytest.param(
        replace_once(FPR, b"ALFA SERVIZI SRL", "ALFA 20° SRL".encode("cp1252")),
        NAME,
        "encoding",
        (20, 33),
        id="bl17-cp1252-bytes",
    ),
    pytest.param(
        with_declaration(FPR, "windows-1252"), NAME, "encoding", (1, None), id="bl17-declared"
    ),
    pytest.param(
        replace_once(FPR, b"<Numero>1</Numero>", b"<Numero>1\x1b</Numero>"),
        NAME,
        "xml-char",
        (57, 18),
        id="bl18-escape",
    ),
    pytest.param(
        replace_once(FPR, b"Consulenza", b"Consu\x02lenza"),
        NAME,
        "xml-char",
        (64, 27),
        id="bl18-stx",
    ),
    pytest.param(
        replace_once(FPR, b"<p:Fattura", b"<!DOCTYPE x>\n<p:Fattura"),
        NAME,
        "doctype",
        None,
        id="doctype",
    ),
    pytest.param(
        replace_once(FPR, b"</Numero>", b"</Numro>"),
        NAME,
        "not-well-formed",
        (57, 26),
        id="mismatched-tag",
    ),
    pytest.param(
        replace_once(FPR, b"<Numero>1</Numero>", b"<Numero></Numero>"),
        NAME,
        "schema",
        (57, None),
        id="xsd",
    ),
    pytest.param(FPR, "01234567890_00001.xml", "file-name", None, id="bl33-no-country"),
    pytest.param(FPR, "IT01234567890_000001.xml", "file-name", None, id="long-progressivo"),
    pytest.param(
        FPR, "IT09876543210_00001.xml", "file-name-transmitter", None, id="other-transmitter"
    ),
    pytest.param(
        replace_once(FPR, b"<FormatoTrasmissione>FPR12", b"<FormatoTrasmissione>FPA12"),
        NAME,
        "versione-formato",
        (2, None),
        id="versione-formato",
    ),
    pytest.param(
        sample.fpr12(codice_destinatario="UFPQ1O"),
        NAME,
        "codice-destinatario",
        None,
        id="fpr12-6-chars",
    ),
    pytest.param(
        replace_once(
            FPR,
            b' versione="FPR12"',
            b' versione="FPR12" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            b' xsi:schemaLocation="http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2"',
        ),
        NAME,
        "schema-location",
        (2, None),
        id="schema-location-odd",
    ),
    pytest.param(big_invoice(4 * 1024 * 1024), NAME, "size", None, id="over-5-mb"),
    pytest.param(
        b"<?xml version='1.0'?><RicevutaConsegna/>", NAME, "not-an-invoice", None, id="notification"
    ),
    pytest.param(
        replace_once(FPR, b'versione="FPR12"', b'versione="FPR11"'),
        NAME,
        "versione",
        (2, 1),
        id="unknown-versione",
    ),
]


@pytest.mark.parametrize(("data", "name", "code", "where"), FAULTS)
def test_each_fault_is_reported_with_its_code_position_and_hint(
    schemas: SchemaSet, data: bytes, name: str, code: str, where: tuple[int, int | None] | None
) -> None:
    problems = validate.check(data, name, schemas)
    found = [p for p in problems if p.code == code]
    assert found, f"expected {code!r} among {[p.code for p in problems]}"
    if where is not None:
        assert (found[0].line, found[0].column if where[1] is not None else None) == where
    for problem in problems:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", problem.code)
        assert problem.message
        assert len(problem.hint) > 20


def test_bl18_control_character_names_the_code_point(schemas: SchemaSet) -> None:
    data = replace_once(FPR, b"<Numero>1</Numero>", b"<Numero>1\x1b</Numero>")
    (problem,) = validate.check(data, NAME, schemas)
    assert "U+001B" in problem.message


def test_bl16_bom_hint_says_save_without_bom(schemas: SchemaSet) -> None:
    problems = validate.check(b"\xef\xbb\xbf" + FPR, NAME, schemas)
    assert [p.code for p in problems] == ["bom"]
    assert "save as UTF-8 without BOM" in problems[0].hint


def test_schema_problems_carry_the_element_path(schemas: SchemaSet) -> None:
    data = replace_once(FPR, b"<Numero>1</Numero>", b"<Numero></Numero>")
    (problem,) = validate.check(data, NAME, schemas)
    assert "DatiGeneraliDocumento/Numero" in problem.message


def test_fpa12_is_checked_against_the_pa_schema(schemas: SchemaSet) -> None:
    data = replace_once(sample.fpa12(), b"<Numero>1</Numero>", b"<Numero></Numero>")
    problems = validate.check(data, NAME, schemas)
    assert [p.code for p in problems] == ["schema"]


# ---- properties ------------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=1024), name=st.text(max_size=40))
def test_check_never_raises_on_arbitrary_input(schemas: SchemaSet, data: bytes, name: str) -> None:
    problems = validate.check(data, name, schemas)
    assert all(isinstance(p, validate.Problem) for p in problems)


@settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    max_examples=60,
    deadline=None,
)
@given(st.data())
def test_check_never_raises_on_mutated_invoices(schemas: SchemaSet, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from([sample.fpr12(), sample.fpa12(), sample.fsm10()]))
    position = data.draw(st.integers(0, len(original) - 1))
    chunk = data.draw(st.binary(max_size=6))
    mutated = original[:position] + chunk + original[position + data.draw(st.integers(0, 6)) :]
    problems = validate.check(mutated, NAME, schemas)
    assert isinstance(problems, tuple)


# ---- the CLI handler -------------------------------------------------------------------------------


def _validate_cli(schema_dir: Path, *files: Path) -> int:
    args = argparse.Namespace(files=[str(f) for f in files], schemas=str(schema_dir), config=None)
    return cli._cmd_validate(args)


def test_cli_validate_says_ok_for_a_clean_file(
    schema_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / NAME
    path.write_bytes(sample.fpr12())
    assert _validate_cli(schema_dir, path) == 0
    assert f"{path}: OK, ready to send to SDI" in capsys.readouterr().out


def test_cli_validate_lists_problems_with_position_and_fix(
    schema_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / NAME
    good.write_bytes(sample.fpr12())
    bad = tmp_path / "IT01234567890_00002.xml"
    bad.write_bytes(
        b"\xef\xbb\xbf" + replace_once(FPR, b"<Numero>1</Numero>", b"<Numero>1\x1b</Numero>")
    )
    assert _validate_cli(schema_dir, good, bad) == 1
    out = capsys.readouterr().out
    assert f"{bad}: 2 problem(s), SDI would reject this file" in out
    assert "[bom] line 1, column 1:" in out
    assert "[xml-char] line 57, column 18: control character U+001B" in out
    assert "fix: save as UTF-8 without BOM" in out


# ---- conformance -----------------------------------------------------------------------------------

_SCHEMA_FOR = {
    "FPA12": "Schema_VFPA12_V1.2.3.xsd",
    "FPR12": "Schema_VFPR12_v1.2.3.xsd",
    "FSM10": "fephp_semplificata_1.0.xsd",
}


def _verdict(row: dict[str, str]) -> str | None:
    key = _SCHEMA_FOR.get(row["kind"].removeprefix("invoice-"))
    found = re.search(rf"{re.escape(key)}=(VALID|INVALID)", row["expected_facts"]) if key else None
    return found.group(1) if found else None


# The MANIFEST verdicts come from libxml2. xs:date has whiteSpace="collapse" in XSD 1.0, so xmlschema
# (like Xerces) accepts "2019-02-15 " where libxml2 rejects it.
WHITESPACE_COLLAPSED = {"oca_IT01234567890_FPR04.xml"}

SCHEMA_ROWS = [row for row in manifest_rows(CORPUS, "invoice-F") if _verdict(row)]


@pytest.mark.conformance
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("row", SCHEMA_ROWS, ids=lambda row: Path(row["local_path"]).name)
def test_corpus_schema_verdicts_match_the_manifest(schemas: SchemaSet, row: dict[str, str]) -> None:
    data = (CORPUS / row["local_path"]).read_bytes()
    problems = validate.check(data, Path(row["local_path"]).name, schemas)
    schema_problems = [p for p in problems if p.code == "schema"]
    if _verdict(row) == "VALID" or Path(row["local_path"]).name in WHITESPACE_COLLAPSED:
        assert schema_problems == []
    else:
        assert schema_problems, f"expected schema problems, got {problems}"
        line = re.search(r"=INVALID\(line (\d+)", row["expected_facts"])
        assert line is not None
        # xmlschema points at the element or, for a misplaced child, at its parent
        assert schema_problems[0].line is not None
        assert schema_problems[0].line <= int(line.group(1))


def test_schema_problem_points_at_the_elements_line_and_column(schemas: SchemaSet) -> None:
    data = sample.schema_invalid(numero="8")
    (problem,) = validate.check(data, NAME, schemas)
    assert problem.line is not None
    assert problem.column is not None
    line = data.decode("utf-8").split("\n")[problem.line - 1]
    assert line[problem.column - 1 :].startswith("<Numero")


def test_demo_invoices_two_valid_one_failing_our_checks(schemas: SchemaSet) -> None:
    assert validate.check(sample.fpr12(numero="7"), NAME, schemas) == ()
    assert validate.check(sample.fpa12(numero="7"), NAME, schemas) == ()
    problems = validate.check(sample.schema_invalid(numero="8"), NAME, schemas)
    assert [p.code for p in problems] == ["schema"]


# ---- signed files: decided by content, the signed XML gets every check ----------------------------

SIGNED = "IT01234567890_00001.xml.p7m"
SIGNED_FPR = signing.der_envelope(FPR)  # built once: signatures differ at each signing


def test_signed_valid_invoice_passes_every_check(schemas: SchemaSet) -> None:
    assert validate.check(SIGNED_FPR, SIGNED, schemas) == ()


def test_signed_invoice_as_base64_text_passes(schemas: SchemaSet) -> None:
    data = signing.base64_text(signing.der_envelope(FPR), width=76)
    assert validate.check(data, SIGNED, schemas) == ()


def test_signed_invoice_with_a_schema_fault_reports_it_inside_the_signed_xml(
    schemas: SchemaSet,
) -> None:
    bad = replace_once(FPR, b"<Data>2024-01-15</Data>", b"<Data>01/12/2026</Data>")
    (problem,) = validate.check(signing.der_envelope(bad), SIGNED, schemas)
    assert problem.code == "schema"
    assert problem.message.startswith("in the signed XML: ")
    assert "sign the corrected XML again" in problem.hint
    assert (problem.line, problem.column) == (56, 9)


def test_signed_invoice_with_cp1252_bytes_reports_the_encoding(schemas: SchemaSet) -> None:
    bad = replace_once(FPR, b"ALFA SERVIZI SRL", "ALFA 20° SRL".encode("cp1252"))
    problems = validate.check(signing.der_envelope(bad), SIGNED, schemas)
    assert [p.code for p in problems] == ["encoding"]
    assert (problems[0].line, problems[0].column) == (20, 33)


def test_signed_file_transmitter_is_checked_against_the_outer_name(schemas: SchemaSet) -> None:
    problems = validate.check(signing.der_envelope(FPR), "IT09876543210_00001.xml.p7m", schemas)
    assert [p.code for p in problems] == ["file-name-transmitter"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SIGNED_FPR[:300], id="truncated"),
        pytest.param(signing.corrupt_signer_infos(SIGNED_FPR), id="corrupt-signer"),
        pytest.param(signing.detached_envelope(FPR), id="detached"),
        pytest.param(b"\x00\x01 not an envelope at all", id="garbage"),
    ],
)
def test_p7m_that_cannot_be_unwrapped_is_a_problem_with_a_hint(
    schemas: SchemaSet, data: bytes
) -> None:
    problems = validate.check(data, SIGNED, schemas)
    assert [p.code for p in problems] == ["p7m"]
    assert problems[0].message.startswith("the signed file (.p7m) ")
    assert "sign the invoice again" in problems[0].hint


def test_base64_plain_xml_named_p7m_is_not_signed(schemas: SchemaSet) -> None:
    problems = validate.check(signing.base64_text(FPR, width=76), SIGNED, schemas)
    assert [p.code for p in problems] == ["p7m"]
    assert "holds no signed envelope" in problems[0].message


def test_signed_envelope_named_xml_is_a_name_problem(schemas: SchemaSet) -> None:
    problems = validate.check(signing.der_envelope(FPR), NAME, schemas)
    assert [p.code for p in problems] == ["file-name-extension"]
    assert "rename the file IT01234567890_00001.xml.p7m" in problems[0].hint


def test_cli_validate_says_ok_for_a_signed_invoice(
    schema_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / SIGNED
    path.write_bytes(signing.der_envelope(FPR))
    assert _validate_cli(schema_dir, path) == 0
    assert f"{path}: OK, ready to send to SDI" in capsys.readouterr().out


# ---- zip archives: every entry checked, problems named after the entry ------------------------------

ARCHIVE = "IT01234567890_00009.zip"


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_of_valid_invoices_plain_and_signed_passes(schemas: SchemaSet) -> None:
    data = _zip(
        {
            "IT01234567890_00001.xml": FPR,
            "IT01234567890_00002.xml.p7m": signing.der_envelope(sample.fpa12()),
        }
    )
    assert validate.check(data, ARCHIVE, schemas) == ()


def test_zip_entry_problems_are_prefixed_by_the_entry_name(schemas: SchemaSet) -> None:
    bad = replace_once(FPR, b"<Numero>1</Numero>", b"<Numero></Numero>")
    data = _zip({"IT01234567890_00001.xml": FPR, "IT01234567890_00002.xml": bad})
    (problem,) = validate.check(data, ARCHIVE, schemas)
    assert problem.code == "schema"
    assert problem.message.startswith("IT01234567890_00002.xml: ")
    assert problem.line == 57


def test_zip_entry_names_follow_the_sdi_rules(schemas: SchemaSet) -> None:
    data = _zip({"fattura.xml": FPR, "IT01234567890_00002.xml.p7m": FPR})
    problems = validate.check(data, ARCHIVE, schemas)
    assert [(p.code, p.message.split(":")[0]) for p in problems] == [
        ("file-name", "fattura.xml"),
        ("file-name-extension", "IT01234567890_00002.xml.p7m"),
    ]


def test_zip_over_the_entry_limit_is_refused_with_classifys_bound(schemas: SchemaSet) -> None:
    entries = {f"IT01234567890_{n:05d}.xml": b"<x/>" for n in range(classify.MAX_ENTRIES + 1)}
    problems = validate.check(_zip(entries), ARCHIVE, schemas)
    assert [p.code for p in problems] == ["zip"]
    assert f"more than {classify.MAX_ENTRIES}" in problems[0].message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(_zip({}), "holds no files", id="empty"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 40, "cannot be opened", id="corrupt"),
        pytest.param(
            _zip({"IT01234567890_00001.zip": _zip({"IT01234567890_00001.xml": FPR})}),
            "archives within archives",
            id="nested",
        ),
    ],
)
def test_unusable_zip_is_a_problem_with_a_hint(schemas: SchemaSet, data: bytes, words: str) -> None:
    problems = validate.check(data, ARCHIVE, schemas)
    assert [p.code for p in problems] == ["zip"]
    assert words in problems[0].message
    assert "zip program" in problems[0].hint


def test_zip_named_xml_is_a_name_problem(schemas: SchemaSet) -> None:
    problems = validate.check(_zip({"IT01234567890_00001.xml": FPR}), NAME, schemas)
    assert [p.code for p in problems] == ["file-name-extension"]


# ---- messages in plain words, positions never "None" -------------------------------------------------

PLAIN = [
    pytest.param(
        (b"<Data>2024-01-15</Data>", b"<Data>01/12/2026</Data>"),
        "DatiGeneraliDocumento/Data: '01/12/2026' is not a date: write it as year-month-day, "
        "YYYY-MM-DD",
        (56, 9),
        id="date",
    ),
    pytest.param(
        (b"<ImportoTotaleDocumento>122.00", b"<ImportoTotaleDocumento>122,00"),
        "ImportoTotaleDocumento: '122,00' is not accepted: write an optional minus sign, up to 11 "
        "digits, a dot (not a comma) and 2 decimal(s)",
        (58, 9),
        id="decimal",
    ),
    pytest.param(
        (b"<TipoDocumento>TD01</TipoDocumento>", b"<TipoDocumento>TD99</TipoDocumento>"),
        "TipoDocumento: 'TD99' is not one of the allowed codes: TD01, TD02",
        (54, 9),
        id="enumeration",
    ),
    pytest.param(
        (b"<Numero>1</Numero>", b""),
        "DatiGeneraliDocumento: <ImportoTotaleDocumento> is not allowed here: <Numero> must come at "
        "this point (missing, or elements in the wrong order)",
        (58, 9),
        id="missing-element",
    ),
    pytest.param(
        (b"<Numero>1</Numero>", b"<Numero>1</Numero><Sconto>1</Sconto>"),
        "DatiGeneraliDocumento: <Sconto> is not allowed here: it is unknown, misspelt, or one too "
        "many",
        (57, 27),
        id="unexpected-element",
    ),
    pytest.param(
        (b"<Numero>1</Numero>", b"<Numero></Numero>"),
        "Numero: the empty value is not accepted: write 1 to 20 characters, only plain letters",
        (57, 9),
        id="pattern-length",
    ),
    pytest.param(
        (b"<IdPaese>IT</IdPaese>", b"<IdPaese>it</IdPaese>"),
        "IdPaese: 'it' is not accepted: write 2 capital letters",
        None,
        id="pattern-letters",
    ),
    pytest.param(
        (b"<TipoDocumento>TD01</TipoDocumento>", b"<TipoDocumento>TD1</TipoDocumento>"),
        "TipoDocumento: 'TD1' has 3 character(s); it must have exactly 4",
        (54, 9),
        id="length-facet",
    ),
    pytest.param(
        (b"<NumeroLinea>1<", b"<NumeroLinea>0<"),
        "NumeroLinea: '0' is too small: it must be 1 or more",
        (63, 9),
        id="min-inclusive",
    ),
]


@pytest.mark.parametrize(("edit", "words", "where"), PLAIN)
def test_schema_problems_are_in_plain_words_with_path_and_position(
    schemas: SchemaSet,
    edit: tuple[bytes, bytes],
    words: str,
    where: tuple[int, int] | None,
) -> None:
    problems = validate.check(replace_once(FPR, *edit), NAME, schemas)
    found = [p for p in problems if words in p.message]
    assert found, [p.message for p in problems]
    assert found[0].message.startswith("/p:FatturaElettronica/")
    if where is not None:
        assert (found[0].line, found[0].column) == where
    for problem in problems:
        assert not re.search(r"elementpath|<class|Xsd[A-Z]|datatypes", problem.message)


def test_declared_encoding_problem_has_a_column(schemas: SchemaSet) -> None:
    (problem,) = validate.check(with_declaration(FPR, "windows-1252"), NAME, schemas)
    assert (problem.code, problem.line, problem.column) == ("encoding", 1, 31)
    assert problem.location == "line 1, column 31"


@pytest.mark.parametrize(
    ("line", "column", "location"),
    [(3, 7, "line 3, column 7"), (3, None, "line 3"), (None, None, ""), (None, 4, "")],
)
def test_problem_location_never_shows_an_unknown_part(
    line: int | None, column: int | None, location: str
) -> None:
    assert validate.Problem("x", "m", line, column, "h").location == location


@pytest.mark.parametrize(
    ("data", "versione"),
    [(sample.fpa12(), "FPA12"), (FPR, "FPR12"), (sample.fsm10(), "FSM10")],
)
def test_no_installed_schema_is_this_machines_problem_not_the_files(
    tmp_path: Path, data: bytes, versione: str
) -> None:
    nothing_installed = schema.SchemaSet(tmp_path, {})
    (problem,) = validate.check(data, NAME, nothing_installed)
    assert problem.code == "schema-missing"
    assert f"no schema for {versione} is installed on this machine" in problem.message
    assert "pecgateway schemas install --from DIR" in problem.hint
    assert "SDI would reject" not in problem.message + problem.hint
    assert "use versione" not in problem.hint
    assert problem.line is None
    assert not problem.blames_file


def test_unknown_versione_blames_the_file(schemas: SchemaSet) -> None:
    data = replace_once(FPR, b'versione="FPR12"', b'versione="FPR11"')
    (problem,) = [p for p in validate.check(data, NAME, schemas) if p.code == "versione"]
    assert problem.blames_file
    assert "FPR12" in problem.hint


def test_control_characters_are_reported_at_most_twenty_times(schemas: SchemaSet) -> None:
    data = replace_once(FPR, b"<Numero>1</Numero>", b"<Numero>1" + b"\x1b" * 25 + b"</Numero>")
    problems = validate.check(data, NAME, schemas)
    assert [p.code for p in problems] == ["xml-char"] * 20
    assert [p.column for p in problems] == list(range(18, 38))


def test_schema_problems_are_capped_at_max_schema_problems(schemas: SchemaSet) -> None:
    bodies = [sample.Body(str(n), "2024-13-45") for n in range(validate.MAX_SCHEMA_PROBLEMS + 10)]
    problems = validate.check(sample.fpr12(lot=bodies), NAME, schemas)
    assert [p.code for p in problems] == ["schema"] * validate.MAX_SCHEMA_PROBLEMS
    assert all("'2024-13-45' is not a date" in p.message for p in problems)


def test_xsi_type_naming_no_known_type_is_a_schema_problem_not_a_crash(
    schemas: SchemaSet,
) -> None:
    xsi = b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" versione="FPR12"'
    data = replace_once(FPR, b'versione="FPR12"', xsi)
    data = replace_once(data, b"<Numero>", b'<Numero xsi:type="zz:Nothing">')
    (problem,) = validate.check(data, NAME, schemas)
    assert problem.code == "schema"
    assert problem.message.startswith("the schema check could not complete: ")
    assert "zz:Nothing" in problem.message
    assert problem.blames_file


def test_installed_schema_damaged_after_loading_is_this_machines_problem(
    schema_dir: Path, tmp_path: Path
) -> None:
    schema.install(schema_dir, tmp_path)
    loaded = schema.load(tmp_path)  # schemas are compiled lazily, at the first check
    for xsd in tmp_path.glob("*.xsd"):
        xsd.write_bytes(b"<damaged")
    (problem,) = validate.check(FPR, NAME, loaded)
    assert problem.code == "schema-missing"
    assert "cannot load the schema" in problem.message
    assert "pecgateway schemas install --from DIR" in problem.hint
    assert not problem.blames_file


def test_signed_invoice_without_installed_schema_is_not_blamed_on_the_signed_xml(
    tmp_path: Path,
) -> None:
    (problem,) = validate.check(SIGNED_FPR, SIGNED, schema.SchemaSet(tmp_path, {}))
    assert problem.code == "schema-missing"
    assert not problem.message.startswith("in the signed XML")
    assert "sign the corrected XML again" not in problem.hint


def test_entity_declaration_is_not_well_formed_with_the_reason_and_no_position(
    schemas: SchemaSet,
) -> None:
    data = replace_once(FPR, b"<Numero>1</Numero>", b'<!ENTITY x "y"><Numero>1</Numero>')
    (problem,) = validate.check(data, NAME, schemas)
    assert problem.code == "not-well-formed"
    assert "DOCTYPE or ENTITY declaration is refused" in problem.message
    assert (problem.line, problem.column) == (None, None)


class _OneSchemaError:
    """Stands in for xmlschema (its errors are untyped): yields the given errors for any root."""

    def __init__(self, *errors: object) -> None:
        self.errors = errors

    def iter_errors(self, root: object) -> Iterator[object]:
        yield from self.errors


class _SchemasYielding(SchemaSet):
    def __init__(self, directory: Path, *errors: object) -> None:
        super().__init__(directory, {})
        self.schema = _OneSchemaError(*errors)

    def for_invoice(self, versione: str) -> Any:  # an xmlschema stand-in
        return self.schema


def test_schema_error_the_library_cannot_place_has_no_position(tmp_path: Path) -> None:
    error = SimpleNamespace(path="/p:FatturaElettronica", reason="odd", elem=None)
    (problem,) = validate.check(FPR, NAME, _SchemasYielding(tmp_path, error))
    assert (problem.code, problem.message) == ("schema", "/p:FatturaElettronica: odd")
    assert (problem.line, problem.column) == (None, None)


def test_schema_error_on_a_line_past_the_end_of_the_file_has_no_column(tmp_path: Path) -> None:
    beyond = FPR.count(b"\n") + 10
    elem = etree.fromstring(b"\n" * (beyond - 1) + b"<Numero/>")
    error = SimpleNamespace(path="/p:FatturaElettronica", reason="odd", elem=elem)
    (problem,) = validate.check(FPR, NAME, _SchemasYielding(tmp_path, error))
    assert (problem.line, problem.column) == (beyond, None)


def test_the_same_schema_problem_twice_is_reported_once(tmp_path: Path) -> None:
    error = SimpleNamespace(path="/p:FatturaElettronica", reason="odd", elem=None)
    problems = validate.check(FPR, NAME, _SchemasYielding(tmp_path, error, error))
    assert [p.message for p in problems] == ["/p:FatturaElettronica: odd"]


def test_cli_validate_never_prints_none_as_a_position(
    schema_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / NAME
    path.write_bytes(with_declaration(FPR, "windows-1252"))
    assert _validate_cli(schema_dir, path) == 1
    out = capsys.readouterr().out
    assert "[encoding] line 1, column 31:" in out
    assert "None" not in out


# ---- properties: containers too -------------------------------------------------------------------

CONTAINERS = [
    SIGNED_FPR,
    signing.base64_text(SIGNED_FPR, width=64),
    _zip({"IT01234567890_00001.xml": FPR}),
    _zip({"IT01234567890_00001.xml.p7m": SIGNED_FPR}),
]


@settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    max_examples=60,
    deadline=None,
)
@given(st.data())
def test_check_never_raises_on_mutated_envelopes_and_archives(
    schemas: SchemaSet, data: st.DataObject
) -> None:
    original = data.draw(st.sampled_from(CONTAINERS))
    position = data.draw(st.integers(0, len(original) - 1))
    chunk = data.draw(st.binary(max_size=8))
    mutated = original[:position] + chunk + original[position + data.draw(st.integers(0, 8)) :]
    name = data.draw(st.sampled_from([SIGNED, ARCHIVE, NAME, "x"]))
    problems = validate.check(mutated, name, schemas)
    assert all(isinstance(p, validate.Problem) for p in problems)
    assert all("None" not in p.location for p in problems)


def test_cli_validate_goes_on_after_an_unreadable_path(
    schema_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / NAME
    good.write_bytes(sample.fpr12())
    assert _validate_cli(schema_dir, tmp_path / "missing.xml", tmp_path, good) == 1
    captured = capsys.readouterr()
    assert f"{good}: OK, ready to send to SDI" in captured.out
    assert "missing.xml: cannot read the file" in captured.err
    assert f"{tmp_path}: not a regular file" in captured.err
