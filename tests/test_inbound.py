"""What the inbound side writes, through service.run_once against Dovecot: a set of files per item
with one clash counter, every new SDI delivery filed, quarantine and orphans named for people."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest

from pecgateway import sample, sink
from pecgateway.config import Config
from pecgateway.filename import NotificationType
from pecgateway.store import Store
from tests.factory.gateway import Clock, Logs, event_names, files_under, once_logged
from tests.factory.notifications import build_notification
from tests.factory.pecmail import (
    UNSIGNED_SIGNED_DATA,
    Part,
    build_accettazione,
    build_anomalia,
    build_daticert,
    build_errore_consegna,
    build_plain_mail,
    build_sdi_envelope,
)
from tests.factory.signing import der_envelope
from tests.factory.smtp_server import SmtpServer

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytestmark = pytest.mark.servers

STEM = "IT09876543210_A0001"
INVOICES = "fatture-ricevute/2024/05/"


async def _once(config: Config, clock: Clock) -> Logs:
    _report, logs = await once_logged(config, clock)
    return logs


def _incoming(store: Store) -> list[dict[str, Any]]:
    entries = store.snapshot("main")["incoming"]
    assert isinstance(entries, list)
    return entries


def _quarantined(store: Store) -> list[dict[str, Any]]:
    entries = store.snapshot("main")["quarantined"]
    assert isinstance(entries, list)
    return entries


def _delivery(
    name: str, data: bytes, identificativo: str, *, with_mt: bool = True, resent: str = ""
) -> bytes:
    """SDI's 'Invio File' message: the supplier's file and, normally, its MT."""
    parts = [Part(name, data, "application/octet-stream")]
    if with_mt:
        mt = build_notification(
            NotificationType.MT,
            "B2B",
            nome_file=name,
            identificativo_sdi=identificativo,
            hash=hashlib.sha256(data).hexdigest(),
        )
        parts.append(Part(f"{STEM}_MT_001.xml", mt, "text/xml"))
    riferimento = f"<{identificativo}{resent}@pec.fatturapa.it>"
    return build_sdi_envelope(
        parts, inner_subject=f"Invio File {identificativo}", riferimento=riferimento
    )


def _invoice(numero: str = "1") -> bytes:
    return sample.fpr12(transmitter="IT09876543210", progressivo_invio="A0001", numero=numero)


def _dated(raw: bytes, date: str) -> bytes:
    return f"Date: {date}\r\n".encode() + raw


def _bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _json(path: Path) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(path.read_bytes())
    return facts


# ---- one clash counter for a whole set -----------------------------------------------------------


async def test_a_plain_invoice_clashing_with_an_earlier_unwrapped_xml_is_filed_as_a_numbered_set(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    first, second = _invoice("1"), _invoice("2")
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml.p7m", der_envelope(first), "10000010"))
    await _once(config, clock)
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml", second, "10000011"))
    await _once(config, clock)
    inbox = config.accounts[0].inbox
    folder = inbox / INVOICES
    expected_first = [
        f"{STEM}.xml.p7m",
        f"{STEM}.xml",
        f"{STEM}_MT_001.xml",
        f"{STEM}.xml.p7m.json",
    ]
    expected_second = [f"{STEM} (2).xml", f"{STEM}_MT_001 (2).xml", f"{STEM} (2).xml.json"]
    assert files_under(inbox) == sorted(INVOICES + n for n in expected_first + expected_second)
    assert (folder / f"{STEM}.xml").read_bytes() == first  # the unwrapped XML is untouched
    assert (folder / f"{STEM} (2).xml").read_bytes() == second
    facts = _json(folder / f"{STEM} (2).xml.json")
    assert facts["identificativo_sdi"] == "10000011"
    assert facts["mt_hash_check"] == "ok"
    assert _json(folder / f"{STEM}.xml.p7m.json")["identificativo_sdi"] == "10000010"
    listed = _incoming(store)
    assert sorted(listed[0]["paths"]) == sorted(str(folder / n) for n in expected_first)
    assert sorted(listed[1]["paths"]) == sorted(str(folder / n) for n in expected_second)


async def test_a_p7m_whose_unwrapped_xml_would_clash_moves_its_whole_set_to_the_next_counter(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml", _invoice("1"), "10000010"))
    await _once(config, clock)
    signed = der_envelope(_invoice("2"))
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml.p7m", signed, "10000011"))
    await _once(config, clock)
    folder = config.accounts[0].inbox / INVOICES
    second = _incoming(store)[1]
    expected = [
        f"{STEM} (2).xml.p7m",
        f"{STEM} (2).xml",
        f"{STEM}_MT_001 (2).xml",
        f"{STEM} (2).xml.p7m.json",
    ]
    assert sorted(second["paths"]) == sorted(str(folder / n) for n in expected)
    assert (folder / f"{STEM} (2).xml.p7m").read_bytes() == signed
    assert (folder / f"{STEM} (2).xml").read_bytes() == _invoice("2")
    assert _json(folder / f"{STEM} (2).xml.p7m.json")["path"] == f"{STEM}.xml.p7m"


async def test_files_completed_after_a_crash_keep_the_counter_of_their_set(
    config: Config,
    clock: Clock,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml", _invoice("1"), "10000010"))
    await _once(config, clock)
    real_write = sink.write
    written: list[Path] = []

    def full_after_one(root: Path, relpath: PurePosixPath, data: bytes) -> Path:
        if written:
            raise OSError(28, "No space left on device")
        written.append(real_write(root, relpath, data))
        return written[-1]

    monkeypatch.setattr(sink, "write", full_after_one)
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml", _invoice("2"), "10000011"))
    await _once(config, clock)
    assert [p.name for p in written] == [f"{STEM} (2).xml"]
    monkeypatch.setattr(sink, "write", real_write)
    for archived in (f"{STEM}.xml.json", f"{STEM}_MT_001.xml"):  # a person moves them away
        (config.accounts[0].inbox / INVOICES / archived).unlink()
    logs = await _once(config, clock)
    assert "message_already_filed" in event_names(logs)
    names = sorted(Path(p).name for p in _incoming(store)[1]["paths"])
    assert names == sorted([f"{STEM} (2).xml", f"{STEM} (2).xml.json", f"{STEM}_MT_001 (2).xml"])


async def test_two_quarantined_messages_of_the_same_minute_and_subject_get_numbered_sets(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    for index in (1, 2):
        mail = build_plain_mail(subject="Offerta", message_id=f"<offer.{index}@example.com>")
        dovecot.append(mail_user.user, mail)
    await _once(config, clock)
    folder = "quarantena/2024/05/"
    stems = ["2024-05-06 1000 Offerta", "2024-05-06 1000 Offerta (2)"]
    expected = [folder + s + ext for s in stems for ext in (".eml", ".eml.json", ".eml.reason.txt")]
    assert files_under(config.accounts[0].inbox) == sorted(expected)
    assert [Path(q["path"]).name for q in _quarantined(store)] == [s + ".eml" for s in stems]


# ---- every new SDI delivery is filed --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "identificativo"),
    [
        (f"{STEM[:-1]}2.xml", "10000012"),
        (f"{STEM[:-1]}2.xml", "10000010"),
        (f"{STEM}.xml", "10000012"),
    ],
    ids=["new-name-new-id", "new-name", "new-id"],
)
async def test_the_same_invoice_in_a_new_sdi_delivery_is_filed_with_a_warning(
    config: Config,
    clock: Clock,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
    name: str,
    identificativo: str,
) -> None:
    invoice = _invoice()
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml", invoice, "10000010"))
    await _once(config, clock)
    clock.now = datetime(2024, 5, 9, 8, 0, tzinfo=UTC)
    dovecot.append(mail_user.user, _delivery(name, invoice, identificativo, resent=".again"))
    logs = await _once(config, clock)
    first, again = _incoming(store)
    assert (again["file"], again["identificativo_sdi"]) == (name, identificativo)
    assert "warnings" not in first
    [warning] = again["warnings"]
    assert f"received on 2024-05-06 as {STEM}.xml" in warning
    sidecar = next(p for p in again["paths"] if p.endswith(".json"))
    facts = _json(Path(sidecar))
    assert warning in facts["warnings"]
    assert facts["same_content_as"]["identificativo_sdi"] == "10000010"
    assert "invoice_received_again" in event_names(logs, "warning")
    assert all(_bytes(p) for p in again["paths"])


async def test_the_same_sdi_delivery_in_a_new_mail_is_not_filed_twice(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    invoice = _invoice()
    dovecot.append(mail_user.user, _delivery(f"{STEM}.xml", invoice, "10000010", with_mt=False))
    await _once(config, clock)
    again = _delivery(f"{STEM}.xml", invoice, "10000010", with_mt=False, resent=".again")
    dovecot.append(mail_user.user, again)
    logs = await _once(config, clock)
    [entry] = _incoming(store)
    assert entry["identificativo_sdi"] == "10000010"  # from SDI's subject "Invio File 10000010"
    [line] = [x for x in logs if x["event"] == "invoice_already_received"]
    assert line["first_received"] == clock.now.isoformat()


# ---- quarantine and orphans named for people --------------------------------------------------------


async def test_quarantine_is_named_by_date_and_subject_and_labelled_by_sender(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    raw = _dated(
        build_plain_mail(
            subject="Offerta: listino/2025 ",
            sender="Mario <mario@example.com>",
            attachments=[Part("listino.pdf", b"%PDF-1.4\n", "application/pdf")],
        ),
        "Mon, 06 May 2024 11:47:09 +0200",
    )
    dovecot.append(mail_user.user, raw)
    await _once(config, clock)
    [entry] = _quarantined(store)
    path = Path(entry["path"])
    assert path.name == "2024-05-06 1147 Offerta listino 2025.eml"
    assert path.parent == config.accounts[0].inbox / "quarantena/2024/05"
    assert _bytes(path) == raw
    assert (
        entry["what"]
        == 'e-mail from mario@example.com, "Offerta: listino/2025", of 2024-05-06 11:47'
    )
    assert entry["source"].startswith("imap:")
    assert entry["source"].endswith("/1")
    assert "plain e-mail" in entry["reason"]
    assert "listino.pdf" not in entry["reason"]  # a PDF is not broken, just not ours to file
    reason = path.with_name(path.name + ".reason.txt").read_text(encoding="utf-8")
    assert reason == entry["reason"] + "\n"
    facts = _json(path.with_name(path.name + ".json"))
    assert (facts["uid"], facts["folder"], facts["reason"]) == (1, "INBOX", entry["reason"])
    assert facts["inspect"]["kind"] == "email"


async def test_an_sdi_delivery_with_an_unreadable_invoice_says_which_file_and_what_to_do(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    broken = Part("broken.xml", b"<FatturaElettronica><FatturaElettronicaHeader>", "text/xml")
    dovecot.append(
        mail_user.user, build_sdi_envelope([broken], inner_subject="Invio File 10000011")
    )
    await _once(config, clock)
    [entry] = _quarantined(store)
    assert Path(entry["path"]).name == "2024-05-06 1000 POSTA CERTIFICATA Invio File 10000011.eml"
    reason = entry["reason"]
    assert reason.startswith(
        "SDI delivered invoice broken.xml (IdentificativoSdI 10000011) but it cannot be read: "
    )
    assert reason.endswith("; ask the supplier to send it again")
    assert entry["what"].startswith("PEC message from sdi07@pec.fatturapa.it, ")
    assert "Invio File 10000011" in entry["what"]
    facts = _json(Path(entry["path"] + ".json"))
    assert facts["inspect"]["contents"][0]["kind"] == "malformed"


async def test_a_message_quarantined_after_an_internal_error_is_named_and_explained_too(
    config: Config,
    clock: Clock,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pecgateway import inbound

    def broken(data: bytes, filename: str | None = None) -> Any:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(inbound, "classify", broken)
    dovecot.append(mail_user.user, build_plain_mail(subject="Fattura di maggio"))
    await _once(config, clock)
    [entry] = _quarantined(store)
    assert Path(entry["path"]).name == "2024-05-06 1000 Fattura di maggio.eml"
    assert "RuntimeError: parser bug" in entry["reason"]
    assert _json(Path(entry["path"] + ".json"))["inspect"] is None


async def test_a_receipt_about_a_file_we_never_sent_is_named_by_date_and_subject(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    raw = build_accettazione(riferimento="<other@elsewhere.it>", oggetto="IT0999_00007.xml")
    dovecot.append(mail_user.user, _dated(raw, "Mon, 06 May 2024 12:05:00 +0200"))
    await _once(config, clock)
    [orphan] = store.orphans("main")
    name = "ricevute-pec/2024/05/2024-05-06 1205 ACCETTAZIONE IT0999_00007.xml.eml"
    assert orphan["paths"] == [str(config.accounts[0].inbox / name)]


# ---- only SDI through PEC acts: trust ------------------------------------------------------------

OURS = sample.file_name()  # IT01234567890_00001.xml, what we send
SDI01 = "sdi01@pec.fatturapa.it"


async def _sent(config: Config, clock: Clock, smtp: SmtpServer) -> str:
    """Sends one invoice of ours; returns the Message-ID it went out with."""
    outbox = config.accounts[0].outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / OURS).write_bytes(sample.fpr12())
    await _once(config, clock)
    [sent] = [r for r in smtp.received if r.message["Subject"] == OURS]
    return str(sent.message["Message-ID"])


def _state(store: Store) -> str:
    found = store.find_outgoing_by_file("main", OURS)
    assert found is not None
    return found.state.value


def _rc() -> Part:
    xml = build_notification(
        NotificationType.RC, "B2B", nome_file=OURS, identificativo_sdi="6782414"
    )
    return Part(f"{OURS[:-4]}_RC_001.xml", xml, "text/xml")


def _headed(raw: bytes, **headers: str) -> bytes:
    lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return lines.encode() + raw


async def test_a_plain_mail_with_an_sdi_reply_to_never_changes_the_sdi_address(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    plain = _headed(build_plain_mail(subject="Ciao"), Reply_To="sdi99@pec.fatturapa.it")
    dovecot.append(mail_user.user, plain)
    logs = await _once(config, clock)
    assert "sdi_address_changed" not in event_names(logs)
    assert store.sdi_address_history("main") == []
    [entry] = _quarantined(store)
    assert "plain e-mail" in entry["reason"]
    await _sent(config, clock, smtp)
    assert smtp.received[-1].rcpt_tos == [SDI01]  # the next invoice still goes where SDI reads


@pytest.mark.parametrize(
    ("carried", "named"),
    [
        ([_rc()], f"the SDI notification RC {OURS[:-4]}_RC_001.xml"),
        ([Part(f"{STEM}.xml", _invoice(), "text/xml")], f"the invoice {STEM}.xml"),
    ],
    ids=["notification", "invoice"],
)
async def test_a_plain_mail_carrying_sdi_files_changes_nothing_and_is_quarantined_saying_why(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
    carried: list[Part],
    named: str,
) -> None:
    await _sent(config, clock, smtp)
    forged = build_plain_mail(sender="Someone <someone@gmail.example>", attachments=carried)
    dovecot.append(mail_user.user, _headed(forged, Reply_To="sdi07@pec.fatturapa.it"))
    await _once(config, clock)
    assert _state(store) == "sent"
    assert _incoming(store) == []
    assert store.orphans("main") == []
    assert store.sdi_address_history("main") == []
    assert not (config.accounts[0].inbox / "fatture-ricevute").exists()
    assert not (config.accounts[0].inbox / "notifiche-sdi").exists()
    [entry] = _quarantined(store)
    assert entry["reason"].startswith(
        f"not delivered by SDI through PEC: {named} attached to an ordinary e-mail from "
        "someone@gmail.example is not trusted"
    )
    assert entry["reason"].endswith("if it is genuine it will also arrive from SDI")


async def test_a_pec_from_a_sender_who_is_not_sdi_is_not_sdi_whatever_its_reply_to_says(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    envelope = build_sdi_envelope(
        [_rc()], sdi="fornitore@pec.example.it", reply_to="sdi99@pec.fatturapa.it"
    )
    dovecot.append(mail_user.user, envelope)
    logs = await _once(config, clock)
    assert _state(store) == "sent"
    assert "sdi_address_changed" not in event_names(logs)
    [entry] = _quarantined(store)
    assert (
        "attached to a PEC message from fornitore@pec.example.it, who is not SDI" in entry["reason"]
    )


async def test_an_anomaly_envelope_carrying_a_notification_changes_nothing(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    inner = build_plain_mail(sender="sdi07@pec.fatturapa.it", attachments=[_rc()])
    dovecot.append(mail_user.user, build_anomalia(inner))
    await _once(config, clock)
    assert _state(store) == "sent"
    assert store.sdi_address_history("main") == []
    [entry] = _quarantined(store)
    assert "not delivered by SDI through PEC" in entry["reason"]
    assert "marked it as an anomaly" in entry["reason"]


def _unsigned_accettazione(message_id: str) -> bytes:
    daticert = Part("daticert.xml", build_daticert("accettazione", msgid=message_id), "text/xml")
    plain = build_plain_mail(subject=f"ACCETTAZIONE: {OURS}", attachments=[daticert])
    return _headed(plain, X_Ricevuta="accettazione", X_Riferimento_Message_ID=message_id)


def _with_signature(raw: bytes, signature: bytes) -> bytes:
    genuine = base64.b64encode(UNSIGNED_SIGNED_DATA)
    assert genuine in raw
    return raw.replace(genuine, base64.b64encode(signature))


def _accettazione_with_a_junk_signature(message_id: str) -> bytes:
    return _with_signature(build_accettazione(riferimento=message_id), b"hello, I am a signature")


# what a sniff of the first bytes accepts: a SEQUENCE starting with the signedData OID, then junk
OID_THEN_JUNK = b"0\x80\x06\x09*\x86H\x86\xf7\r\x01\x07\x02\xa0\x80not-a-real-signature"


def _accettazione_with_the_signed_data_oid_then_junk(message_id: str) -> bytes:
    return _with_signature(build_accettazione(riferimento=message_id), OID_THEN_JUNK)


def _accettazione_whose_daticert_disagrees(message_id: str) -> bytes:
    return build_accettazione(riferimento=message_id, x_ricevuta="avvenuta-consegna")


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (_unsigned_accettazione, "not signed by a PEC provider"),
        (_accettazione_with_a_junk_signature, "(smime.p7s) is not a CMS signature"),
        (_accettazione_with_the_signed_data_oid_then_junk, "(smime.p7s) is not a CMS signature"),
        (_accettazione_whose_daticert_disagrees, "daticert.xml says tipo 'accettazione'"),
    ],
    ids=["unsigned", "junk-signature", "oid-then-junk", "daticert-disagrees"],
)
async def test_a_receipt_that_is_not_pec_shaped_changes_nothing_and_is_quarantined(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
    build: Callable[[str], bytes],
    problem: str,
) -> None:
    message_id = await _sent(config, clock, smtp)
    dovecot.append(mail_user.user, build(message_id))
    await _once(config, clock)
    assert _state(store) == "sent"
    assert store.orphans("main") == []
    [entry] = _quarantined(store)
    assert entry["reason"].startswith("looks like a PEC receipt (")
    assert problem in entry["reason"]
    assert "it changed nothing" in entry["reason"]


async def test_a_pec_shaped_receipt_is_trusted_and_the_log_says_its_signature_is_not_verified(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    dovecot.append(
        mail_user.user, build_accettazione(riferimento=message_id, mittente=mail_user.user)
    )
    logs = await _once(config, clock)
    assert _state(store) == "accepted"
    [line] = [x for x in logs if x["event"] == "pec_origin_accepted"]
    assert line["origin"] == "pec-receipt"
    assert "not verified" in line["signature"]


# ---- every part of SDI's message is handled ------------------------------------------------------


async def test_an_sdi_message_with_a_notification_and_an_invoice_files_both(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    invoice = _invoice()
    mt = build_notification(
        NotificationType.MT,
        "B2B",
        nome_file=f"{STEM}.xml",
        identificativo_sdi="10000010",
        hash=hashlib.sha256(invoice).hexdigest(),
    )
    parts = [_rc(), Part(f"{STEM}.xml", invoice, "text/xml"), Part(f"{STEM}_MT_001.xml", mt)]
    dovecot.append(mail_user.user, build_sdi_envelope(parts, sdi="sdi33@pec.fatturapa.it"))
    logs = await _once(config, clock)
    assert _state(store) == "sdi-delivered"
    [entry] = _incoming(store)
    assert (entry["file"], entry["identificativo_sdi"]) == (f"{STEM}.xml", "10000010")
    assert _quarantined(store) == []
    assert store.sdi_address("main") == "sdi33@pec.fatturapa.it"
    [done] = [x for x in logs if x["event"] == "unit_done" and "uid" in x]
    assert done["outcome"] == "notification+invoice"


async def test_an_sdi_message_with_a_part_it_cannot_handle_is_filed_and_quarantined_too(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    broken = Part("broken.xml", b"<FatturaElettronica><FatturaElettronicaHeader>", "text/xml")
    raw = build_sdi_envelope([_rc(), broken], sdi="sdi33@pec.fatturapa.it")
    dovecot.append(mail_user.user, raw)
    await _once(config, clock)
    assert _state(store) == "sdi-delivered"
    [entry] = _quarantined(store)
    assert _bytes(entry["path"]) == raw
    assert entry["reason"].startswith(
        "SDI's message was filed (notification) except a part that cannot be handled (broken.xml: "
    )
    assert store.sdi_address_history("main") == []  # never learned from a quarantined message


async def test_a_plain_mail_posing_as_sdi_with_an_unreadable_file_is_not_called_an_sdi_delivery(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    broken = Part("broken.xml", b"<FatturaElettronica><FatturaElettronicaHeader>", "text/xml")
    plain = build_plain_mail(subject="Invio File 10000011", attachments=[broken])
    dovecot.append(mail_user.user, _headed(plain, Reply_To="sdi07@pec.fatturapa.it"))
    await _once(config, clock)
    [entry] = _quarantined(store)
    assert "SDI delivered" not in entry["reason"]
    assert entry["reason"].startswith("not a PEC receipt, SDI notification or invoice (a plain")
    assert "broken.xml cannot be read" in entry["reason"]


# ---- the SDI address is learned only from SDI's message about our files --------------------------


def _orphan_rc() -> Part:
    xml = build_notification(
        NotificationType.RC, "B2B", nome_file="IT05555555555_ZZZZZ.xml", identificativo_sdi="999"
    )
    return Part("IT05555555555_ZZZZZ_RC_001.xml", xml, "text/xml")


async def test_an_orphan_sdi_notification_never_changes_the_sdi_address(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    dovecot.append(mail_user.user, build_sdi_envelope([_orphan_rc()], sdi="sdi99@pec.fatturapa.it"))
    logs = await _once(config, clock)
    assert "orphan_notification_recorded" in event_names(logs)
    assert "sdi_address_changed" not in event_names(logs)
    assert store.sdi_address_history("main") == []
    assert _state(store) == "sent"
    (config.accounts[0].outbox / "IT01234567890_00002.xml").write_bytes(
        sample.fpr12(progressivo_invio="00002")
    )
    await _once(config, clock)
    assert smtp.received[-1].rcpt_tos == [SDI01]  # the next invoice still goes where SDI reads


async def test_an_sdi_notification_about_our_file_teaches_the_sdi_address(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    dovecot.append(mail_user.user, build_sdi_envelope([_rc()], sdi="sdi42@pec.fatturapa.it"))
    logs = await _once(config, clock)
    assert "sdi_address_changed" in event_names(logs)
    assert store.sdi_address("main") == "sdi42@pec.fatturapa.it"


# ---- a receipt about our message certifies that WE sent it ---------------------------------------


async def test_a_receipt_whose_daticert_mittente_is_not_our_account_changes_nothing(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    forged = build_errore_consegna(
        riferimento=message_id,
        mittente="someone@evil.example",
        sender="posta-certificata@evil.example",
    )
    dovecot.append(mail_user.user, forged)
    logs = await _once(config, clock)
    assert _state(store) == "sent"
    assert "receipt_untrusted" in event_names(logs)
    [entry] = _quarantined(store)
    assert f"about our {OURS}" in entry["reason"]
    assert "sent by someone@evil.example, not by this account" in entry["reason"]


async def test_a_receipt_whose_daticert_mittente_is_our_account_in_any_case_is_trusted(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    message_id = await _sent(config, clock, smtp)
    receipt = build_errore_consegna(riferimento=message_id, mittente=mail_user.user.upper())
    dovecot.append(mail_user.user, receipt)
    await _once(config, clock)
    assert _state(store) == "pec-error"
    assert _quarantined(store) == []


# ---- bounded labels ------------------------------------------------------------------------------


async def test_a_huge_subject_is_cut_in_the_quarantine_label_and_the_log(
    config: Config, clock: Clock, store: Store, dovecot: Dovecot, mail_user: MailAccount
) -> None:
    dovecot.append(mail_user.user, build_plain_mail(subject="x" * 1_000_000))
    logs = await _once(config, clock)
    [entry] = _quarantined(store)
    assert len(entry["what"]) < 500
    assert '"' + "x" * 199 + '…"' in entry["what"]
    [line] = [x for x in logs if x["event"] == "message_quarantined"]
    assert len(line["what"]) < 500
    assert all(len(str(value)) < 5000 for x in logs for value in x.values())


# ---- one IdentificativoSdI, one invoice ----------------------------------------------------------

SECOND = "IT01234567890_00002.xml"


async def test_a_notification_whose_identificativo_sdi_belongs_to_another_invoice_is_not_applied(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    (config.accounts[0].outbox / SECOND).write_bytes(sample.fpr12(progressivo_invio="00002"))
    await _once(config, clock)
    dovecot.append(mail_user.user, build_sdi_envelope([_rc()]))  # OURS gets 6782414
    await _once(config, clock)
    xml = build_notification(
        NotificationType.RC, "B2B", nome_file=SECOND, identificativo_sdi="6782414"
    )
    clash = build_sdi_envelope([Part("IT01234567890_00002_RC_001.xml", xml, "text/xml")])
    dovecot.append(mail_user.user, clash)
    logs = await _once(config, clock)
    assert "notification_conflict" in event_names(logs)
    second = store.find_outgoing_by_file("main", SECOND)
    assert second is not None
    assert (second.state.value, second.identificativo_sdi) == ("sent", None)
    first = store.find_outgoing_by_identificativo_sdi("main", "6782414")
    assert first is not None
    assert first.file_name == OURS
    [entry] = _quarantined(store)
    assert f"about {SECOND} carries IdentificativoSdI 6782414" in entry["reason"]
    assert f"already belongs to {OURS}" in entry["reason"]


# ---- a notification without a file name --------------------------------------------------------


async def test_a_notification_attachment_without_a_name_is_named_from_its_nome_file_and_type(
    config: Config,
    clock: Clock,
    store: Store,
    smtp: SmtpServer,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    await _sent(config, clock, smtp)
    xml = build_notification(
        NotificationType.RC, "B2B", nome_file=OURS, identificativo_sdi="6782414"
    )
    raw = build_sdi_envelope([Part("NONAME.xml", xml, "application/octet-stream")])
    unnamed = raw.replace(b"; name=NONAME.xml", b"").replace(b"; filename=NONAME.xml", b"")
    assert b"NONAME" not in unnamed
    dovecot.append(mail_user.user, unnamed)
    await _once(config, clock)
    assert _state(store) == "sdi-delivered"
    inbox = config.accounts[0].inbox
    [filed] = [p for p in files_under(inbox) if p.startswith("notifiche-sdi/")]
    assert PurePosixPath(filed).name == f"{OURS[:-4]}_RC_001.xml"
    assert (inbox / filed).read_bytes() == xml
