"""Hostile outbox entries on real temporary folders: names that are not UTF-8, FIFOs, links, huge
and over-long names, unreadable files, and files named like the outbox's own folders."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pecgateway import outbox, outbox_folders

NAME = "IT01234567890_00011.xml"
BAD = b"IT01234567890_\xff0091.xml"  # not UTF-8
SHOWN = "IT01234567890_\\xff0091.xml"  # how people are shown it
SAFE = "IT01234567890__0091.xml"  # its name in rejected/
MAX = 1000


def _bad_path(folder: Path) -> Path:
    """Creates the file with a name that is not UTF-8 as other software would (a rename)."""
    (folder / ".t").write_bytes(b"<x/>")
    os.rename(bytes(folder / ".t"), bytes(folder) + b"/" + BAD)  # noqa: PTH104 -- bytes names
    return folder / os.fsdecode(BAD)


def _reason(folder: Path, name: str) -> dict[str, Any]:
    document = json.loads((folder / "rejected" / f"{name}.reason.json").read_bytes())
    assert isinstance(document, dict)
    return document


def _events(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def _first(iterator: AsyncIterator[Path]) -> Path:
    async with asyncio.timeout(5):
        return await anext(iterator)


async def _collect(iterator: AsyncIterator[Path]) -> list[Path]:
    async with asyncio.timeout(5):
        return [path async for path in iterator]


# ---- names that are not UTF-8 --------------------------------------------------------------------


async def test_name_not_utf8_the_watcher_survives_and_goes_on_watching(tmp_path: Path) -> None:
    stop = asyncio.Event()
    iterator = outbox.watch(tmp_path, stop, stable_for_s=0.05, rescan_interval_s=3600)
    with capture_logs() as logs:
        waiting = asyncio.ensure_future(_first(iterator))
        await asyncio.sleep(0.3)
        bad = _bad_path(tmp_path)  # watchfiles cannot decode it: a rescan stands in
        assert await waiting == bad
        (tmp_path / NAME).write_bytes(b"<x/>")  # seen by the new watcher
        assert await _first(iterator) == tmp_path / NAME
    stop.set()
    await iterator.aclose()
    (failed,) = _events(logs, "outbox_watch_failed")
    assert "decode" in failed["reason"]


def test_name_not_utf8_is_refused_to_rejected_under_a_safe_name(tmp_path: Path) -> None:
    bad = _bad_path(tmp_path)
    with capture_logs() as logs:
        assert outbox.claim(bad) is None
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        SAFE,
        f"{SAFE}.reason.json",
        f"{SAFE}.reason.txt",
    ]
    document = _reason(tmp_path, SAFE)
    assert document["file"] == SHOWN
    assert document["problems"][0]["message"] == (
        "the file name is not valid UTF-8: rename the file using letters, digits and _ only (SDI "
        "accepts only [A-Za-z0-9_.])"
    )
    text = (tmp_path / "rejected" / f"{SAFE}.reason.txt").read_text("utf-8")
    assert f"Dropped into the outbox as: {SHOWN}" in text
    (refused,) = _events(logs, "outbox_file_refused")
    assert refused["file"] == SHOWN
    assert refused["file"].isprintable()


def test_name_not_utf8_left_in_processing_by_a_crash_is_refused_not_resumed(
    tmp_path: Path,
) -> None:
    processing = tmp_path / ".processing"
    processing.mkdir()
    _bad_path(processing)
    assert outbox.claimed(tmp_path) == []
    assert _reason(tmp_path, SAFE)["file"] == SHOWN
    assert list(processing.iterdir()) == []


def test_name_not_utf8_is_never_read(tmp_path: Path) -> None:
    with pytest.raises(outbox.Refused) as refused:
        outbox.read(_bad_path(tmp_path), max_bytes=MAX)
    assert refused.value.refusal == outbox.NAME_NOT_UTF8
    assert not refused.value.later


@pytest.mark.parametrize(
    ("name", "shown"),
    [("a\udcffb", "a\\xffb"), ("a\ud800b", "a\\ud800b"), ("fattura è.xml", "fattura è.xml")],
)
def test_display_name_is_always_printable_utf8(name: str, shown: str) -> None:
    assert outbox.display_name(name) == shown
    shown.encode("utf-8")


# ---- FIFOs, sockets, devices and links -----------------------------------------------------------


async def test_fifo_is_ignored_never_opened_and_logged_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / NAME)
    (tmp_path / "IT01234567890_00012.xml").write_bytes(b"<x/>")
    with capture_logs() as logs:
        found = await _collect(
            outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True)
        )
        assert outbox.claim(tmp_path / NAME) is None
        assert outbox.claim(tmp_path / NAME) is None
    assert [p.name for p in found] == ["IT01234567890_00012.xml"]
    assert (tmp_path / NAME).is_fifo()
    (ignored,) = _events(logs, "outbox_entry_ignored")
    assert ignored["file"] == NAME


def _swapped_in(folder: Path, make: Callable[[Path], None]) -> Path:
    """A claimed file replaced by something else after the checks."""
    folder.mkdir(parents=True, exist_ok=True)
    make(folder / NAME)
    return folder / NAME


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (os.mkfifo, outbox.NOT_A_FILE),
        (lambda p: p.symlink_to("/dev/zero"), outbox.SYMLINK),
        (lambda p: p.symlink_to("/dev/null"), outbox.SYMLINK),
    ],
    ids=["fifo", "symlink-to-dev-zero", "symlink-to-dev-null"],
)
def test_not_a_regular_file_swapped_in_after_the_checks_is_refused_without_blocking_or_reading(
    tmp_path: Path, make: Callable[[Path], None], refusal: outbox.Refusal
) -> None:
    path = _swapped_in(tmp_path / ".processing", make)
    with pytest.raises(outbox.Refused) as refused:
        outbox.read(path, max_bytes=MAX)
    assert refused.value.refusal == refusal


def test_symlink_in_the_outbox_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / NAME).write_bytes(b"<valid/>")
    box = tmp_path / "outbox"
    box.mkdir()
    (box / NAME).symlink_to(elsewhere / NAME)
    assert outbox.claim(box / NAME) is None
    assert (elsewhere / NAME).read_bytes() == b"<valid/>"
    assert (box / "rejected" / NAME).is_symlink()
    (problem,) = _reason(box, NAME)["problems"]
    assert problem["message"] == "symbolic links are not taken: copy the file into the outbox"


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: p.symlink_to("/dev/zero")])
def test_not_a_regular_file_left_in_processing_is_refused_not_resumed(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    _swapped_in(tmp_path / ".processing" / "new", make)
    assert outbox.claimed(tmp_path) == []
    assert (tmp_path / "rejected" / f"{NAME}.reason.txt").exists()


# ---- size, permission --------------------------------------------------------------------------


def test_a_file_over_the_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / NAME
    with path.open("wb") as handle:
        handle.truncate(64 * 1024**3)  # sparse: reading it whole would take 64 GiB
    with pytest.raises(outbox.Refused) as refused:
        outbox.read(path, max_bytes=5 * 1024 * 1024)
    assert refused.value.refusal.code == "size"
    assert "68719476736 bytes" in refused.value.refusal.message


def test_a_file_at_the_limit_is_read(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"x" * MAX)
    data, seen = outbox.read(tmp_path / NAME, max_bytes=MAX)
    assert len(data) == MAX
    assert seen == outbox.signature(tmp_path / NAME)


def test_a_file_the_service_may_not_read_is_refused_for_later_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"<x/>")
    real_open = os.open

    def denied(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(outbox.Refused) as refused:
        outbox.read(path, max_bytes=MAX)
    assert refused.value.later
    assert refused.value.refusal.message == (
        "permission denied: make the file readable by the service user (pecgateway)"
    )


# ---- over-long names, reasons that cannot be written, files named like our folders -------------


def test_a_name_too_long_for_its_reason_files_is_rejected_under_a_shorter_name(
    tmp_path: Path,
) -> None:
    name = "IT01234567890_" + "9" * 236 + ".xml"  # 254 bytes: <name>.reason.json is over NAME_MAX
    (tmp_path / name).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / name)
    assert taken is not None
    target = outbox.reject(taken, (outbox.NOT_A_FILE,))
    assert len(target.name.encode()) <= 200
    assert target.name.endswith(".xml")
    assert target.read_bytes() == b"<x/>"
    assert json.loads(target.with_name(target.name + ".reason.json").read_bytes())["file"] == name
    again = outbox.claim(_written(tmp_path / name))
    assert again is not None
    second = outbox.reject(again, (outbox.NOT_A_FILE,))
    assert second.name == outbox_folders.rejected_name(name).replace(".xml", " (2).xml")


def _written(path: Path) -> Path:
    path.write_bytes(b"<y/>")
    return path


def test_a_rejected_file_is_moved_even_when_its_reasons_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(outbox_folders, "_write_atomic", full)
    (tmp_path / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    with capture_logs() as logs:
        target = outbox.reject(taken, (outbox.NOT_A_FILE,))
    assert target == tmp_path / "rejected" / NAME
    assert target.read_bytes() == b"<x/>"
    assert len(_events(logs, "rejection_reason_not_written")) == 2


@pytest.mark.parametrize("folder", ["rejected", "sent", ".processing"])
def test_a_file_named_like_an_outbox_folder_stops_claims_saying_what_to_do(
    tmp_path: Path, folder: str
) -> None:
    (tmp_path / folder).write_bytes(b"oops")
    (tmp_path / NAME).write_bytes(b"<x/>")
    with pytest.raises(NotADirectoryError) as raised:
        outbox.claim(tmp_path / NAME)
    assert raised.value.strerror == (
        f"the outbox needs a folder named {folder}: move the file named {folder} away"
    )
    assert (tmp_path / NAME).read_bytes() == b"<x/>"
    assert not (tmp_path / ".processing").is_dir()


def test_a_redrop_waiting_for_its_name_is_logged_once(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"first")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    outbox.begin(taken)
    (tmp_path / NAME).write_bytes(b"second")
    with capture_logs() as logs:
        assert outbox.claim(tmp_path / NAME) is None
        assert outbox.claim(tmp_path / NAME) is None
    (waiting,) = _events(logs, "outbox_file_waiting")
    assert waiting["file"] == NAME
    assert "still being handled" in waiting["hint"]


@pytest.mark.parametrize("folder", ["rejected", "sent", ".processing", ".processing/new"])
def test_a_symlink_where_an_outbox_folder_belongs_stops_claims_saying_what_to_do(
    tmp_path: Path, folder: str
) -> None:
    outbox_dir, elsewhere = tmp_path / "outbox", tmp_path / "elsewhere"
    outbox_dir.mkdir()
    elsewhere.mkdir()
    (outbox_dir / folder).parent.mkdir(parents=True, exist_ok=True)
    (outbox_dir / folder).symlink_to(elsewhere, target_is_directory=True)
    (outbox_dir / NAME).write_bytes(b"<x/>")
    with pytest.raises(NotADirectoryError) as raised:
        outbox.claim(outbox_dir / NAME)
    assert raised.value.strerror == (
        f"the outbox needs a real folder named {folder}, not a symbolic link: remove the link "
        f"{folder} (pecgateway makes the folder itself)"
    )
    assert (outbox_dir / NAME).read_bytes() == b"<x/>"
    assert list(elsewhere.iterdir()) == []


def _file_sent(path: Path) -> object:
    return outbox.done(path)


def _file_rejected(path: Path) -> object:
    return outbox.reject(path, (outbox.NOT_A_FILE,))


@pytest.mark.parametrize(("folder", "move"), [("rejected", _file_rejected), ("sent", _file_sent)])
def test_a_symlink_swapped_in_after_the_claim_is_never_written_through(
    tmp_path: Path, folder: str, move: Callable[[Path], object]
) -> None:
    outbox_dir, elsewhere = tmp_path / "outbox", tmp_path / "elsewhere"
    outbox_dir.mkdir()
    elsewhere.mkdir()
    (outbox_dir / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(outbox_dir / NAME)
    assert taken is not None
    (outbox_dir / folder).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(NotADirectoryError, match="not a symbolic link"):
        move(taken)
    assert list(elsewhere.iterdir()) == []
    assert taken.read_bytes() == b"<x/>"
