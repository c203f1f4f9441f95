"""pec.parse: receipts, SDI envelopes, anomalies, plain mail, field quirks, and total over any bytes."""

from __future__ import annotations

import csv
import re
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pecgateway import pec, sdi
from pecgateway.errors import MalformedMessage
from pecgateway.filename import NotificationType
from pecgateway.pec import PecType
from tests.conftest import CORPUS
from tests.factory import pecmail
from tests.factory.notifications import build_notification
from tests.factory.pecmail import (
    IDENTIFICATIVO,
    OUR_MESSAGE_ID,
    OURS,
    SDI,
    Part,
    build_accettazione,
    build_anomalia,
    build_avvenuta_consegna,
    build_envelope,
    build_errore_consegna,
    build_non_accettazione,
    build_plain_mail,
    build_preavviso_errore_consegna,
    build_presa_in_carico,
    build_rilevazione_virus,
    build_sdi_envelope,
)

T = NotificationType
INVOICE = b'<?xml version="1.0"?><p:FatturaElettronica xmlns:p="x" versione="FPR12"/>\n'


def _sdi_part(kind: NotificationType, flow: str = "PA", cte: str = "quoted-printable") -> Part:
    name = f"IT01234567890_00001_{kind.value}_001.xml"
    return Part(name, build_notification(kind, flow, signed=True), "application/octet-stream", cte)


# ---------------------------------------------------------------- provider receipts


def test_accettazione_gives_type_correlation_and_daticert_facts() -> None:
    message = pec.parse(build_accettazione())
    assert message.type is PecType.ACCETTAZIONE
    assert message.riferimento_message_id == OUR_MESSAGE_ID
    assert message.identificativo == IDENTIFICATIVO
    assert message.mittente == OURS
    assert message.destinatari == (SDI,)
    assert message.oggetto == "IT01234567890_00001.xml"
    assert message.gestore == "PROVIDER PEC S.p.A."
    assert message.errore == "nessuno"
    assert message.sdi_address is None
    assert message.attachments == ()
    assert message.postacert is None
    assert message.daticert is not None
    assert message.daticert.tipo == "accettazione"
    assert message.daticert.data == "06/05/2024 10:00:01 +0200"
    assert message.warnings == ()


def test_non_accettazione_carries_the_error() -> None:
    message = pec.parse(build_non_accettazione())
    assert message.type is PecType.NON_ACCETTAZIONE
    assert message.errore == "altro"
    assert message.errore_esteso == "Messaggio non accettato: dimensione eccessiva"


def test_presa_in_carico_is_recognised() -> None:
    assert pec.parse(build_presa_in_carico()).type is PecType.PRESA_IN_CARICO


def test_rilevazione_virus_is_recognised() -> None:
    message = pec.parse(build_rilevazione_virus())
    assert message.type is PecType.RILEVAZIONE_VIRUS
    assert message.errore == "virus"


@pytest.mark.parametrize("ricevuta", ["completa", "breve"])
def test_avvenuta_consegna_with_original_gives_its_attachments(ricevuta: str) -> None:
    message = pec.parse(build_avvenuta_consegna(ricevuta))
    assert message.type is PecType.AVVENUTA_CONSEGNA
    assert message.daticert is not None
    assert message.daticert.ricevuta == ricevuta
    assert message.daticert.consegna == SDI
    assert [a.filename for a in message.attachments] == ["IT01234567890_00001.xml"]
    assert message.postacert is not None
    assert message_from_bytes(message.postacert)["Subject"] == "IT01234567890_00001.xml"


def test_avvenuta_consegna_sintetica_has_only_daticert() -> None:
    message = pec.parse(build_avvenuta_consegna("sintetica"))
    assert message.type is PecType.AVVENUTA_CONSEGNA
    assert message.postacert is None
    assert message.attachments == ()


