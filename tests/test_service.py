"""The service end to end: run_once() against a real aiosmtpd and the real Dovecot mailbox."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from pecgateway import classify, inbound, mailbox_loop, sample, schema, service, sink, status
from pecgateway.config import Config
from pecgateway.filename import NotificationType
from pecgateway.lifecycle import Event, State
from pecgateway.store import Store
from tests.conftest import CORPUS
from tests.factory.gateway import (
    Clock,
    Logs,
    drop_invoice,
    event_names,
    files_under,
    once_logged,
    service_account,
    service_config,
    write_config,
)
from tests.factory.notifications import build_notification
from tests.factory.pecmail import Part, build_accettazione, build_plain_mail, build_sdi_envelope
from tests.factory.signing import der_envelope
from tests.factory.smtp_server import SmtpServer

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytestmark = pytest.mark.servers

NAME = sample.file_name()  # IT01234567890_00001.xml


@pytest.fixture
def config(tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount) -> Config:
    return service_config(tmp_path, schema_dir, smtp, mail_user, quick=True)


async def _once(config: Config, clock: Clock) -> Logs:
    _report, logs = await once_logged(config, clock, new_token=_tokens())
    return logs


_counter = iter(range(1, 10_000))


def _tokens() -> Any:
    return lambda: f"tok{next(_counter)}"


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _paths(entry: Mapping[str, object]) -> list[str]:
    paths = entry["paths"]
    assert isinstance(paths, list)
    return [str(path) for path in paths]


def _rc(name: str = NAME, kind: NotificationType = NotificationType.RC, **values: Any) -> bytes:
    stem = name.split(".")[0]
    xml = build_notification(kind, "B2B", nome_file=name, identificativo_sdi="6782414", **values)
    part = Part(f"{stem}_{kind.value}_001.xml", xml, "text/xml")
    return build_sdi_envelope([part])


# ---- outbound ---------------------------------------------------------------------------------


async def test_a_valid_invoice_is_sent_to_sdi01_and_filed(
    config: Config, clock: Clock, smtp: SmtpServer, store: Store
) -> None:
    data = drop_invoice(config)
    logs = await _once(config, clock)
    [got] = smtp.received
    assert got.rcpt_tos == ["sdi01@pec.fatturapa.it"]
    assert got.message["Subject"] == NAME
    [attachment] = list(got.message.iter_attachments())
    assert attachment.get_content() == data
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SENT
    assert record.message_id == got.message["Message-ID"]
    account = config.accounts[0]
    assert (account.outbox / "sent" / NAME).read_bytes() == data
    assert f"inviate/2024/05/{NAME}" in files_under(account.inbox)
    assert "invoice_sent" in event_names(logs)


async def test_a_file_failing_our_checks_is_rejected_and_never_sent(
    config: Config, clock: Clock, smtp: SmtpServer, store: Store
) -> None:
    drop_invoice(config, data=b"<?xml version='1.0'?><Fattura/>")
    logs = await _once(config, clock)
    assert smtp.received == []
    rejected = config.accounts[0].outbox / "rejected"
    assert (rejected / NAME).exists()
    reasons = json.loads((rejected / f"{NAME}.reason.json").read_bytes())
    assert reasons["problems"][0]["hint"]
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.REJECTED
    assert "invoice_rejected" in event_names(logs)


async def test_a_file_name_already_used_is_refused(
    config: Config, clock: Clock, smtp: SmtpServer
) -> None:
    drop_invoice(config)
    await _once(config, clock)
    drop_invoice(config, data=sample.fpr12(numero="2"))
    await _once(config, clock)
    assert len(smtp.received) == 1
    reasons = json.loads(
        (config.accounts[0].outbox / "rejected" / f"{NAME}.reason.json").read_bytes()
    )
    assert reasons["problems"][0]["code"] == "duplicate"
    assert "00002" in reasons["problems"][0]["message"]


async def test_smtp_5xx_fails_the_invoice_with_the_servers_words(
    config: Config, clock: Clock, smtp: SmtpServer, store: Store
) -> None:
    smtp.data_reply = "554 5.6.0 message too big for this mailbox"
    drop_invoice(config)
    await _once(config, clock)
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.NOT_ACCEPTED
    text = (config.accounts[0].outbox / "rejected" / f"{NAME}.reason.txt").read_text()
    assert "554 5.6.0 message too big" in text


async def test_smtp_4xx_is_retried_and_the_next_pass_sends(
    config: Config, clock: Clock, smtp: SmtpServer, store: Store
) -> None:
    smtp.data_reply = "451 4.3.0 try later"
    drop_invoice(config)
    logs = await _once(config, clock)
    assert event_names(logs).count("send_deferred") == 3
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SENDING
    assert (config.accounts[0].outbox / ".processing" / NAME).exists()
    smtp.data_reply = None
    await _once(config, clock)
    assert len(smtp.received) == 1
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SENT
    assert smtp.received[0].message["Message-ID"] == record.message_id


async def _crash_while_sending(config: Config, store: Store, clock: Clock) -> str:
    """A file claimed and stored as `sending` whose SMTP outcome is unknown (a crash)."""
    data = drop_invoice(config)
    outbox = config.accounts[0].outbox
    (outbox / ".processing").mkdir()
    (outbox / NAME).rename(outbox / ".processing" / NAME)
    record = store.record_outgoing(
        "main", file_name=NAME, at=clock(), sha256=hashlib.sha256(data).hexdigest()
    )
    message_id = "<crashed1@pec.sandbox.test>"
    store.transition(record.id, Event.SENDING, at=clock(), source="test", message_id=message_id)
    return message_id


async def test_after_a_crash_a_sending_invoice_is_not_resent_but_reconciled(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _crash_while_sending(config, store, clock)
    await _once(config, clock)
    assert smtp.received == []
    dovecot.append(
        mail_user.user,
        build_accettazione(riferimento=message_id, oggetto=NAME, mittente=mail_user.user),
    )
    await _once(config, clock)  # the receipt arrives
    await _once(config, clock)  # the claimed file is finished
    assert smtp.received == []
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.ACCEPTED
    assert (config.accounts[0].outbox / "sent" / NAME).exists()


async def test_after_a_crash_a_sending_invoice_is_resent_after_resend_after_s(
    config: Config, clock: Clock, smtp: SmtpServer, store: Store
) -> None:
    message_id = await _crash_while_sending(config, store, clock)
    clock.now += timedelta(days=2)
    logs = await _once(config, clock)
    [got] = smtp.received
    assert got.message["Message-ID"] == message_id
    assert "invoice_resent" in event_names(logs)


# ---- inbound ----------------------------------------------------------------------------------


async def test_accettazione_moves_the_invoice_to_accepted_and_is_filed(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    drop_invoice(config)
    await _once(config, clock)
    message_id = smtp.received[0].message["Message-ID"]
    receipt = build_accettazione(riferimento=message_id, oggetto=NAME, mittente=mail_user.user)
    dovecot.append(mail_user.user, receipt)
    logs = await _once(config, clock)
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.ACCEPTED
    inbox = config.accounts[0].inbox
    eml = inbox / "ricevute-pec/2024/05/IT01234567890_00001_accettazione.eml"
    assert eml.read_bytes() == receipt
    assert "receipt_recorded" in event_names(logs)
    await _once(config, clock)  # nothing processed twice
    assert len([e for e in store.events(record.id) if e.event == "accettazione"]) == 1


async def test_rc_from_sdi_delivers_the_invoice_and_teaches_the_sdi_address(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    drop_invoice(config)
    await _once(config, clock)
    envelope = _rc()
    dovecot.append(mail_user.user, envelope)
    logs = await _once(config, clock)
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SDI_DELIVERED
    assert record.identificativo_sdi == "6782414"
    assert store.sdi_address("main") == "sdi07@pec.fatturapa.it"
    assert "sdi_address_changed" in event_names(logs)
    notification = config.accounts[0].inbox / "notifiche-sdi/2024/05/IT01234567890_00001_RC_001.xml"
    assert notification.read_bytes().startswith(b"<")
    drop_invoice(
        config, "IT01234567890_00002.xml", sample.fpr12(progressivo_invio="00002", numero="2")
    )
    await _once(config, clock)
    assert smtp.received[1].rcpt_tos == ["sdi07@pec.fatturapa.it"]


async def test_ns_rejects_the_invoice_with_the_error_list(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    drop_invoice(config)
    await _once(config, clock)
    errors = [("00404", "Fattura duplicata", "Verificare il numero")]
    dovecot.append(mail_user.user, _rc(kind=NotificationType.NS, errors=errors))
    await _once(config, clock)
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SDI_REJECTED
    ns = [e for e in store.events(record.id) if e.event == "NS"]
    assert "00404" in ns[0].detail


async def test_receipts_and_notifications_for_files_we_never_sent_are_orphans(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    dovecot.append(mail_user.user, build_accettazione(riferimento="<other@elsewhere.it>"))
    dovecot.append(mail_user.user, _rc(name="IT09999999999_00001.xml"))
    logs = await _once(config, clock)
    assert len(store.orphans("main")) == 2
    assert {"orphan_receipt_recorded", "orphan_notification_recorded"} <= set(event_names(logs))
    assert not [line for line in logs if line["log_level"] == "error"]


async def test_plain_foreign_mail_is_quarantined_and_the_mailbox_goes_on(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    drop_invoice(config)
    await _once(config, clock)
    plain = build_plain_mail()
    dovecot.append(mail_user.user, plain)
    message_id = smtp.received[0].message["Message-ID"]
    dovecot.append(
        mail_user.user, build_accettazione(riferimento=message_id, mittente=mail_user.user)
    )
    await _once(config, clock)
    quarantined = store.snapshot("main")["quarantined"]
    assert isinstance(quarantined, list)
    assert len(quarantined) == 1
    path = quarantined[0]["path"]
    assert _read(path) == plain
    assert b"plain e-mail" in _read(path + ".reason.txt")
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.ACCEPTED


async def test_a_suppliers_invoice_is_filed_with_its_mt_and_facts(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    invoice_name = "IT09876543210_abc12.xml"
    invoice = sample.fpr12(transmitter="IT09876543210")
    mt = build_notification(
        NotificationType.MT,
        "B2B",
        nome_file=invoice_name,
        identificativo_sdi="7339338",
        hash=hashlib.sha256(invoice).hexdigest(),
    )
    envelope = build_sdi_envelope(
        [
            Part(invoice_name, invoice, "text/xml"),
            Part("IT09876543210_abc12_MT_001.xml", mt, "text/xml"),
        ],
        inner_subject="Invio File 7339338",
    )
    dovecot.append(mail_user.user, envelope)
    logs = await _once(config, clock)
    folder = config.accounts[0].inbox / "fatture-ricevute/2024/05"
    assert (folder / invoice_name).read_bytes() == invoice
    assert (folder / "IT09876543210_abc12_MT_001.xml").read_bytes() == mt
    facts = json.loads((folder / f"{invoice_name}.json").read_bytes())
    assert facts["kind"] == "invoice"
    assert facts["mt_hash_check"] == "ok"
    incoming = store.snapshot("main")["incoming"]
    assert isinstance(incoming, list)
    assert incoming[0]["identificativo_sdi"] == "7339338"
    assert len(incoming[0]["paths"]) == 3
    assert "invoice_received" in event_names(logs)


async def test_processed_mail_is_moved_when_move_to_is_set(
    tmp_path: Path,
    schema_dir: Path,
    smtp: SmtpServer,
    mail_user: MailAccount,
    clock: Clock,
    dovecot: Dovecot,
) -> None:
    config = service_config(
        tmp_path, schema_dir, smtp, mail_user, quick=True, imap={"move_to": "Archive"}
    )
    dovecot.append(mail_user.user, build_plain_mail())
    await _once(config, clock)
    assert dovecot.count(mail_user.user, "Archive") == 1
    assert dovecot.count(mail_user.user, "INBOX") == 0


async def test_one_broken_account_does_not_stall_another(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount, clock: Clock
) -> None:
    good = service_account(tmp_path, "good", smtp, mail_user, quick=True)
    broken = service_account(tmp_path, "broken", smtp, mail_user, quick=True, imap={"port": 1})
    config = write_config(tmp_path, schema_dir, [broken, good])
    outbox = config.account("good").outbox
    outbox.mkdir(parents=True)
    (outbox / NAME).write_bytes(sample.fpr12())
    logs = await _once(config, clock)
    assert len(smtp.received) == 1
    dropped = [line for line in logs if line["event"] == "mailbox_dropped"]
    assert [line["account"] for line in dropped] == ["broken"]


async def test_run_serves_until_stop_and_finishes_the_current_unit(
    config: Config, smtp: SmtpServer
) -> None:
    stop = asyncio.Event()
    notes: list[str] = []
    running = asyncio.ensure_future(service.run(config, stop, notify=notes.append))
    await asyncio.sleep(0.3)
    drop_invoice(config)
    async with asyncio.timeout(10):
        await smtp.data_arrived.wait()
    stop.set()
    async with asyncio.timeout(10):
        await running
    assert notes[0] == "READY=1"
    assert (config.accounts[0].outbox / "sent" / NAME).exists()


async def test_a_p7m_that_cannot_be_opened_is_rejected(
    config: Config, clock: Clock, smtp: SmtpServer
) -> None:
    drop_invoice(config, "IT01234567890_00001.xml.p7m", b"not a signed file at all")
    await _once(config, clock)
    assert smtp.received == []
    reasons = json.loads(
        (
            config.accounts[0].outbox / "rejected" / "IT01234567890_00001.xml.p7m.reason.json"
        ).read_bytes()
    )
    assert reasons["problems"][0]["code"] == "p7m"


async def test_an_event_the_lifecycle_refuses_is_kept_as_a_note_and_ignored(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    drop_invoice(config, data=b"<?xml version='1.0'?><Fattura/>")
    await _once(config, clock)  # rejected by our checks, never sent
    dovecot.append(mail_user.user, _rc(kind=NotificationType.NS))
    logs = await _once(config, clock)
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.REJECTED
    assert "event_ignored" in event_names(logs)
    assert store.events(record.id)[-1].detail.startswith("ignored")


async def test_an_unexpected_error_quarantines_the_message_and_the_loop_goes_on(
    config: Config,
    clock: Clock,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = classify.classify

    def flaky(data: bytes, filename: str | None = None) -> Any:
        if b"Offerta" in data:
            raise RuntimeError("parser bug")
        return real(data, filename)

    monkeypatch.setattr(inbound, "classify", flaky)
    dovecot.append(mail_user.user, build_plain_mail())
    dovecot.append(mail_user.user, build_accettazione(riferimento="<x@elsewhere.it>"))
    logs = await _once(config, clock)
    failed = [line for line in logs if line["event"] == "unit_failed"]
    assert len(failed) == 1
    assert failed[0]["uid"] == 1
    quarantined = store.snapshot("main")["quarantined"]
    assert isinstance(quarantined, list)
    assert "internal error while filing: RuntimeError: parser bug" in quarantined[0]["reason"]
    assert len(store.orphans("main")) == 1


# ---- idempotent inbound units -----------------------------------------------------------------

SUPPLIER = "IT09876543210_abc12.xml"


@pytest.fixture
def gateway(config: Config, clock: Clock) -> Iterator[service.Gateway]:
    opened = service.open_gateway(config, clock=clock)
    yield opened
    opened.store.close()


def _sent_invoice(gw: service.Gateway, message_id: str = "<tok-sent@pec.sandbox.test>") -> int:
    record = gw.store.record_outgoing("main", file_name=NAME, sha256="ab" * 32, at=gw.clock())
    gw.store.transition(record.id, Event.SENDING, at=gw.clock(), source="t", message_id=message_id)
    gw.store.transition(record.id, Event.SENT, at=gw.clock(), source="t")
    return record.id


def _supplier_envelope(invoice: bytes | None = None) -> bytes:
    data = sample.fpr12(transmitter="IT09876543210") if invoice is None else invoice
    mt = build_notification(
        NotificationType.MT,
        "B2B",
        nome_file=SUPPLIER,
        identificativo_sdi="7339338",
        hash=hashlib.sha256(data).hexdigest(),
    )
    parts = [
        Part(SUPPLIER, data, "text/xml"),
        Part("IT09876543210_abc12_MT_001.xml", mt, "text/xml"),
    ]
    return build_sdi_envelope(parts, inner_subject="Invio File 7339338")


INBOUND_KINDS: dict[str, Any] = {
    "receipt": lambda: build_accettazione(riferimento="<tok-sent@pec.sandbox.test>", oggetto=NAME),
    "orphan-receipt": lambda: build_accettazione(riferimento="<other@elsewhere.it>"),
    "notification": lambda: _rc(),
    "orphan-notification": lambda: _rc(name="IT09999999999_00001.xml"),
    "suppliers-invoice": _supplier_envelope,
    "quarantine": build_plain_mail,
}


@pytest.mark.parametrize("kind", sorted(INBOUND_KINDS))
def test_a_message_seen_again_after_a_uidvalidity_change_is_neither_recorded_nor_filed_twice(
    gateway: service.Gateway, kind: str
) -> None:
    _sent_invoice(gateway)
    account = gateway.config.accounts[0]
    raw = INBOUND_KINDS[kind]()
    first = inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 1), raw)
    files, snapshot = files_under(account.inbox), gateway.store.snapshot("main")
    with capture_logs() as logs:
        again = inbound.file_message(gateway, account, inbound.Source("INBOX", 2, 7), raw)
    assert again == first
    assert files_under(account.inbox) == files
    assert gateway.store.snapshot("main") == snapshot
    assert files
    assert not [name for name in files if " (2)" in name]
    assert event_names(logs) == ["message_already_filed"]


def test_files_missing_after_a_crash_behind_the_store_commit_are_completed_once(
    gateway: service.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = gateway.config.accounts[0]
    raw = _supplier_envelope()
    real_write = sink.write
    written: list[Path] = []

    def crash_after_two(root: Path, relpath: PurePosixPath, data: bytes) -> Path:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(real_write(root, relpath, data))
        return written[-1]

    monkeypatch.setattr(sink, "write", crash_after_two)
    with pytest.raises(OSError, match="No space left"):
        inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 1), raw)
    assert inbound.is_filed(gateway, account, raw)
    monkeypatch.setattr(sink, "write", real_write)
    with capture_logs() as logs:
        outcome = inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 1), raw)
    assert outcome == "invoice"
    assert logs[0]["completed"] == 1  # of original, MT and JSON, two were written before
    incoming = gateway.store.incoming_status("main")
    folder = "fatture-ricevute/2024/05/"
    expected = [SUPPLIER, SUPPLIER + ".json", "IT09876543210_abc12_MT_001.xml"]
    assert files_under(account.inbox) == sorted(folder + name for name in expected)
    assert sorted(_paths(incoming[0])) == sorted(str(account.inbox / folder / n) for n in expected)


def test_a_file_linked_into_place_but_not_recorded_before_a_crash_is_adopted_not_copied(
    gateway: service.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = gateway.config.accounts[0]
    raw = _rc(name="IT09999999999_00001.xml")
    real_complete = gateway.store.complete_output

    def crash(output_id: int, path: str, *, at: datetime) -> None:
        raise RuntimeError("killed between the link and the commit")

    monkeypatch.setattr(gateway.store, "complete_output", crash)
    with pytest.raises(RuntimeError, match="killed"):
        inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 1), raw)
    monkeypatch.setattr(gateway.store, "complete_output", real_complete)
    inbound.file_message(gateway, account, inbound.Source("INBOX", 2, 1), raw)
    name = "notifiche-sdi/2024/05/IT09999999999_00001_RC_001.xml"
    assert files_under(account.inbox) == [name]
    [orphan] = gateway.store.orphans("main")
    assert orphan["paths"] == [str(account.inbox / name)]


def test_a_file_with_the_same_bytes_owned_by_another_message_is_not_adopted(
    gateway: service.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = gateway.config.accounts[0]
    rc = build_notification(
        NotificationType.RC, "B2B", nome_file="IT09999999999_00001.xml", identificativo_sdi="99"
    )
    part = Part("IT09999999999_00001_RC_001.xml", rc, "text/xml")
    first = build_sdi_envelope([part])
    resent = build_sdi_envelope([part], riferimento="<resent.1@pec.fatturapa.it>")
    inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 1), first)
    monkeypatch.setattr(sink, "write", _refuse)
    with pytest.raises(OSError, match="disk"):
        inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 2), resent)
    monkeypatch.undo()
    inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 2), resent)
    folder = "notifiche-sdi/2024/05/"
    assert files_under(account.inbox) == [
        folder + "IT09999999999_00001_RC_001 (2).xml",
        folder + "IT09999999999_00001_RC_001.xml",
    ]
    assert [len(_paths(o)) for o in gateway.store.orphans("main")] == [1, 1]


def _refuse(root: Path, relpath: PurePosixPath, data: bytes) -> Path:
    raise OSError(5, "disk gone")


async def test_a_crash_before_the_ack_makes_the_next_pass_only_acknowledge(
    config: Config,
    clock: Clock,
    smtp: SmtpServer,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    drop_invoice(config)
    await _once(config, clock)
    message_id = smtp.received[0].message["Message-ID"]
    dovecot.append(
        mail_user.user,
        build_accettazione(riferimento=message_id, oggetto=NAME, mittente=mail_user.user),
    )
    dovecot.append(mail_user.user, _rc())
    dovecot.append(mail_user.user, _supplier_envelope())
    dovecot.append(mail_user.user, build_plain_mail())
    await _once(config, clock)
    files, snapshot = files_under(config.accounts[0].inbox), store.snapshot("main")
    _forget_processed(config.store_path)  # as if the process died before each ack
    logs = await _once(config, clock)
    assert event_names(logs).count("message_already_filed") == 4
    assert files_under(config.accounts[0].inbox) == files
    assert store.snapshot("main") == snapshot
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert [e.event for e in store.events(record.id)].count("RC") == 1
    assert _processed(config.store_path) == 4


def _forget_processed(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM processed")
    db.close()


def _processed(path: Path) -> int:
    db = sqlite3.connect(path)
    (count,) = db.execute("SELECT count(*) FROM processed").fetchone()
    db.close()
    return int(count)


async def test_a_message_whose_files_cannot_be_written_is_not_acknowledged_nor_quarantined(
    config: Config,
    clock: Clock,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot.append(mail_user.user, _rc(name="IT09999999999_00001.xml"))
    monkeypatch.setattr(sink, "write", _refuse)
    logs = await _once(config, clock)
    assert "unit_incomplete" in event_names(logs)
    assert store.snapshot("main")["quarantined"] == []
    assert _processed(config.store_path) == 0
    monkeypatch.undo()
    logs = await _once(config, clock)
    assert "message_already_filed" in event_names(logs)
    [orphan] = store.orphans("main")
    assert [_read(path)[:1] for path in _paths(orphan)] == [b"<"]


# ---- suppliers' invoices as HTML ----------------------------------------------------------------


@pytest.fixture
def styled_config(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> Config:
    """The schemas plus the official stylesheets from the corpus, installed by `schemas install`."""
    source = CORPUS / "other"
    if not any(source.glob("*.xsl")):
        pytest.skip(f"the official XSL stylesheets are not in {source}")
    target = tmp_path / "schemas-with-stylesheets"
    shutil.copytree(schema_dir, target)
    schema.install(source, target)
    return service_config(tmp_path, target, smtp, mail_user, quick=True)


@pytest.mark.conformance
@pytest.mark.parametrize("signed", [False, True], ids=["xml", "p7m"])
def test_a_suppliers_invoice_is_also_filed_as_html_for_people(
    styled_config: Config, clock: Clock, signed: bool
) -> None:
    invoice = sample.fpr12(transmitter="IT09876543210", numero="FT-2024/0917")
    name = SUPPLIER + ".p7m" if signed else SUPPLIER
    data = der_envelope(invoice) if signed else invoice
    envelope = build_sdi_envelope([Part(name, data, "application/octet-stream")])
    gateway = service.open_gateway(styled_config, clock=clock)
    try:
        account = styled_config.accounts[0]
        with capture_logs() as logs:
            inbound.file_message(gateway, account, inbound.Source("INBOX", 1, 1), envelope)
        paths = _paths(gateway.store.incoming_status("main")[0])
    finally:
        gateway.store.close()
    html_path = account.inbox / "fatture-ricevute/2024/05/IT09876543210_abc12.html"
    html = html_path.read_bytes().decode("utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "FT-2024/0917" in html
    assert str(html_path) in paths
    assert "invoice_not_rendered" not in event_names(logs)


def test_an_invoice_that_cannot_be_rendered_is_filed_without_html_and_logged(
    gateway: service.Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.xsl"
    broken.write_bytes(b"<not-a-stylesheet/>")
    monkeypatch.setattr(gateway.schemas, "stylesheet_for", lambda fmt: broken)
    account = gateway.config.accounts[0]
    with capture_logs() as logs:
        outcome = inbound.file_message(
            gateway, account, inbound.Source("INBOX", 1, 1), _supplier_envelope()
        )
    assert outcome == "invoice"
    [failure] = [line for line in logs if line["event"] == "invoice_not_rendered"]
    assert failure["received_file"] == SUPPLIER
    assert "broken.xsl" in failure["reason"]
    assert not [name for name in files_under(account.inbox) if name.endswith(".html")]
    assert len(_paths(gateway.store.incoming_status("main")[0])) == 3


# ---- overdue SDI outcome ------------------------------------------------------------------------


def _delivered_to_sdi(store: Store, at: datetime) -> int:
    record = store.record_outgoing("main", file_name=NAME, sha256="cd" * 32, at=at, flow="B2B")
    store.transition(record.id, Event.SENDING, at=at, source="t", message_id="<late@pec.test>")
    for event in (Event.SENT, Event.ACCETTAZIONE, Event.CONSEGNA):
        store.transition(record.id, event, at=at, source="t")
    return record.id


async def test_no_sdi_outcome_5_days_after_delivery_is_flagged_and_logged_once(
    config: Config, clock: Clock, store: Store
) -> None:
    outgoing_id = _delivered_to_sdi(store, clock.now)
    clock.now += timedelta(days=4, hours=23)
    assert "sdi_outcome_overdue" not in event_names(await _once(config, clock))
    clock.now += timedelta(hours=2)
    first = await _once(config, clock)
    later = await _once(config, clock)
    assert event_names(first).count("sdi_outcome_overdue") == 1
    assert "sdi_outcome_overdue" not in event_names(later)
    notes = [e for e in store.events(outgoing_id) if e.event == service.OVERDUE_NOTE]
    assert len(notes) == 1
    doc = status.document(store, config, clock.now)
    assert doc["outgoing"][0]["overdue"] is True
    assert NAME in doc["warnings"][0]


async def test_an_overdue_invoice_is_logged_once_across_the_passes_of_one_run(
    tmp_path: Path,
    schema_dir: Path,
    smtp: SmtpServer,
    mail_user: MailAccount,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imap = {"idle": False, "poll_interval_s": 0.05}
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=imap)
    with Store(config.store_path) as opened:
        _delivered_to_sdi(opened, clock.now - timedelta(days=6))
    stop, passes = asyncio.Event(), []
    real = mailbox_loop.flag_overdue

    def counting(gateway: service.Gateway, account: Any) -> None:
        real(gateway, account)
        passes.append(1)
        if len(passes) == 3:
            stop.set()

    monkeypatch.setattr(mailbox_loop, "flag_overdue", counting)
    with capture_logs() as logs:
        async with asyncio.timeout(20):
            await service.run(config, stop, clock=clock)
    assert len(passes) >= 3
    assert event_names(logs).count("sdi_outcome_overdue") == 1


# ---- accepted by the PEC provider, never delivered to SDI ---------------------------------------


async def test_an_invoice_accepted_but_not_delivered_after_24_hours_is_logged_once(
    config: Config, clock: Clock, store: Store
) -> None:
    record = store.record_outgoing(
        "main", file_name=NAME, sha256="ef" * 32, at=clock.now, flow="B2B"
    )
    store.transition(record.id, Event.SENDING, at=clock.now, source="t", message_id="<s@pec.t>")
    for event in (Event.SENT, Event.ACCETTAZIONE):
        store.transition(record.id, event, at=clock.now, source="t")
    clock.now += timedelta(hours=23)
    assert "pec_delivery_overdue" not in event_names(await _once(config, clock))
    clock.now += timedelta(hours=2)
    first = await _once(config, clock)
    later = await _once(config, clock)
    assert event_names(first).count("pec_delivery_overdue") == 1
    assert "pec_delivery_overdue" not in event_names(later)
    notes = [e for e in store.events(record.id) if e.event == "pec-delivery-overdue"]
    assert len(notes) == 1
    doc = status.document(store, config, clock.now)
    assert doc["outgoing"][0]["overdue"] is True
    assert "not delivered to SDI after 24 hours" in doc["warnings"][0]
