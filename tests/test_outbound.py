"""Outbox files through the real service path: run_once (or run) against aiosmtpd and Dovecot.

Folders the outbox must ignore, a file dropped again after it was sent, a unit left by a crash, a
file still being written, the inbox copy's sidecar, and rejections made stale by a later send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from pecgateway import outbound, outbound_checks, outbox, sample, service, validate
from pecgateway import smtp as smtp_module
from pecgateway.config import Config
from pecgateway.errors import TransientError
from pecgateway.lifecycle import Event, State
from pecgateway.store import Store
from tests.factory.gateway import Logs, event_names, file_names, once_logged, rejection_reason
from tests.factory.pecmail import build_accettazione
from tests.factory.smtp_server import SmtpServer
from tests.factory.tcp_proxy import tcp_proxy

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytestmark = pytest.mark.servers

NAME = sample.file_name()  # IT01234567890_00001.xml
SENT_ON = "2024-05-06 10:00:00 UTC"


def _clock() -> datetime:
    return datetime(2024, 5, 6, 10, 0, tzinfo=UTC)


@pytest.fixture
def inbox_sent(config: Config) -> Path:
    return config.accounts[0].inbox / "inviate" / "2024" / "05"


async def _once(config: Config) -> Logs:
    _report, logs = await once_logged(config, _clock)
    return logs


def _outcomes(logs: Sequence[MutableMapping[str, Any]]) -> list[str]:
    return [str(line["outcome"]) for line in logs if line["event"] == "unit_done"]


def _reason(outbox_dir: Path, name: str = NAME) -> dict[str, Any]:
    return rejection_reason(outbox_dir, name)


# ---- folders and desktop junk ------------------------------------------------------------------


async def test_a_folder_made_in_the_outbox_while_running_is_never_claimed_nor_rejected(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    stop = asyncio.Event()
    with capture_logs(processors=[merge_contextvars]) as logs:
        running = asyncio.ensure_future(service.run(config, stop, notify=lambda _: None))
        await asyncio.sleep(0.5)
        (outbox_dir / "archivio").mkdir()
        (outbox_dir / "archivio" / "old.xml").write_bytes(b"<old/>")
        await asyncio.sleep(1.2)  # inotify events and a rescan (rescan_interval_s = 0.5)
        (outbox_dir / NAME).write_bytes(sample.fpr12())
        async with asyncio.timeout(10):
            await smtp.data_arrived.wait()
        stop.set()
        async with asyncio.timeout(10):
            await running
    assert (outbox_dir / "archivio" / "old.xml").read_bytes() == b"<old/>"
    assert file_names(outbox_dir / "rejected") == []
    assert [line for line in logs if line["event"] == "unit_failed"] == []
    assert _outcomes(logs) == ["sent"]


async def test_a_folder_and_desktop_junk_are_left_alone_by_once(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    (outbox_dir / "archivio").mkdir()
    for junk in ("Thumbs.db", "desktop.ini", ".DS_Store"):
        (outbox_dir / junk).write_bytes(b"junk")
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    logs = await _once(config)
    assert len(smtp.received) == 1
    assert _outcomes(logs) == ["sent"]
    assert file_names(outbox_dir) == [
        ".DS_Store",
        ".processing",
        "Thumbs.db",
        "archivio",
        "desktop.ini",
        "sent",
    ]


async def test_a_file_that_is_no_invoice_is_still_rejected_with_a_readable_reason(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    (outbox_dir / "notes.txt").write_bytes(b"call the accountant")
    await _once(config)
    assert smtp.received == []
    problems = _reason(outbox_dir, "notes.txt")["problems"]
    assert problems[0]["code"] != "internal-error"
    assert problems[0]["hint"]


async def test_a_unit_failing_unexpectedly_sets_its_file_aside_at_once(
    config: Config, smtp: SmtpServer, outbox_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(outbound_checks, "check", broken)
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    logs = await _once(config)
    assert smtp.received == []
    assert _outcomes(logs) == ["set-aside"]
    assert _reason(outbox_dir)["problems"][0]["code"] == "internal-error"
    assert file_names(outbox_dir / ".processing") == ["new"]


# ---- the same file dropped again ---------------------------------------------------------------


async def test_the_same_bytes_dropped_again_under_the_same_name_are_refused_not_sent_twice(
    config: Config, smtp: SmtpServer, outbox_dir: Path, inbox_sent: Path
) -> None:
    data = sample.fpr12()
    (outbox_dir / NAME).write_bytes(data)
    await _once(config)
    (outbox_dir / NAME).write_bytes(data)
    logs = await _once(config)
    assert len(smtp.received) == 1
    assert _outcomes(logs) == ["rejected"]
    assert file_names(outbox_dir / "sent") == [NAME]
    assert file_names(inbox_sent) == [NAME, f"{NAME}.json"]
    (problem,) = _reason(outbox_dir)["problems"]
    assert problem["code"] == "duplicate"
    assert f"already sent on {SENT_ON}" in problem["message"]
    assert "now sent" in problem["message"]
    assert "nothing was sent again" in problem["message"]


async def test_the_same_bytes_under_a_new_name_are_refused_naming_the_first(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    data = sample.fpr12()
    (outbox_dir / NAME).write_bytes(data)
    await _once(config)
    other = sample.file_name(progressivo="00002")
    (outbox_dir / other).write_bytes(data)
    await _once(config)
    assert len(smtp.received) == 1
    (problem,) = _reason(outbox_dir, other)["problems"]
    assert f"already sent as {NAME} on {SENT_ON}" in problem["message"]


def _left_in_processing(outbox_dir: Path, store: Store, data: bytes, *, new: bool) -> None:
    """A file claimed before a crash: in .processing/new/ (never begun) or .processing/ (begun)."""
    folder = outbox_dir / ".processing" / ("new" if new else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NAME).write_bytes(data)


async def test_a_unit_left_in_processing_by_a_crash_after_the_send_is_finished_not_refused(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path, inbox_sent: Path
) -> None:
    data = sample.fpr12()
    record = store.record_outgoing(
        "main", file_name=NAME, at=_clock(), sha256=hashlib.sha256(data).hexdigest()
    )
    store.transition(record.id, Event.SENDING, at=_clock(), source="test", message_id="<m1@x>")
    store.transition(record.id, Event.SENT, at=_clock(), source="smtp", detail="250 ok")
    _left_in_processing(outbox_dir, store, data, new=False)
    logs = await _once(config)
    assert smtp.received == []
    assert _outcomes(logs) == ["sent"]
    assert (outbox_dir / "sent" / NAME).read_bytes() == data
    assert file_names(inbox_sent) == [NAME, f"{NAME}.json"]
    assert file_names(outbox_dir / "rejected") == []


async def test_a_redrop_claimed_but_not_begun_before_a_crash_is_still_refused(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    data = sample.fpr12()
    (outbox_dir / NAME).write_bytes(data)
    await _once(config)
    _left_in_processing(outbox_dir, store, data, new=True)
    logs = await _once(config)
    assert len(smtp.received) == 1
    assert _outcomes(logs) == ["rejected"]
    assert _reason(outbox_dir)["problems"][0]["code"] == "duplicate"
    assert file_names(outbox_dir / "sent") == [NAME]


async def test_a_file_claimed_but_not_begun_before_a_crash_is_sent_as_new(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    _left_in_processing(outbox_dir, store, sample.fpr12(), new=True)
    await _once(config)
    assert len(smtp.received) == 1
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SENT


# ---- a file still being written ----------------------------------------------------------------


def _writer_goes_on_after(
    monkeypatch: pytest.MonkeyPatch, module: Any, attribute: str, path: Path, rest: bytes
) -> None:
    """After the first call of ``module.attribute``, ``rest`` is appended to the claimed file:
    its writer was still at work (it keeps the file open, so it writes wherever the file went)."""
    original: Callable[..., Any] = getattr(module, attribute)
    pending = [rest]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if pending:
            with (path.parent / ".processing" / path.name).open("ab") as handle:
                handle.write(pending.pop())
        return result

    monkeypatch.setattr(module, attribute, wrapper)


async def test_a_file_that_grows_while_it_is_read_is_put_back_and_sent_once_complete(
    config: Config, smtp: SmtpServer, outbox_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sample.fpr12()
    half = len(data) // 2
    (outbox_dir / NAME).write_bytes(data[:half])
    _writer_goes_on_after(monkeypatch, outbox, "read", outbox_dir / NAME, data[half:])
    logs = await _once(config)
    assert [line["event"] for line in logs].count("outbox_file_still_changing") == 1
    assert _outcomes(logs) == ["still-changing", "sent"]
    [got] = smtp.received
    [attachment] = list(got.message.iter_attachments())
    assert attachment.get_content() == data
    assert file_names(outbox_dir / "rejected") == []


async def test_a_cut_short_file_written_on_during_the_checks_is_put_back_not_rejected(
    config: Config, smtp: SmtpServer, outbox_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sample.fpr12()
    half = len(data) // 2
    (outbox_dir / NAME).write_bytes(data[:half])
    _writer_goes_on_after(monkeypatch, validate, "check", outbox_dir / NAME, data[half:])
    logs = await _once(config)
    assert _outcomes(logs) == ["still-changing", "sent"]
    assert len(smtp.received) == 1
    assert file_names(outbox_dir / "rejected") == []
    assert (outbox_dir / "sent" / NAME).read_bytes() == data


async def test_a_cut_short_file_that_holds_still_is_rejected_as_not_well_formed(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    data = sample.fpr12()
    (outbox_dir / NAME).write_bytes(data[: len(data) // 2])
    logs = await _once(config)
    assert smtp.received == []
    assert _outcomes(logs) == ["rejected"]
    assert _reason(outbox_dir)["problems"][0]["code"] == "not-well-formed"
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.REJECTED


# ---- what the inbox copy says ------------------------------------------------------------------


async def test_the_inbox_copys_sidecar_is_a_snapshot_of_the_send_without_a_state(
    config: Config, smtp: SmtpServer, outbox_dir: Path, inbox_sent: Path
) -> None:
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    await _once(config)
    facts = json.loads((inbox_sent / f"{NAME}.json").read_bytes())
    assert "state" not in facts
    assert facts["message_id"] == smtp.received[0].message["Message-ID"]
    assert facts["sdi_address"] == "sdi01@pec.fatturapa.it"
    assert datetime.fromisoformat(facts["sent_at"]) == _clock()
    assert "queued as Q1" in facts["smtp_reply"]
    assert "pecgateway status" in facts["note"]


# ---- rejections made stale by a later send -----------------------------------------------------


async def test_a_rejected_name_fixed_and_sent_keeps_the_rejection_only_as_history(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    (outbox_dir / NAME).write_bytes(b"<?xml version='1.0'?><Fattura/>")
    await _once(config)
    assert (outbox_dir / "rejected" / f"{NAME}.reason.txt").exists()
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    await _once(config)
    assert len(smtp.received) == 1
    history = "IT01234567890_00001 (rejected 20240506T100000Z).xml"
    assert file_names(outbox_dir / "rejected") == [
        history,
        f"{history}.reason.json",
        f"{history}.reason.txt",
    ]
    assert file_names(outbox_dir / "sent") == [NAME]


# ---- zip archives are checked like any file --------------------------------------------------

ZIP_NAME = "IT01234567890_00001.zip"


def _zip(entries: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _bomb() -> bytes:
    return _zip([("IT01234567890_00002.xml", b"\0" * (20 * 1024 * 1024))])


def _zip_in_zip() -> bytes:
    return _zip([("IT01234567890_00002.zip", _zip([(NAME, sample.fpr12())]))])


def _dot_dot_entry() -> bytes:
    return _zip([("../IT01234567890_00002.xml", sample.fpr12())])


def _many_entries() -> bytes:
    return _zip([(f"IT01234567890_{n:05d}.xml", b"<a/>") for n in range(1, 5001)])


def _text() -> bytes:
    return b"this is a note, not an archive\n"


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (_bomb, "expands"),
        (_zip_in_zip, "archive inside the zip archive"),
        (_dot_dot_entry, "'../IT01234567890_00002.xml'"),
        (_many_entries, "5000 entries"),
        (_text, ""),
    ],
    ids=["bomb", "zip-in-zip", "dot-dot-entry", "5000-entries", "text-named-zip"],
)
async def test_a_bad_zip_in_the_outbox_is_rejected_with_the_reason_never_sent(
    config: Config,
    smtp: SmtpServer,
    outbox_dir: Path,
    build: Callable[[], bytes],
    words: str,
) -> None:
    (outbox_dir / ZIP_NAME).write_bytes(build())
    logs = await _once(config)
    assert smtp.received == []
    assert _outcomes(logs) == ["rejected"]
    problems = _reason(outbox_dir, ZIP_NAME)["problems"]
    assert problems
    assert all(problem["code"] != "internal-error" for problem in problems)
    assert words in " ".join(problem["message"] for problem in problems)


async def test_a_zip_holding_one_good_invoice_is_sent(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    (outbox_dir / ZIP_NAME).write_bytes(_zip([(NAME, sample.fpr12())]))
    logs = await _once(config)
    assert _outcomes(logs) == ["sent"]
    assert len(smtp.received) == 1


# ---- a send whose outcome is unknown is never resent while its receipt may come --------------


def _through(config: Config, port: int) -> Config:
    """``config`` sending through a proxy on ``port`` that waits 1 s for each SMTP reply."""
    account = config.accounts[0]
    smtp_config = dataclasses.replace(account.smtp, port=port, timeout_s=1.0)
    return dataclasses.replace(config, accounts=(dataclasses.replace(account, smtp=smtp_config),))


def _large_invoice() -> bytes:
    pdf = bytes(range(256)) * 120  # ~30 kB: the message is far larger than the SMTP dialogue
    body = sample.Body(numero="1", data="2024-01-15", allegati=(sample.Allegato("a.pdf", pdf),))
    return sample.fpr12(lot=[body])


async def test_no_reply_after_data_leaves_the_invoice_sending_and_the_receipt_settles_it(
    config: Config,
    smtp: SmtpServer,
    outbox_dir: Path,
    store: Store,
    dovecot: Dovecot,
    mail_user: MailAccount,
) -> None:
    (outbox_dir / NAME).write_bytes(_large_invoice())
    async with tcp_proxy(smtp.host, smtp.port) as proxy:
        proxied = _through(config, proxy.port)
        proxy.stall_after_upload(20_000)  # the server takes the message; its reply never comes
        logs = await _once(proxied)
        async with asyncio.timeout(5):
            await smtp.data_arrived.wait()
        proxy.heal()
        assert _outcomes(logs) == ["deferred"]
        assert "send_outcome_unknown" in event_names(logs)
        record = store.find_outgoing_by_file("main", NAME)
        assert record is not None
        assert record.state is State.SENDING
        events = [e.event for e in store.events(record.id)]
        assert outbound.SMTP_DEFERRED not in events
        assert _outcomes(await _once(proxied)) == ["awaiting-reconciliation"]
        message_id = smtp.received[0].message["Message-ID"]
        receipt = build_accettazione(riferimento=message_id, mittente=mail_user.user)
        dovecot.append(mail_user.user, receipt)
        await _once(proxied)  # the receipt arrives
        await _once(proxied)  # the claimed file is finished
    assert len(smtp.received) == 1
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.ACCEPTED
    assert file_names(outbox_dir / "sent") == [NAME]


async def test_a_receipt_recorded_while_a_retry_waits_stops_the_retry(
    config: Config,
    smtp: SmtpServer,
    outbox_dir: Path,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing_after_a_receipt(message: EmailMessage, *args: Any, **kwargs: Any) -> str:
        record = store.find_outgoing_by_file("main", NAME)
        assert record is not None
        store.transition(record.id, Event.ACCETTAZIONE, at=_clock(), source="test")
        raise TransientError("connection failed: reset", subject="SMTP test")

    monkeypatch.setattr(smtp_module, "send", failing_after_a_receipt)
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    logs = await _once(config)
    assert event_names(logs).count("send_deferred") == 1  # no second attempt
    assert _outcomes(logs) == ["sent"]  # filed: its receipt says the provider has it
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.ACCEPTED
    assert file_names(outbox_dir / "sent") == [NAME]


# ---- after the send, nothing rejects the file --------------------------------------------------


async def test_an_inbox_copy_that_cannot_be_written_after_the_send_still_files_it_as_sent(
    config: Config, smtp: SmtpServer, outbox_dir: Path, store: Store
) -> None:
    inbox = config.accounts[0].inbox
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "inviate").write_bytes(b"a file where the sent folder belongs")
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    logs = await _once(config)
    assert len(smtp.received) == 1
    assert _outcomes(logs) == ["sent"]
    assert file_names(outbox_dir / "rejected") == []
    assert file_names(outbox_dir / "sent") == [NAME]
    [line] = [line for line in logs if line["event"] == "sent_copy_not_written"]
    assert "WAS sent" in line["hint"]
    record = store.find_outgoing_by_file("main", NAME)
    assert record is not None
    assert record.state is State.SENT
    notes = [e for e in store.events(record.id) if e.event == outbound.SENT_COPY_NOT_WRITTEN]
    assert notes
    assert notes[0].detail
