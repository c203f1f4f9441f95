"""The sandbox's SDI: address assignment, the file checks, the outcome per flow, Invio File, memory."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pecgateway import sample, schema, sdi
from pecgateway.errors import ConfigError
from pecgateway.filename import NotificationType
from pecgateway.sandbox import notification as nt
from pecgateway.sandbox.simulator import FIRST_ADDRESS, Outgoing, SdiSimulator, SimulatorConfig
from tests.factory import signing
from tests.factory.xades import sdi_identity

USER = "fatture@pec.example.it"
NOW = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
PEC_ID = "opec210.20240301110000.1234.5.6@pec.example.it"
NAME = "IT01234567890_00001.xml"


def _simulator(
    tmp_path: Path | None = None,
    config: SimulatorConfig | None = None,
    schemas: schema.SchemaSet | None = None,
) -> SdiSimulator:
    identity = sdi_identity()
    return SdiSimulator(
        signer=nt.XadesSigner(identity.key_pem, identity.cert_pem),
        schemas=schemas,
        config=config or SimulatorConfig(),
        state_path=None if tmp_path is None else tmp_path / "sdi.json",
    )


def _mail(*files: tuple[str, bytes]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = USER
    message["To"] = FIRST_ADDRESS
    message["Subject"] = files[0][0] if files else "vuoto"
    message.set_content("Invio fattura")
    for name, data in files:
        message.add_attachment(data, "application", "octet-stream", filename=name)
    return message


def _send(
    simulator: SdiSimulator,
    *files: tuple[str, bytes],
    to: str | None = None,
    pec_id: str = PEC_ID,
) -> list[Outgoing]:
    recipient = to or simulator.address_for(USER) if to != "first" else FIRST_ADDRESS
    return simulator.receive(
        sender=USER, recipient=recipient, message=_mail(*files), identificativo=pec_id, now=NOW
    )


def _first(simulator: SdiSimulator, name: str, data: bytes) -> list[Outgoing]:
    return _send(simulator, (name, data), to="first")


def _xml(out: Outgoing) -> tuple[str, bytes]:
    for part in out.message.iter_attachments():
        name = part.get_filename() or ""
        if name.endswith((".xml", ".zip")):
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return name, payload
    raise AssertionError("no notification attached")


def _parsed(out: Outgoing) -> sdi.Notification:
    name, data = _xml(out)
    return sdi.parse(data, name)


def _types(outs: list[Outgoing]) -> list[NotificationType]:
    return [_parsed(out).type for out in outs]


def _codes(out: Outgoing) -> list[str]:
    return [error.codice for error in _parsed(out).errors]


# ---- addresses --------------------------------------------------------------------------------


def test_first_answer_comes_from_a_newly_assigned_address() -> None:
    simulator = _simulator()
    with capture_logs() as logs:
        outs = _first(simulator, NAME, sample.fpr12())
    assigned = outs[0].sender
    assert assigned.endswith("@pec.fatturapa.it")
    assert assigned != FIRST_ADDRESS
    assert outs[0].message["From"] == assigned
    assert simulator.address_for(USER) == assigned
    assert {"event": "sdi_assigned_address", "sender": USER, "address": assigned} | {
        "log_level": "info"
    } in logs


def test_file_sent_to_sdi01_after_assignment_gets_no_answer_and_the_log_says_why() -> None:
    simulator = _simulator(config=SimulatorConfig(first_address_grace_s=0))
    assigned = _first(simulator, NAME, sample.fpr12())[0].sender
    with capture_logs() as logs:
        outs = _first(simulator, "IT01234567890_00002.xml", sample.fpr12(numero="2"))
    assert outs == []
    ignored = [log for log in logs if log["event"] == "sdi_ignored_wrong_address"]
    assert ignored[0]["expected"] == assigned
    assert ignored[0]["got"] == FIRST_ADDRESS


def test_first_file_sent_to_another_sdi_address_gets_no_answer() -> None:
    simulator = _simulator()
    with capture_logs() as logs:
        outs = _send(simulator, (NAME, sample.fpr12()), to="sdi07@pec.fatturapa.it")
    assert outs == []
    assert any(log["event"] == "sdi_ignored_wrong_address" for log in logs)


def test_files_sent_to_the_assigned_address_are_answered_from_it() -> None:
    simulator = _simulator()
    assigned = _first(simulator, NAME, sample.fpr12())[0].sender
    outs = _send(simulator, ("IT01234567890_00002.xml", sample.fpr12(numero="2")), to=assigned)
    assert [out.sender for out in outs] == [assigned]
    assert _types(outs) == [NotificationType.RC]


def test_message_without_a_file_gets_no_answer() -> None:
    simulator = _simulator()
    with capture_logs() as logs:
        assert _send(simulator, to="first") == []
    assert any(log["event"] == "sdi_ignored_no_file" for log in logs)


# ---- B2B outcomes -----------------------------------------------------------------------------


def test_b2b_invoice_with_a_codice_destinatario_gets_an_rc() -> None:
    outs = _first(_simulator(), NAME, sample.fpr12(codice_destinatario="ABC1234"))
    parsed = _parsed(outs[0])
    assert (parsed.type, parsed.flow, parsed.root) == (
        NotificationType.RC,
        sdi.Flow.B2B,
        "RicevutaConsegna",
    )


def test_b2b_invoice_to_0000000_with_a_pec_address_gets_an_rc() -> None:
    invoice = sample.fpr12(codice_destinatario="0000000", pec_destinatario="buyer@pec.example.it")
    assert _types(_first(_simulator(), NAME, invoice)) == [NotificationType.RC]


def test_b2b_invoice_to_0000000_without_pec_gets_an_mc_with_the_availability_date() -> None:
    outs = _first(_simulator(), NAME, sample.fpr12(codice_destinatario="0000000"))
    parsed = _parsed(outs[0])
    assert (parsed.type, parsed.root) == (NotificationType.MC, "RicevutaImpossibilitaRecapito")
    assert parsed.data_messa_a_disposizione == "2024-03-01"
    assert outs[0].message["Subject"].startswith("Notifica di mancata consegna ")


def test_rc_follows_the_mc_when_configured() -> None:
    config = SimulatorConfig(answer_delay_s=1.0, rc_after_mc_s=30.0)
    outs = _first(_simulator(config=config), NAME, sample.fpr12(codice_destinatario="0000000"))
    assert _types(outs) == [NotificationType.MC, NotificationType.RC]
    assert [out.delay_s for out in outs] == [1.0, 31.0]
    assert len({_parsed(out).identificativo_sdi for out in outs}) == 1


# ---- PA outcomes ------------------------------------------------------------------------------


def test_pa_invoice_gets_an_rc_then_an_accepting_ne_after_the_configured_delay() -> None:
    config = SimulatorConfig(answer_delay_s=2.0, pa_outcome_delay_s=60.0)
    outs = _first(_simulator(config=config), NAME, sample.fpa12(codice_destinatario="UFPQ1O"))
    assert _types(outs) == [NotificationType.RC, NotificationType.NE]
    assert [out.delay_s for out in outs] == [2.0, 62.0]
    ne = _parsed(outs[1])
    assert (ne.flow, ne.esito) == (sdi.Flow.PA, "EC01")
    assert outs[1].message["Subject"] == f"Notifica di esito {ne.identificativo_sdi}"


def test_pa_codice_ending_in_r_is_refused_with_ec02() -> None:
    outs = _first(_simulator(), NAME, sample.fpa12(codice_destinatario="UFPQ1R"))
    assert _types(outs) == [NotificationType.RC, NotificationType.NE]
    assert _parsed(outs[1]).esito == "EC02"


def test_pa_codice_ending_in_x_gets_no_outcome_but_a_dt() -> None:
    config = SimulatorConfig(dt_delay_s=90.0)
    outs = _first(_simulator(config=config), NAME, sample.fpa12(codice_destinatario="UFPQ1X"))
    assert _types(outs) == [NotificationType.RC, NotificationType.DT]
    assert outs[1].delay_s == 90.0
    assert outs[1].message["Subject"].startswith("Notifica di decorrenza termini ")


def test_pa_office_999999_gets_an_mc_then_an_at_zip_with_invoice_and_attestation() -> None:
    invoice = sample.fpa12(codice_destinatario="999999")
    outs = _first(_simulator(config=SimulatorConfig(at_delay_s=120.0)), NAME, invoice)
    assert _parsed(outs[0]).type is NotificationType.MC
    assert _parsed(outs[0]).root == "NotificaMancataConsegna"
    name, archive = _xml(outs[1])
    assert name == "IT01234567890_00001_AT_002.zip"
    assert outs[1].delay_s == 120.0
    assert (
        outs[1]
        .message["Subject"]
        .startswith(
            "Attestazione di avvenuta trasmissione della fattura con impossibilità di recapito "
        )
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.read(NAME) == invoice
        attestation = opened.read("IT01234567890_00001_AT_002.xml")
    parsed = sdi.parse(attestation)
    assert parsed.type is NotificationType.AT
    assert nt.verify(attestation, sdi_identity().ca_pem)
    assert hashlib.sha256(invoice).hexdigest().encode() in attestation


# ---- rejections (NS) --------------------------------------------------------------------------


def test_invalid_file_name_is_rejected_with_00001() -> None:
    with capture_logs() as logs:
        outs = _first(_simulator(), "fattura marzo.xml", sample.fpr12())
    assert _codes(outs[0]) == ["00001"]
    assert _xml(outs[0])[0] == "fattura_marzo_NS_001.xml"
    rejected = [log for log in logs if log["event"] == "sdi_rejected"]
    assert rejected[0]["codice"] == "00001"


def test_file_name_used_before_is_rejected_with_00002_whatever_the_case_or_extension() -> None:
    simulator = _simulator()
    assigned = _first(simulator, "IT01234567890_0000A.xml", sample.fpr12())[0].sender
    for name in (
        "IT01234567890_0000A.xml",
        "IT01234567890_0000a.xml",
        "IT01234567890_0000A.xml.p7m",
    ):
        again = _send(simulator, (name, sample.fpr12(numero="2")), to=assigned)
        assert _codes(again[0]) == ["00002"], name


def test_file_over_the_size_limit_is_rejected_with_00003() -> None:
    config = SimulatorConfig(max_file_bytes=100)
    assert _codes(_first(_simulator(config=config), NAME, sample.fpr12())[0]) == ["00003"]


def test_empty_file_is_rejected_with_00106() -> None:
    assert _codes(_first(_simulator(), NAME, b"")[0]) == ["00106"]


def test_p7m_that_is_not_an_envelope_is_rejected_with_00102() -> None:
    outs = _first(_simulator(), "IT01234567890_00001.xml.p7m", b"\x30\x82garbage-not-cms")
    assert _codes(outs[0]) == ["00102"]


def test_signed_p7m_invoice_is_accepted() -> None:
    envelope = signing.der_envelope(sample.fpr12())
    outs = _first(_simulator(), "IT01234567890_00001.xml.p7m", envelope)
    assert _types(outs) == [NotificationType.RC]
    assert _parsed(outs[0]).nome_file == "IT01234567890_00001.xml.p7m"
    assert _parsed(outs[0]).hash == hashlib.sha256(envelope).hexdigest()


def test_file_that_is_not_well_formed_is_rejected_with_00200_and_the_parser_message() -> None:
    outs = _first(_simulator(), NAME, b"<FatturaElettronica><unclosed></FatturaElettronica>")
    parsed = _parsed(outs[0])
    assert [e.codice for e in parsed.errors] == ["00200"]
    assert "File non conforme al formato: " in (parsed.errors[0].descrizione or "")
    assert len(parsed.errors[0].descrizione or "") > len("File non conforme al formato: ")


def test_schema_invalid_invoice_is_rejected_with_00200(schema_dir: Path) -> None:
    invalid = sample.fpr12().replace(b"<TipoDocumento>TD01<", b"<TipoDocumento>TD99<")
    simulator = _simulator(schemas=schema.load(schema_dir))
    assert _codes(_first(simulator, NAME, invalid)[0]) == ["00200"]


def test_schema_valid_invoice_passes_the_schema_check(schema_dir: Path) -> None:
    simulator = _simulator(schemas=schema.load(schema_dir))
    assert _types(_first(simulator, NAME, sample.fpa12())) == [
        NotificationType.RC,
        NotificationType.NE,
    ]


def test_file_name_not_matching_the_transmitter_is_rejected_with_00001(schema_dir: Path) -> None:
    simulator = _simulator(schemas=schema.load(schema_dir))
    invoice = sample.fpr12(transmitter="IT01234567890")
    outs = _first(simulator, "IT09876543210_00001.xml", invoice)
    assert _codes(outs[0]) == ["00001"]
    assert "IdTrasmittente" in (_parsed(outs[0]).errors[0].descrizione or "")


def test_codice_destinatario_of_the_wrong_length_for_the_format_is_rejected_with_00427() -> None:
    outs = _first(_simulator(), NAME, sample.fpa12(codice_destinatario="ABC1234"))
    assert _codes(outs[0]) == ["00427"]
    assert _parsed(outs[0]).flow is sdi.Flow.PA


def test_same_seller_year_number_and_type_as_an_accepted_invoice_is_rejected_with_00404() -> None:
    simulator = _simulator()
    assigned = _first(simulator, NAME, sample.fpr12(numero="7"))[0].sender
    again = _send(simulator, ("IT01234567890_00002.xml", sample.fpr12(numero="7")), to=assigned)
    assert _codes(again[0]) == ["00404"]
    other = _send(simulator, ("IT01234567890_00003.xml", sample.fpr12(numero="8")), to=assigned)
    assert _types(other) == [NotificationType.RC]


def test_invoice_refused_by_the_pa_can_be_sent_again_under_a_new_name() -> None:
    simulator = _simulator()
    refused = sample.fpa12(codice_destinatario="UFPQ1R", numero="9")
    assigned = _first(simulator, NAME, refused)[0].sender
    again = _send(simulator, ("IT01234567890_00002.xml", refused), to=assigned)
    assert _types(again)[0] is NotificationType.RC


def test_rejected_file_name_cannot_be_reused() -> None:
    simulator = _simulator()
    assigned = _first(simulator, NAME, b"<broken")[0].sender
    assert _codes(_send(simulator, (NAME, sample.fpr12()), to=assigned)[0]) == ["00002"]


# ---- notifications and messages ---------------------------------------------------------------


def test_several_files_in_one_message_get_one_outcome_each_with_increasing_ids() -> None:
    simulator = _simulator()
    outs = _send(
        simulator,
        (NAME, sample.fpr12(numero="1")),
        ("IT01234567890_00002.xml", b""),
        ("IT01234567890_00003.xml", sample.fpr12(numero="3")),
        to="first",
    )
    parsed = [_parsed(out) for out in outs]
    assert [p.type for p in parsed] == [
        NotificationType.RC,
        NotificationType.NS,
        NotificationType.RC,
    ]
    ids = [int(p.identificativo_sdi or 0) for p in parsed]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_notifications_echo_the_pec_identificativo_and_name_the_file() -> None:
    outs = _first(_simulator(), NAME, sample.fpa12())
    for out in outs:
        parsed = _parsed(out)
        assert parsed.pec_message_id == PEC_ID
        assert parsed.nome_file == NAME
    assert [_xml(out)[0] for out in outs] == [
        "IT01234567890_00001_RC_001.xml",
        "IT01234567890_00001_NE_002.xml",
    ]
    assert len({_parsed(out).message_id for out in outs}) == 2


def test_sdi_message_has_the_real_shape() -> None:
    out = _first(_simulator(), NAME, sample.fpr12())[0]
    message = out.message
    identificativo = _parsed(out).identificativo_sdi
    assert message["Subject"] == f"Ricevuta di consegna {identificativo}"
    assert message["From"] == out.sender
    assert message["To"] == USER
    assert message["Message-ID"].endswith("@pec.fatturapa.it>")
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/octet-stream", "text/plain"]
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    text = parts[1].get_content()
    assert out.sender in text
    assert identificativo is not None
    assert identificativo in text


@pytest.mark.parametrize(
    ("invoice", "config"),
    [
        (sample.fpr12(), SimulatorConfig()),
        (sample.fpr12(codice_destinatario="0000000"), SimulatorConfig(rc_after_mc_s=1.0)),
        (sample.fpa12(), SimulatorConfig()),
        (sample.fpa12(codice_destinatario="UFPQ1X"), SimulatorConfig()),
        (sample.fpa12(codice_destinatario="999999"), SimulatorConfig()),
        (b"not xml", SimulatorConfig()),
        (sample.fpa12(codice_destinatario="ABC1234"), SimulatorConfig()),
    ],
    ids=["b2b-rc", "b2b-mc-rc", "pa-rc-ne", "pa-rc-dt", "pa-mc-at", "b2b-ns", "pa-ns"],
)
def test_every_notification_validates_against_its_flow_schema_and_verifies(
    invoice: bytes, config: SimulatorConfig, schema_dir: Path
) -> None:
    schemas = schema.load(schema_dir)
    for out in _first(_simulator(config=config), NAME, invoice):
        name, data = _xml(out)
        if name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as opened:
                name = next(n for n in opened.namelist() if "_AT_" in n)
                data = opened.read(name)
        parsed = sdi.parse(data, name)
        xsd = schemas.for_notification(parsed.flow.value)
        assert xsd is not None
        xsd.validate(data)
        assert nt.verify(data, sdi_identity().ca_pem), name


# ---- supplier invoices ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "data", "flow"),
    [
        ("IT09876543210_abc12.xml", sample.fpr12(transmitter="IT09876543210"), "B2B"),
        ("IT09876543210_abc13.xml", sample.fpa12(transmitter="IT09876543210"), "PA"),
        ("IT09876543210_abc14.xml.p7m", signing.der_envelope(sample.fpr12()), "B2B"),
    ],
)
def test_delivered_invoice_comes_with_its_metadata_and_hash(
    file_name: str, data: bytes, flow: str, schema_dir: Path
) -> None:
    out = _simulator().deliver_invoice(recipient=USER, file_name=file_name, data=data, now=NOW)
    attachments = {
        p.get_filename(): p.get_payload(decode=True) for p in out.message.iter_attachments()
    }
    stem = file_name.split(".")[0]
    assert set(attachments) == {file_name, f"{stem}_MT_001.xml"}
    assert attachments[file_name] == data
    metadata = attachments[f"{stem}_MT_001.xml"]
    assert isinstance(metadata, bytes)
    parsed = sdi.parse(metadata)
    assert (parsed.type, parsed.flow.value, parsed.signed) == (NotificationType.MT, flow, False)
    assert parsed.nome_file == file_name
    xsd = schema.load(schema_dir).for_notification(flow)
    assert xsd is not None
    xsd.validate(metadata)
    if flow == "B2B":
        assert parsed.hash == hashlib.sha256(data).hexdigest()
    assert out.message["Subject"] == f"Invio File {parsed.identificativo_sdi}"
    assert out.message["To"] == USER
    assert out.delay_s == 0.0


def test_delivered_invoice_comes_from_the_users_assigned_address() -> None:
    simulator = _simulator()
    assigned = _first(simulator, NAME, sample.fpr12())[0].sender
    out = simulator.deliver_invoice(
        recipient=USER, file_name="IT09876543210_00001.xml", data=sample.fpr12(), now=NOW
    )
    assert out.sender == assigned
    assert out.message["From"] == assigned


def test_unreadable_supplier_file_is_still_delivered_as_sent() -> None:
    out = _simulator().deliver_invoice(
        recipient=USER, file_name="IT09876543210_00001.xml", data=b"\xff\xfegarbage", now=NOW
    )
    names = [p.get_filename() for p in out.message.iter_attachments()]
    assert names == ["IT09876543210_00001_MT_001.xml", "IT09876543210_00001.xml"]


# ---- memory -----------------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = _simulator(tmp_path)
    outs = _first(first, NAME, sample.fpr12(numero="5"))
    assigned, identificativo = outs[0].sender, int(_parsed(outs[0]).identificativo_sdi or 0)
    second = _simulator(tmp_path, config=SimulatorConfig(first_address_grace_s=0))
    assert second.address_for(USER) == assigned
    assert _send(second, ("IT01234567890_00002.xml", sample.fpr12()), to="first") == []
    assert _codes(_send(second, (NAME, sample.fpr12()), to=assigned)[0]) == ["00002"]
    duplicate = _send(second, ("IT01234567890_00003.xml", sample.fpr12(numero="5")), to=assigned)
    assert _codes(duplicate[0]) == ["00404"]
    assert int(_parsed(duplicate[0]).identificativo_sdi or 0) > identificativo


def test_state_is_written_as_json_without_leftovers(tmp_path: Path) -> None:
    _first(_simulator(tmp_path), NAME, sample.fpr12())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdi.json"]
    state = json.loads((tmp_path / "sdi.json").read_text(encoding="utf-8"))
    assert USER in state["assigned"]
    assert "it01234567890_00001" in state["used_names"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"assigned": 5}'])
def test_unreadable_state_file_is_a_config_error_naming_the_file(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / "sdi.json").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sdi\.json"):
        _simulator(tmp_path)


def test_files_sent_to_sdi01_before_the_first_answer_went_out_are_still_answered() -> None:
    """A sender learns its sdiNN from SDI's first answer: until then sdi01 is the right address."""
    simulator = _simulator(config=SimulatorConfig(answer_delay_s=5.0, first_address_grace_s=0))
    first = _first(simulator, NAME, sample.fpr12())
    second = simulator.receive(
        sender=USER,
        recipient=FIRST_ADDRESS,
        message=_mail(("IT01234567890_00002.xml", sample.fpr12(numero="2"))),
        identificativo="opec-2",
        now=NOW + timedelta(seconds=1),
    )
    assert _types(second) == [NotificationType.RC]
    assert second[0].sender == first[0].sender
    late = simulator.receive(
        sender=USER,
        recipient=FIRST_ADDRESS,
        message=_mail(("IT01234567890_00003.xml", sample.fpr12(numero="3"))),
        identificativo="opec-3",
        now=NOW + timedelta(seconds=6),
    )
    assert late == []


