"""Whom inbound_trust believes: PEC-shaped receipts and SDI's messages through PEC (the sandbox's real
S/MIME messages and the corpus's real SDI envelopes included); never a plain or forged-looking mail."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pecgateway import pec
from pecgateway.errors import MalformedMessage
from pecgateway.inbound_trust import Origin, Trust, assess
from pecgateway.sandbox import envelope as provider
from tests.conftest import CORPUS
from tests.factory.pecmail import (
    Part,
    build_accettazione,
    build_anomalia,
    build_original,
    build_plain_mail,
    build_sdi_envelope,
)

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
RC = Part("IT01234567890_00001_RC_001.xml", b"<x/>", "text/xml")


def _judge(raw: bytes) -> Trust:
    return assess(raw, pec.parse(raw))


def _sogei(sandbox_ca: SandboxCA) -> provider.Gestore:
    return provider.Gestore("Sogei SpA", "pcert.sogei.it", sandbox_ca.sogei)


def _from_sdi() -> bytes:
    return build_original(
        sender="sdi48@pec.fatturapa.it", subject="Ricevuta di consegna 1", attachments=[RC]
    )


def test_the_sandboxs_real_smime_sdi_envelope_is_sdi(sandbox_ca: SandboxCA) -> None:
    original = provider.Original(
        mittente="sdi48@pec.fatturapa.it",
        destinatari=("fatture@pec.example.it",),
        oggetto="Ricevuta di consegna 1",
        identificativo="opec288.1@pcert.sogei.it",
        msgid="<1@pec.fatturapa.it>",
        raw=_from_sdi(),
    )
    raw = provider.build_posta_certificata(_sogei(sandbox_ca), original, NOW)
    assert _judge(raw) == Trust(Origin.SDI, "sdi48@pec.fatturapa.it", "sdi48@pec.fatturapa.it")


def test_the_sandboxs_real_smime_receipt_is_a_receipt(sandbox_ca: SandboxCA) -> None:
    original = provider.Original(
        mittente="fatture@pec.example.it",
        destinatari=("sdi01@pec.fatturapa.it",),
        oggetto="IT01234567890_00001.xml",
        identificativo="opec210.1@pec.provider.example",
        msgid="<ours.1@pec.example.it>",
    )
    gestore = provider.Gestore("PROVIDER PEC S.p.A.", "pec.provider.example", sandbox_ca.provider)
    raw = provider.build_accettazione(gestore, original, NOW)
    assert _judge(raw).origin is Origin.RECEIPT


def test_a_certified_sender_who_is_not_sdi_overrules_an_sdi_reply_to() -> None:
    raw = build_sdi_envelope(
        [RC], sdi="fornitore@pec.example.it", reply_to="sdi99@pec.fatturapa.it"
    )
    assert _judge(raw) == Trust(Origin.PEC, "fornitore@pec.example.it")


def test_without_a_certified_sender_sdi_is_read_from_the_inner_from() -> None:
    raw = build_sdi_envelope(
        [RC],
        sdi="sdi12@pec.fatturapa.it",
        sender="posta-certificata@pcert.sogei.it",
        reply_to="",
        with_daticert=False,
    )
    assert _judge(raw).sdi_address == "sdi12@pec.fatturapa.it"


def test_a_transport_envelope_without_postacert_is_not_sdi() -> None:
    raw = build_sdi_envelope([RC]).replace(b'name="postacert.eml"', b'name="other.bin"')
    raw = raw.replace(b"message/rfc822", b"application/octet-stream")
    trust = _judge(raw)
    assert trust.origin is Origin.UNTRUSTED
    assert trust.problem is not None
    assert "postacert.eml" in trust.problem


@pytest.mark.parametrize(
    "raw",
    [
        build_plain_mail(sender="sdi07@pec.fatturapa.it", attachments=[RC]),
        b"Reply-To: sdi07@pec.fatturapa.it\r\n" + build_plain_mail(attachments=[RC]),
        build_anomalia(build_plain_mail(sender="sdi07@pec.fatturapa.it")),
        b"X-Trasporto: posta-certificata\r\n" + build_plain_mail(sender="sdi07@pec.fatturapa.it"),
    ],
    ids=["from-sdi", "reply-to-sdi", "anomaly", "pec-header-unsigned"],
)
def test_a_mail_that_only_names_sdi_is_never_sdi(raw: bytes) -> None:
    trust = _judge(raw)
    assert trust.origin is Origin.UNTRUSTED
    assert trust.sdi_address is None


def test_a_receipt_with_both_pec_headers_is_not_believed() -> None:
    raw = b"X-Trasporto: posta-certificata\r\n" + build_accettazione()
    trust = _judge(raw)
    assert trust.origin is Origin.UNTRUSTED
    assert trust.problem is not None
    assert "both X-Ricevuta and X-Trasporto" in trust.problem


# ---- never raises ----------------------------------------------------------------------------------

_SEEDS = [build_sdi_envelope([RC]), build_accettazione(), build_plain_mail(attachments=[RC])]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_judged_without_raising(data: bytes) -> None:
    try:
        message = pec.parse(data)
    except MalformedMessage:
        message = None
    assert isinstance(assess(data, message), Trust)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(
        st.tuples(st.integers(0, 20000), st.binary(max_size=12), st.integers(0, 40)), max_size=6
    ),
)
def test_mutated_pec_messages_are_judged_without_raising(
    seed: bytes, edits: list[tuple[int, bytes, int]]
) -> None:
    data = bytearray(seed)
    for position, replacement, cut in edits:
        at = position % (len(data) + 1)
        data[at : at + cut] = replacement
    try:
        message = pec.parse(bytes(data))
    except MalformedMessage:
        message = None
    trust = assess(bytes(data), message)
    assert trust.origin is not Origin.SDI or trust.sdi_address is not None


# ---- the corpus's real messages ------------------------------------------------------------------


def _corpus() -> list[tuple[str, str, str]]:
    """(file, MANIFEST kind, expected facts) of every PEC message in the corpus."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            (r["local_path"], r["kind"], r["expected_facts"])
            for r in rows
            if r["local_path"].startswith("pec/")
        ]


def _expected(kind: str, facts: str) -> Origin:
    if "S/MIME (openssl smime -verify -noverify): FAIL" in facts:
        return Origin.UNTRUSTED  # a receipt trimmed for a test suite: its smime.p7s is gone
    if kind.startswith("pec-envelope-sdi"):
        return Origin.SDI
    if kind == "pec-envelope":
        return Origin.PEC
    return Origin.RECEIPT if kind.startswith("pec-") else Origin.UNTRUSTED


@pytest.mark.conformance
@pytest.mark.parametrize(("path", "kind", "facts"), _corpus() or [("none", "", "")])
def test_each_real_pec_message_of_the_corpus_gets_the_origin_its_structure_shows(
    path: str, kind: str, facts: str
) -> None:
    if path == "none":
        pytest.skip(f"the corpus is absent ({CORPUS})")
    trust = _judge((CORPUS / path).read_bytes())
    assert trust.origin is _expected(kind, facts), trust
    if trust.origin is Origin.SDI:
        assert trust.sdi_address == "sdi03@pec.fatturapa.it"
