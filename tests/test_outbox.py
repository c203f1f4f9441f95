"""The outbox folder on real temporary folders: stability, ignored names, claim, sent, rejected."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pecgateway import outbox

NAME = "IT01234567890_00001.xml"


@dataclass(frozen=True)
class _Problem:
    code: str
    message: str
    line: int | None
    column: int | None
    hint: str


async def _first(iterator: AsyncIterator[Path], timeout_s: float = 5.0) -> Path:
    async with asyncio.timeout(timeout_s):
        return await anext(iterator)


async def _collect(iterator: AsyncIterator[Path]) -> list[Path]:
    async with asyncio.timeout(5):
        return [path async for path in iterator]


async def test_once_yields_the_files_present_and_ends(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    (tmp_path / "IT01234567890_00002.xml.p7m").write_bytes(b"p7m")
    found = await _collect(outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True))
    assert [p.name for p in found] == ["IT01234567890_00001.xml", "IT01234567890_00002.xml.p7m"]


@pytest.mark.parametrize(
    "name", ["draft.tmp", "IT01_1.XML.TMP", "~lock.xml", ".hidden.xml", "upload.part", "backup~"]
)
async def test_temporary_and_hidden_names_are_ignored(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"data")
    found = await _collect(outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True))
    assert found == []


async def test_directories_and_own_subfolders_are_ignored(tmp_path: Path) -> None:
    for folder in ("rejected", "sent", ".processing", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / NAME).write_bytes(b"x")
    found = await _collect(outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True))
    assert found == []


async def test_a_growing_file_is_yielded_only_once_it_holds_still(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"<a>")
    iterator = outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.6, once=True)
    first = asyncio.ensure_future(anext(iterator))
    for chunk in range(4):
        await asyncio.sleep(0.2)
        assert not first.done(), "the file was yielded while it was still being written"
        with path.open("ab") as handle:
            handle.write(b"<b%d/>" % chunk)
    async with asyncio.timeout(5):
        assert await first == path
    assert path.read_bytes().endswith(b"<b3/>")


async def test_watch_reports_a_new_file_through_inotify(tmp_path: Path) -> None:
    stop = asyncio.Event()
    iterator = outbox.watch(tmp_path, stop, stable_for_s=0.05, rescan_interval_s=3600)
    waiting = asyncio.ensure_future(_first(iterator))
    await asyncio.sleep(0.3)
    tmp = tmp_path / (NAME + ".tmp")
    tmp.write_bytes(b"<x/>")
    tmp.rename(tmp_path / NAME)
    assert (await waiting).name == NAME
    stop.set()
    await iterator.aclose()


async def test_watch_finds_files_already_there_at_start(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    iterator = outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, rescan_interval_s=3600)
    assert (await _first(iterator)).name == NAME
    await iterator.aclose()


async def test_rescan_finds_a_file_that_was_yielded_but_not_claimed(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    iterator = outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, rescan_interval_s=0.3)
    assert (await _first(iterator)).name == NAME
    assert (await _first(iterator)).name == NAME
    await iterator.aclose()


async def test_watch_ends_when_stop_is_set(tmp_path: Path) -> None:
    stop = asyncio.Event()
    iterator = outbox.watch(tmp_path, stop, stable_for_s=0.05)
    waiting = asyncio.ensure_future(_collect(iterator))
    await asyncio.sleep(0.1)
    stop.set()
    assert await waiting == []


def test_claim_moves_the_file_into_processing(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken == tmp_path / ".processing" / NAME
    assert taken.read_bytes() == b"<x/>"
    assert not (tmp_path / NAME).exists()
    assert outbox.claimed(tmp_path) == [taken]


def test_claim_of_a_vanished_file_returns_none(tmp_path: Path) -> None:
    assert outbox.claim(tmp_path / NAME) is None


def test_claim_leaves_a_file_whose_name_is_still_being_processed(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"first")
    outbox.claim(tmp_path / NAME)
    (tmp_path / NAME).write_bytes(b"second")
    assert outbox.claim(tmp_path / NAME) is None
    assert (tmp_path / NAME).read_bytes() == b"second"
    assert (tmp_path / ".processing" / NAME).read_bytes() == b"first"


def test_done_moves_to_sent_without_overwriting(tmp_path: Path) -> None:
    for content in (b"one", b"two"):
        (tmp_path / NAME).write_bytes(content)
        taken = outbox.claim(tmp_path / NAME)
        assert taken is not None
        outbox.done(taken)
    assert (tmp_path / "sent" / NAME).read_bytes() == b"one"
    assert (tmp_path / "sent" / "IT01234567890_00001-2.xml").read_bytes() == b"two"
    assert outbox.claimed(tmp_path) == []


def test_reject_writes_readable_reasons_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<bad/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    problems = [
        _Problem("schema", "element 'Foo' not expected", 12, 7, "remove 'Foo'"),
        _Problem("filename", "the name is not an SDI name", None, None, "rename the file"),
    ]
    target = outbox.reject(taken, problems)
    assert target == tmp_path / "rejected" / NAME
    assert target.read_bytes() == b"<bad/>"
    text = (tmp_path / "rejected" / (NAME + ".reason.txt")).read_text(encoding="utf-8")
    assert "line 12, column 7" in text
    assert "Fix: remove 'Foo'" in text
    assert "rename the file" in text
    document = json.loads((tmp_path / "rejected" / (NAME + ".reason.json")).read_bytes())
    assert document["file"] == NAME
    assert document["problems"][0] == {
        "code": "schema",
        "message": "element 'Foo' not expected",
        "line": 12,
        "column": 7,
        "hint": "remove 'Foo'",
    }
    assert document["problems"][1]["line"] is None


def test_reject_of_a_second_file_with_the_same_name_gets_a_suffix(tmp_path: Path) -> None:
    for _ in range(2):
        (tmp_path / NAME).write_bytes(b"<bad/>")
        taken = outbox.claim(tmp_path / NAME)
        assert taken is not None
        outbox.reject(taken, [_Problem("x", "y", None, None, "z")])
    names = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert names == [
        "IT01234567890_00001-2.xml",
        "IT01234567890_00001-2.xml.reason.json",
        "IT01234567890_00001-2.xml.reason.txt",
        "IT01234567890_00001.xml",
        "IT01234567890_00001.xml.reason.json",
        "IT01234567890_00001.xml.reason.txt",
    ]


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<bad/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    outbox.reject(taken, [])
    assert not [p for p in (tmp_path / "rejected").iterdir() if p.name.endswith(".tmp")]
