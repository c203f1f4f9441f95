"""The sandbox's SDI notifications: schema-valid per flow, shaped and signed like SDI's real ones."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from pecgateway import schema, sdi
from pecgateway.filename import NotificationType
from pecgateway.sandbox import notification as nt
from tests.factory.xades import other_identity, sdi_identity

DS = "{http://www.w3.org/2000/09/xmldsig#}"
XADES = "{http://uri.etsi.org/01903/v1.3.2#}"
WHEN = datetime(2024, 3, 1, 10, 30, 15, 250000, tzinfo=UTC)
HEADER = nt.Header(
    identificativo_sdi="10000042",
    nome_file="IT01234567890_00001.xml",
    message_id="50000007",
    pec_message_id="opec210.20240301113015.1234.5.6@pec.example.it",
    data_ora_ricezione=WHEN,
    hash="ab" * 32,
)


@pytest.fixture(scope="module")
def signer() -> nt.XadesSigner:
    identity = sdi_identity()
    return nt.XadesSigner(identity.key_pem, identity.cert_pem)


@pytest.fixture(scope="module")
def schemas(schema_dir: Path) -> schema.SchemaSet:
    return schema.load(schema_dir)


def _rc(flow: str) -> bytes:
    codice = "UFPQ1O" if flow == "PA" else "ABC1234"
    return nt.build_rc(
        HEADER,
        flow=flow,
        data_ora_consegna=WHEN,
        codice_destinatario=codice,
        descrizione_destinatario="Destinatario di prova",
    )


BUILDERS: dict[str, Callable[[], bytes]] = {
    "RC-PA": lambda: _rc("PA"),
    "RC-B2B": lambda: _rc("B2B"),
    "NS-PA": lambda: nt.build_ns(HEADER, flow="PA", errori=[nt.Errore("00200", "riga 3")]),
    "NS-B2B": lambda: nt.build_ns(
        HEADER, flow="B2B", errori=[nt.Errore("00200", "riga 3", "correggere")]
    ),
    "MC-PA": lambda: nt.build_mc(HEADER, flow="PA", descrizione="non raggiungibile"),
    "MC-B2B": lambda: nt.build_mc(
        HEADER, flow="B2B", descrizione="area riservata", data_messa_a_disposizione=date(2024, 3, 1)
    ),
    "NE-PA": lambda: nt.build_ne(HEADER, esito="EC02", numero_fattura="7", anno_fattura="2024"),
    "DT-PA": lambda: nt.build_dt(HEADER, numero_fattura="7", anno_fattura="2024"),
    "AT-PA": lambda: nt.build_at(
        HEADER, codice_destinatario="999999", descrizione_destinatario="PA"
    ),
}
EXPECTED = {
    "RC-PA": (NotificationType.RC, "RicevutaConsegna"),
    "RC-B2B": (NotificationType.RC, "RicevutaConsegna"),
    "NS-PA": (NotificationType.NS, "NotificaScarto"),
    "NS-B2B": (NotificationType.NS, "RicevutaScarto"),
    "MC-PA": (NotificationType.MC, "NotificaMancataConsegna"),
    "MC-B2B": (NotificationType.MC, "RicevutaImpossibilitaRecapito"),
    "NE-PA": (NotificationType.NE, "NotificaEsito"),
    "DT-PA": (NotificationType.DT, "NotificaDecorrenzaTermini"),
    "AT-PA": (NotificationType.AT, "AttestazioneTrasmissioneFattura"),
}


def _flow(case: str) -> str:
    return case.split("-")[1]


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_signed_notification_validates_against_the_schema_of_its_flow(
    case: str, signer: nt.XadesSigner, schemas: schema.SchemaSet
) -> None:
    xsd = schemas.for_notification(_flow(case))
    assert xsd is not None
    xsd.validate(signer.sign(BUILDERS[case]()))


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_unsigned_notification_is_refused_by_the_schema(
    case: str, schemas: schema.SchemaSet
) -> None:
    xsd = schemas.for_notification(_flow(case))
    assert xsd is not None
    assert not xsd.is_valid(BUILDERS[case]())


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_signed_notification_verifies_against_the_ca(case: str, signer: nt.XadesSigner) -> None:
    signed = signer.sign(BUILDERS[case]())
    assert nt.signature_problem(signed, sdi_identity().ca_pem) is None
    assert nt.verify(signed, sdi_identity().ca_pem)


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_sdi_parse_reads_back_type_flow_and_ids(case: str, signer: nt.XadesSigner) -> None:
    parsed = sdi.parse(signer.sign(BUILDERS[case]()))
    kind, root = EXPECTED[case]
    assert (parsed.type, parsed.root, parsed.flow.value) == (kind, root, _flow(case))
    assert parsed.identificativo_sdi == "10000042"
    assert parsed.message_id == "50000007"
    assert parsed.signed
    assert parsed.pec_message_id == HEADER.pec_message_id
    assert parsed.nome_file == "IT01234567890_00001.xml"


def test_sdi_parse_reads_back_scarto_errors(signer: nt.XadesSigner) -> None:
    parsed = sdi.parse(signer.sign(BUILDERS["NS-B2B"]()))
    assert [(e.codice, e.descrizione, e.suggerimento) for e in parsed.errors] == [
        ("00200", "riga 3", "correggere")
    ]


def test_sdi_parse_reads_back_esito_and_mc_date(signer: nt.XadesSigner) -> None:
    assert sdi.parse(signer.sign(BUILDERS["NE-PA"]())).esito == "EC02"
    mc = sdi.parse(signer.sign(BUILDERS["MC-B2B"]()))
    assert mc.data_messa_a_disposizione == "2024-03-01"


def test_tampered_content_fails_verification(signer: nt.XadesSigner) -> None:
    signed = signer.sign(_rc("B2B"))
    tampered = signed.replace(b"<MessageId>50000007<", b"<MessageId>50000008<")
    assert tampered != signed
    assert not nt.verify(tampered, sdi_identity().ca_pem)
    assert "Digest" in (nt.signature_problem(tampered, sdi_identity().ca_pem) or "")


def test_tampered_signing_time_fails_verification(signer: nt.XadesSigner) -> None:
    signed = signer.sign(_rc("PA"), signing_time=WHEN)
    tampered = signed.replace(b"2024-03-01T10:30:15Z", b"2024-03-02T10:30:15Z")
    assert tampered != signed
    assert not nt.verify(tampered, sdi_identity().ca_pem)


def test_signature_by_another_ca_does_not_verify() -> None:
    stranger = other_identity()
    signed = nt.XadesSigner(stranger.key_pem, stranger.cert_pem).sign(_rc("B2B"))
    assert nt.verify(signed, stranger.ca_pem)
    assert not nt.verify(signed, sdi_identity().ca_pem)


def test_unsigned_notification_does_not_verify() -> None:
    assert "X509Certificate" in (nt.signature_problem(_rc("PA"), sdi_identity().ca_pem) or "")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_verify_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert nt.verify(data, sdi_identity().ca_pem) is False


@settings(max_examples=40, deadline=None)
@given(position=st.integers(min_value=0), byte=st.integers(min_value=0, max_value=255))
def test_verify_never_raises_on_mutated_signed_notifications(position: int, byte: int) -> None:
    identity = sdi_identity()
    signed = nt.XadesSigner(identity.key_pem, identity.cert_pem).sign(_rc("B2B"), signing_time=WHEN)
    index = position % len(signed)
    mutated = signed[:index] + bytes([byte]) + signed[index + 1 :]
    assert isinstance(nt.verify(mutated, identity.ca_pem), bool)


def test_signature_has_the_structure_of_sdi_signatures(signer: nt.XadesSigner) -> None:
    root = etree.fromstring(signer.sign(_rc("B2B"), signing_time=WHEN))
    signature = root[-1]
    assert signature.tag == f"{DS}Signature"
    assert signature.get("Id") == "Signature1"
    assert signature.prefix == "ds"
    signed_info = signature.find(f"{DS}SignedInfo")
    assert signed_info is not None
    algorithms = [el.get("Algorithm") for el in signed_info.iter(f"{DS}CanonicalizationMethod")]
    assert algorithms == ["http://www.w3.org/2001/10/xml-exc-c14n#"]
    method = signed_info.find(f"{DS}SignatureMethod")
    assert method is not None
    assert method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    references = signed_info.findall(f"{DS}Reference")
    assert [r.get("URI") for r in references] == ["", "#SignedProperties_1", "#KeyInfoId"]
    assert references[1].get("Type") == "http://uri.etsi.org/01903#SignedProperties"
    digests = {el.get("Algorithm") for el in signed_info.iter(f"{DS}DigestMethod")}
    assert digests == {"http://www.w3.org/2001/04/xmlenc#sha256"}
    transforms = [t.get("Algorithm") for t in references[0].iter(f"{DS}Transform")]
    assert "http://www.w3.org/2000/09/xmldsig#enveloped-signature" in transforms
    assert signature.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") is not None
    qualifying = signature.find(f"{DS}Object/{XADES}QualifyingProperties")
    assert qualifying is not None
    assert qualifying.get("Target") == "#Signature1"
    properties = qualifying.find(f"{XADES}SignedProperties/{XADES}SignedSignatureProperties")
    assert properties is not None
    assert properties.findtext(f"{XADES}SigningTime") == "2024-03-01T10:30:15Z"
    assert properties.find(f"{XADES}SigningCertificate/{XADES}Cert/{XADES}CertDigest") is not None


def test_root_is_prefixed_and_children_are_unqualified() -> None:
    xml = _rc("B2B")
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?><ns3:RicevutaConsegna')
    root = etree.fromstring(xml)
    assert root.get("versione") == "1.0"
    assert root.nsmap["ns3"] == nt.NS_B2B
    assert all(etree.QName(child).namespace is None for child in root)


def test_b2b_notifications_carry_the_hash_and_pa_ones_do_not() -> None:
    assert etree.fromstring(_rc("B2B")).findtext("Hash") == "ab" * 32
    assert etree.fromstring(_rc("PA")).find("Hash") is None


def test_times_carry_milliseconds_and_the_rome_offset() -> None:
    assert etree.fromstring(_rc("PA")).findtext("DataOraRicezione") == (
        "2024-03-01T11:30:15.250+01:00"
    )


def test_pa_descrizione_is_cut_to_the_schema_limit(
    signer: nt.XadesSigner, schemas: schema.SchemaSet
) -> None:
    xml = signer.sign(nt.build_ns(HEADER, flow="PA", errori=[nt.Errore("00200", "x" * 600)]))
    xsd = schemas.for_notification("PA")
    assert xsd is not None
    xsd.validate(xml)
    assert len(etree.fromstring(xml).findtext("ListaErrori/Errore/Descrizione") or "") == 255


@pytest.mark.parametrize("flow", ["PA", "B2B"])
def test_metadata_file_validates_unsigned_with_the_file_hash(
    flow: str, schemas: schema.SchemaSet
) -> None:
    xml = nt.build_mt(
        flow=flow,
        identificativo_sdi="10000001",
        nome_file="IT09876543210_00001.xml.p7m",
        hash="cd" * 32,
        codice_destinatario="ABC1234",
        formato="FPR12",
        message_id="50000001",
    )
    xsd = schemas.for_notification(flow)
    assert xsd is not None
    xsd.validate(xml)
    parsed = sdi.parse(xml)
    assert (parsed.type, parsed.flow.value, parsed.signed) == (NotificationType.MT, flow, False)
    assert parsed.hash == ("cd" * 32 if flow == "B2B" else None)
    assert parsed.codice_destinatario == "ABC1234"


def test_at_zip_holds_the_invoice_and_the_signed_attestation(signer: nt.XadesSigner) -> None:
    attestation = signer.sign(BUILDERS["AT-PA"]())
    archive = nt.build_at_zip(
        at_name="IT01234567890_00001_AT_002.xml",
        at_xml=attestation,
        invoice_name="IT01234567890_00001.xml",
        invoice=b"<invoice/>",
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert sorted(opened.namelist()) == [
            "IT01234567890_00001.xml",
            "IT01234567890_00001_AT_002.xml",
        ]
        assert opened.read("IT01234567890_00001.xml") == b"<invoice/>"
        assert nt.verify(opened.read("IT01234567890_00001_AT_002.xml"), sdi_identity().ca_pem)


def test_signer_refuses_a_key_that_is_not_rsa() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TypeError, match="RSA"):
        nt.XadesSigner(key, sdi_identity().cert_pem)