def test_errore_consegna_carries_errore_and_errore_esteso() -> None:
    message = pec.parse(build_errore_consegna())
    assert message.type is PecType.ERRORE_CONSEGNA
    assert message.errore == "no-dest"
    assert message.errore_esteso == "5.1.1 - PROVIDER PEC - indirizzo non valido"


# ---------------------------------------------------------------- SDI envelopes


@pytest.mark.parametrize(
    ("kind", "flow", "cte"),
    [
        (T.RC, "B2B", "quoted-printable"),
        (T.NS, "PA", "base64"),
        (T.MC, "B2B", "base64"),
        (T.MC, "PA", "7bit"),
    ],
)
def test_sdi_envelope_gives_the_notification_attachment(
    kind: NotificationType, flow: str, cte: str
) -> None:
    part = _sdi_part(kind, flow, cte)
    message = pec.parse(build_sdi_envelope([part]))
    assert message.type is PecType.POSTA_CERTIFICATA
    assert message.sdi_address == SDI
    assert message.mittente == SDI
    assert message.riferimento_message_id == "<5168561142842364.1542124052746@pec.fatturapa.it>"
    assert [a.filename for a in message.attachments] == [part.filename]
    assert sdi.parse(message.attachments[0].data, part.filename).type is kind


def test_sdi_invio_file_gives_mt_and_invoice_attachments() -> None:
    mt = Part("IT01234567890_00001_MT_001.xml", build_notification(T.MT, "B2B"), cte="7bit")
    invoice = Part("IT01234567890_00001.xml", INVOICE, cte="quoted-printable")
    message = pec.parse(build_sdi_envelope([mt, invoice], inner_subject="Invio File 7339338"))
    # text transport canonicalises line ends to CRLF: compare modulo line ends
    assert [(a.filename, a.data.replace(b"\r\n", b"\n")) for a in message.attachments] == [
        (mt.filename, mt.data),
        (invoice.filename, INVOICE),
    ]
    assert message.oggetto == "Invio File 7339338"


def test_service_parts_are_never_attachments() -> None:
    message = pec.parse(build_sdi_envelope([_sdi_part(T.RC)]))
    names = {a.filename.lower() for a in message.attachments}
    assert names.isdisjoint({"daticert.xml", "smime.p7s", "postacert.eml"})


# ---------------------------------------------------------------- anomalia and plain mail


def test_bl27_anomalia_is_classified_with_the_wrapped_attachments() -> None:
    inner = build_plain_mail(attachments=[Part("offerta.pdf", b"%PDF-1.4", "application/pdf")])
    message = pec.parse(build_anomalia(inner))
    assert message.type is PecType.ANOMALIA
    assert [a.filename for a in message.attachments] == ["offerta.pdf"]
    assert message.sdi_address is None


def test_bl27_plain_mail_is_not_pec_and_keeps_its_attachments() -> None:
    raw = build_plain_mail(attachments=[Part("IT01234567890_00002.xml", INVOICE, "text/xml")])
    message = pec.parse(raw)
    assert message.type is None
    assert message.identificativo is None
    assert message.mittente == "someone@example.com"
    assert message.oggetto == "Offerta speciale"
    assert [(a.filename, a.data) for a in message.attachments] == [
        ("IT01234567890_00002.xml", INVOICE)
    ]


def test_plain_mail_with_a_pec_like_subject_stays_plain_with_a_warning() -> None:
    message = pec.parse(build_plain_mail(subject="CONSEGNA: pizza"))
    assert message.type is None
    assert any("subject looks like a PEC receipt" in w for w in message.warnings)


def test_plain_mail_with_an_attached_eml_keeps_it_as_an_attachment() -> None:
    forwarded = build_plain_mail(subject="inoltrato")
    raw = build_plain_mail(attachments=[Part("inoltro.eml", forwarded, "message/rfc822", "7bit")])
    message = pec.parse(raw)
    assert message.type is None
    assert [a.filename for a in message.attachments] == ["inoltro.eml"]
    assert b"inoltrato" in message.attachments[0].data