def test_an_invoice_delivered_from_sdinn_makes_sdinn_the_address_sdi_answers_on() -> None:
    """The gateway learns sdiNN from any SDI message, an Invio File included: SDI must agree."""
    simulator = _simulator()
    delivered = simulator.deliver_invoice(
        recipient=USER, file_name="IT09876543210_00001.xml", data=sample.fpr12(), now=NOW
    )
    outs = _send(simulator, (NAME, sample.fpr12()), to=delivered.sender)
    assert _types(outs) == [NotificationType.RC]
    assert outs[0].sender == delivered.sender


def _to_sdi01_at(simulator: SdiSimulator, seconds: float, progressivo: str) -> list[Outgoing]:
    return simulator.receive(
        sender=USER,
        recipient=FIRST_ADDRESS,
        message=_mail((f"IT01234567890_{progressivo}.xml", sample.fpr12(numero=progressivo))),
        identificativo=f"opec-{progressivo}",
        now=NOW + timedelta(seconds=seconds),
    )


def test_files_sent_to_sdi01_within_the_grace_after_the_first_answer_are_still_answered() -> None:
    """Several files sent in one go all go to sdi01: SDI answers them during the grace period."""
    config = SimulatorConfig(answer_delay_s=2.0, first_address_grace_s=60.0)
    simulator = _simulator(config=config)
    assigned = _first(simulator, NAME, sample.fpr12())[0].sender
    within = _to_sdi01_at(simulator, 2.0 + 59.0, "00002")
    assert _types(within) == [NotificationType.RC]
    assert within[0].sender == assigned
    with capture_logs() as logs:
        after = _to_sdi01_at(simulator, 2.0 + 60.0, "00003")
    assert after == []
    (ignored,) = [log for log in logs if log["event"] == "sdi_ignored_wrong_address"]
    assert ignored["expected"] == assigned


