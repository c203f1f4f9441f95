"""Tolerant invoice reading: the facts of FPA12/FPR12/FSM10/SDI11, and every repair of section B."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pecgateway import invoice, sample
from pecgateway.errors import MalformedMessage
from pecgateway.invoice import Document, Party
from tests.conftest import CORPUS
from tests.factory.invoices import (
    big_invoice,
    manifest_facts,
    manifest_rows,
    replace_once,
    with_declaration,
    without_declaration,
)

# ---- facts ---------------------------------------------------------------------------------------

FACTS = [
    pytest.param(
        sample.fpr12(
            transmitter="IT01234567890",
            progressivo_invio="ABC12",
            codice_destinatario="0000000",
            pec_destinatario="beta@pec.example.it",
            numero="FT/7",
            data="2024-03-01",
            importo="200.00",
        ),
        ("FPR12", "B2B", "IT01234567890", "ABC12", "0000000", "beta@pec.example.it"),
        Document("TD01", "FT/7", "2024-03-01", "244.00", "EUR"),
        id="fpr12",
    ),
    pytest.param(
        sample.fpa12(codice_destinatario="UFPQ1O", numero="42"),
        ("FPA12", "PA", "IT01234567890", "00001", "UFPQ1O", None),
        Document("TD01", "42", "2024-01-15", "122.00", "EUR"),
        id="fpa12",
    ),
    pytest.param(
        sample.fsm10(numero="S1", importo="50.00"),
        ("FSM10", "B2B", "IT01234567890", "00001", "0000000", None),
        Document("TD07", "S1", "2024-01-15", None, "EUR"),
        id="fsm10-has-no-importo-totale",
    ),
]


@pytest.mark.parametrize(("data", "header", "document"), FACTS)
def test_parse_extracts_the_routing_facts_and_the_document(
    data: bytes, header: tuple[str, ...], document: Document
) -> None:
    parsed = invoice.parse(data)
    found = (
        parsed.format,
        parsed.flow,
        parsed.transmitter,
        parsed.progressivo_invio,
        parsed.codice_destinatario,
        parsed.pec_destinatario,
    )
    assert found == header
    assert parsed.documents == (document,)
    assert parsed.warnings == ()


@pytest.mark.parametrize("builder", [sample.fpr12, sample.fpa12, sample.fsm10])
def test_parse_reads_seller_and_buyer(builder: object) -> None:
    assert callable(builder)
    seller = Party("IT11111111111", "RSSMRA80A01H501U", "VENDITORE SRL")
    buyer = Party(None, "BNCGVN80A01F205X", "GIOVANNI BIANCHI")
    parsed = invoice.parse(builder(seller=seller, buyer=buyer))
    assert parsed.seller == seller
    assert parsed.buyer == buyer


def test_parse_joins_nome_and_cognome_when_there_is_no_denominazione() -> None:
    data = replace_once(
        sample.fpr12(),
        b"<Denominazione>BETA COMMERCIO SPA</Denominazione>",
        b"<Nome> Mario </Nome><Cognome>Rossi</Cognome>",
    )
    assert invoice.parse(data).buyer.name == "Mario Rossi"


def test_parse_ignores_the_fiscal_representative_of_the_buyer() -> None:
    data = replace_once(
        sample.fpr12(buyer=Party(None, "BNCGVN80A01F205X", "GIOVANNI BIANCHI")),
        b"</CessionarioCommittente>",
        b"<RappresentanteFiscale><IdFiscaleIVA><IdPaese>IT</IdPaese><IdCodice>55555555555"
        b"</IdCodice></IdFiscaleIVA><Denominazione>RAPPRESENTANTE</Denominazione>"
        b"</RappresentanteFiscale></CessionarioCommittente>",
    )
    buyer = invoice.parse(data).buyer
    assert buyer.vat is None
    assert buyer.name == "GIOVANNI BIANCHI"


def test_parse_gives_one_document_per_body_of_a_lot() -> None:
    lot = [sample.Body("1", "2024-01-01"), sample.Body("2", "2024-01-02", tipo_documento="TD04")]
    documents = invoice.parse(sample.fpr12(lot=lot)).documents
    assert [(d.numero, d.data, d.tipo_documento) for d in documents] == [
        ("1", "2024-01-01", "TD01"),
        ("2", "2024-01-02", "TD04"),
    ]


def test_parse_strips_whitespace_around_values() -> None:
    data = replace_once(sample.fpr12(), b"<Numero>1</Numero>", b"<Numero>\n  1 \n</Numero>")
    assert invoice.parse(data).documents[0].numero == "1"


OLD_11 = b"""<?xml version="1.0" encoding="UTF-8"?>
<p:FatturaElettronica versione="1.1" xmlns:p="http://www.fatturapa.gov.it/sdi/fatturapa/v1.1">
<FatturaElettronicaHeader><DatiTrasmissione>
<IdTrasmittente><IdPaese>IT</IdPaese><IdCodice>01234567890</IdCodice></IdTrasmittente>
<ProgressivoInvio>00001</ProgressivoInvio>%s<CodiceDestinatario>AAAAAA</CodiceDestinatario>
</DatiTrasmissione></FatturaElettronicaHeader>
<FatturaElettronicaBody><DatiGenerali><DatiGeneraliDocumento><TipoDocumento>TD01</TipoDocumento>
<Divisa>EUR</Divisa><Data>2014-01-01</Data><Numero>9</Numero></DatiGeneraliDocumento>
</DatiGenerali></FatturaElettronicaBody></p:FatturaElettronica>"""


@pytest.mark.parametrize(
    "formato",
    [b"<FormatoTrasmissione>SDI11</FormatoTrasmissione>", b""],
    ids=["declared", "absent"],
)
def test_old_version_1_1_invoice_is_format_sdi11_of_the_pa_flow(formato: bytes) -> None:
    parsed = invoice.parse(OLD_11 % formato)
    assert (parsed.format, parsed.versione, parsed.flow) == ("SDI11", "1.1", "PA")
    assert parsed.documents[0].numero == "9"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("FatturaElettronica", True),
        ("FatturaElettronicaSemplificata", True),
        ("RicevutaConsegna", False),
        ("fatturaelettronica", False),
    ],
)
def test_is_invoice_root_knows_the_two_invoice_roots(name: str, expected: bool) -> None:
    assert invoice.is_invoice_root(name) is expected


# ---- section B: repairs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boms", "warning"), [(1, "stripped UTF-8 BOM"), (2, "stripped 2 UTF-8 BOMs")]
)
def test_bl16_inbound_bom_is_tolerated_and_reported(boms: int, warning: str) -> None:
    parsed = invoice.parse(b"\xef\xbb\xbf" * boms + sample.fpr12(numero="7"))
    assert parsed.documents[0].numero == "7"
    assert warning in parsed.warnings


def test_bl17_declared_utf8_but_cp1252_is_decoded_as_cp1252_with_a_warning() -> None:
    data = replace_once(sample.fpr12(), b"ALFA SERVIZI SRL", "ALFA 20° SRL €".encode("cp1252"))
    parsed = invoice.parse(data)
    assert parsed.seller.name == "ALFA 20° SRL €"
    assert "declared UTF-8 but not valid UTF-8: decoded as cp1252" in parsed.warnings


@pytest.mark.parametrize("encoding", ["windows-1252", "ISO-8859-1", "iso-8859-15"])
def test_bl17_declared_8bit_encoding_is_honoured(encoding: str) -> None:
    data = with_declaration(sample.fpr12(), encoding)
    data = replace_once(data, b"ALFA SERVIZI SRL", "CITTÀ SRL".encode(encoding))
    parsed = invoice.parse(data)
    assert parsed.seller.name == "CITTÀ SRL"
    assert any(encoding in warning for warning in parsed.warnings)


def test_bl17_undeclared_latin1_is_decoded_with_a_warning() -> None:
    data = without_declaration(sample.fpr12())
    data = replace_once(data, b"ALFA SERVIZI SRL", "PERCHÉ SRL".encode("latin-1"))
    parsed = invoice.parse(data)
    assert parsed.seller.name == "PERCHÉ SRL"
    assert "no encoding declared and not valid UTF-8: decoded as cp1252" in parsed.warnings


def test_bl18_inbound_control_character_is_read_with_recovery() -> None:
    data = replace_once(sample.fpr12(), b"<Numero>1</Numero>", b"<Numero>1\x1b2</Numero>")
    parsed = invoice.parse(data)
    assert parsed.documents[0].numero is not None
    assert any(w.startswith("parsed with error recovery") for w in parsed.warnings)


BAD_NAMESPACES = [
    pytest.param(
        b' xmlns:ds="http://www.w3.org/2000/09/xmldsig#&quot;"',
        "removed an escaped quote (&quot;) from a namespace URI",
        id="escaped-quote",
    ),
    pytest.param(
        b' xmlns:pfx6="http://www.example.com/XSD riepilogo_fattura_ordinaria_v1.2_mod.xsd"',
        "replaced spaces in a namespace URI",
        id="space-in-uri",
    ),
    pytest.param(
        b' xmlns:schemaLocation="http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2 '
        b'fatturaordinaria_v1.2.xsd"',
        "removed a stray xmlns:schemaLocation declaration",
        id="stray-schema-location",
    ),
]


@pytest.mark.parametrize(("declaration", "warning"), BAD_NAMESPACES)
def test_bl19_bad_namespace_declarations_are_cleaned_and_reported(
    declaration: bytes, warning: str
) -> None:
    data = replace_once(
        sample.fpr12(numero="19"), b' versione="FPR12"', b' versione="FPR12"' + declaration
    )
    parsed = invoice.parse(data)
    assert parsed.documents[0].numero == "19"
    assert parsed.transmitter == "IT01234567890"
    assert warning in parsed.warnings


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no XML markup"),
        (b"   \x00\n", "no XML markup"),
        (b"%PDF-1.4 binary", "no XML markup"),
        (b"<ns1:Fattura Elettronica versione='FPR12'>", "root element is"),
        (
            b"<?xml version='1.0'?><RicevutaConsegna/>",
            "not a FatturaPA invoice: root element is RicevutaConsegna",
        ),
        (b"<a><b></a>", r"root element is a \(parsed with error recovery"),
        (b"<!DOCTYPE x [<!ENTITY e 'x'>]><FatturaElettronica/>", "DOCTYPE"),
    ],
    ids=["empty", "blank", "not-xml", "broken-root", "notification", "unrecoverable", "doctype"],
)
def test_bl21_unreadable_or_foreign_root_raises_malformed_message(
    data: bytes, message: str
) -> None:
    with pytest.raises(MalformedMessage, match=message):
        invoice.parse(data)


def test_bl22_large_invoice_with_embedded_attachment_parses() -> None:
    data = big_invoice(3 * 1024 * 1024)
    assert len(data) > 4 * 1024 * 1024
    parsed = invoice.parse(data)
    assert parsed.documents[0].numero == "1"
    assert parsed.warnings == ()


def test_bl09_junk_whitespace_and_nuls_before_the_root_are_dropped() -> None:
    parsed = invoice.parse(b"\x00\x00 \r\n\x05\x06garbage" + sample.fpr12(numero="9"))
    assert parsed.documents[0].numero == "9"
    assert "dropped 9 byte(s) of junk before the first '<'" in parsed.warnings


def test_q8_invoice_without_xml_declaration_parses_without_warnings() -> None:
    parsed = invoice.parse(without_declaration(sample.fpa12(numero="8")))
    assert parsed.documents[0].numero == "8"
    assert parsed.warnings == ()


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_document_with_bom_is_decoded(codec: str) -> None:
    bom = b"\xff\xfe" if codec == "utf-16-le" else b"\xfe\xff"
    text = (
        sample.fpr12(numero="16").decode("utf-8").replace("encoding='UTF-8'", "encoding='UTF-16'")
    )
    parsed = invoice.parse(bom + text.encode(codec))
    assert parsed.documents[0].numero == "16"
    assert "decoded UTF-16 document" in parsed.warnings


def test_decode_text_returns_utf8_without_declaration() -> None:
    data = with_declaration(sample.fpr12(), "windows-1252")
    data = replace_once(data, b"ALFA SERVIZI SRL", "ALFA ° SRL".encode("cp1252"))
    clean, warnings = invoice.decode_text(b"\xef\xbb\xbf" + data)
    assert clean.startswith(b"\n<p:FatturaElettronica")  # the line is kept: line numbers stay true
    assert "ALFA ° SRL".encode() in clean
    assert warnings == ("stripped UTF-8 BOM", "converted from the declared windows-1252 to UTF-8")


def test_decode_text_reads_unknown_declared_encoding_as_utf8() -> None:
    clean, warnings = invoice.decode_text(
        b'<?xml version="1.0" encoding="klingon"?><a>\xc3\xa8</a>'
    )
    assert clean == "<a>è</a>".encode()
    assert warnings == ("unknown encoding 'klingon' declared: read as UTF-8",)


def test_decode_text_reads_utf8_bytes_the_declared_encoding_cannot_decode_as_utf8() -> None:
    clean, warnings = invoice.decode_text(
        b'<?xml version="1.0" encoding="US-ASCII"?><a>\xc3\xa8</a>'
    )
    assert clean == "<a>è</a>".encode()
    assert warnings == ("declared encoding 'US-ASCII' does not fit the bytes: read as UTF-8",)


def test_decode_text_refuses_a_utf16_bom_before_bytes_that_are_not_utf16() -> None:
    with pytest.raises(MalformedMessage, match="UTF-16 byte order mark but is not UTF-16"):
        invoice.decode_text(b"\xff\xfe<?xml")  # odd length: no UTF-16 text


# ---- properties ------------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.binary(max_size=2048))
def test_parse_returns_an_invoice_or_raises_malformed_message_on_arbitrary_bytes(
    data: bytes,
) -> None:
    try:
        parsed = invoice.parse(data)
    except MalformedMessage:
        return
    assert isinstance(parsed, invoice.Invoice)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.data())
def test_parse_is_total_on_mutated_invoices(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from([sample.fpr12(), sample.fpa12(), sample.fsm10()]))
    position = data.draw(st.integers(0, len(original) - 1))
    chunk = data.draw(st.binary(min_size=0, max_size=8))
    cut = data.draw(st.integers(0, 8))
    mutated = original[:position] + chunk + original[position + cut :]
    try:
        parsed = invoice.parse(mutated)
    except MalformedMessage:
        return
    assert isinstance(parsed.documents, tuple)


@given(st.binary(max_size=512))
def test_decode_text_gives_utf8_without_declaration_or_raises_malformed_message(
    data: bytes,
) -> None:
    try:
        clean, warnings = invoice.decode_text(data)
    except MalformedMessage:
        return
    assert not clean.startswith((b"<?xml ", b"\xef\xbb\xbf"))
    clean.decode("utf-8")
    assert all(isinstance(w, str) for w in warnings)


@given(st.text(max_size=200))
def test_decode_text_round_trips_any_text_after_a_declaration(text: str) -> None:
    document = f"<?xml version='1.0' encoding='UTF-8'?><a>{text}</a>".encode(
        "utf-8", "surrogatepass"
    )
    try:
        clean, _ = invoice.decode_text(document)
    except UnicodeDecodeError:  # pragma: no cover - surrogates cannot be encoded to begin with
        return
    assert (
        clean == document[len("<?xml version='1.0' encoding='UTF-8'?>") :] or not text.isprintable()
    )


# ---- conformance -----------------------------------------------------------------------------------

INVOICE_ROWS = manifest_rows(CORPUS, "invoice-F")
MALFORMED_ROWS = manifest_rows(CORPUS, "invoice-malformed")
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def _split(value: str | None) -> list[str]:
    return [] if value is None else [part.strip() for part in value.split("|")]


@pytest.mark.conformance
@needs_corpus
@pytest.mark.parametrize("row", INVOICE_ROWS, ids=lambda row: Path(row["local_path"]).name)
def test_corpus_invoice_facts_match_the_manifest(row: dict[str, str]) -> None:
    expected = manifest_facts(row["expected_facts"])
    parsed = invoice.parse((CORPUS / row["local_path"]).read_bytes())
    assert parsed.format == row["kind"].removeprefix("invoice-")
    documents = parsed.documents
    if "bodies" in expected:
        assert len(documents) == int(expected["bodies"])
    for key, attribute in [
        ("Numero", "numero"),
        ("Data", "data"),
        ("TipoDocumento", "tipo_documento"),
        ("ImportoTotaleDocumento", "importo_totale"),
    ]:
        if key in expected:
            assert [getattr(d, attribute) for d in documents] == _split(expected[key])
    if "IdTrasmittente" in expected:
        assert (parsed.transmitter or "") == expected["IdTrasmittente"].replace("None", "")
    if "ProgressivoInvio" in expected:
        assert parsed.progressivo_invio == expected["ProgressivoInvio"]
    if "CodiceDestinatario" in expected:
        assert parsed.codice_destinatario == expected["CodiceDestinatario"]


@pytest.mark.conformance
@needs_corpus
@pytest.mark.parametrize("row", MALFORMED_ROWS, ids=lambda row: Path(row["local_path"]).name)
def test_corpus_malformed_invoices_raise_malformed_message(row: dict[str, str]) -> None:
    with pytest.raises(MalformedMessage, match=r"not a FatturaPA invoice|unreadable|cut short"):
        invoice.parse((CORPUS / row["local_path"]).read_bytes())


def test_encoding_declaration_with_a_nul_byte_is_read_as_utf8_with_a_warning() -> None:
    """Found by the sdi property tests: codecs.lookup raises ValueError on an embedded NUL."""
    from pecgateway import invoice as invoice_module

    data = b'<?xml version="1.0" encoding="utf\x00-8"?><a>x</a>'
    text, warnings = invoice_module.decode_text(data)
    assert b"<a>x</a>" in text
    assert any("unknown encoding" in w for w in warnings)


def test_truncated_invoice_is_malformed_even_though_recovery_could_read_its_head() -> None:
    """Recovery is for odd markup SDI accepted (BL-19), never for a file that was cut short."""
    from pecgateway import invoice as invoice_module
    from pecgateway import sample
    from pecgateway.errors import MalformedMessage

    data = sample.fpr12()
    with pytest.raises(MalformedMessage, match="cut short"):
        invoice_module.parse(data[: len(data) // 2])
