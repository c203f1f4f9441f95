"""classify: what any file is, decided by content; total over arbitrary and mutated bytes."""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import io
import zipfile
from email.message import EmailMessage

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pecgateway import classify as classify_module
from pecgateway import compose, invoice, sample
from pecgateway.classify import Kind, Node, classify, walk
from pecgateway.errors import MalformedMessage
from pecgateway.sandbox import envelope, notification
from pecgateway.sandbox.ca import SandboxCA

# ---- builders (plain functions; test_report and test_inspect_cli use them too) -----------------

NS_PA = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
NS_B2B = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0"
INVOICE_NAME = "IT01234567890_00001.xml"


def invoice_xml(numero: str = "42") -> bytes:
    """A schema-valid FPR12 invoice with one document."""
    return sample.fpr12(
        numero=numero,
        data="2024-03-01",
        codice_destinatario="0000000",
        pec_destinatario="acquisti@pec.beta.example.it",
    )


def notification_xml(root: str = "RicevutaConsegna", *, ns: str = NS_PA, extra: str = "") -> bytes:
    """An unsigned SDI notification about IT01234567890_00001.xml."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<types:{root} xmlns:types="{ns}" versione="1.0">'
        "<IdentificativoSdI>6782414</IdentificativoSdI>"
        f"<NomeFile>{INVOICE_NAME}</NomeFile>"
        "<DataOraRicezione>2024-03-01T10:00:00.000+01:00</DataOraRicezione>"
        f"{extra}<MessageId>1269788243</MessageId></types:{root}>"
    ).encode()


def ns_xml() -> bytes:
    """A rejection (NS) with one error."""
    errors = (
        "<ListaErrori><Errore><Codice>00200</Codice><Descrizione>File non conforme al formato"
        "</Descrizione></Errore></ListaErrori>"
    )
    return notification_xml("NotificaScarto", extra=errors)


@functools.cache
def _signing_key() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "ROSSI MARIO"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
        ]
    )
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert, key


def p7m(payload: bytes) -> bytes:
    """A CAdES-like attached SignedData (DER) around ``payload``."""
    cert, key = _signing_key()
    builder = pkcs7.PKCS7SignatureBuilder().set_data(payload).add_signer(cert, key, hashes.SHA256())
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def zip_of(entries: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    """A deflated zip archive of the given (name, content) entries."""
    items = entries.items() if isinstance(entries, dict) else entries
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in items:
            archive.writestr(name, content)
    return out.getvalue()


def plain_mail(attachments: dict[str, bytes]) -> bytes:
    """An ordinary e-mail (not PEC) with the given attachments."""
    message = EmailMessage()
    message["From"] = "Fornitore <fatture@alfa.example.it>"
    message["To"] = "contabilita@beta.example.it"
    message["Subject"] = "Fattura 42"
    message["Message-ID"] = "<m1@alfa.example.it>"
    message.set_content("In allegato la fattura.")
    for name, content in attachments.items():
        message.add_attachment(
            content, maintype="application", subtype="octet-stream", filename=name
        )
    return message.as_bytes()


def _daticert(tipo: str, mittente: str, oggetto: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<postacert tipo="{tipo}" errore="nessuno">'
        f"<intestazione><mittente>{mittente}</mittente>"
        '<destinatari tipo="certificato">fatture@pec.beta.example.it</destinatari>'
        f"<risposte>{mittente}</risposte><oggetto>{oggetto}</oggetto></intestazione>"
        "<dati><gestore>Provider PEC S.p.A.</gestore>"
        '<data zona="+0100"><giorno>01/03/2024</giorno><ora>10:00:00</ora></data>'
        "<identificativo>opec1.20240301100000.1@pec.provider.example.it</identificativo>"
        "<msgid>&lt;sdi-1@pec.fatturapa.it&gt;</msgid></dati></postacert>"
    ).encode()


def pec_envelope(attachments: dict[str, bytes], *, sender: str = "sdi01@pec.fatturapa.it") -> bytes:
    """A PEC transport envelope (posta-certificata) carrying the original message's attachments."""
    inner = EmailMessage()
    inner["From"] = sender
    inner["To"] = "fatture@pec.beta.example.it"
    inner["Subject"] = "Invio File 6782414"
    inner["Message-ID"] = "<sdi-1@pec.fatturapa.it>"
    inner.set_content("Invio file.")
    for name, content in attachments.items():
        inner.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    outer = EmailMessage()
    outer["From"] = f'"Per conto di: {sender}" <posta-certificata@pec.provider.example.it>'
    outer["Reply-To"] = sender
    outer["To"] = "fatture@pec.beta.example.it"
    outer["Subject"] = "POSTA CERTIFICATA: Invio File 6782414"
    outer["Message-ID"] = "<opec1.20240301100000.1@pec.provider.example.it>"
    outer["X-Riferimento-Message-ID"] = "<sdi-1@pec.fatturapa.it>"
    outer["X-Trasporto"] = "posta-certificata"
    outer.set_content("Messaggio di posta certificata.")
    outer.add_attachment(
        _daticert("posta-certificata", sender, "Invio File 6782414"),
        maintype="application",
        subtype="xml",
        filename="daticert.xml",
    )
    outer.add_attachment(inner, filename="postacert.eml")
    outer.add_attachment(
        b"\x30\x03\x02\x01\x01",
        maintype="application",
        subtype="pkcs7-signature",
        filename="smime.p7s",
    )
    return outer.as_bytes()


