"""report: the exact JSON shape of contracts.md section 1 and the clerk-readable summary."""

from __future__ import annotations

import json
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pecgateway.classify import Node, classify
from pecgateway.report import render_text, to_json
from tests.test_classify import (
    INVOICE_NAME,
    invoice_xml,
    mutated,
    notification_xml,
    ns_xml,
    p7m,
    pec_envelope,
    pec_receipt,
    plain_mail,
    zip_of,
)

COMMON = {"kind", "warnings", "sha256", "contents"}
BLOCKS = {"invoice", "notification", "pec"}
INVOICE_KEYS = {
    "format", "signed", "signers", "transmitter", "progressivo_invio", "codice_destinatario",
    "pec_destinatario", "seller", "buyer", "documents",
}  # fmt: skip
NOTIFICATION_KEYS = {
    "type", "flow", "root", "identificativo_sdi", "nome_file", "message_id", "pec_message_id",
    "data_ora_ricezione", "errors", "esito", "signed",
}  # fmt: skip
PEC_KEYS = {
    "type", "identificativo", "riferimento_message_id", "mittente", "destinatari", "oggetto",
    "gestore", "errore", "errore_esteso", "sdi_address",
}  # fmt: skip
BLOCK_OF_KIND = {"invoice": "invoice", "sdi-notification": "notification", "pec": "pec"}


def assert_contract_shape(obj: dict[str, object], *, top: bool = True) -> None:
    """One object of contracts.md section 1, recursively; used by the CLI and conformance tests."""
    assert obj.keys() >= COMMON
    assert ("path" in obj) is top
    assert ("filename" in obj) is not top
    kind = obj["kind"]
    assert kind in {
        "invoice",
        "sdi-notification",
        "pec",
        "email",
        "archive",
        "malformed",
        "unknown",
    }
    assert ("error" in obj) is (kind in ("malformed", "unknown"))
    if "error" in obj:
        assert isinstance(obj["error"], str)
        assert obj["error"]
    present = BLOCKS & obj.keys()
    expected = {BLOCK_OF_KIND[str(kind)]} if kind in BLOCK_OF_KIND else set()
    assert present == expected, f"kind {kind} carries {present}"
    required = {"invoice": INVOICE_KEYS, "notification": NOTIFICATION_KEYS, "pec": PEC_KEYS}
    for block in present:
        value = obj[block]
        assert isinstance(value, dict)
        assert required[block] <= value.keys(), required[block] - value.keys()
    assert isinstance(obj["warnings"], list)
    assert all(isinstance(w, str) for w in obj["warnings"])
    assert isinstance(obj["sha256"], str)
    assert len(obj["sha256"]) == 64
    contents = obj["contents"]
    assert isinstance(contents, list)
    for child in contents:
        assert isinstance(child, dict)
        assert_contract_shape(child, top=False)


def _json(node: Node, path: str = "given/path") -> dict[str, object]:
    obj = to_json(node, path)
    assert json.loads(json.dumps(obj)) == obj
    assert_contract_shape(obj)
    return obj


def test_invoice_json_has_the_contract_fields_and_values() -> None:
    obj = _json(classify(invoice_xml("42"), INVOICE_NAME), "in/IT01234567890_00001.xml")
    assert obj["path"] == "in/IT01234567890_00001.xml"
    assert obj["kind"] == "invoice"
    block = obj["invoice"]
    assert isinstance(block, dict)
    assert block["format"] == "FPR12"
    assert block["signed"] is False
    assert block["signers"] == []
    assert block["transmitter"] == "IT01234567890"
    assert block["progressivo_invio"] == "00001"
    assert block["codice_destinatario"] == "0000000"
    assert block["pec_destinatario"] == "acquisti@pec.beta.example.it"
    assert block["seller"] == {"vat": "IT01234567890", "codice_fiscale": None,
                               "name": "ALFA SERVIZI SRL"}  # fmt: skip
    assert block["documents"] == [
        {"tipo_documento": "TD01", "numero": "42", "data": "2024-03-01",
         "importo_totale": "122.00", "divisa": "EUR"}
    ]  # fmt: skip


