"""The inbox folder: layout by kind and month, safe names, atomic never-overwriting writes."""

from __future__ import annotations

import json
import os
import string
from datetime import date
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pecgateway.sink import (
    FOLDERS,
    TEMPORARY_PREFIX,
    Kind,
    Language,
    clean_temporary,
    free_number,
    number_of,
    numbered,
    route,
    safe_name,
    write,
    write_json_sidecar,
    write_sidecar,
)

DAY = date(2026, 12, 3)


@pytest.mark.parametrize(
    ("kind", "language", "expected"),
    [
        (Kind.RECEIVED_INVOICE, Language.IT, "fatture-ricevute/2026/12/IT01_a.xml.p7m"),
        (Kind.SDI_NOTIFICATION, Language.IT, "notifiche-sdi/2026/12/IT01_a.xml.p7m"),
        (Kind.PEC_RECEIPT, Language.IT, "ricevute-pec/2026/12/IT01_a.xml.p7m"),
        (Kind.QUARANTINE, Language.IT, "quarantena/2026/12/IT01_a.xml.p7m"),
        (Kind.SENT, Language.IT, "inviate/2026/12/IT01_a.xml.p7m"),
        (Kind.RECEIVED_INVOICE, Language.EN, "received-invoices/2026/12/IT01_a.xml.p7m"),
        (Kind.SDI_NOTIFICATION, Language.EN, "sdi-notifications/2026/12/IT01_a.xml.p7m"),
        (Kind.PEC_RECEIPT, Language.EN, "pec-receipts/2026/12/IT01_a.xml.p7m"),
        (Kind.QUARANTINE, Language.EN, "quarantine/2026/12/IT01_a.xml.p7m"),
        (Kind.SENT, Language.EN, "sent/2026/12/IT01_a.xml.p7m"),
    ],
)
def test_route_is_kind_then_year_then_month(kind: Kind, language: Language, expected: str) -> None:
    assert route(kind, "IT01_a.xml.p7m", DAY, language) == PurePosixPath(expected)


def test_every_kind_has_a_distinct_folder_in_each_language() -> None:
    for language in Language:
        assert set(FOLDERS[language]) == set(Kind)
        assert len(set(FOLDERS[language].values())) == len(Kind)