# ---------------------------------------------------------------- field quirks, section C


def test_bl24_provider_consegna_is_a_provider_receipt_not_an_sdi_message() -> None:
    message = pec.parse(build_avvenuta_consegna(consegna="sdi03@pec.fatturapa.it"))
    assert message.type is PecType.AVVENUTA_CONSEGNA
    assert message.riferimento_message_id == OUR_MESSAGE_ID
    assert message.daticert is not None
    assert message.daticert.consegna == "sdi03@pec.fatturapa.it"


def test_bl25_preavviso_and_final_errore_consegna_are_distinguished() -> None:
    preavviso = pec.parse(build_preavviso_errore_consegna())
    final = pec.parse(
        build_errore_consegna(
            errore="altro",
            errore_esteso="5.4.1 - PROVIDER PEC - non consegnato nelle ventiquattro ore",
        )
    )
    assert preavviso.type is PecType.PREAVVISO_ERRORE_CONSEGNA
    assert final.type is PecType.ERRORE_CONSEGNA
    assert preavviso.errore_esteso is not None
    assert preavviso.errore_esteso.startswith("4.4.7")
    assert final.errore_esteso is not None
    assert final.errore_esteso.startswith("5.4.1")
    assert preavviso.riferimento_message_id == final.riferimento_message_id == OUR_MESSAGE_ID


def test_bl25_preavviso_recognised_by_subject_alone() -> None:
    raw = build_preavviso_errore_consegna(x_ricevuta="", with_daticert=False)
    message = pec.parse(raw)
    assert message.type is PecType.PREAVVISO_ERRORE_CONSEGNA


def test_bl26_receipt_subject_without_p7m_still_correlates_via_riferimento() -> None:
    raw = build_avvenuta_consegna(
        oggetto="IT06363391001_ynFj2.xml",
        riferimento="<20240506100000.abcdef@PEC.Example.IT>",
    )
    message = pec.parse(raw)
    assert message.oggetto == "IT06363391001_ynFj2.xml"
    assert message.riferimento_message_id == OUR_MESSAGE_ID


def test_bl26_riferimento_falls_back_to_daticert_msgid() -> None:
    message = pec.parse(build_accettazione(riferimento=None))
    assert message.riferimento_message_id == OUR_MESSAGE_ID


def test_bl28_receipt_for_an_unknown_message_id_parses_fine() -> None:
    raw = build_accettazione(riferimento="<other-system.42@pcert.sogei.it>")
    message = pec.parse(raw)
    assert message.type is PecType.ACCETTAZIONE
    assert message.riferimento_message_id == "<other-system.42@pcert.sogei.it>"


@pytest.mark.parametrize(
    "style",
    [
        "rfc822",
        "rfc822-8bit",
        "rfc822-binary",
        "rfc822-base64",
        "x-unknown-cte",
        "octet-stream",
        "octet-stream-7bit",
    ],
)
def test_bl29_postacert_is_read_whatever_its_type_and_cte(style: str) -> None:
    part = _sdi_part(T.RC, "B2B")
    message = pec.parse(build_sdi_envelope([part], postacert_style=style))
    assert [a.filename for a in message.attachments] == [part.filename]
    assert sdi.parse(message.attachments[0].data).type is T.RC
    assert message.sdi_address == SDI


def test_bl29_identity_cte_used_as_charset_does_not_escape() -> None:
    """The kind of `LookupError: unknown encoding: 7bit`: a CTE word where a charset belongs."""
    part = Part(
        "IT01234567890_00001_RC_001.xml", build_notification(T.RC), 'text/xml; charset="7bit"'
    )
    raw = build_sdi_envelope([part]).replace(b'charset="iso-8859-1"', b'charset="7bit"')
    message = pec.parse(raw)
    assert message.attachments[0].data == part.data