def pec_receipt(tipo: str = "accettazione") -> bytes:
    """A provider receipt (accettazione by default) for a message we sent to SDI."""
    receipt = EmailMessage()
    receipt["From"] = "posta-certificata@pec.provider.example.it"
    receipt["To"] = "fatture@pec.alfa.example.it"
    receipt["Subject"] = f"{tipo.upper()}: {INVOICE_NAME}"
    receipt["Message-ID"] = "<opec2.20240301100000.2@pec.provider.example.it>"
    receipt["X-Ricevuta"] = tipo
    receipt["X-Riferimento-Message-ID"] = "<out-1@alfa.example.it>"
    receipt.set_content("Ricevuta di accettazione.")
    receipt.add_attachment(
        _daticert(tipo, "fatture@pec.alfa.example.it", INVOICE_NAME),
        maintype="application",
        subtype="xml",
        filename="daticert.xml",
    )
    return receipt.as_bytes()


def _kinds(node: Node) -> list[tuple[str | None, Kind]]:
    return [(child.filename, child.kind) for child in node.contents]


# ---- invoices and p7m ----------------------------------------------------------------------------


def test_plain_invoice_is_an_unsigned_invoice_with_its_facts() -> None:
    data = invoice_xml()
    node = classify(data, INVOICE_NAME)
    assert node.kind is Kind.INVOICE
    assert node.invoice is not None
    assert node.invoice.format == "FPR12"
    assert [d.numero for d in node.invoice.documents] == ["42"]
    assert not node.signed
    assert node.signers == ()
    assert node.sha256 == hashlib.sha256(data).hexdigest()
    assert node.error is None


def test_invoice_is_recognised_whatever_its_name() -> None:
    assert classify(invoice_xml(), "message.eml").kind is Kind.INVOICE
    assert classify(invoice_xml(), None).kind is Kind.INVOICE


def test_bl16_invoice_with_utf8_bom_is_an_invoice_with_a_warning() -> None:
    node = classify(b"\xef\xbb\xbf" + invoice_xml(), INVOICE_NAME)
    assert node.kind is Kind.INVOICE
    assert any("BOM" in warning for warning in node.warnings)


def test_der_p7m_of_an_invoice_is_a_signed_invoice_with_its_signer() -> None:
    inner = invoice_xml()
    data = p7m(inner)
    node = classify(data, "IT01234567890_00001.xml.p7m")
    assert node.kind is Kind.INVOICE
    assert node.signed
    assert len(node.signers) == 1
    assert "ROSSI MARIO" in node.signers[0].subject
    assert node.payload == inner
    assert node.data == data
    assert node.sha256 == hashlib.sha256(data).hexdigest()


