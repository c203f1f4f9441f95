"""What the inbound side writes, through service.run_once against Dovecot: a set of files per item
with one clash counter, every new SDI delivery filed, quarantine and orphans named for people."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from pecgateway import sample, service, sink
from pecgateway.config import Config
from pecgateway.filename import NotificationType
from pecgateway.store import Store
from tests.factory.gateway import account_table, write_config
from tests.factory.notifications import build_notification
from tests.factory.pecmail import Part, build_accettazione, build_plain_mail, build_sdi_envelope
from tests.factory.signing import der_envelope
from tests.factory.smtp_server import SmtpServer, smtp_server

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytestmark = pytest.mark.servers

STEM = "IT09876543210_A0001"
INVOICES = "fatture-ricevute/2024/05/"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def smtp(sandbox_ca: SandboxCA) -> AsyncIterator[SmtpServer]:
    pair = sandbox_ca.server
    async with smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount) -> Config:
    table = account_table(
        tmp_path,
        "main",
        address=mail_user.user,
        smtp={
            "host": smtp.host,
            "port": smtp.port,
            "username": smtp.username,
            "password": smtp.password,
            "ca_file": str(smtp.ca_file),
            "timeout_s": 5.0,
        },
        imap={
            "host": mail_user.host,
            "port": mail_user.port,
            "username": mail_user.user,
            "password": mail_user.password,
            "ca_file": str(mail_user.ca_file),
            "timeout_s": 5.0,
        },
    )
    return write_config(tmp_path, schema_dir, [table])


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    with Store(config.store_path) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _once(config: Config, clock: Clock) -> list[MutableMapping[str, Any]]:
    with capture_logs(processors=[merge_contextvars]) as logs:
        await service.run_once(config, clock=clock)
    return logs


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


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


def _events(logs: Sequence[Mapping[str, Any]], level: str | None = None) -> list[str]:
    return [str(x["event"]) for x in logs if level is None or x["log_level"] == level]


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
    assert _files(inbox) == sorted(INVOICES + n for n in expected_first + expected_second)
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
    assert "message_already_filed" in _events(logs)
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
    assert _files(config.accounts[0].inbox) == sorted(expected)
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
    assert "invoice_received_again" in _events(logs, "warning")
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