def test_bl30_pec_without_daticert_is_classified_by_headers() -> None:
    message = pec.parse(build_sdi_envelope([_sdi_part(T.MC, "B2B")], with_daticert=False))
    assert message.type is PecType.POSTA_CERTIFICATA
    assert message.daticert is None
    assert message.identificativo == "opec288.20240506100100.1.1.1.1@pcert.sogei.it"
    assert message.mittente == SDI
    assert message.sdi_address == SDI
    assert len(message.attachments) == 1


def test_bl30_receipt_without_daticert_keeps_header_facts() -> None:
    message = pec.parse(build_errore_consegna(with_daticert=False))
    assert message.type is PecType.ERRORE_CONSEGNA
    assert message.errore is None
    assert message.identificativo is None  # a receipt's own Message-ID is not the identificativo
    assert message.riferimento_message_id == OUR_MESSAGE_ID


def test_malformed_daticert_degrades_to_a_warning() -> None:
    raw = build_envelope(
        subject="ACCETTAZIONE: x", x_ricevuta="accettazione", daticert=b"<postacert><dati"
    )
    message = pec.parse(raw)
    assert message.type is PecType.ACCETTAZIONE
    assert any("daticert.xml" in w for w in message.warnings)


def test_daticert_with_another_root_is_ignored_with_a_warning() -> None:
    raw = build_envelope(subject="ACCETTAZIONE: x", x_ricevuta="accettazione", daticert=b"<a/>")
    message = pec.parse(raw)
    assert message.daticert is None
    assert any("root element 'a'" in w for w in message.warnings)


# ---------------------------------------------------------------- F1, F5, Q15


def test_f1_sdi_address_comes_from_reply_to_not_the_outer_from() -> None:
    message = pec.parse(build_sdi_envelope([_sdi_part(T.RC)]))
    assert message.sdi_address == SDI
    assert "posta-certificata" not in (message.sdi_address or "")


def test_f1_sdi_address_from_inner_from_when_reply_to_is_missing() -> None:
    raw = build_sdi_envelope(
        [_sdi_part(T.RC)], reply_to="", sender="posta-certificata@pcert.sogei.it"
    )
    message = pec.parse(raw)
    assert message.sdi_address == SDI


def test_f1_sdi_address_from_per_conto_di_in_lowercase() -> None:
    raw = build_envelope(
        subject="POSTA CERTIFICATA: Ricevuta di consegna 1",
        x_trasporto="posta-certificata",
        sender='"Per conto di: SDI12@PEC.FATTURAPA.IT" <posta-certificata@pcert.sogei.it>',
    )
    message = pec.parse(raw)
    assert message.sdi_address == "sdi12@pec.fatturapa.it"
    assert message.mittente == "SDI12@PEC.FATTURAPA.IT"


def test_f1_outer_from_address_is_never_the_sdi_address() -> None:
    raw = build_envelope(
        subject="POSTA CERTIFICATA: Ricevuta di consegna 1",
        x_trasporto="posta-certificata",
        sender="sdi05@pec.fatturapa.it",
    )
    assert pec.parse(raw).sdi_address is None


@pytest.mark.parametrize("value", [t.value for t in PecType if t.value not in ("anomalia",)])
def test_f5_every_known_x_ricevuta_or_trasporto_value_maps_explicitly(value: str) -> None:
    if value == "posta-certificata":
        raw = build_envelope(subject="qualcosa", x_trasporto=value)
    else:
        raw = build_envelope(subject="qualcosa", x_ricevuta=value)
    assert pec.parse(raw).type is PecType(value)


def test_f5_x_trasporto_errore_is_anomalia() -> None:
    assert pec.parse(build_envelope(subject="x", x_trasporto="errore")).type is PecType.ANOMALIA


def test_f5_unknown_x_ricevuta_falls_back_to_daticert_not_accettazione() -> None:
    message = pec.parse(build_avvenuta_consegna(x_ricevuta="consegna-europea"))
    assert message.type is PecType.AVVENUTA_CONSEGNA
    assert any("unknown X-Ricevuta value 'consegna-europea'" in w for w in message.warnings)