def test_bl02_base64_p7m_without_armour_named_pk7_is_a_signed_invoice() -> None:
    data = base64.encodebytes(p7m(invoice_xml()))
    node = classify(data, "IT01234567890_00001.xml.pk7")
    assert node.kind is Kind.INVOICE
    assert node.signed
    assert node.warnings, "decoding base64 is a repair and must be listed"


def test_bl07_p7m_inside_p7m_lists_the_signers_of_every_layer() -> None:
    node = classify(p7m(p7m(invoice_xml())), "x.xml.p7m")
    assert node.kind is Kind.INVOICE
    assert len(node.signers) == 2


def test_signed_text_file_is_unknown_with_an_explanation() -> None:
    node = classify(p7m(b"This is only a test payload.\n"), "test.txt.p7m")
    assert node.kind is Kind.UNKNOWN
    assert node.signed
    assert node.error is not None
    assert "not an invoice" in node.error


def test_truncated_p7m_is_malformed_with_the_reason() -> None:
    data = p7m(invoice_xml())
    node = classify(data[:40], "IT01234567890_00001.xml.p7m")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert node.error.startswith("cannot extract the signed content")


def test_bl10_damaged_p7m_whose_content_is_recovered_lists_the_repair() -> None:
    node = classify(p7m(invoice_xml())[:-20], "IT01234567890_00001.xml.p7m")
    assert node.kind is Kind.INVOICE
    assert node.warnings


def test_bl11_plain_xml_named_p7m_is_an_unsigned_invoice_with_a_warning() -> None:
    node = classify(invoice_xml(), "IT01234567890_00001.xml.p7m")
    assert node.kind is Kind.INVOICE
    assert not node.signed
    assert any("not signed" in warning for warning in node.warnings)


def test_bl21_base64_text_of_the_xml_is_decoded_with_a_warning() -> None:
    node = classify(base64.encodebytes(invoice_xml()), INVOICE_NAME)
    assert node.kind is Kind.INVOICE
    assert any("base64" in warning for warning in node.warnings)


def test_bl09_junk_before_the_prolog_inside_a_p7m_is_dropped_with_a_warning() -> None:
    node = classify(p7m(b"\x00\x07\x1a junk " + invoice_xml()), "IT01234567890_00001.xml.p7m")
    assert node.kind is Kind.INVOICE
    assert node.signed
    assert any("junk" in warning for warning in node.warnings)


def test_utf16_invoice_with_bom_is_an_invoice() -> None:
    text = invoice_xml().decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    node = classify(text.encode("utf-16"), INVOICE_NAME)
    assert node.kind is Kind.INVOICE
    assert node.warnings


def test_unreadable_invoice_xml_is_malformed() -> None:
    node = classify(b'<?xml version="1.0"?><ns2:FatturaElettronica versione="FPR12">', "x.xml")
    assert node.kind is Kind.MALFORMED
    assert node.error


def test_utf16_bom_before_bytes_that_are_not_utf16_is_malformed_with_the_reason() -> None:
    node = classify(b"\xff\xfe<?xml", INVOICE_NAME)  # odd length: no UTF-16 text
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "UTF-16 byte order mark but is not UTF-16" in node.error


def test_xml_of_another_kind_is_unknown_and_names_its_root() -> None:
    node = classify(b"<?xml version='1.0'?><Segnatura><Oggetto>x</Oggetto></Segnatura>", "s.xml")
    assert node.kind is Kind.UNKNOWN
    assert node.error == (
        "XML with root element Segnatura is neither an invoice nor an SDI notification"
    )