def test_signed_invoice_json_lists_signers_with_subject_and_signing_time() -> None:
    obj = _json(classify(p7m(invoice_xml()), "IT01234567890_00001.xml.p7m"))
    block = obj["invoice"]
    assert isinstance(block, dict)
    assert block["signed"] is True
    signers = block["signers"]
    assert isinstance(signers, list)
    assert len(signers) == 1
    assert set(signers[0]) == {"subject", "signing_time"}
    assert "ROSSI MARIO" in signers[0]["subject"]


def test_notification_json_has_the_contract_fields_and_values() -> None:
    obj = _json(classify(ns_xml(), "IT01234567890_00001_NS_001.xml"))
    assert obj["kind"] == "sdi-notification"
    block = obj["notification"]
    assert isinstance(block, dict)
    assert block["type"] == "NS"
    assert block["flow"] == "PA"
    assert block["root"] == "NotificaScarto"
    assert block["identificativo_sdi"] == "6782414"
    assert block["nome_file"] == INVOICE_NAME
    assert block["message_id"] == "1269788243"
    assert block["errors"] == [
        {"codice": "00200", "descrizione": "File non conforme al formato", "suggerimento": None}
    ]
    assert block["signed"] is False


def test_pec_envelope_json_lists_the_original_attachments_with_filenames() -> None:
    mt = notification_xml("MetadatiInvioFile")
    data = pec_envelope({"IT01234567890_00001_MT_001.xml": mt, INVOICE_NAME: invoice_xml()})
    obj = _json(classify(data, "busta.eml"))
    assert obj["kind"] == "pec"
    block = obj["pec"]
    assert isinstance(block, dict)
    assert block["type"] == "posta-certificata"
    assert block["sdi_address"] == "sdi01@pec.fatturapa.it"
    contents = obj["contents"]
    assert isinstance(contents, list)
    assert [(c["filename"], c["kind"]) for c in contents] == [
        ("IT01234567890_00001_MT_001.xml", "sdi-notification"),
        (INVOICE_NAME, "invoice"),
    ]


def test_pec_receipt_json_carries_the_reference_to_our_message() -> None:
    obj = _json(classify(pec_receipt(), "ricevuta.eml"))
    block = obj["pec"]
    assert isinstance(block, dict)
    assert block["type"] == "accettazione"
    assert block["riferimento_message_id"] == "<out-1@alfa.example.it>"
    assert block["sdi_address"] is None


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (plain_mail({INVOICE_NAME: invoice_xml()}), "email"),
        (zip_of({INVOICE_NAME: invoice_xml()}), "archive"),
    ],
)
def test_email_and_archive_carry_only_contents(data: bytes, kind: str) -> None:
    obj = _json(classify(data, "x"))
    assert obj["kind"] == kind
    assert not BLOCKS & obj.keys()
    contents = obj["contents"]
    assert isinstance(contents, list)
    assert contents[0]["filename"] == INVOICE_NAME
    assert contents[0]["kind"] == "invoice"


@pytest.mark.parametrize(("data", "kind"), [(b"", "malformed"), (b"\x00\x01binary", "unknown")])
def test_malformed_and_unknown_carry_the_error(data: bytes, kind: str) -> None:
    obj = _json(classify(data, "x.bin"))
    assert obj["kind"] == kind
    assert obj["error"]


def test_path_defaults_to_the_file_name() -> None:
    assert to_json(classify(invoice_xml(), INVOICE_NAME))["path"] == INVOICE_NAME