def test_f5_unknown_x_ricevuta_falls_back_to_subject() -> None:
    raw = build_errore_consegna(x_ricevuta="nuovo-tipo", with_daticert=False)
    message = pec.parse(raw)
    assert message.type is PecType.ERRORE_CONSEGNA
    assert any("subject" in w for w in message.warnings)


def test_f5_unknown_x_ricevuta_with_nothing_else_is_none_with_warnings() -> None:
    raw = build_envelope(subject="Avviso", x_ricevuta="nuovo-tipo")
    message = pec.parse(raw)
    assert message.type is None
    assert message.type is not PecType.ACCETTAZIONE
    assert any("unknown kind" in w for w in message.warnings)


def test_headers_and_daticert_disagreeing_keep_the_header_with_a_warning() -> None:
    raw = build_envelope(
        subject="ACCETTAZIONE: x",
        x_ricevuta="accettazione",
        daticert=pecmail.build_daticert("avvenuta-consegna"),
    )
    message = pec.parse(raw)
    assert message.type is PecType.ACCETTAZIONE
    assert any("disagrees" in w for w in message.warnings)


def test_q15_mojibake_text_part_is_ignored() -> None:
    raw = build_sdi_envelope([_sdi_part(T.RC)]).replace(
        b"Il file e' allegato.", "funzionalitÃ\xa0 Ã¨".encode() + b"\xff\xfe"
    )
    message = pec.parse(raw)
    assert message.type is PecType.POSTA_CERTIFICATA
    assert sdi.parse(message.attachments[0].data).type is T.RC


# ---------------------------------------------------------------- headers, subjects, names


@pytest.mark.parametrize(
    "header",
    [
        b"x-ricevuta: avvenuta-consegna",
        b"X-RICEVUTA: AVVENUTA-CONSEGNA",
        b"X-Ricevuta:\r\n   Avvenuta-Consegna  ",
        b"X-Ricevuta:\tavvenuta-consegna\t",
    ],
)
def test_header_name_case_and_folding_variants(header: bytes) -> None:
    raw = build_avvenuta_consegna(with_daticert=False, subject="?")
    raw = raw.replace(b"X-Ricevuta: avvenuta-consegna", header)
    assert pec.parse(raw).type is PecType.AVVENUTA_CONSEGNA


def test_folded_riferimento_header_is_normalised() -> None:
    raw = build_accettazione().replace(
        b"X-Riferimento-Message-ID: <20240506100000.abcdef@pec.example.it>",
        b"X-Riferimento-Message-ID:\r\n <20240506100000.abcdef@PEC.EXAMPLE.IT>",
    )
    assert pec.parse(raw).riferimento_message_id == OUR_MESSAGE_ID


@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-1"])
def test_rfc2047_subject_is_decoded_and_classifies(charset: str) -> None:
    subject = pecmail.encoded_subject("CONSEGNA: fattura n° 1 è qui", charset)
    raw = build_avvenuta_consegna(subject=subject, x_ricevuta="", with_daticert=False)
    message = pec.parse(raw)
    assert message.oggetto == "CONSEGNA: fattura n° 1 è qui"
    assert message.type is PecType.AVVENUTA_CONSEGNA


@pytest.mark.parametrize(
    "subject",
    [
        b"=?x-unknown-charset?Q?caff=E8?=",
        b"=?utf-8?B?####?=",
        b"=?unknown-8bit?Q?caff=E8?=",
        b"caff\xe8 raw 8-bit",
        b"caff\xc3\xa8 raw utf-8",
    ],
)
def test_odd_subject_encodings_degrade_without_raising(subject: bytes) -> None:
    raw = build_plain_mail().replace(b"Subject: Offerta speciale", b"Subject: " + subject)
    message = pec.parse(raw)
    assert message.oggetto is not None
    assert "caff" in message.oggetto or "####" in message.oggetto