@given(
    st.sampled_from(Kind),
    st.text(max_size=300),
    st.dates(min_value=date(1, 1, 1)),
    st.sampled_from(Language),
)
def test_route_always_stays_inside_its_kind_folder(
    kind: Kind, name: str, day: date, language: Language
) -> None:
    path = route(kind, name, day, language)
    assert not path.is_absolute()
    assert path.parts[0] == FOLDERS[language][kind]
    assert path.parts[1:3] == (f"{day.year:04d}", f"{day.month:02d}")
    assert len(path.parts) == 4
    assert ".." not in path.parts
    assert not path.name.startswith(".")
    assert path.name == safe_name(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\temp\\IT01_a.xml", "IT01_a.xml"),
        (".hidden.xml", "hidden.xml"),
        ("", "unnamed"),
        ("...", "unnamed"),
        ("a\x00b\nc.xml", "a_b_c.xml"),
        ("IT01234567890_00001.xml.p7m", "IT01234567890_00001.xml.p7m"),
    ],
)
def test_safe_name_keeps_only_a_harmless_basename(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_safe_name_cuts_long_names_keeping_the_extensions() -> None:
    name = safe_name("x" * 500 + ".xml.p7m")
    assert len(name) == 200
    assert name.endswith(".xml.p7m")


def test_write_creates_folders_and_keeps_bytes_exact(tmp_path: Path) -> None:
    data = bytes(range(256)) * 3
    written = write(tmp_path, PurePosixPath("fatture-ricevute/2026/12/IT01_a.xml.p7m"), data)
    assert written == tmp_path / "fatture-ricevute/2026/12/IT01_a.xml.p7m"
    assert written.read_bytes() == data


def test_write_never_overwrites_a_clash_gets_a_counter_before_the_extensions(
    tmp_path: Path,
) -> None:
    rel = PurePosixPath("notifiche-sdi/2026/12/IT01_a.xml.p7m")
    first = write(tmp_path, rel, b"one")
    second = write(tmp_path, rel, b"two")
    third = write(tmp_path, rel, b"three")
    assert first.name == "IT01_a.xml.p7m"
    assert second.name == "IT01_a (2).xml.p7m"
    assert third.name == "IT01_a (3).xml.p7m"
    assert [first.read_bytes(), second.read_bytes(), third.read_bytes()] == [
        b"one",
        b"two",
        b"three",
    ]


def test_write_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    write(tmp_path, PurePosixPath("a/b.xml"), b"x")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.xml"]


@pytest.mark.parametrize("rel", ["../escape.xml", "/abs.xml", "a/../../b.xml"])
def test_write_refuses_paths_leaving_the_root(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ValueError, match="inside the inbox"):
        write(tmp_path, PurePosixPath(rel), b"x")


def test_temporary_files_are_dot_files_that_readers_ignore() -> None:
    assert TEMPORARY_PREFIX.startswith(".")


def test_clean_temporary_removes_crash_leftovers_only(tmp_path: Path) -> None:
    folder = tmp_path / "quarantena" / "2026" / "12"
    folder.mkdir(parents=True)
    leftover = folder / f"{TEMPORARY_PREFIX}0123abcd"
    leftover.write_bytes(b"half")
    kept = write(tmp_path, PurePosixPath("quarantena/2026/12/msg.eml"), b"whole")
    assert clean_temporary(tmp_path) == [leftover]
    assert not leftover.exists()
    assert kept.read_bytes() == b"whole"


def test_clean_temporary_on_a_missing_root_does_nothing(tmp_path: Path) -> None:
    assert clean_temporary(tmp_path / "absent") == []


def test_json_sidecar_sits_beside_the_file(tmp_path: Path) -> None:
    original = write(tmp_path, PurePosixPath("inviate/2026/12/IT01_a.xml"), b"<x/>")
    sidecar = write_json_sidecar(original, {"file": "IT01_a.xml", "città": "Bari", "n": 2})
    assert sidecar == original.with_name("IT01_a.xml.json")
    assert json.loads(sidecar.read_text(encoding="utf-8")) == {
        "file": "IT01_a.xml",
        "città": "Bari",
        "n": 2,
    }


def test_sidecar_of_a_renamed_clash_follows_the_renamed_file(tmp_path: Path) -> None:
    rel = PurePosixPath("quarantena/2026/12/msg.eml")
    write(tmp_path, rel, b"one")
    second = write(tmp_path, rel, b"two")
    reason = write_sidecar(second, ".reason.txt", b"not a PEC message")
    assert reason.name == "msg (2).eml.reason.txt"


def test_written_file_is_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = write(tmp_path, PurePosixPath("a.xml"), b"x")
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == 0o644


@given(st.text(max_size=300) | st.text(alphabet=string.printable, max_size=40))
def test_safe_name_is_idempotent_and_bounded(name: str) -> None:
    safe = safe_name(name)
    assert safe == safe_name(safe)
    assert 0 < len(safe) <= 200
    assert "/" not in safe
    assert not safe.startswith(".")


@pytest.mark.parametrize(
    ("name", "anchor", "expected"),
    [
        ("IT01_a.xml.p7m", None, "IT01_a (2).xml.p7m"),
        ("IT01_a.xml", "IT01_a.xml.p7m", "IT01_a (2).xml"),
        ("IT01_a.html", "IT01_a.xml.p7m", "IT01_a (2).html"),
        ("IT01_a.xml.p7m.json", "IT01_a.xml.p7m", "IT01_a (2).xml.p7m.json"),
        ("IT01_a_MT_001.xml", "IT01_a.xml.p7m", "IT01_a_MT_001 (2).xml"),
        ("d Invio File IT01_a.xml.eml.reason.txt", "d Invio File IT01_a.xml.eml", None),
    ],
)
def test_numbered_puts_the_counter_where_the_anchor_of_its_set_has_it(
    name: str, anchor: str | None, expected: str | None
) -> None:
    want = expected or "d Invio File IT01_a (2).xml.eml.reason.txt"  # 4 extensions: as the anchor
    assert numbered(name, 2, anchor) == want
    assert numbered(name, 1, anchor) == name
    assert number_of(name, want, anchor) == 2
    assert number_of(name, name, anchor) == 1


@given(st.text(max_size=60), st.integers(min_value=1, max_value=10_000), st.text(max_size=30))
def test_number_of_reads_back_what_numbered_wrote(name: str, number: int, anchor: str) -> None:
    assert number_of(name, numbered(name, number, anchor or None), anchor or None) == number


def test_number_of_refuses_names_of_another_set() -> None:
    assert number_of("a.xml", "b (2).xml") is None
    assert number_of("a.xml", "a (x).xml") is None
    assert number_of("a.xml", "a (1).xml") is None
    assert number_of("a.xml", "a ().xml") is None


def test_free_number_is_the_first_counter_free_for_every_name_of_the_set(tmp_path: Path) -> None:
    names = ["a.xml.p7m", "a.xml", "a.xml.p7m.json"]
    assert free_number(tmp_path, names, "a.xml.p7m") == 1
    (tmp_path / "a.xml").write_bytes(b"taken")
    assert free_number(tmp_path, names, "a.xml.p7m") == 2
    (tmp_path / "a (2).xml.p7m.json").write_bytes(b"taken")
    assert free_number(tmp_path, names, "a.xml.p7m") == 3


def test_safe_name_counts_bytes_so_accented_names_fit_any_file_system() -> None:
    name = safe_name("è" * 300 + ".eml")
    assert len(name.encode("utf-8")) <= 200
    assert name.endswith("è.eml")
    assert safe_name(name) == name