# ---- notifications -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "ns", "code"),
    [
        ("RicevutaConsegna", NS_PA, "RC"),
        ("RicevutaConsegna", NS_B2B, "RC"),
        ("NotificaMancataConsegna", NS_PA, "MC"),
        ("MetadatiInvioFile", NS_PA, "MT"),
        ("FileMetadati", NS_B2B, "MT"),
    ],
)
def test_sdi_notification_is_recognised_by_its_root(root: str, ns: str, code: str) -> None:
    node = classify(notification_xml(root, ns=ns), "notifica.xml")
    assert node.kind is Kind.NOTIFICATION
    assert node.notification is not None
    assert node.notification.type.value == code
    assert node.notification.identificativo_sdi == "6782414"
    assert node.notification.nome_file == INVOICE_NAME


def test_ns_notification_carries_its_errors() -> None:
    node = classify(ns_xml(), "IT01234567890_00001_NS_001.xml")
    assert node.kind is Kind.NOTIFICATION
    assert node.notification is not None
    assert [e.codice for e in node.notification.errors] == ["00200"]


# ---- mail ------------------------------------------------------------------------------------------


def test_plain_mail_is_email_with_its_attachments_classified() -> None:
    node = classify(plain_mail({INVOICE_NAME: invoice_xml(), "note.txt": b"hello"}), "m.eml")
    assert node.kind is Kind.EMAIL
    assert _kinds(node) == [(INVOICE_NAME, Kind.INVOICE), ("note.txt", Kind.UNKNOWN)]


def test_pec_envelope_contents_are_the_original_attachments_only() -> None:
    mt = notification_xml("MetadatiInvioFile")
    data = pec_envelope({"IT01234567890_00001_MT_001.xml": mt, INVOICE_NAME: invoice_xml()})
    node = classify(data, "envelope.eml")
    assert node.kind is Kind.PEC
    assert node.pec is not None
    assert node.pec.sdi_address == "sdi01@pec.fatturapa.it"
    assert _kinds(node) == [
        ("IT01234567890_00001_MT_001.xml", Kind.NOTIFICATION),
        (INVOICE_NAME, Kind.INVOICE),
    ]
    names = {child.filename for child in walk(node)}
    assert not names & {"daticert.xml", "smime.p7s", "postacert.eml"}


def test_pec_receipt_is_pec_without_contents() -> None:
    node = classify(pec_receipt(), "ricevuta.eml")
    assert node.kind is Kind.PEC
    assert node.pec is not None
    assert node.pec.type is not None
    assert node.pec.type.value == "accettazione"
    assert node.contents == ()


def test_mail_is_recognised_whatever_its_name() -> None:
    assert classify(pec_receipt(), "IT01234567890_00001.xml").kind is Kind.PEC


def test_mail_starting_with_an_mbox_from_line_is_email_with_its_attachments() -> None:
    mbox = b"From fatture@alfa.example.it Fri Mar  1 10:00:00 2024\n"
    node = classify(mbox + plain_mail({INVOICE_NAME: invoice_xml()}), "saved.mbox")
    assert node.kind is Kind.EMAIL
    assert _kinds(node) == [(INVOICE_NAME, Kind.INVOICE)]


def test_mail_nested_deeper_than_the_limit_stops_with_malformed() -> None:
    data = plain_mail({INVOICE_NAME: invoice_xml()})
    for level in range(classify_module.MAX_NESTING + 1):
        data = zip_of({f"level{level}.zip" if level else "message.eml": data})
    deepest = list(walk(classify(data, "nested.zip")))[-1]
    assert deepest.filename == "message.eml"
    assert deepest.kind is Kind.MALFORMED
    assert deepest.error == "e-mail nested too deeply to be opened"
    assert deepest.contents == ()


# ---- zip ---------------------------------------------------------------------------------------------


def test_zip_is_an_archive_of_classified_entries() -> None:
    node = classify(zip_of({INVOICE_NAME: invoice_xml(), "readme.txt": b"hi"}), "x.zip")
    assert node.kind is Kind.ARCHIVE
    assert _kinds(node) == [(INVOICE_NAME, Kind.INVOICE), ("readme.txt", Kind.UNKNOWN)]


