"""Hostile outbox entries through the real service path (run_once and run, aiosmtpd and Dovecot):
names that are not UTF-8, FIFOs and links, huge and over-long files, unreadable files, a file where
a folder of the outbox belongs. The service never crashes, never blocks, never loops."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from pecgateway import outbox_folders, sample, service, validate
from pecgateway.config import Config
from pecgateway.lifecycle import State
from pecgateway.store import Store
from tests.factory.gateway import Clock, Logs, file_names, lines_of, once_logged, rejection_reason
from tests.factory.smtp_server import SmtpServer

pytestmark = pytest.mark.servers

NAME = sample.file_name()  # IT01234567890_00001.xml
BAD = b"IT01234567890_\xff0091.xml"
SAFE = "IT01234567890__0091.xml"
NOT_UTF8 = (
    "the file name is not valid UTF-8: rename the file using letters, digits and _ only (SDI "
    "accepts only [A-Za-z0-9_.])"
)


async def _once(config: Config) -> tuple[service.PassReport, Logs]:
    # within a timeout: a FIFO opened for reading would block here forever
    return await once_logged(config, Clock(), timeout_s=30)


def _bad_file(folder: Path) -> None:
    (folder / ".t").write_bytes(sample.fpr12())
    os.rename(bytes(folder / ".t"), bytes(folder) + b"/" + BAD)  # noqa: PTH104 -- bytes names


def _stored(store: Store) -> list[tuple[object, object]]:
    """(file, state) of each outgoing invoice in the store."""
    outgoing = store.snapshot("main")["outgoing"]
    assert isinstance(outgoing, list)
    return [(item["file"], item["state"]) for item in outgoing]


def _all_printable(logs: Sequence[MutableMapping[str, Any]]) -> bool:
    """Every logged text encodes as UTF-8 (a surrogate would not)."""
    try:
        for line in logs:
            json.dumps(line, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---- names that are not UTF-8 --------------------------------------------------------------------


async def test_name_not_utf8_is_rejected_under_a_safe_name_and_never_stored(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    _bad_file(outbox_dir)
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    report, logs = await _once(config)
    assert report.ok, report.summary()
    assert len(smtp.received) == 1
    assert file_names(outbox_dir / "rejected") == [
        SAFE,
        f"{SAFE}.reason.json",
        f"{SAFE}.reason.txt",
    ]
    document = rejection_reason(outbox_dir, SAFE)
    assert document["file"] == "IT01234567890_\\xff0091.xml"
    assert document["problems"][0]["message"] == NOT_UTF8
    assert _stored(store) == [(NAME, State.SENT.value)]
    assert _all_printable(logs)


async def test_name_not_utf8_left_in_processing_is_rejected_at_the_next_start(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    (outbox_dir / ".processing").mkdir()
    _bad_file(outbox_dir / ".processing")
    report, logs = await _once(config)
    assert report.ok, report.summary()
    assert smtp.received == []
    assert rejection_reason(outbox_dir, SAFE)["problems"][0]["message"] == NOT_UTF8
    assert _stored(store) == []
    assert file_names(outbox_dir / ".processing") == []
    assert _all_printable(logs)


async def test_name_not_utf8_made_while_running_leaves_the_service_running(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    stop = asyncio.Event()
    with capture_logs(processors=[merge_contextvars]) as logs:
        running = asyncio.ensure_future(service.run(config, stop, notify=lambda _: None))
        await asyncio.sleep(0.5)
        _bad_file(outbox_dir)
        await asyncio.sleep(0.5)
        (outbox_dir / NAME).write_bytes(sample.fpr12())
        async with asyncio.timeout(10):
            await smtp.data_arrived.wait()
        assert not running.done()
        stop.set()
        async with asyncio.timeout(10):
            await running
    assert file_names(outbox_dir / "sent") == [NAME]
    assert rejection_reason(outbox_dir, SAFE)["problems"][0]["message"] == NOT_UTF8
    assert lines_of(logs, "account_loop_failed") == []
    assert _all_printable(logs)


# ---- FIFOs and links -----------------------------------------------------------------------------


async def test_fifo_in_the_outbox_neither_blocks_nor_stops_the_other_files(
    config: Config, smtp: SmtpServer, outbox_dir: Path
) -> None:
    os.mkfifo(outbox_dir / "IT01234567890_00011.xml")
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    report, logs = await _once(config)
    assert report.ok, report.summary()
    assert len(smtp.received) == 1
    assert (outbox_dir / "IT01234567890_00011.xml").is_fifo()
    assert len(lines_of(logs, "outbox_entry_ignored")) == 1


async def test_symlink_to_a_valid_invoice_is_not_sent(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.xml"
    elsewhere.write_bytes(sample.fpr12())
    (outbox_dir / NAME).symlink_to(elsewhere)
    report, _ = await _once(config)
    assert report.ok, report.summary()
    assert smtp.received == []
    assert elsewhere.read_bytes() == sample.fpr12()
    (problem,) = rejection_reason(outbox_dir, NAME)["problems"]
    assert problem["message"] == "symbolic links are not taken: copy the file into the outbox"
    assert _stored(store) == []


@pytest.mark.parametrize("where", [".processing", ".processing/new"])
async def test_symlink_to_dev_zero_swapped_in_after_a_claim_is_rejected_unread(
    config: Config, smtp: SmtpServer, outbox_dir: Path, where: str
) -> None:
    (outbox_dir / where).mkdir(parents=True)
    (outbox_dir / where / NAME).symlink_to("/dev/zero")
    report, _ = await _once(config)
    assert report.ok, report.summary()
    assert (outbox_dir / "rejected" / NAME).is_symlink()
    assert rejection_reason(outbox_dir, NAME)["problems"][0]["code"] == "symlink"


async def test_a_file_over_5_mb_is_rejected_without_being_read_whole(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    with (outbox_dir / NAME).open("wb") as handle:
        handle.truncate(8 * 1024**3)  # sparse
    report, _ = await _once(config)
    assert report.ok, report.summary()
    (problem,) = rejection_reason(outbox_dir, NAME)["problems"]
    assert problem["code"] == "size"
    assert f"at most {validate.MAX_FILE_BYTES} bytes" in problem["message"]
    assert _stored(store) == []


# ---- permission, over-long names, rejections that could not be moved ----------------------------


async def test_a_file_the_service_may_not_read_waits_in_the_outbox_saying_what_to_do(
    config: Config, smtp: SmtpServer, outbox_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    real_open = os.open

    def denied(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(file).endswith(f"/.processing/{NAME}"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    report, logs = await _once(config)
    assert file_names(outbox_dir) == [".processing", NAME]
    assert report.summary() == (
        f"account main: outbox: {NAME}: permission denied: make the file readable by the service "
        "user (pecgateway)"
    )
    (unreadable,) = lines_of(logs, "outbox_file_unreadable")
    assert "internal-error" not in json.dumps(unreadable)
    monkeypatch.undo()
    report, _ = await _once(config)
    assert report.ok, report.summary()
    assert len(smtp.received) == 1


async def test_a_254_byte_name_is_rejected_once_under_a_shorter_name(
    config: Config, smtp: SmtpServer, store: Store, outbox_dir: Path
) -> None:
    name = "IT01234567890_" + "9" * 236 + ".xml"
    (outbox_dir / name).write_bytes(sample.fpr12())
    for _ in range(2):
        report, logs = await _once(config)
        assert report.ok, report.summary()
        assert lines_of(logs, "unit_failed") == []
    (rejected,) = [n for n in file_names(outbox_dir / "rejected") if n.endswith(".xml")]
    assert rejected == outbox_folders.rejected_name(name)
    assert rejection_reason(outbox_dir, rejected)["file"] == name
    assert _stored(store) == [(name, State.REJECTED.value)]
    assert file_names(outbox_dir / ".processing") == ["new"]


async def test_a_rejection_whose_move_failed_is_finished_later_without_a_second_record(
    config: Config,
    smtp: SmtpServer,
    store: Store,
    outbox_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_rename = Path.rename

    def failing(self: Path, target: Any) -> Path:
        if Path(target).parent.name == "rejected":
            raise OSError(errno.EIO, "Input/output error", str(target))
        return real_rename(self, target)

    (outbox_dir / NAME).write_bytes(b"<not an invoice/>")
    monkeypatch.setattr(Path, "rename", failing)
    report, logs = await _once(config)
    assert not report.ok
    assert [line["outcome"] for line in lines_of(logs, "unit_done")] == ["left-claimed"]
    assert file_names(outbox_dir / ".processing") == [NAME, "new"]
    monkeypatch.undo()
    report, _ = await _once(config)
    assert report.ok, report.summary()
    assert (outbox_dir / "rejected" / NAME).read_bytes() == b"<not an invoice/>"
    assert rejection_reason(outbox_dir, NAME)["problems"][0]["code"] == "not-well-formed"
    assert _stored(store) == [(NAME, State.REJECTED.value)]


@pytest.mark.parametrize("folder", ["rejected", "sent", ".processing"])
async def test_a_file_where_an_outbox_folder_belongs_leaves_no_invoice_claimed(
    config: Config, smtp: SmtpServer, outbox_dir: Path, folder: str
) -> None:
    (outbox_dir / folder).write_bytes(b"oops")
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    report, _ = await _once(config)
    assert f"the outbox needs a folder named {folder}: move the file named {folder} away" in (
        report.summary()
    )
    assert (outbox_dir / NAME).exists()
    assert smtp.received == []
    (outbox_dir / folder).unlink()
    report, _ = await _once(config)
    assert report.ok, report.summary()
    assert len(smtp.received) == 1


@pytest.mark.parametrize("folder", ["rejected", "sent", ".processing"])
async def test_a_symlink_where_an_outbox_folder_belongs_leaves_no_invoice_claimed(
    config: Config, smtp: SmtpServer, outbox_dir: Path, folder: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (outbox_dir / folder).symlink_to(elsewhere, target_is_directory=True)
    (outbox_dir / NAME).write_bytes(sample.fpr12())
    report, _ = await _once(config)
    assert f"the outbox needs a real folder named {folder}, not a symbolic link" in (
        report.summary()
    )
    assert (outbox_dir / NAME).exists()
    assert smtp.received == []
    assert list(elsewhere.iterdir()) == []
    (outbox_dir / folder).unlink()
    report, _ = await _once(config)
    assert report.ok, report.summary()
    assert len(smtp.received) == 1
