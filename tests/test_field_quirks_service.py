"""Field quirks D, E and F (docs: field-quirks.md) proved through the service: run_once() against a
real aiosmtpd and the real Dovecot mailbox. One or more tests per fault KIND, named after it.

Where tests/test_service.py (or the pure modules' tests) already prove a kind, the test here takes
another input of the same kind through the same public path.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pecgateway import lifecycle, sample, status
from pecgateway.config import Config
from pecgateway.filename import NotificationType
from pecgateway.lifecycle import State
from pecgateway.sandbox import envelope as provider
from pecgateway.store import Outgoing, Store
from tests.factory import pecmail, signing
from tests.factory.gateway import Clock, drop_invoice, event_names, once_logged, service_config
from tests.factory.notifications import build_notification
from tests.factory.pecmail import Part, build_sdi_envelope
from tests.factory.smtp_server import SmtpServer
from tests.factory.tcp_proxy import TcpProxy, tcp_proxy

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytestmark = pytest.mark.servers

NAME = sample.file_name()  # IT01234567890_00001.xml
NAME_2 = sample.file_name(progressivo="00002")
SDI01 = "sdi01@pec.fatturapa.it"
SUPPLIER = "IT09876543210"


@pytest.fixture
def config(tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount) -> Config:
    return service_config(tmp_path, schema_dir, smtp, mail_user, quick=True)


_counter = iter(range(1, 100_000))


async def _once(config: Config, clock: Clock) -> list[dict[str, Any]]:
    _report, logs = await once_logged(config, clock, new_token=lambda: f"fq{next(_counter)}")
    return [dict(line) for line in logs]


def _loud(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["log_level"] in ("warning", "error", "critical")]


def _second_invoice() -> bytes:
    return sample.fpr12(progressivo_invio="00002", numero="2")


def _record(store: Store, name: str = NAME) -> Outgoing:
    found = store.find_outgoing_by_file("main", name)
    assert found is not None, f"no outgoing record for {name}"
    return found


def _sdi_message(
    kind: NotificationType,
    flow: str = "B2B",
    *,
    nome_file: str = NAME,
    attachment: str | None = None,
    identificativo_sdi: str = "6782414",
    **values: Any,
) -> bytes:
    """An SDI notification as it reaches our mailbox (posta-certificata envelope from sdi07)."""
    xml = build_notification(
        kind, flow, nome_file=nome_file, identificativo_sdi=identificativo_sdi, **values
    )
    stem = nome_file.split(".")[0]
    name = attachment or f"{stem}_{kind.value}_001.xml"
    return build_sdi_envelope([Part(name, xml, "text/xml")])


def _doveadm(dovecot: Dovecot, *args: str) -> str:
    result = subprocess.run(
        ["doveadm", "-c", str(dovecot.conf), *args], capture_output=True, check=True, text=True
    )
    return result.stdout


def _flags(dovecot: Dovecot, user: str) -> dict[str, set[str]]:
    """uid -> flags of every INBOX message, read with doveadm (not through the service)."""
    out = _doveadm(dovecot, "-f", "tab", "fetch", "-u", user, "uid flags", "mailbox", "INBOX")
    rows = [line.split("\t") for line in out.splitlines()[1:] if line.strip()]
    # \Recent belongs to the server's session bookkeeping (RFC 3501): no client can set or clear it
    return {row[0]: set(row[1].split()) - {"\\Recent"} if len(row) > 1 else set() for row in rows}


def _set_flags(dovecot: Dovecot, user: str, uid: int, flags: str) -> None:
    _doveadm(dovecot, "flags", "add", "-u", user, flags, "mailbox", "INBOX", "uid", str(uid))


def _uidvalidity(dovecot: Dovecot, user: str) -> int:
    out = _doveadm(dovecot, "mailbox", "status", "-u", user, "uidvalidity", "INBOX")
    return int(out.split("=", 1)[1])


async def _sent(config: Config, clock: Clock, smtp: SmtpServer, name: str = NAME) -> str:
    """Drops and sends one invoice; returns the Message-ID it went out with."""
    drop_invoice(config, name, None if name == NAME else _second_invoice())
    await _once(config, clock)
    sent = [r for r in smtp.received if r.message["Subject"] == name]
    assert sent, f"{name} was not sent"
    return str(sent[-1].message["Message-ID"])


# ==== D. SDI notifications, MT and lifecycle ==========================================================


async def test_bl33_ns_under_a_nonconforming_attachment_name_correlates_by_nome_file(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    errors = [("00001", "Nome file non valido", None)]
    scarto = _sdi_message(NotificationType.NS, attachment="scarto fattura.xml", errors=errors)
    dovecot.append(mail_user.user, scarto)
    await _once(config, clock)
    record = _record(store)
    assert record.state is State.SDI_REJECTED
    [scarto_event] = [e for e in store.events(record.id) if e.event == "NS"]
    assert "error 00001: Nome file non valido" in scarto_event.detail


async def test_bl33_ns_whose_nome_file_is_not_a_conforming_name_is_an_orphan_alert(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    nonconforming = "01234567890_00001.xml"  # our name without the IT prefix: not ours
    dovecot.append(mail_user.user, _sdi_message(NotificationType.NS, nome_file=nonconforming))
    logs = await _once(config, clock)
    assert _record(store).state is State.SENT  # never matched by a loose suffix/number match
    [orphan] = store.orphans("main")
    assert (orphan["kind"], orphan["file_name"]) == ("NS", nonconforming)
    alerts = [line for line in _loud(logs) if line["event"] == "orphan_notification_recorded"]
    assert [line["nome_file"] for line in alerts] == [nonconforming]


async def test_bl34_mc_on_b2b_is_sdi_not_delivered_described_as_issued_without_an_error(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    dovecot.append(mail_user.user, _sdi_message(NotificationType.MC))
    logs = await _once(config, clock)
    record = _record(store)
    assert record.state is State.SDI_NOT_DELIVERED
    assert lifecycle.is_final(record.state, "B2B")
    [entry] = status.document(store, config, clock())["outgoing"]
    assert entry["state"] == "sdi-not-delivered"
    assert "issued, not delivered" in entry["meaning"]
    assert [line["event"] for line in _loud(logs)] == ["sdi_address_changed"]  # no alert for MC


async def test_bl34_pa_mc_is_not_final_and_the_at_that_follows_attests(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    drop_invoice(config, data=sample.fpa12())
    await _once(config, clock)
    dovecot.append(mail_user.user, _sdi_message(NotificationType.MC, "PA"))
    await _once(config, clock)
    record = _record(store)
    assert record.state is State.SDI_NOT_DELIVERED
    assert not lifecycle.is_final(record.state, "PA")
    [entry] = status.document(store, config, clock())["outgoing"]
    assert "AT follows" in entry["meaning"]
    dovecot.append(mail_user.user, _sdi_message(NotificationType.AT, "PA"))
    await _once(config, clock)
    assert _record(store).state is State.ATTESTED


def _invio_file(invoice: Part, mt_name: str, mt_hash: str) -> bytes:
    mt = build_notification(
        NotificationType.MT,
        "B2B",
        nome_file=invoice.filename,
        identificativo_sdi="7339338",
        hash=mt_hash,
    )
    return build_sdi_envelope(
        [Part(mt_name, mt, "text/xml"), invoice], inner_subject="Invio File 7339338"
    )


async def test_bl35_mt_002_is_never_an_invoice_and_its_hash_flags_a_changed_file(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    name = f"{SUPPLIER}_00007.xml"
    invoice = sample.fpr12(transmitter=SUPPLIER, progressivo_invio="00007")
    part = Part(name, invoice, "text/xml", cte="quoted-printable")
    wrong_hash = hashlib.sha256(invoice + b" ").hexdigest()
    dovecot.append(mail_user.user, _invio_file(part, f"{SUPPLIER}_00007_MT_002.xml", wrong_hash))
    logs = await _once(config, clock)
    incoming = store.snapshot("main")["incoming"]
    assert isinstance(incoming, list)
    assert [item["file"] for item in incoming] == [name]
    assert incoming[0]["identificativo_sdi"] == "7339338"
    folder = config.accounts[0].inbox / "fatture-ricevute/2024/05"
    facts = json.loads((folder / f"{name}.json").read_bytes())
    assert facts["mt_hash_check"] == "mismatch"
    assert "invoice_hash_mismatch" in event_names(logs)
    assert store.orphans("main") == []  # the MT is not a notification about our invoices


async def test_bl35_an_mt_alone_is_not_imported_as_an_invoice(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    mt = build_notification(NotificationType.MT, "B2B", nome_file=f"{SUPPLIER}_00008.xml")
    envelope = build_sdi_envelope([Part(f"{SUPPLIER}_00008_MT_001.xml", mt, "text/xml")])
    dovecot.append(mail_user.user, envelope)
    await _once(config, clock)
    assert store.snapshot("main")["incoming"] == []
    assert not (config.accounts[0].inbox / "fatture-ricevute").exists()


async def test_bl36_after_an_ns_the_old_name_is_refused_and_a_new_name_is_sent(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    errors = [("00404", "Fattura duplicata", None)]
    dovecot.append(mail_user.user, _sdi_message(NotificationType.NS, errors=errors))
    await _once(config, clock)
    drop_invoice(config, data=sample.fpr12(data="2024-01-16"))
    await _once(config, clock)  # same name again, even after the NS: refused, never sent
    assert len(smtp.received) == 1
    rejected = config.accounts[0].outbox / "rejected" / f"{NAME}.reason.json"
    assert json.loads(rejected.read_bytes())["problems"][0]["code"] == "duplicate"
    drop_invoice(config, NAME_2, _second_invoice())  # the corrected invoice, under a NEW name
    await _once(config, clock)
    assert [r.message["Subject"] for r in smtp.received] == [NAME, NAME_2]
    assert _record(store, NAME_2).state is State.SENT
    assert _record(store).state is State.SDI_REJECTED


# ==== E. Mailbox operations and robustness ===========================================================


async def test_bl37_a_message_already_seen_before_the_first_poll_is_processed(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    dovecot.append(
        mail_user.user, pecmail.build_accettazione(riferimento=message_id, mittente=mail_user.user)
    )
    _set_flags(dovecot, mail_user.user, 1, "\\Seen")  # a person read it in the webmail
    assert _flags(dovecot, mail_user.user)["1"] == {"\\Seen"}
    await _once(config, clock)
    assert _record(store).state is State.ACCEPTED


async def test_bl38_the_service_leaves_every_flag_exactly_as_it_was(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
    store: Store,
) -> None:
    message_id = await _sent(config, clock, smtp)
    dovecot.append(
        mail_user.user, pecmail.build_accettazione(riferimento=message_id, mittente=mail_user.user)
    )
    dovecot.append(mail_user.user, _sdi_message(NotificationType.RC))
    dovecot.append(mail_user.user, pecmail.build_plain_mail())  # quarantined
    _set_flags(dovecot, mail_user.user, 1, "\\Seen \\Flagged")
    _set_flags(dovecot, mail_user.user, 3, "\\Answered $Fatturato")
    before = _flags(dovecot, mail_user.user)
    await _once(config, clock)
    assert _record(store).state is State.SDI_DELIVERED  # all three were processed
    assert _flags(dovecot, mail_user.user) == before
    assert before["2"] == set()


async def test_bl39_processing_never_deletes_or_expunges(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    dovecot.append(
        mail_user.user, pecmail.build_accettazione(riferimento=message_id, mittente=mail_user.user)
    )
    dovecot.append(mail_user.user, pecmail.build_plain_mail())
    dovecot.append(mail_user.user, _sdi_message(NotificationType.RC, nome_file=NAME_2))  # orphan
    await _once(config, clock)
    await _once(config, clock)
    assert _record(store).state is State.ACCEPTED
    assert dovecot.count(mail_user.user, "INBOX") == 3
    assert all("\\Deleted" not in flags for flags in _flags(dovecot, mail_user.user).values())
    assert dovecot.count(mail_user.user, "Archive") == 0


async def test_bl39_with_move_to_a_processed_receipt_is_in_the_target_folder(
    tmp_path: Path,
    schema_dir: Path,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
    clock: Clock,
) -> None:
    imap = {"move_to": "Archive"}
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=imap)
    message_id = await _sent(config, clock, smtp)
    receipt = pecmail.build_accettazione(riferimento=message_id, mittente=mail_user.user)
    dovecot.append(mail_user.user, receipt)
    await _once(config, clock)
    assert dovecot.count(mail_user.user, "INBOX") == 0
    assert dovecot.count(mail_user.user, "Archive") == 1
    text = _doveadm(dovecot, "fetch", "-u", mail_user.user, "hdr", "mailbox", "Archive")
    assert "X-Ricevuta: accettazione" in text
    with Store(config.store_path) as opened:
        assert _record(opened).state is State.ACCEPTED


@pytest.fixture
async def proxy(mail_user: MailAccount) -> AsyncIterator[TcpProxy]:
    async with tcp_proxy(mail_user.host, mail_user.port) as running:
        yield running


async def test_bl40_a_drop_mid_fetch_leaves_the_message_unprocessed_for_the_next_pass(
    tmp_path: Path,
    schema_dir: Path,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
    clock: Clock,
    proxy: TcpProxy,
) -> None:
    proxied = replace(mail_user, port=proxy.port)
    config = service_config(tmp_path, schema_dir, smtp, proxied, quick=True)
    message_id = await _sent(config, clock, smtp)
    padding = Part("allegato.pdf", b"%PDF-1.4\n" + b"x" * 1_500_000, "application/pdf")
    receipt = pecmail.build_accettazione(
        riferimento=message_id, extra_parts=[padding], mittente=mail_user.user
    )
    dovecot.append(mail_user.user, receipt)
    proxy.drop_after(300_000)  # well after login and SEARCH, well before the end of the body
    logs = await _once(config, clock)
    assert proxy.dropped >= 1
    assert "mailbox_dropped" in event_names(logs)
    uidvalidity = _uidvalidity(dovecot, mail_user.user)
    with Store(config.store_path) as opened:
        assert _record(opened).state is State.SENT
        assert not opened.is_processed("main", "INBOX", uidvalidity, 1)
    proxy.heal()
    await _once(config, clock)
    with Store(config.store_path) as opened:
        assert _record(opened).state is State.ACCEPTED
        assert opened.is_processed("main", "INBOX", uidvalidity, 1)


def _supplier_delivery(name: str, p7m: bytes) -> bytes:
    return build_sdi_envelope(
        [Part(name, p7m, "application/pkcs7-mime")], inner_subject="Invio File 7339340"
    )


async def test_bl41_a_p7m_that_fails_to_unwrap_is_quarantined_and_never_counted_as_seen(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    name = f"{SUPPLIER}_1KS89.xml.p7m"
    xml = sample.fpr12(transmitter=SUPPLIER, progressivo_invio="1KS89")
    good = signing.der_envelope(xml)
    dovecot.append(mail_user.user, _supplier_delivery(name, good[:60]))  # cut short in transit
    await _once(config, clock)
    snapshot = store.snapshot("main")
    assert snapshot["incoming"] == []
    quarantined = snapshot["quarantined"]
    assert isinstance(quarantined, list)
    assert len(quarantined) == 1
    assert store.find_incoming("main", sha256=hashlib.sha256(xml).hexdigest()) is None
    dovecot.append(mail_user.user, _supplier_delivery(name, good))  # the supplier sends it again
    logs = await _once(config, clock)
    incoming = store.snapshot("main")["incoming"]
    assert isinstance(incoming, list)
    assert [item["file"] for item in incoming] == [name]
    assert "invoice_already_received" not in event_names(logs)
    folder = config.accounts[0].inbox / "fatture-ricevute/2024/05"
    assert (folder / f"{SUPPLIER}_1KS89.xml").read_bytes() == xml


async def test_bl41_duplicates_are_found_by_the_sha256_of_the_unwrapped_xml(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    name = f"{SUPPLIER}_1KS90.xml.p7m"
    xml = sample.fpr12(transmitter=SUPPLIER, progressivo_invio="1KS90")
    first, again = signing.der_envelope(xml), signing.der_envelope(xml)
    assert first != again  # a new signature over the very same invoice
    dovecot.append(mail_user.user, _supplier_delivery(name, first))
    await _once(config, clock)
    dovecot.append(mail_user.user, _supplier_delivery(name, again))
    logs = await _once(config, clock)
    incoming = store.snapshot("main")["incoming"]
    assert isinstance(incoming, list)
    assert len(incoming) == 1
    assert "invoice_already_received" in event_names(logs)


# ==== F. Code-derived cases ==========================================================================


async def test_f1_sdi_address_is_learned_from_the_inner_from_not_the_outer_from(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    xml = build_notification(NotificationType.RC, "B2B", nome_file=NAME, identificativo_sdi="1")
    envelope = build_sdi_envelope(
        [Part(f"{NAME[:-4]}_RC_001.xml", xml, "text/xml")],
        sdi="sdi12@pec.fatturapa.it",
        sender="posta-certificata@pcert.sogei.it",  # no "Per conto di:", no Reply-To
        reply_to="",
        with_daticert=False,
    )
    dovecot.append(mail_user.user, envelope)
    await _once(config, clock)
    assert _record(store).state is State.SDI_DELIVERED
    assert store.sdi_address("main") == "sdi12@pec.fatturapa.it"


async def test_f1_a_providers_receipt_never_teaches_an_sdi_address(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    receipt = pecmail.build_accettazione(
        riferimento=message_id,
        sender="posta-certificata@pec.provider.example",
        mittente=mail_user.user,
    )
    dovecot.append(mail_user.user, receipt)
    await _once(config, clock)
    assert _record(store).state is State.ACCEPTED
    assert store.sdi_address_history("main") == []
    assert store.sdi_address("main") == SDI01


async def test_f2_before_any_sdi_message_the_second_send_keeps_sdi01_and_warns(
    config: Config, clock: Clock, smtp: SmtpServer, store: Store
) -> None:
    await _sent(config, clock, smtp)
    drop_invoice(config, NAME_2, _second_invoice())
    logs = await _once(config, clock)
    assert [r.rcpt_tos for r in smtp.received] == [[SDI01], [SDI01]]
    warned = [line for line in _loud(logs) if line["event"] == "sdi_address_not_learned"]
    assert [line["sdi_address"] for line in warned] == [SDI01]
    assert _record(store, NAME_2).sdi_address == SDI01


async def test_f2_the_second_send_uses_the_learned_sdi_address_without_a_warning(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    scarto = build_notification(NotificationType.NS, "B2B", nome_file=NAME)
    envelope = build_sdi_envelope(
        [Part(f"{NAME[:-4]}_NS_001.xml", scarto, "text/xml")], sdi="sdi33@pec.fatturapa.it"
    )
    dovecot.append(mail_user.user, envelope)
    await _once(config, clock)
    drop_invoice(config, NAME_2, _second_invoice())
    logs = await _once(config, clock)
    assert smtp.received[-1].rcpt_tos == ["sdi33@pec.fatturapa.it"]
    assert _record(store, NAME_2).sdi_address == "sdi33@pec.fatturapa.it"
    assert "sdi_address_not_learned" not in event_names(logs)


def _gestore(sandbox_ca: SandboxCA) -> provider.Gestore:
    return provider.Gestore("PROVIDER PEC S.p.A.", "pec.provider.example", sandbox_ca.provider)


def _original(message_id: str, account: str) -> provider.Original:
    return provider.Original(
        mittente=account,
        destinatari=(SDI01,),
        oggetto=NAME,
        identificativo="opec210.20240506100000.777.01.1.1@pec.provider.example",
        msgid=message_id,
    )


async def test_f5_every_x_ricevuta_value_lands_as_its_own_lifecycle_event(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
    sandbox_ca: SandboxCA,
) -> None:
    message_id = await _sent(config, clock, smtp)
    gestore, original = _gestore(sandbox_ca), _original(message_id, mail_user.user)
    now = clock()
    receipts = [
        provider.build_accettazione(gestore, original, now),
        pecmail.build_presa_in_carico(riferimento=message_id, mittente=mail_user.user),
        provider.build_consegna(gestore, original, SDI01, now),
        provider.build_preavviso_errore_consegna(gestore, original, SDI01, now),
        provider.build_errore_consegna(gestore, original, SDI01, now),
        provider.build_non_accettazione(gestore, original, now, "dimensione eccessiva"),
        pecmail.build_rilevazione_virus(riferimento=message_id, mittente=mail_user.user),
    ]
    for raw in receipts:
        dovecot.append(mail_user.user, raw)
    await _once(config, clock)
    record = _record(store)
    seen = [e.event for e in store.events(record.id) if e.source.startswith("imap:")]
    expected = {
        "accettazione",
        "presa-in-carico",
        "avvenuta-consegna",
        "preavviso-errore-consegna",
        "errore-consegna",
        "non-accettazione",
        "rilevazione-virus",
    }
    assert sorted(seen) == sorted(expected)  # each exactly once, under its own name
    assert store.orphans("main") == []


async def test_f5_an_unknown_x_ricevuta_is_logged_as_unknown_never_as_accettazione(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    unknown = pecmail.build_envelope(
        subject=f"AVVISO DI CONSEGNA EUROPEA: {NAME}",
        x_ricevuta="consegna-europea",
        riferimento=message_id,
        daticert=pecmail.build_daticert("consegna-europea"),
    )
    dovecot.append(mail_user.user, unknown)
    logs = await _once(config, clock)
    record = _record(store)
    assert record.state is State.SENT
    assert "accettazione" not in [e.event for e in store.events(record.id)]
    quarantined = store.snapshot("main")["quarantined"]
    assert isinstance(quarantined, list)
    assert "consegna-europea" in str(quarantined[0]["reason"])
    loud = [line for line in _loud(logs) if line["event"] == "message_quarantined"]
    assert len(loud) == 1
    assert "unknown X-Ricevuta value 'consegna-europea'" in str(loud[0]["reason"])


async def test_f7_notifications_for_the_second_invoice_never_touch_the_first(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    second_id = await _sent(config, clock, smtp, NAME_2)
    first_before = store.events(_record(store).id)
    dovecot.append(
        mail_user.user,
        pecmail.build_accettazione(riferimento=second_id, oggetto=NAME_2, mittente=mail_user.user),
    )
    rc = _sdi_message(NotificationType.RC, nome_file=NAME_2, identificativo_sdi="2024")
    dovecot.append(mail_user.user, rc)
    # a later one about the second that names only its IdentificativoSdI (no NomeFile)
    late = _sdi_message(
        NotificationType.MC,
        nome_file=NAME_2,
        identificativo_sdi="2024",
        attachment="IT01234567890_00001_MC_001.xml",
        drop=["NomeFile"],
    )
    dovecot.append(mail_user.user, late)
    await _once(config, clock)
    first, second = _record(store), _record(store, NAME_2)
    assert first.state is State.SENT
    assert first.identificativo_sdi is None
    assert store.events(first.id) == first_before
    assert second.state is State.SDI_DELIVERED
    assert second.identificativo_sdi == "2024"
    assert [e.event for e in store.events(second.id)][-3:] == ["accettazione", "RC", "MC"]