def test_at_zip_holds_the_invoice_and_the_attestation() -> None:
    at = notification_xml("AttestazioneTrasmissioneFattura")
    data = zip_of(
        {"IT01234567890_00001.xml.p7m": p7m(invoice_xml()), "IT01234567890_00001_AT_001.xml": at}
    )
    node = classify(data, "IT01234567890_00001_AT_001.zip")
    assert node.kind is Kind.ARCHIVE
    assert [c.kind for c in node.contents] == [Kind.INVOICE, Kind.NOTIFICATION]
    assert node.contents[0].signed


def test_zip_entry_names_are_reduced_to_a_safe_basename() -> None:
    data = zip_of(
        [("../../etc/" + INVOICE_NAME, invoice_xml()), ("dir\\evil\x01.xml", b"x"), ("a/b/", b"")]
    )
    names = [child.filename for child in classify(data, "x.zip").contents]
    assert names[0] == INVOICE_NAME
    assert names[1] == "evil.xml"
    assert all("/" not in n and "\\" not in n for n in names if n)


def test_bl23_broken_entry_is_reported_and_the_others_still_read() -> None:
    data = zip_of({INVOICE_NAME: invoice_xml(), "IT01234567890_00002.xml": b"<Fattura"})
    node = classify(data, "lot.zip")
    assert node.kind is Kind.ARCHIVE
    assert [c.kind for c in node.contents] == [Kind.INVOICE, Kind.MALFORMED]


def test_zip_with_too_many_entries_is_malformed() -> None:
    data = zip_of([(f"f{n}.txt", b"x") for n in range(classify_module.MAX_ENTRIES + 1)])
    node = classify(data, "many.zip")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "entries" in node.error


def test_zip_entry_larger_than_the_limit_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify_module, "MAX_ENTRY_BYTES", 1000)
    node = classify(zip_of({"big.xml": bytes(range(256)) * 8}), "big.zip")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "larger than" in node.error


def test_zip_bomb_ratio_is_malformed() -> None:
    node = classify(zip_of({"zeros.xml": b"\0" * (2 * 1024 * 1024)}), "bomb.zip")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "expands" in node.error


def test_zip_over_the_total_size_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify_module, "MAX_TOTAL_BYTES", 3000)
    entries = [(f"{n}.bin", bytes(range(256)) * 5) for n in range(3)]
    node = classify(zip_of(entries), "total.zip")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "bytes once uncompressed" in node.error


def test_zip_nested_deeper_than_the_limit_stops_with_malformed() -> None:
    data = zip_of({INVOICE_NAME: invoice_xml()})
    for level in range(classify_module.MAX_NESTING + 1):
        data = zip_of({f"level{level}.zip": data})
    node = classify(data, "nested.zip")
    deepest = list(walk(node))[-1]
    assert node.kind is Kind.ARCHIVE
    assert deepest.kind is Kind.MALFORMED
    assert deepest.error is not None
    assert "nested too deeply" in deepest.error


def test_encrypted_zip_entry_is_malformed_and_the_archive_still_listed() -> None:
    data = bytearray(zip_of([("secret.xml", b"garbage"), (INVOICE_NAME, invoice_xml())]))
    data[6] |= 0x1  # the first local header's general purpose flag: "encrypted"
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x1  # the same flag in the first central directory entry
    node = classify(bytes(data), "enc.zip")
    assert node.kind is Kind.ARCHIVE
    assert [c.kind for c in node.contents] == [Kind.MALFORMED, Kind.INVOICE]
    assert node.contents[0].error is not None
    assert "encrypted" in node.contents[0].error


def test_damaged_zip_is_malformed() -> None:
    node = classify(b"PK\x03\x04" + b"\0" * 40, "bad.zip")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "zip" in node.error


# ---- anything else -----------------------------------------------------------------------------------


def test_empty_file_is_malformed() -> None:
    node = classify(b"", "x.xml")
    assert node.kind is Kind.MALFORMED
    assert node.error is not None
    assert "empty file" in node.error


def test_whitespace_only_p7m_is_malformed() -> None:
    assert classify(b" \n", "IT05979361218_fake.xml.p7m").kind is Kind.MALFORMED


