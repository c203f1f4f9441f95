"""Which injected messages move the address the sandbox's SDI answers on: exactly those from which
the gateway learns an SDI address (SDI's message through PEC about one of the user's files, or an
invoice with its MT), so the sandbox and the gateway never disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pecgateway import sample
from pecgateway.sandbox import envelope
from pecgateway.sandbox import notification as nt
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.follow import new_sdi_address
from pecgateway.sandbox.simulator import FIRST_ADDRESS, SdiSimulator, SimulatorConfig
from tests.conftest import CORPUS

USER = "fatture@pec.example.it"
SDI03 = "sdi03@pec.fatturapa.it"
NOW = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
NAME = "IT01234567890_00001.xml"


def _simulator(ca: SandboxCA) -> SdiSimulator:
    signer = nt.XadesSigner(ca.sdi.key_pem, ca.sdi.cert_pem)
    return SdiSimulator(signer=signer, schemas=None, config=SimulatorConfig())


def sdi_envelope(ca: SandboxCA, inner: EmailMessage, sender: str, user: str = USER) -> bytes:
    """``inner`` (SDI's message) re-sent from ``sender`` in Sogei's PEC transport envelope."""
    del inner["From"]
    inner["From"] = sender
    original = envelope.Original(
        mittente=sender,
        destinatari=(user,),
        oggetto=str(inner["Subject"]),
        identificativo="opec-sdi.20240301100000.1.1.1.1@pec.fatturapa.it",
        msgid="<opec-sdi.1@pec.fatturapa.it>",
        raw=inner.as_bytes(policy=policy.SMTP),
        risposte=sender,
        ricevuta=envelope.TipoRicevuta.BREVE,
    )
    sogei = envelope.Gestore("Sogei SpA", "pcert.sogei.it", ca.sogei)
    return envelope.build_posta_certificata(sogei, original, NOW)


def rc_from(ca: SandboxCA, sender: str, nome_file: str = NAME, user: str = USER) -> bytes:
    """SDI's RC about ``nome_file`` (a file ``user`` sent) as if SDI wrote it from ``sender``."""
    message = EmailMessage()
    message["From"] = user
    message["To"] = FIRST_ADDRESS
    message["Subject"] = nome_file
    message.add_attachment(sample.fpr12(), "application", "octet-stream", filename=nome_file)
    (rc,) = _simulator(ca).receive(
        sender=user, recipient=FIRST_ADDRESS, message=message, identificativo="opec-1", now=NOW
    )
    return sdi_envelope(ca, rc.message, sender, user)


def test_an_rc_about_a_file_sdi_received_from_the_user_moves_to_its_sender(
    sandbox_ca: SandboxCA,
) -> None:
    found = new_sdi_address(rc_from(sandbox_ca, SDI03), lambda name: name == NAME)
    assert found is not None
    assert found[0] == SDI03
    assert f"RC about {NAME}" in found[1]


def test_an_rc_about_a_file_sdi_never_received_from_the_user_moves_nothing(
    sandbox_ca: SandboxCA,
) -> None:
    """A real SDI message about somebody else's file (the corpus's) teaches the gateway nothing."""
    assert new_sdi_address(rc_from(sandbox_ca, SDI03), lambda name: False) is None


def test_a_suppliers_invoice_with_its_metadata_moves_to_its_sender(sandbox_ca: SandboxCA) -> None:
    delivered = _simulator(sandbox_ca).deliver_invoice(
        recipient=USER, file_name="IT09876543210_A0001.xml", data=sample.fpr12(), now=NOW
    )
    raw = sdi_envelope(sandbox_ca, delivered.message, SDI03)
    found = new_sdi_address(raw, lambda name: False)
    assert found == (SDI03, "a supplier's invoice with its metadata")


def test_sdis_message_outside_a_pec_envelope_moves_nothing(sandbox_ca: SandboxCA) -> None:
    """Anyone can write an ordinary e-mail from sdi03 with an RC attached: it teaches nothing."""
    message = EmailMessage()
    message["From"] = USER
    message["Subject"] = NAME
    message.add_attachment(sample.fpr12(), "application", "octet-stream", filename=NAME)
    (rc,) = _simulator(sandbox_ca).receive(
        sender=USER, recipient=FIRST_ADDRESS, message=message, identificativo="opec-1", now=NOW
    )
    del rc.message["From"]
    rc.message["From"] = SDI03
    assert new_sdi_address(rc.message.as_bytes(), lambda name: True) is None


@pytest.mark.parametrize("raw", [b"", b"not a mail", b"\x00\xff" * 50, b"From: a\r\n\r\n"])
def test_what_is_not_sdis_message_moves_nothing(raw: bytes) -> None:
    assert new_sdi_address(raw, lambda name: True) is None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    found = new_sdi_address(raw, lambda name: True)
    assert found is None or found[0].endswith("@pec.fatturapa.it")


@pytest.mark.conformance
def test_the_corpus_sdi03_invio_file_moves_and_its_rc_about_another_users_file_does_not() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the corpus is not at {CORPUS}")
    invio = (CORPUS / "pec" / "oca_POSTA_CERTIFICATA_Invio_File_7339338.eml").read_bytes()
    rc = (CORPUS / "pec" / "oca_POSTA_CERTIFICATA_Ricevuta_di_consegna_6782414.eml").read_bytes()
    found = new_sdi_address(invio, lambda name: False)
    assert found is not None
    assert found[0] == SDI03
    assert new_sdi_address(rc, lambda name: False) is None
    assert new_sdi_address(rc, lambda name: name == "IT03339130126_00009.xml") is not None
