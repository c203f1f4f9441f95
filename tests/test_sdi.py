"""sdi.parse: every notification type in both families, field faults, and total over any bytes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pecgateway import sdi
from pecgateway.errors import MalformedMessage
from pecgateway.filename import NotificationType
from tests.conftest import CORPUS
from tests.factory.notifications import NS_B2B, NS_PA, ROOTS, build_notification

T = NotificationType
ALL_KINDS = sorted(ROOTS, key=lambda key: (key[0].value, key[1]))


@pytest.mark.parametrize(("kind", "flow"), ALL_KINDS, ids=lambda v: getattr(v, "value", v))
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_every_type_and_family_is_recognised_by_root(
    kind: NotificationType, flow: str, signed: bool
) -> None:
    data = build_notification(kind, flow, signed=signed)
    notification = sdi.parse(data)
    assert notification.type is kind
    assert notification.flow is sdi.Flow(flow)
    assert notification.root == ROOTS[(kind, flow)]
    assert notification.identificativo_sdi == "111"
    assert notification.signed is signed
    assert notification.warnings == ()


@pytest.mark.parametrize(("kind", "flow"), ALL_KINDS, ids=lambda v: getattr(v, "value", v))
def test_fields_never_come_from_inside_the_signature(kind: NotificationType, flow: str) -> None:
    data = build_notification(kind, flow, signed=True, signature_first=True)
    notification = sdi.parse(data)
    assert notification.identificativo_sdi == "111"
    assert notification.nome_file in (None, "IT01234567890_11111.xml")
    assert notification.message_id in (None, "123456")


def test_root_type_maps_both_spellings_and_the_typo() -> None:
    assert sdi.root_type("NotificaScarto") is T.NS
    assert sdi.root_type("RicevutaScarto") is T.NS
    assert sdi.root_type("RicevutaImpossibilitaRecapito") is T.MC
    assert sdi.root_type("RicevutaImpossibultaRecapito") is T.MC
    assert sdi.root_type("filemetadati") is T.MT
    assert sdi.root_type("FatturaElettronica") is None


def test_rc_fields_are_read() -> None:
    data = build_notification(T.RC, "B2B", signed=True, pec_message_id="opec1@pec.example.it")
    notification = sdi.parse(data)
    assert notification.nome_file == "IT01234567890_11111.xml"
    assert notification.message_id == "123456"
    assert notification.pec_message_id == "opec1@pec.example.it"
    assert notification.data_ora_ricezione == "2024-05-06T10:00:00.000+02:00"
    assert notification.codice_destinatario == "AAA111"
    assert notification.hash is not None


def test_ns_error_list_keeps_codice_descrizione_suggerimento() -> None:
    errors = [("00200", "File non conforme", "Controllare"), ("00404", "Duplicato", None)]
    notification = sdi.parse(build_notification(T.NS, "B2B", errors=errors))
    assert notification.errors == (
        sdi.SdiError("00200", "File non conforme", "Controllare"),
        sdi.SdiError("00404", "Duplicato", None),
    )


@pytest.mark.parametrize("esito", ["EC01", "EC02"])
def test_ne_esito_comes_from_esito_committente(esito: str) -> None:
    notification = sdi.parse(build_notification(T.NE, esito=esito, signed=True))
    assert notification.esito == esito
    assert notification.identificativo_sdi == "111"


def test_ec_esito_and_se_scarto_are_the_esito() -> None:
    assert sdi.parse(build_notification(T.EC, esito="EC02")).esito == "EC02"
    assert sdi.parse(build_notification(T.SE)).esito == "EN00"


def test_at_hash_is_the_original_file_hash() -> None:
    notification = sdi.parse(build_notification(T.AT, signed=True, hash="ab" * 32))
    assert notification.hash == "ab" * 32
    assert notification.codice_destinatario == "AAA111"


def test_mt_gives_codice_destinatario() -> None:
    notification = sdi.parse(build_notification(T.MT, codice_destinatario="79SRAK"))
    assert notification.codice_destinatario == "79SRAK"
    assert notification.signed is False


def test_mc_b2b_has_data_messa_a_disposizione_and_description() -> None:
    notification = sdi.parse(build_notification(T.MC, "B2B"))
    assert notification.data_messa_a_disposizione == "2024-05-07"
    assert notification.descrizione == "Notifica di prova"


# ---------------------------------------------------------------- field quirks


def test_bl33_ns_whose_nome_file_is_not_a_conforming_name_is_parsed() -> None:
    data = build_notification(T.NS, nome_file="01234567890_00001.xml")
    notification = sdi.parse(data, "01234567890_00001_NS_001.xml")
    assert notification.type is T.NS
    assert notification.nome_file == "01234567890_00001.xml"


def test_bl33_ns_recognised_by_content_under_an_arbitrary_file_name() -> None:
    notification = sdi.parse(build_notification(T.NS), "risposta-sdi.xml")
    assert notification.type is T.NS


@pytest.mark.parametrize(
    ("flow", "root"), [("PA", "NotificaMancataConsegna"), ("B2B", "RicevutaImpossibilitaRecapito")]
)
def test_bl34_mc_parses_in_both_b2b_and_pa(flow: str, root: str) -> None:
    notification = sdi.parse(build_notification(T.MC, flow, signed=True))
    assert notification.type is T.MC
    assert notification.flow is sdi.Flow(flow)
    assert notification.root == root


def test_bl34_mc_with_the_misspelt_b2b_root_is_still_mc() -> None:
    data = build_notification(T.MC, "B2B", root="RicevutaImpossibultaRecapito")
    notification = sdi.parse(data)
    assert notification.type is T.MC
    assert notification.flow is sdi.Flow.B2B


def test_bl35_mt_recognised_by_root_even_with_mt_002_name() -> None:
    data = build_notification(T.MT, "B2B", drop=["Hash", "CodiceDestinatario"])
    notification = sdi.parse(data, "IT02652600210_00007_MT_002.xml")
    assert notification.type is T.MT
    assert notification.root == "FileMetadati"
    assert notification.warnings == ()


def test_q13_notification_invalid_against_its_schema_is_still_parsed() -> None:
    data = build_notification(T.RC, "B2B", drop=["Hash"], empty=["Destinatario"], signed=True)
    notification = sdi.parse(data)
    assert notification.type is T.RC
    assert notification.hash is None
    assert notification.codice_destinatario is None
    assert notification.nome_file == "IT01234567890_11111.xml"


def test_unknown_root_with_notification_file_name_uses_the_name_with_a_warning() -> None:
    data = build_notification(T.RC, root="RicevutaDiConsegnaNuova")
    notification = sdi.parse(data, "IT01234567890_11111_RC_002.xml")
    assert notification.type is T.RC
    assert any("file name" in w for w in notification.warnings)


def test_root_wins_over_a_disagreeing_file_name_with_a_warning() -> None:
    notification = sdi.parse(build_notification(T.NS), "IT01234567890_11111_RC_001.xml")
    assert notification.type is T.NS
    assert any("root element wins" in w for w in notification.warnings)


def test_unknown_root_without_notification_name_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="root element 'Qualcosa'"):
        sdi.parse(build_notification(T.RC, root="Qualcosa"), "qualcosa.xml")


def test_an_invoice_is_never_taken_for_a_notification_by_its_name() -> None:
    data = b'<p:FatturaElettronica xmlns:p="x" versione="FPR12"/>'
    with pytest.raises(MalformedMessage, match="FatturaElettronica"):
        sdi.parse(data, "IT01234567890_11111_MT_001.xml")


@pytest.mark.parametrize(
    ("namespace", "kind", "flow"),
    [
        ("", T.RC, "PA"),
        ("", T.MT, "B2B"),
        ("http://example.com/other", T.NS, "PA"),
        ("https://www.fatturapa.gov.it/sdi/messaggi/v1.0/", T.RC, "PA"),
        ("http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.1", T.RC, "B2B"),
    ],
)
def test_odd_or_missing_namespace_infers_the_flow_with_a_warning(
    namespace: str, kind: NotificationType, flow: str
) -> None:
    data = build_notification(kind, flow, namespace=namespace)
    notification = sdi.parse(data)
    assert notification.flow is sdi.Flow(flow)
    assert notification.type is kind
    assert any("namespace" in w for w in notification.warnings)


def test_rc_without_namespace_but_with_hash_is_b2b() -> None:
    notification = sdi.parse(build_notification(T.RC, "B2B", namespace=""))
    assert notification.flow is sdi.Flow.B2B


def test_bom_and_leading_whitespace_are_tolerated() -> None:
    data = b"\xef\xbb\xbf\xef\xbb\xbf\r\n  " + build_notification(T.RC)
    notification = sdi.parse(data)
    assert notification.type is T.RC
    assert notification.warnings


def test_latin1_bytes_declared_utf8_are_repaired() -> None:
    data = build_notification(T.MC, descrizione="Non recapitabile: caffè").replace(
        "caffè".encode(), "caffè".encode("latin-1")
    )
    notification = sdi.parse(data)
    assert notification.descrizione == "Non recapitabile: caffè"
    assert notification.warnings


def test_not_well_formed_notification_is_read_with_recovery() -> None:
    data = build_notification(T.RC).replace(b"</ns3:RicevutaConsegna>", b"")
    notification = sdi.parse(data)
    assert notification.identificativo_sdi == "111"
    assert any("recovery" in w for w in notification.warnings)


@pytest.mark.parametrize(
    "data", [b"", b"not xml at all", b"\x00\x01\x02", b"<?xml version='1.0'?>"]
)
def test_non_xml_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage, match="not an SDI notification"):
        sdi.parse(data)


def test_doctype_is_refused() -> None:
    data = b'<!DOCTYPE x [<!ENTITY a "b">]><RicevutaConsegna xmlns="' + NS_PA.encode() + b'"/>'
    with pytest.raises(MalformedMessage):
        sdi.parse(data)


def test_namespace_constants_match_the_spec() -> None:
    assert sdi.NS_PA == NS_PA
    assert sdi.NS_B2B == NS_B2B


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.one_of(st.none(), st.text(max_size=40)))
def test_arbitrary_bytes_give_a_notification_or_malformed(data: bytes, name: str | None) -> None:
    try:
        result = sdi.parse(data, name)
    except MalformedMessage:
        return
    assert isinstance(result, sdi.Notification)


_SEEDS = [build_notification(kind, flow, signed=True) for kind, flow in ALL_KINDS]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=0, max_size=8)), max_size=6),
    st.one_of(st.none(), st.sampled_from(["IT01234567890_11111_RC_001.xml", "x_NS_1.xml"])),
)
def test_mutated_notifications_give_a_notification_or_malformed(
    seed: bytes, edits: list[tuple[int, bytes]], name: str | None
) -> None:
    data = bytearray(seed)
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement)] = replacement
    try:
        result = sdi.parse(bytes(data), name)
    except MalformedMessage:
        return
    assert isinstance(result, sdi.Notification)


# ---------------------------------------------------------------- conformance


def _manifest_notifications() -> list[tuple[str, dict[str, str]]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    rows = []
    with manifest.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["local_path"].startswith("notifications/"):
                facts = dict(
                    item.strip().split("=", 1)
                    for item in row["expected_facts"].split(";")
                    if "=" in item
                )
                facts["_raw"] = row["expected_facts"]
                rows.append((row["local_path"], facts))
    return rows


@pytest.mark.conformance
@pytest.mark.skipif(not (CORPUS / "MANIFEST.tsv").is_file(), reason=f"corpus absent at {CORPUS}")
@pytest.mark.parametrize(("path", "facts"), _manifest_notifications() or [("none", {})])
def test_corpus_notifications_match_the_manifest(path: str, facts: dict[str, str]) -> None:
    file = CORPUS / path
    name = Path(path).name.split("_", 1)[1]  # drop the corpus source prefix
    notification = sdi.parse(file.read_bytes(), name)
    assert notification.type.value == facts["type"]
    assert notification.root == facts["root"]
    assert notification.identificativo_sdi == facts["IdentificativoSdI"]
    assert notification.nome_file == facts.get("NomeFile")
    assert notification.signed is ("XAdES-signed" in facts["_raw"])
    expected_flow = "B2B" if "ivaservizi" in facts["ns"] else "PA"
    assert notification.flow.value == expected_flow
    if "Esito" in facts or "EsitoCommittente.Esito" in facts:
        assert notification.esito == facts.get("Esito", facts.get("EsitoCommittente.Esito"))
    if "ListaErrori" in facts:
        assert [e.codice for e in notification.errors] == [facts["ListaErrori"]]


def test_a_fault_in_the_text_decoder_does_not_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> tuple[bytes, tuple[str, ...]]:
        raise ValueError("embedded null character")

    monkeypatch.setattr(sdi, "decode_text", broken)
    notification = sdi.parse(b"\xef\xbb\xbf" + build_notification(T.RC))
    assert notification.type is T.RC
    assert any("encoding could not be checked" in w for w in notification.warnings)


def test_ne_without_its_own_identificativo_uses_the_esito_committente_one() -> None:
    data = build_notification(T.NE, identificativo_sdi="4242")
    data = data.replace(b"<IdentificativoSdI>4242</IdentificativoSdI>", b"", 1)
    assert sdi.parse(data).identificativo_sdi == "4242"