def test_the_grace_for_sdi01_is_sixty_seconds_unless_configured() -> None:
    assert SimulatorConfig().first_address_grace_s == 60.0


def test_a_moved_address_is_the_one_sdi_answers_on_and_is_remembered(tmp_path: Path) -> None:
    simulator = _simulator(tmp_path, config=SimulatorConfig(first_address_grace_s=0))
    assigned = _first(simulator, NAME, sample.fpr12())[0].sender
    moved = (
        "sdi04@pec.fatturapa.it"
        if assigned == "sdi03@pec.fatturapa.it"
        else "sdi03@pec.fatturapa.it"
    )
    with capture_logs() as logs:
        assert simulator.move_address(user=USER, address=moved, now=NOW, reason="test")
        assert not simulator.move_address(user=USER, address=moved.upper(), now=NOW, reason="again")
    (record,) = [log for log in logs if log["event"] == "sdi_address_moved"]
    assert (record["old"], record["new"], record["reason"]) == (assigned, moved, "test")
    restarted = _simulator(tmp_path, config=SimulatorConfig(first_address_grace_s=0))
    assert restarted.address_for(USER) == moved
    outs = _send(restarted, ("IT01234567890_00002.xml", sample.fpr12(numero="2")), to=moved)
    assert [(out.sender, _parsed(out).type) for out in outs] == [(moved, NotificationType.RC)]
    assert (
        _send(restarted, ("IT01234567890_00003.xml", sample.fpr12(numero="3")), to=assigned) == []
    )
