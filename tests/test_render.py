"""render: invoices as HTML through the official stylesheets; the XSLT never touches files or network."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pecgateway import render, sample, schema
from pecgateway.errors import ConfigError, MalformedMessage
from pecgateway.invoice import Party
from tests.conftest import CORPUS, schema_source_dir

ORDINARIA = "Foglio_di_stile_fatturaordinaria_v1.2.2.xsl"
SEMPLIFICATA = "fatturasemplificata_v1.0.xsl"
ASSOSOFTWARE = "FoglioStileAssoSoftware.xsl"
NUMERO = "FT-2024/0917"
# line price 1234.56 at 22%: ordinaria total 1506.16; semplificata's Importo is the total itself
FORMATS: list[tuple[Callable[..., bytes], str, tuple[str, str]]] = [
    (sample.fpr12, ORDINARIA, ("1506.16", "1.506,16")),
    (sample.fpa12, ORDINARIA, ("1506.16", "1.506,16")),
    (sample.fsm10, SEMPLIFICATA, ("1234.56", "1.234,56")),
]
XSL_HEAD = (
    b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'
    b' xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl">'
    b'<xsl:output method="html"/><xsl:template match="/"><html><body>'
)
XSL_TAIL = b"<xsl:value-of select='//Numero'/></body></html></xsl:template></xsl:stylesheet>"


@pytest.fixture(scope="module")
def stylesheet_dir(schema_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed schemas plus the official stylesheets, installed with `schemas install`."""
    target = tmp_path_factory.mktemp("with-stylesheets") / "schemas"
    shutil.copytree(schema_dir, target)
    for source in (schema_source_dir(), CORPUS / "other"):
        if any(source.glob("*.xsl")):
            schema.install(source, target)
    if not any(target.glob("*.xsl")):
        pytest.fail(
            "the official XSL stylesheets were not found in PECGATEWAY_TEST_SCHEMAS nor in corpus/other"
        )
    return target