def test_attachment_name_with_encoded_words_and_paths_is_cleaned() -> None:
    raw = build_plain_mail(
        attachments=[Part("=?utf-8?Q?Segnatura.xml?=", b"<a/>"), Part("../../etc/passwd", b"x")]
    )
    names = [a.filename for a in pec.parse(raw).attachments]
    assert names == ["Segnatura.xml", "etc_passwd"]


def test_attachment_without_cte_but_base64_text_stays_as_given() -> None:
    text = b"MIIBase64TextOfAp7mEnvelope\nQUJD\n"
    raw = build_plain_mail(attachments=[Part("IT01234567890_00001.xml.p7m", text, cte=None)])
    assert pec.parse(raw).attachments[0].data.replace(b"\r\n", b"\n") == text


def test_unnamed_non_text_part_is_kept_with_a_made_up_name() -> None:
    raw = build_plain_mail(attachments=[Part("x.xml", b"<a/>", "application/xml")])
    raw = raw.replace(b"; name=x.xml", b"").replace(
        b"Content-Disposition: attachment; filename=x.xml\r\n", b""
    )
    attachments = pec.parse(raw).attachments
    assert len(attachments) == 1
    assert attachments[0].filename.endswith(".xml")
    assert attachments[0].data == b"<a/>"


def test_mittente_falls_back_to_reply_to_then_from() -> None:
    with_reply = build_envelope(subject="x", x_trasporto="posta-certificata", reply_to="a@b.it")
    assert pec.parse(with_reply).mittente == "a@b.it"
    bare = build_envelope(subject="x", x_trasporto="posta-certificata", sender="c@d.it")
    assert pec.parse(bare).mittente == "c@d.it"


# ---------------------------------------------------------------- not a mail; normalize_message_id


@pytest.mark.parametrize("raw", [b"", b"\x00\x01\x02 binary junk", b"\r\n\r\nbody only"])
def test_bytes_without_header_lines_are_not_an_email(raw: bytes) -> None:
    with pytest.raises(MalformedMessage, match="not an e-mail message"):
        pec.parse(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<ID.1@Domain.IT>", "<ID.1@domain.it>"),
        ("  ID.1@Domain.IT ", "<ID.1@domain.it>"),
        ("<ID.1\r\n @Domain.IT>", "<ID.1@domain.it>"),
        ("\r\n\t<Abc$X@PEC.it>\r\n", "<Abc$X@pec.it>"),
        ("<no-domain>", "<no-domain>"),
        ("<a@b.it> <c@d.it>", "<a@b.it>"),
        ("", None),
        ("   ", None),
        ("<>", None),
    ],
)
def test_normalize_message_id(value: str, expected: str | None) -> None:
    assert pec.normalize_message_id(value) == expected


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_give_a_message_or_malformed(raw: bytes) -> None:
    try:
        result = pec.parse(raw)
    except MalformedMessage:
        return
    assert isinstance(result, pec.PecMessage)


_SEEDS = [
    build_accettazione(),
    build_avvenuta_consegna(),
    build_sdi_envelope([_sdi_part(T.RC, "B2B")]),
    build_sdi_envelope([_sdi_part(T.NS)], postacert_style="octet-stream"),
    build_sdi_envelope([_sdi_part(T.MC)], postacert_style="rfc822-base64"),
    build_anomalia(),
    build_plain_mail(attachments=[Part("a.xml", b"<a/>")]),
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(
        st.tuples(
            st.integers(0, 20000),
            st.sampled_from(
                [
                    b"",
                    b"\x00",
                    b"\xff\xfe",
                    b"=?",
                    b"?=",
                    b"--",
                    b"\r\n",
                    b":",
                    b"<",
                    b'"',
                    b"\r\n\r\n",
                ]
            )
            | st.binary(max_size=12),
            st.integers(0, 40),
        ),
        max_size=6,
    ),
)
def test_mutated_messages_give_a_message_or_malformed(
    seed: bytes, edits: list[tuple[int, bytes, int]]
) -> None:
    data = bytearray(seed)
    for position, replacement, cut in edits:
        at = position % (len(data) + 1)
        data[at : at + cut] = replacement
    try:
        result = pec.parse(bytes(data))
    except MalformedMessage:
        return
    assert isinstance(result, pec.PecMessage)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_normalize_message_id_is_total(value: str) -> None:
    result = pec.normalize_message_id(value)
    assert result is None or (result.startswith("<") and result.endswith(">"))


