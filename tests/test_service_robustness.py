"""The service under trouble: one account's broken folders or store rows never stop the others,
incomplete units are retried without a restart, one instance per store, a damaged store refused
with what to do, `once` reports what failed, interrupted sends and an immediate stop are logged.
Real folders, real SQLite, real aiosmtpd and Dovecot."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from pecgateway import outbound, sample, service, supervisor
from pecgateway.config import Config
from pecgateway.errors import ConfigError
from pecgateway.filename import NotificationType
from pecgateway.instance import AlreadyRunning, instance_lock, lock_path
from pecgateway.lifecycle import Event, State
from pecgateway.store import SMTP_DEFERRED, Store
from pecgateway.store_db import StoreUnusable
from tests.factory.gateway import lines_of, service_account, service_config, write_config
from tests.factory.notifications import build_notification
from tests.factory.pecmail import Part, build_sdi_envelope
from tests.factory.smtp_server import SmtpServer

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytestmark = pytest.mark.servers

Logs = list[MutableMapping[str, Any]]
NAME = sample.file_name()  # IT01234567890_00001.xml
T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing account's loop retries within a fraction of a second in these tests."""
    monkeypatch.setattr(supervisor, "INITIAL_S", 0.05)
    monkeypatch.setattr(supervisor, "MAXIMUM_S", 0.2)


POLLING = {"idle": False, "poll_interval_s": 0.1}  # no IDLE: a poll every 0.1 s


def _account(
    tmp_path: Path, name: str, smtp: SmtpServer, mail_user: MailAccount, **imap: Any
) -> str:
    return service_account(tmp_path, name, smtp, mail_user, quick=True, imap={**POLLING, **imap})


def _two_accounts(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount, **imap: Any
) -> Config:
    good = _account(tmp_path, "good", smtp, mail_user)
    broken = _account(tmp_path, "broken", smtp, mail_user, **imap)
    return write_config(tmp_path, schema_dir, [broken, good])


def _drop(outbox: Path, numero: str = "1") -> None:
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / NAME).write_bytes(sample.fpr12(numero=numero))


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110 -- the conditions are files and log lines
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting until {what}")


class Running:
    """``service.run`` in a task with its logs captured; stopped (and awaited) on exit."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = asyncio.Event()
        self.logs: Logs = []

    async def __aenter__(self) -> Self:
        self._capture = capture_logs(processors=[merge_contextvars])
        self.logs = self._capture.__enter__()
        self.task = asyncio.ensure_future(service.run(self.config, self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            async with asyncio.timeout(20):
                await self.task
        finally:
            self._capture.__exit__(None, None, None)

    def events(self, event: str, **fields: object) -> list[MutableMapping[str, Any]]:
        return [
            line
            for line in lines_of(self.logs, event)
            if all(line.get(key) == value for key, value in fields.items())
        ]


# ---- 1. one account's trouble never stops the others --------------------------------------------


async def test_a_broken_outbox_is_logged_once_and_retried_while_another_account_sends(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = _two_accounts(tmp_path, schema_dir, smtp, mail_user)
    broken, good = config.account("broken").outbox, config.account("good").outbox
    broken.parent.mkdir(parents=True)
    broken.write_text("x\n")  # the outbox folder replaced by a file
    async with Running(config) as running:
        await _until(
            lambda: len(running.events("account_loop_still_failing", account="broken")) >= 2,
            "the broken outbox was retried twice",
        )
        _drop(good)
        await _until(lambda: (good / "sent" / NAME).exists(), "the good account sent its file")
        [failed] = running.events("account_loop_failed", account="broken", loop="outbox")
        assert str(broken) in failed["reason"]
        assert "must be a folder" in failed["hint"]
        broken.unlink()
        _drop(broken, numero="2")
        await _until(lambda: (broken / "sent" / NAME).exists(), "the repaired account sent")
        assert running.events("account_loop_recovered", account="broken", loop="outbox")
        assert not running.task.done()
    assert len(smtp.received) == 2
    assert not running.events("account_loop_failed", account="good")


async def test_an_outbox_removed_while_running_is_retried_and_recovers(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = _two_accounts(tmp_path, schema_dir, smtp, mail_user)
    broken, good = config.account("broken").outbox, config.account("good").outbox
    async with Running(config) as running:
        await _until(lambda: broken.is_dir() and good.is_dir(), "both outboxes were created")
        broken.rmdir()
        broken.write_text("x\n")
        await _until(
            lambda: bool(running.events("account_loop_failed", account="broken")),
            "the rescan found the outbox gone",
        )
        _drop(good)
        await _until(lambda: (good / "sent" / NAME).exists(), "the good account sent its file")
        broken.unlink()
        _drop(broken, numero="2")
        await _until(lambda: (broken / "sent" / NAME).exists(), "the repaired account sent")
    assert len(smtp.received) == 2


def _fail_inserts_for(store_path: Path, account: str) -> None:
    """A real SQLite error for one account's rows only: a trigger that aborts its inserts."""
    db = sqlite3.connect(store_path)
    db.execute(
        "CREATE TRIGGER broken_rows BEFORE INSERT ON outgoing"
        f" WHEN NEW.account = '{account}' BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
    )
    db.commit()
    db.close()