def test_text_summary_of_an_invoice_names_the_key_facts() -> None:
    text = render_text(classify(b"\xef\xbb\xbf" + invoice_xml("42"), INVOICE_NAME), "a.xml")
    assert text.startswith("a.xml: electronic invoice FPR12, not signed")
    assert "IT01234567890" in text
    assert "no. 42 of 2024-03-01, total 122.00 EUR" in text
    assert "ALFA SERVIZI SRL" in text
    assert "note: stripped UTF-8 BOM" in text


def test_text_summary_indents_the_contents_under_their_container() -> None:
    text = render_text(classify(zip_of({INVOICE_NAME: invoice_xml()}), "lot.zip"), "lot.zip")
    lines = text.splitlines()
    assert lines[0] == "lot.zip: zip archive"
    assert lines[1] == "  contains 1 file(s):"
    assert lines[2].startswith(f"    {INVOICE_NAME}: electronic invoice FPR12")


def test_text_summary_of_a_notification_explains_it() -> None:
    text = render_text(classify(ns_xml(), "IT01234567890_00001_NS_001.xml"))
    assert "SDI notification NS" in text
    assert "SDI refused the invoice" in text
    assert "error 00200: File non conforme al formato" in text


def test_text_summary_of_an_outcome_notification_gives_the_esito() -> None:
    ne = notification_xml(
        "NotificaEsito", extra="<EsitoCommittente><Esito>EC02</Esito></EsitoCommittente>"
    )
    text = render_text(classify(ne, "IT01234567890_00001_NE_001.xml"))
    assert "SDI notification NE" in text
    assert "  esito EC02" in text.splitlines()


def _errore_consegna_receipt() -> bytes:
    """A provider's non-delivery receipt (errore-consegna) whose daticert says why."""
    daticert = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<postacert tipo="errore-consegna" errore="no-dest">'
        "<intestazione><mittente>fatture@pec.alfa.example.it</mittente>"
        '<destinatari tipo="certificato">sdi01@pec.fatturapa.it</destinatari>'
        f"<oggetto>{INVOICE_NAME}</oggetto></intestazione>"
        "<dati><gestore-emittente>Provider PEC S.p.A.</gestore-emittente>"
        "<identificativo>opec2.20240301100000.3@pec.provider.example.it</identificativo>"
        "<errore-esteso>5.1.1 - Utente non valido</errore-esteso></dati></postacert>"
    ).encode()
    receipt = EmailMessage()
    receipt["From"] = "posta-certificata@pec.provider.example.it"
    receipt["To"] = "fatture@pec.alfa.example.it"
    receipt["Subject"] = f"AVVISO DI MANCATA CONSEGNA: {INVOICE_NAME}"
    receipt["Message-ID"] = "<opec2.20240301100000.3@pec.provider.example.it>"
    receipt["X-Ricevuta"] = "errore-consegna"
    receipt["X-Riferimento-Message-ID"] = "<out-1@alfa.example.it>"
    receipt.set_content("Errore di consegna.")
    receipt.add_attachment(daticert, maintype="application", subtype="xml", filename="daticert.xml")
    return receipt.as_bytes()


def test_text_summary_of_a_delivery_error_receipt_gives_the_error_and_its_detail() -> None:
    text = render_text(classify(_errore_consegna_receipt()), "mancata.eml")
    assert text.startswith("mancata.eml: PEC message (errore-consegna)")
    assert "  error: no-dest 5.1.1 - Utente non valido" in text.splitlines()


def test_text_summary_of_an_accepted_receipt_shows_no_error_line() -> None:
    text = render_text(classify(pec_receipt()), "accettazione.eml")
    assert not any(line.strip().startswith("error:") for line in text.splitlines())


def test_text_summary_of_a_broken_file_says_why() -> None:
    text = render_text(classify(b"", "x.xml"), "x.xml")
    assert text == "x.xml: damaged or unreadable: empty file: there is nothing to read"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=1024), mutated()))
def test_json_and_text_are_total_and_keep_the_shape(data: bytes) -> None:
    node = classify(data, "input")
    _json(node)
    assert render_text(node).startswith("input: ")