# ---------------------------------------------------------------- conformance


def _pec_rows() -> list[tuple[str, str]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return [("none", "")]
    with manifest.open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return [
            (r["local_path"], r["expected_facts"])
            for r in rows
            if r["local_path"].startswith("pec/")
        ]


def _expected_type(facts: str) -> PecType | None:
    match = re.search(r"X-(?:Ricevuta|Trasporto)=([\w-]+)", facts)
    return PecType(match.group(1)) if match else None


def _expected_names(facts: str) -> list[str]:
    inner = re.search(r"postacert attachments: ([^;]+)", facts)
    if inner:
        return [re.sub(r"\(.*", "", n).strip() for n in inner.group(1).split("),")]
    parts = re.search(r"parts=([^;]+)", facts)
    names = [re.sub(r"\[.*", "", p).strip() for p in parts.group(1).split("],")] if parts else []
    names = [str(make_header(decode_header(n))) for n in names]
    return [n for n in names if n not in ("daticert.xml", "postacert.eml", "smime.p7s")]


def _raw_riferimento(raw: bytes) -> str | None:
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"(?im)^X-Riferimento-Message-ID:\s*(\S+)", head)
    return pec.normalize_message_id(match.group(1).decode()) if match else None


@pytest.mark.conformance
@pytest.mark.skipif(not (CORPUS / "MANIFEST.tsv").is_file(), reason=f"corpus absent at {CORPUS}")
@pytest.mark.parametrize(("path", "facts"), _pec_rows())
def test_corpus_pec_messages_match_the_manifest(path: str, facts: str) -> None:
    raw = (CORPUS / path).read_bytes()
    message = pec.parse(raw)
    assert message.type is _expected_type(facts)
    assert message.riferimento_message_id == _raw_riferimento(raw)
    sdi_match = re.search(r"Per conto di: (sdi\d+@pec\.fatturapa\.it)", facts)
    assert message.sdi_address == (sdi_match.group(1) if sdi_match else None)
    assert [a.filename for a in message.attachments] == _expected_names(facts)
    identificativo = re.search(r"identificativo=(\S+?);", facts)
    assert message.identificativo == (identificativo.group(1) if identificativo else None)
    assert message.warnings == ()


def test_both_x_ricevuta_and_x_trasporto_keep_x_ricevuta_with_a_warning() -> None:
    raw = build_envelope(subject="x", x_ricevuta="accettazione", x_trasporto="posta-certificata")
    message = pec.parse(raw)
    assert message.type is PecType.ACCETTAZIONE
    assert any("X-Ricevuta wins" in w for w in message.warnings)


def test_unknown_x_trasporto_falls_back_with_a_warning() -> None:
    raw = build_envelope(subject="POSTA CERTIFICATA: x", x_trasporto="trasporto-nuovo")
    message = pec.parse(raw)
    assert message.type is PecType.POSTA_CERTIFICATA
    assert any("unknown X-Trasporto value" in w for w in message.warnings)


def test_unnamed_attached_message_in_plain_mail_gets_an_eml_name() -> None:
    raw = build_plain_mail(
        attachments=[Part("x.eml", build_plain_mail(), "message/rfc822", "7bit")]
    )
    raw = raw.replace(b"; name=x.eml", b"").replace(b"filename=x.eml", b"")
    attachments = pec.parse(raw).attachments
    assert [a.filename for a in attachments] == ["part-2.eml"]