def test_caller_depth_beyond_the_recursion_bound_is_malformed_not_opened() -> None:
    node = classify(invoice_xml(), INVOICE_NAME, depth=100)
    assert node.kind is Kind.MALFORMED
    assert node.invoice is None
    assert node.error == "content nested too deeply to be opened"


def test_random_binary_is_unknown() -> None:
    node = classify(bytes(range(1, 200)), "photo.png")
    assert node.kind is Kind.UNKNOWN
    assert node.error


def test_parser_bug_becomes_malformed_with_the_internal_error_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: bytes) -> invoice.Invoice:
        raise AttributeError("'NoneType' object has no attribute 'iter'")

    monkeypatch.setattr(invoice, "parse", broken)
    node = classify(invoice_xml(), INVOICE_NAME)
    assert node.kind is Kind.MALFORMED
    assert node.internal_error
    assert node.error is not None
    assert node.error.startswith("internal error: AttributeError")


def test_nul_in_the_declared_encoding_is_not_an_internal_error() -> None:
    """Found by the property test: codecs.lookup raises ValueError on a NUL in the name."""
    data = invoice_xml().replace(b'encoding="UTF-8"', b'encoding="\x00UTF-8"', 1)
    data = data.replace(b"encoding='UTF-8'", b"encoding='\x00UTF-8'", 1)
    assert b"\x00UTF-8" in data
    node = classify(data, INVOICE_NAME)
    assert not node.internal_error, node.error


def test_malformed_message_from_a_parser_is_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuses(data: bytes) -> invoice.Invoice:
        raise MalformedMessage("no FatturaElettronicaBody")

    monkeypatch.setattr(invoice, "parse", refuses)
    node = classify(invoice_xml(), INVOICE_NAME)
    assert node.kind is Kind.MALFORMED
    assert not node.internal_error
    assert node.error == "no FatturaElettronicaBody"


# ---- properties ------------------------------------------------------------------------------------


@functools.cache
def seeds() -> tuple[bytes, ...]:
    """Real-looking inputs that mutations start from."""
    xml = invoice_xml()
    return (
        xml,
        p7m(xml),
        base64.encodebytes(p7m(xml)),
        zip_of(
            {
                INVOICE_NAME: xml,
                "IT01234567890_00001_MT_001.xml": notification_xml("FileMetadati", ns=NS_B2B),
            }
        ),
        plain_mail({INVOICE_NAME: xml}),
        pec_envelope({INVOICE_NAME: xml}),
        pec_receipt(),
        ns_xml(),
    )


NAMES = st.sampled_from(
    [
        None,
        INVOICE_NAME,
        "IT01234567890_00001.xml.p7m",
        "IT01234567890_00001_RC_001.xml",
        "a.zip",
        "m.eml",
        "",
    ]
)


@st.composite
def _mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip" and data:
            data[where] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[where : where + draw(st.integers(1, 64))]
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[where:]
    return bytes(data)


def mutated() -> st.SearchStrategy[bytes]:
    """Real-looking inputs (built before any drawing: builders use ``random``) with a few edits."""
    return st.sampled_from(seeds()).flatmap(_mutations)


def _assert_total(node: Node) -> None:
    assert isinstance(node, Node)
    for item in walk(node):
        assert not item.internal_error, item.error
        assert (item.error is not None) == (item.kind in (Kind.MALFORMED, Kind.UNKNOWN))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), name=NAMES)
def test_classify_never_raises_on_arbitrary_bytes(data: bytes, name: str | None) -> None:
    _assert_total(classify(data, name))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), name=NAMES)
def test_classify_never_raises_on_mutated_real_looking_inputs(
    data: bytes, name: str | None
) -> None:
    _assert_total(classify(data, name))


@pytest.mark.parametrize("index", range(8))
def test_every_seed_is_understood(index: int) -> None:
    node = classify(seeds()[index], None)
    _assert_total(node)
    assert node.kind not in (Kind.MALFORMED, Kind.UNKNOWN), node.error


# ---- round trips with the product's own builders ----------------------------------------------------

