"""The outbox folder on real temporary folders: stability, ignored names, claim, sent, rejected."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pecgateway import outbox, sink

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
    "name",
    [
        "draft.tmp",
        "IT01_1.XML.TMP",
        "~lock.xml",
        ".hidden.xml",
        "upload.part",
        "backup~",
        "Thumbs.db",
        "desktop.ini",
        "Desktop.INI",
        ".DS_Store",
    ],
)
async def test_temporary_hidden_and_desktop_junk_names_are_ignored(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_bytes(b"data")
    found = await _collect(outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True))
    assert found == []


async def test_directories_and_own_subfolders_are_ignored(tmp_path: Path) -> None:
    for folder in ("rejected", "sent", ".processing", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / NAME).write_bytes(b"x")
    found = await _collect(outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True))
    assert found == []


async def test_a_folder_created_while_watching_is_never_yielded(tmp_path: Path) -> None:
    stop = asyncio.Event()
    iterator = outbox.watch(tmp_path, stop, stable_for_s=0.05, rescan_interval_s=0.2)
    waiting = asyncio.ensure_future(_first(iterator))
    await asyncio.sleep(0.3)
    (tmp_path / "archivio").mkdir()
    (tmp_path / "archivio" / NAME).write_bytes(b"<x/>")
    await asyncio.sleep(0.6)  # several rescans and inotify events for the folder
    (tmp_path / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / NAME).write_bytes(b"<x/>")
    assert (await waiting).name == NAME
    stop.set()
    await iterator.aclose()
    assert (tmp_path / "archivio" / NAME).exists()


def test_a_folder_is_never_claimed_and_a_symlink_is_refused_not_claimed(tmp_path: Path) -> None:
    (tmp_path / "archivio").mkdir()
    (tmp_path / "target.xml").write_bytes(b"<x/>")
    (tmp_path / NAME).symlink_to(tmp_path / "target.xml")
    assert outbox.claim(tmp_path / "archivio") is None
    assert outbox.claim(tmp_path / NAME) is None
    assert (tmp_path / "archivio").is_dir()
    assert outbox.claimed(tmp_path) == []
    assert (tmp_path / "rejected" / NAME).is_symlink()
    assert (tmp_path / "target.xml").read_bytes() == b"<x/>"


async def test_a_file_put_back_changed_is_yielded_again_once_it_settles(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<a>")
    iterator = outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True)
    assert (await _first(iterator)).name == NAME
    begun = _begun(tmp_path)
    with begun.open("ab") as handle:  # the writer was still at work
        handle.write(b"</a>")
    outbox.release(begun)
    assert (await _first(iterator)).name == NAME
    assert (tmp_path / NAME).read_bytes() == b"<a></a>"


async def test_a_file_yielded_and_left_unchanged_is_not_yielded_again_in_once(
    tmp_path: Path,
) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    found = await _collect(outbox.watch(tmp_path, asyncio.Event(), stable_for_s=0.05, once=True))
    assert found == [tmp_path / NAME]


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


def test_claim_moves_the_file_into_processing_new(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken == tmp_path / ".processing" / "new" / NAME
    assert taken.read_bytes() == b"<x/>"
    assert not (tmp_path / NAME).exists()
    assert outbox.claimed(tmp_path) == [taken]


def test_claim_of_a_vanished_file_returns_none(tmp_path: Path) -> None:
    assert outbox.claim(tmp_path / NAME) is None


def test_claim_leaves_a_file_whose_name_is_still_being_processed(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"first")
    first = _begun(tmp_path)
    (tmp_path / NAME).write_bytes(b"second")
    assert outbox.claim(tmp_path / NAME) is None
    assert (tmp_path / NAME).read_bytes() == b"second"
    assert first.read_bytes() == b"first"


def _begun(outbox_dir: Path, name: str = NAME) -> Path:
    """Claims ``name`` and begins its unit: the file in .processing/."""
    taken = outbox.claim(outbox_dir / name)
    assert taken is not None
    started = outbox.begin(taken)
    assert started is not None
    return started[0]


def test_begin_says_a_file_claimed_from_the_outbox_is_new(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    assert outbox.begin(taken) == (tmp_path / ".processing" / NAME, True)
    assert outbox.claimed(tmp_path) == [tmp_path / ".processing" / NAME]


def test_begin_says_a_file_left_in_processing_is_an_unfinished_unit(tmp_path: Path) -> None:
    left = _begun_then_crashed(tmp_path)
    assert outbox.claimed(tmp_path) == [left]
    assert outbox.begin(left) == (left, False)


def _begun_then_crashed(outbox_dir: Path) -> Path:
    (outbox_dir / NAME).write_bytes(b"<x/>")
    return _begun(outbox_dir)


def test_a_file_claimed_but_never_begun_is_still_new_after_a_crash(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / NAME)
    assert outbox.claimed(tmp_path) == [taken]  # what a restart resumes
    assert taken is not None
    started = outbox.begin(taken)
    assert started is not None
    assert started[1] is True


def test_begin_of_a_file_another_unit_took_returns_none(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    assert outbox.begin(taken) is not None
    assert outbox.begin(taken) is None


def test_release_puts_a_claimed_file_back_into_the_outbox(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<half")
    begun = _begun(tmp_path)
    assert outbox.release(begun) == tmp_path / NAME
    assert (tmp_path / NAME).read_bytes() == b"<half"
    assert outbox.claimed(tmp_path) == []


def test_release_never_overwrites_a_new_file_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"old")
    begun = _begun(tmp_path)
    (tmp_path / NAME).write_bytes(b"new")
    assert outbox.release(begun) == begun
    assert (tmp_path / NAME).read_bytes() == b"new"
    assert begun.read_bytes() == b"old"


def test_signature_changes_when_the_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"<a>")
    before = outbox.signature(path)
    with path.open("ab") as handle:
        handle.write(b"</a>")
    after = outbox.signature(path)
    assert before is not None
    assert after is not None
    assert (after.size, after.inode) == (before.size + 4, before.inode)


def test_signature_of_a_folder_or_a_symlink_is_none(tmp_path: Path) -> None:
    (tmp_path / "archivio").mkdir()
    (tmp_path / NAME).write_bytes(b"<x/>")
    (tmp_path / "link.xml").symlink_to(tmp_path / NAME)
    assert outbox.signature(tmp_path / "archivio") is None
    assert outbox.signature(tmp_path / "link.xml") is None
    assert outbox.signature(tmp_path / "gone.xml") is None


def test_done_moves_to_sent_without_overwriting_named_as_in_the_inbox(tmp_path: Path) -> None:
    for content in (b"one", b"two", b"three"):
        (tmp_path / NAME).write_bytes(content)
        outbox.done(_begun(tmp_path))
    sent = tmp_path / "sent"
    assert (sent / NAME).read_bytes() == b"one"
    assert (sent / "IT01234567890_00001 (2).xml").read_bytes() == b"two"
    assert (sent / "IT01234567890_00001 (3).xml").read_bytes() == b"three"
    assert outbox.claimed(tmp_path) == []


def test_clash_names_keep_every_extension_after_the_number(tmp_path: Path) -> None:
    name = "IT01234567890_00001.xml.p7m"
    for _ in range(2):
        (tmp_path / name).write_bytes(b"p7m")
        outbox.done(_begun(tmp_path, name))
    assert sorted(p.name for p in (tmp_path / "sent").iterdir()) == [
        "IT01234567890_00001 (2).xml.p7m",
        "IT01234567890_00001.xml.p7m",
    ]


def test_reject_writes_readable_reasons_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<bad/>")
    taken = _begun(tmp_path)
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


def test_reject_as_already_sent_does_not_also_say_to_fix_the_file(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<same/>")
    hint = "nothing to do if this is the same invoice; a corrected invoice is a new file"
    problems = [
        _Problem("duplicate", f"{NAME}: these very bytes were already sent", None, None, hint)
    ]
    outbox.reject(_begun(tmp_path), problems)
    text = (tmp_path / "rejected" / (NAME + ".reason.txt")).read_text(encoding="utf-8")
    assert f"Fix: {hint}" in text
    assert "Nothing was sent again: do what the Fix line above says." in text
    assert "drop it into the outbox again" not in text


def test_reject_for_other_problems_says_to_fix_the_file_and_drop_it_again(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<bad/>")
    outbox.reject(_begun(tmp_path), [_Problem("schema", "bad", 1, 1, "fix the element")])
    text = (tmp_path / "rejected" / (NAME + ".reason.txt")).read_text(encoding="utf-8")
    assert "Fix the file and drop it into the outbox again" in text


def test_reject_of_a_file_claimed_but_not_begun_goes_to_rejected(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<bad/>")
    taken = outbox.claim(tmp_path / NAME)
    assert taken is not None
    assert outbox.reject(taken, []) == tmp_path / "rejected" / NAME


def _claimed_and_begun(outbox_dir: Path) -> Path:
    """The path a file was claimed as, after its unit began (it moved to .processing/)."""
    (outbox_dir / NAME).write_bytes(b"<x/>")
    taken = outbox.claim(outbox_dir / NAME)
    assert taken is not None
    assert outbox.begin(taken) is not None
    return taken


def test_reject_finds_a_begun_file_by_the_path_it_was_claimed_as(tmp_path: Path) -> None:
    assert outbox.reject(_claimed_and_begun(tmp_path), []) == tmp_path / "rejected" / NAME
    assert outbox.claimed(tmp_path) == []


def test_done_finds_a_begun_file_by_the_path_it_was_claimed_as(tmp_path: Path) -> None:
    assert outbox.done(_claimed_and_begun(tmp_path)) == tmp_path / "sent" / NAME
    assert outbox.claimed(tmp_path) == []


def test_reject_of_a_second_file_with_the_same_name_gets_a_number(tmp_path: Path) -> None:
    for _ in range(2):
        (tmp_path / NAME).write_bytes(b"<bad/>")
        outbox.reject(_begun(tmp_path), [_Problem("x", "y", None, None, "z")])
    names = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert names == [
        "IT01234567890_00001 (2).xml",
        "IT01234567890_00001 (2).xml.reason.json",
        "IT01234567890_00001 (2).xml.reason.txt",
        "IT01234567890_00001.xml",
        "IT01234567890_00001.xml.reason.json",
        "IT01234567890_00001.xml.reason.txt",
    ]


@pytest.mark.parametrize(
    "name", ["notes.txt", "IT01234567890_00001.xml.p7m", "fattura.v2.xml", "senza-estensione"]
)
def test_rejected_clashes_are_named_as_the_inbox_names_them(tmp_path: Path, name: str) -> None:
    for _ in range(3):
        (tmp_path / name).write_bytes(b"x")
        outbox.reject(_begun(tmp_path, name), [_Problem("x", "y", None, None, "z")])
    files = {p.name for p in (tmp_path / "rejected").iterdir()}
    assert {name, sink.numbered(name, 2), sink.numbered(name, 3)} <= files
    assert sink.numbered(name, 3) + ".reason.txt" in files


def _reject_at(outbox_dir: Path, when: dt.datetime, name: str = NAME) -> None:
    (outbox_dir / name).write_bytes(b"<bad/>")
    outbox.reject(_begun(outbox_dir, name), [_Problem("x", "y", None, None, "z")], now=when)


def test_sending_a_name_renames_its_earlier_rejections_as_history(tmp_path: Path) -> None:
    _reject_at(tmp_path, dt.datetime(2024, 5, 6, 10, 0, 0, tzinfo=dt.UTC))
    _reject_at(tmp_path, dt.datetime(2024, 5, 6, 11, 30, 5, tzinfo=dt.UTC))
    (tmp_path / NAME).write_bytes(b"<good/>")
    outbox.done(_begun(tmp_path))
    names = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    first, second = (
        "IT01234567890_00001 (rejected 20240506T100000Z).xml",
        ("IT01234567890_00001 (rejected 20240506T113005Z).xml"),
    )
    assert names == sorted(
        n + s for n in (first, second) for s in ("", ".reason.json", ".reason.txt")
    )
    assert (tmp_path / "rejected" / first).read_bytes() == b"<bad/>"
    assert (tmp_path / "sent" / NAME).read_bytes() == b"<good/>"


def test_rejections_of_other_names_are_left_alone_when_a_file_is_sent(tmp_path: Path) -> None:
    other = "IT01234567890_00002.xml"
    _reject_at(tmp_path, dt.datetime(2024, 5, 6, tzinfo=dt.UTC), other)
    (tmp_path / NAME).write_bytes(b"<good/>")
    outbox.done(_begun(tmp_path))
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        other,
        other + ".reason.json",
        other + ".reason.txt",
    ]


def test_a_signed_copy_sent_retires_the_rejection_of_the_plain_name(tmp_path: Path) -> None:
    _reject_at(tmp_path, dt.datetime(2024, 5, 6, tzinfo=dt.UTC))
    signed = "IT01234567890_00001.xml.p7m"
    (tmp_path / signed).write_bytes(b"p7m")
    outbox.done(_begun(tmp_path, signed))
    assert not (tmp_path / "rejected" / (NAME + ".reason.txt")).exists()
    assert (tmp_path / "rejected" / "IT01234567890_00001 (rejected 20240506T000000Z).xml").exists()


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"<bad/>")
    outbox.reject(_begun(tmp_path), [])
    assert not [p for p in (tmp_path / "rejected").iterdir() if p.name.endswith(".tmp")]