def _drop_trigger(store_path: Path) -> None:
    db = sqlite3.connect(store_path)
    db.execute("DROP TRIGGER broken_rows")
    db.commit()
    db.close()


async def test_a_store_error_in_one_accounts_unit_keeps_the_file_and_spares_the_others(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = _two_accounts(tmp_path, schema_dir, smtp, mail_user)
    Store(config.store_path).close()
    _fail_inserts_for(config.store_path, "broken")
    broken, good = config.account("broken").outbox, config.account("good").outbox
    _drop(broken, numero="2")
    async with Running(config) as running:
        await _until(
            lambda: bool(running.events("account_loop_failed", account="broken")),
            "the store error was logged",
        )
        [failed] = running.events("account_loop_failed", account="broken")
        assert "disk trouble" in failed["reason"]
        assert "backup" in failed["hint"]
        assert list((broken / ".processing").rglob(NAME))  # kept claimed, not rejected
        assert not (broken / "rejected").exists()
        _drop(good)
        await _until(lambda: (good / "sent" / NAME).exists(), "the good account sent its file")
        _drop_trigger(config.store_path)
        await _until(lambda: (broken / "sent" / NAME).exists(), "the claimed file was sent")
        assert running.events("account_loop_recovered", account="broken")
    assert len(smtp.received) == 2


# ---- 5. `once` reports what failed --------------------------------------------------------------


async def test_once_reports_an_unreachable_mailbox_and_a_broken_outbox_yet_serves_the_rest(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = _two_accounts(tmp_path, schema_dir, smtp, mail_user, port=1)
    broken, good = config.account("broken").outbox, config.account("good").outbox
    broken.parent.mkdir(parents=True)
    broken.write_text("x\n")
    _drop(good)
    report = await service.run_once(config)
    assert not report.ok
    assert {(f.account, f.loop) for f in report.failures} == {
        ("broken", "outbox"),
        ("broken", "mailbox"),
    }
    summary = report.summary()
    assert "account broken: outbox:" in summary
    assert "account broken: mailbox: cannot read the mailbox" in summary
    assert (good / "sent" / NAME).exists()


async def test_once_reports_ok_when_every_account_completed_its_pass(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = _two_accounts(tmp_path, schema_dir, smtp, mail_user)
    _drop(config.account("good").outbox)
    report = await service.run_once(config)
    assert report.ok
    assert report.summary() == ""


async def test_once_reports_an_invoice_the_smtp_server_would_not_take(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    _drop(config.account("main").outbox)
    smtp.data_reply = "451 4.3.0 try later"
    report = await service.run_once(config)
    [failure] = report.failures
    assert failure.loop == "outbox"
    assert NAME in failure.reason
    assert "not sent" in failure.reason


# ---- 2. incomplete inbound units are retried on the next pass -----------------------------------


def _rc() -> bytes:
    xml = build_notification(
        NotificationType.RC, "B2B", nome_file="IT09999999999_00001.xml", identificativo_sdi="1"
    )
    return build_sdi_envelope([Part("IT09999999999_00001_RC_001.xml", xml, "text/xml")])


async def test_an_inbound_unit_left_incomplete_is_completed_on_a_later_pass_without_restart(
    tmp_path: Path,
    schema_dir: Path,
    smtp: SmtpServer,
    mail_user: MailAccount,
    dovecot: Dovecot,
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    inbox = config.account("main").inbox
    inbox.parent.mkdir(parents=True, exist_ok=True)
    inbox.write_text("x\n")  # the inbox folder replaced by a file: nothing can be written
    dovecot.append(mail_user.user, _rc())
    async with Running(config) as running:
        await _until(lambda: bool(running.events("unit_incomplete")), "the unit was incomplete")
        await _until(
            lambda: bool(running.events("unit_still_incomplete")), "a later pass tried again"
        )
        [incomplete] = running.events("unit_incomplete")
        assert "writable folder" in incomplete["hint"]
        inbox.unlink()
        await _until(lambda: bool(running.events("unit_done")), "the message was filed")
        assert running.events("mailbox_connected") == running.events("mailbox_connected")[:1]
    with Store(config.store_path) as store:
        [orphan] = store.orphans("main")
    paths = orphan["paths"]
    assert isinstance(paths, list)
    assert paths
    assert all(_is_file(str(path)) for path in paths)


def _is_file(path: str) -> bool:
    return Path(path).is_file()


# ---- 3. one instance per store ------------------------------------------------------------------


async def test_a_second_instance_on_the_same_store_is_refused_naming_the_pid(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    _drop(config.account("main").outbox)
    with instance_lock(config.store_path), pytest.raises(AlreadyRunning) as refused:
        await service.run_once(config)
    assert str(refused.value) == (
        f"another pecgateway is already running on {config.store_path} (pid {os.getpid()}); "
        "stop it first"
    )
    assert isinstance(refused.value, ConfigError)
    assert smtp.received == []  # nothing was done
    assert (await service.run_once(config)).ok  # released: the next one runs
    assert len(smtp.received) == 1


def test_the_lock_is_released_when_its_holder_ends(tmp_path: Path) -> None:
    store_path = tmp_path / "store.sqlite3"
    with instance_lock(store_path):
        assert lock_path(store_path).read_text().strip() == str(os.getpid())
    with instance_lock(store_path):
        pass  # taken again: nothing stale is left behind


def test_a_store_named_through_a_symbolic_link_shares_the_lock_of_the_real_one(
    tmp_path: Path,
) -> None:
    real = tmp_path / "store.sqlite3"
    real.touch()
    alias = tmp_path / "alias.sqlite3"
    alias.symlink_to(real)
    with instance_lock(real), pytest.raises(AlreadyRunning), instance_lock(alias):
        pass


async def test_once_beside_a_running_instance_exits_2_at_once(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    _drop(config.account("main").outbox)
    with instance_lock(config.store_path):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pecgateway",
            "once",
            "--config",
            str(config.source),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _out, err = await process.communicate()
    assert process.returncode == 2
    assert f"another pecgateway is already running on {config.store_path}" in err.decode()
    assert smtp.received == []


# ---- 4. a damaged store -------------------------------------------------------------------------


def _damaged(path: Path) -> None:
    Store(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # the first page after the header: the schema
    path.write_bytes(bytes(data))


def _table_dropped(path: Path) -> None:
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE outgoing_event")
    db.close()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_bytes(b"not sqlite " * 500), "the store is damaged (file is not a"),
        (_damaged, "the store is damaged (database disk image is malformed)"),
        (_table_dropped, "the store is damaged (tables missing: outgoing_event)"),
        (lambda p: p.mkdir(), "is a folder, not a store file"),
    ],
    ids=["not-a-database", "malformed", "table-dropped", "a-folder"],
)
def test_a_store_that_cannot_be_opened_names_the_path_and_what_to_do(
    tmp_path: Path, make: Callable[[Path], None], words: str
) -> None:
    path = tmp_path / "store.sqlite3"
    make(path)
    with pytest.raises(StoreUnusable) as refused:
        Store(path)
    message = str(refused.value)
    assert str(path) in message
    assert words in message
    assert isinstance(refused.value, ConfigError)


def test_a_damaged_store_says_to_restore_the_backup_or_start_anew(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    _damaged(path)
    with pytest.raises(StoreUnusable) as refused:
        Store(path)
    assert "restore it from your backup, or move it aside" in str(refused.value)
    assert "history of sent invoices would be lost" in str(refused.value)


async def test_run_once_on_a_damaged_store_refuses_to_start_and_sends_nothing(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    config.store_path.write_bytes(b"garbage " * 1000)
    _drop(config.account("main").outbox)
    with pytest.raises(StoreUnusable):
        await service.run_once(config)
    assert smtp.received == []
    assert (config.account("main").outbox / NAME).exists()


# ---- 6. interrupted sends, immediate stop -------------------------------------------------------


def _sending(store: Store, account: str, *, deferred: bool = False) -> None:
    item = store.record_outgoing(account, file_name=NAME, sha256="ab" * 32, at=T0)
    store.transition(
        item.id, Event.SENDING, at=T0, source="outbox", message_id="<tok1@pec.example.it>"
    )
    if deferred:
        store.note(item.id, SMTP_DEFERRED, at=T0, source="smtp", detail="421 busy")


async def test_an_interrupted_send_is_logged_at_start_with_when_it_is_resent(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    with Store(config.store_path) as store:
        _sending(store, "main")
    with capture_logs() as logs:
        await service.run_once(config, clock=lambda: T0 + timedelta(hours=1))
    [line] = lines_of(logs, "send_interrupted")
    assert line["file"] == NAME
    assert line["resend_at"] == "2024-05-07T10:00:00+00:00"  # resend_after_s: 24 h
    assert "unless its ACCETTAZIONE arrives" in line["hint"]
    assert smtp.received == []


async def test_a_send_that_surely_failed_is_not_called_interrupted(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    with Store(config.store_path) as store:
        _sending(store, "main", deferred=True)
    with capture_logs() as logs:
        await service.run_once(config, clock=lambda: T0)
    assert lines_of(logs, "send_interrupted") == []


def _outgoing(snapshot: dict[str, object]) -> list[dict[str, Any]]:
    entries = snapshot["outgoing"]
    assert isinstance(entries, list)
    return entries


def test_the_snapshot_says_what_happens_next_to_an_interrupted_send(tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite3") as store:
        _sending(store, "main")
        [timed] = _outgoing(store.snapshot("main", resend_after_s=3600))
        [untimed] = _outgoing(store.snapshot("main"))
    assert timed["state"] == State.SENDING.value
    assert "resent at 2024-05-06T11:00:00+00:00 unless its ACCETTAZIONE" in timed["next_action"]
    assert "resent after resend_after_s" in untimed["next_action"]


def test_the_snapshot_says_a_failed_send_is_tried_again_and_has_no_hint_when_settled(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "store.sqlite3") as store:
        _sending(store, "main", deferred=True)
        [deferred] = _outgoing(store.snapshot("main"))
        item = store.find_outgoing_by_file("main", NAME)
        assert item is not None
        store.transition(item.id, Event.SENT, at=T0, source="smtp", detail="250 ok")
        [sent] = _outgoing(store.snapshot("main"))
    assert "tried again" in deferred["next_action"]
    assert sent["next_action"] is None


def test_the_store_knows_outbounds_smtp_deferred_note() -> None:
    assert SMTP_DEFERRED == outbound.SMTP_DEFERRED


async def test_a_second_signal_logs_service_stopped_immediately(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, quick=True, imap=POLLING)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.ensure_future(service.run(config, stop))
        await _until(lambda: bool(lines_of(logs, "mailbox_connected")), "the service was serving")
        stop.set()  # the first signal
        task.cancel()  # the second: stop at once
        with pytest.raises(asyncio.CancelledError):
            await task
    [line] = lines_of(logs, "service_stopped_immediately")
    assert ".processing/" in line["hint"]