def _stylesheet(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "test.xsl"
    path.write_bytes(XSL_HEAD + body + XSL_TAIL)
    return path


@pytest.mark.parametrize(("build", "official", "totals"), FORMATS, ids=["FPR12", "FPA12", "FSM10"])
def test_each_format_renders_number_seller_and_total_with_its_official_stylesheet(
    stylesheet_dir: Path, build: Callable[..., bytes], official: str, totals: tuple[str, str]
) -> None:
    xml = build(numero=NUMERO, importo="1234.56")
    chosen = render.stylesheet_for_invoice(stylesheet_dir, xml)
    assert chosen == stylesheet_dir / official
    html = render.render_html(xml, chosen).decode("utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    assert html.count("charset") == 1
    assert '<meta charset="UTF-8">' in html
    for shown in (NUMERO, "ALFA SERVIZI SRL", totals[0]):
        assert shown in html


@pytest.mark.parametrize(("build", "official", "totals"), FORMATS, ids=["FPR12", "FPA12", "FSM10"])
def test_assosoftware_stylesheet_renders_every_format(
    stylesheet_dir: Path, build: Callable[..., bytes], official: str, totals: tuple[str, str]
) -> None:
    html = render.render_html(
        build(numero=NUMERO, importo="1234.56"), stylesheet_dir / ASSOSOFTWARE
    )
    text = html.decode("utf-8")
    for shown in (NUMERO, "ALFA SERVIZI SRL", totals[1]):
        assert shown in text


def test_bom_and_cp1252_invoice_renders_accented_seller_as_utf8(stylesheet_dir: Path) -> None:
    seller = Party(vat="IT01234567890", codice_fiscale=None, name="CAFFÈ ÀLFA SRL")
    xml = sample.fpr12(seller=seller).decode("utf-8").replace("'UTF-8'", "'windows-1252'")
    html = render.render_html(b"\xef\xbb\xbf" + xml.encode("cp1252"), stylesheet_dir / ORDINARIA)
    assert "CAFFÈ ÀLFA SRL" in html.decode("utf-8")


def test_no_stylesheet_installed_gives_none(schema_dir: Path) -> None:
    assert render.stylesheet_for_invoice(schema_dir, sample.fpr12()) is None


def test_stylesheet_reading_a_local_file_is_refused(tmp_path: Path) -> None:
    xsl = _stylesheet(tmp_path, b"<xsl:value-of select=\"document('file:///etc/passwd')\"/>")
    with pytest.raises(ConfigError, match="refused") as caught:
        render.render_html(sample.fpr12(), xsl)
    assert "root:" not in str(caught.value)


def test_stylesheet_reading_the_network_is_refused(tmp_path: Path) -> None:
    xsl = _stylesheet(tmp_path, b"<xsl:copy-of select=\"document('http://127.0.0.1:9/x.xml')\"/>")
    with pytest.raises(ConfigError, match="refused"):
        render.render_html(sample.fpr12(), xsl)


def test_stylesheet_writing_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    body = f'<exsl:document href="{target.as_uri()}" method="text">x</exsl:document>'.encode()
    with pytest.raises(ConfigError, match="refused"):
        render.render_html(sample.fpr12(), _stylesheet(tmp_path, body))
    assert not target.exists()


def test_invoice_document_call_cannot_reach_files(tmp_path: Path) -> None:
    # a stylesheet that follows a URL found in the (untrusted) invoice: still no file access
    xsl = _stylesheet(tmp_path, b"<xsl:copy-of select='document(//Descrizione)'/>")
    xml = sample.fpr12().replace(b"Consulenza informatica", b"file:///etc/passwd")
    with pytest.raises(ConfigError, match="refused"):
        render.render_html(xml, xsl)


def test_own_minimal_stylesheet_output_is_complete_utf8_html(tmp_path: Path) -> None:
    html = render.render_html(sample.fpr12(numero="N°7"), _stylesheet(tmp_path, b""))
    assert html.startswith(b'<!DOCTYPE html>\n<html><head><meta charset="UTF-8"></head><body>')
    assert "N°7".encode() in html


@pytest.mark.parametrize(
    "xml",
    [
        b"<p:FatturaElettronica versione='FPR12'><unclosed></p:FatturaElettronica>",
        b"not xml at all",
        b"",
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        b"<RicevutaConsegna/>",
    ],
    ids=["not-well-formed", "no-markup", "empty", "doctype", "not-an-invoice"],
)
def test_bad_invoice_xml_is_malformed_message(tmp_path: Path, xml: bytes) -> None:
    with pytest.raises(MalformedMessage):
        render.render_html(xml, _stylesheet(tmp_path, b""))


def test_oversized_invoice_is_malformed_message_before_parsing(tmp_path: Path) -> None:
    xml = sample.fpr12().replace(b"</p:", b" " * render.MAX_RENDER_BYTES + b"</p:", 1)
    with pytest.raises(MalformedMessage, match="larger than"):
        render.render_html(xml, _stylesheet(tmp_path, b""))


def test_missing_or_broken_stylesheet_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        render.render_html(sample.fpr12(), tmp_path / "absent.xsl")
    broken = tmp_path / "broken.xsl"
    broken.write_bytes(
        b"<xsl:stylesheet xmlns:xsl='http://www.w3.org/1999/XSL/Transform'><xsl:nope/>"
    )
    with pytest.raises(ConfigError, match="not a usable"):
        render.render_html(sample.fpr12(), broken)


def test_stylesheet_producing_no_html_is_config_error(tmp_path: Path) -> None:
    text = tmp_path / "text.xsl"
    text.write_bytes(
        b"<xsl:stylesheet version='1.0' xmlns:xsl='http://www.w3.org/1999/XSL/Transform'>"
        b"<xsl:output method='text'/><xsl:template match='/'>hello</xsl:template></xsl:stylesheet>"
    )
    with pytest.raises(ConfigError, match="did not produce an HTML document"):
        render.render_html(sample.fpr12(), text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_render_or_raise_malformed_message(
    stylesheet_dir: Path, data: bytes
) -> None:
    try:
        html = render.render_html(data, stylesheet_dir / ORDINARIA)
    except MalformedMessage:
        return  # the one documented error for the invoice's faults; ConfigError would fail here
    assert html.startswith(b"<!DOCTYPE html>")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=8))
def test_mutated_invoice_renders_or_raises_malformed_message(
    stylesheet_dir: Path, cut: int, junk: bytes
) -> None:
    xml = sample.fpr12()
    at = cut % len(xml)
    mutated = xml[:at] + junk + xml[at + len(junk) :]
    try:
        html = render.render_html(mutated, stylesheet_dir / ORDINARIA)
    except MalformedMessage:
        return  # the one documented error for the invoice's faults; ConfigError would fail here
    assert html.startswith(b"<!DOCTYPE html>")