_NOW = datetime.datetime(2026, 3, 2, 10, 30, tzinfo=datetime.UTC)


def test_our_own_outgoing_message_is_an_email_carrying_the_signed_invoice() -> None:
    message = compose.compose(
        file_name="IT01234567890_00001.xml.p7m",
        data=p7m(invoice_xml()),
        sender="fatture@pec.alfa.example.it",
        recipient="sdi01@pec.fatturapa.it",
        message_id="<out-1@pec.alfa.example.it>",
        date=_NOW,
    )
    node = classify(bytes(message), "outgoing.eml")
    assert node.kind is Kind.EMAIL
    assert _kinds(node) == [("IT01234567890_00001.xml.p7m", Kind.INVOICE)]
    assert node.contents[0].signed


def test_signed_sdi_envelope_from_the_sandbox_carries_a_notification(
    sandbox_ca: SandboxCA,
) -> None:
    header = notification.Header(
        identificativo_sdi="6782414",
        nome_file=INVOICE_NAME,
        message_id="1269788243",
        pec_message_id="<out-1@pec.alfa.example.it>",
        data_ora_ricezione=_NOW,
        hash="0" * 64,
    )
    rc = notification.build_rc(
        header,
        flow="B2B",
        data_ora_consegna=_NOW,
        codice_destinatario="0000000",
        descrizione_destinatario="BETA",
    )
    inner = EmailMessage()
    inner["From"] = "sdi01@pec.fatturapa.it"
    inner["To"] = "fatture@pec.alfa.example.it"
    inner["Subject"] = "Ricevuta di consegna 6782414"
    inner["Message-ID"] = "<sdi-2@pec.fatturapa.it>"
    inner.set_content("Ricevuta di consegna.")
    name = "IT01234567890_00001_RC_001.xml"
    inner.add_attachment(rc, maintype="application", subtype="octet-stream", filename=name)
    original = envelope.Original(
        mittente="sdi01@pec.fatturapa.it",
        destinatari=("fatture@pec.alfa.example.it",),
        oggetto="Ricevuta di consegna 6782414",
        identificativo="opec9.20260302103000.9@pcert.sogei.it",
        msgid="<sdi-2@pec.fatturapa.it>",
        raw=inner.as_bytes(),
    )
    gestore = envelope.Gestore(name="Sogei SpA", domain="pcert.sogei.it", signer=sandbox_ca.sogei)
    node = classify(envelope.build_posta_certificata(gestore, original, _NOW), "busta.eml")
    assert node.kind is Kind.PEC
    assert node.pec is not None
    assert node.pec.sdi_address == "sdi01@pec.fatturapa.it"
    assert _kinds(node) == [(name, Kind.NOTIFICATION)]
    rc_node = node.contents[0]
    assert rc_node.notification is not None
    assert rc_node.notification.identificativo_sdi == "6782414"


def test_at_zip_from_the_sandbox_builder_is_an_archive() -> None:
    at_name = "IT01234567890_00001_AT_001.xml"
    data = notification.build_at_zip(
        at_name=at_name,
        at_xml=notification_xml("AttestazioneTrasmissioneFattura"),
        invoice_name=INVOICE_NAME,
        invoice=invoice_xml(),
    )
    node = classify(data, "IT01234567890_00001_AT_001.zip")
    assert _kinds(node) == [(INVOICE_NAME, Kind.INVOICE), (at_name, Kind.NOTIFICATION)]


def test_base64_text_of_xml_without_padding_is_decoded() -> None:
    """BL-21 with Q3: the attachment is base64 of the XML and its final '=' padding is missing."""
    import base64 as b64

    from pecgateway import sample

    xml = sample.fpr12()
    xml += b"\n" * (1 if len(xml) % 3 == 0 else 0)  # a length that needs padding
    encoded = b64.encodebytes(xml)
    assert encoded.rstrip().endswith(b"=")
    node = classify(encoded.rstrip().rstrip(b"="), "IT01234567890_00001.xml")
    assert node.kind is Kind.INVOICE
    assert any("base64" in w for w in node.warnings)
