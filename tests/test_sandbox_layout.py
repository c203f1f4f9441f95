"""The sandbox directory's memory of the last run: its ports, and when pecgateway.toml is rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pecgateway import config
from pecgateway.sandbox.layout import Endpoints, Layout, Ports

ENDPOINTS = Endpoints(
    imap_port=41993,
    imap_starttls_port=41143,
    smtp_port=41465,
    smtp_starttls_port=41587,
    control_port=41000,
    control_token="t",
)


def _layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "sandbox")
    layout.root.mkdir()
    return layout


def _write_config(layout: Layout, endpoints: Endpoints = ENDPOINTS) -> Path | None:
    return layout.write_config(
        endpoints, ca_file=layout.ca_dir / "ca.pem", schema_dir=layout.root / "xsd"
    )


def _differences(layout: Layout, endpoints: Endpoints = ENDPOINTS) -> dict[str, str] | None:
    return layout.config_differences(
        endpoints, ca_file=layout.ca_dir / "ca.pem", schema_dir=layout.root / "xsd"
    )


def test_a_new_directory_has_no_previous_ports(tmp_path: Path) -> None:
    assert _layout(tmp_path).previous_ports() == Ports()


def test_previous_ports_come_from_ports_json_kept_after_the_run(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    layout.write_ports(ENDPOINTS)
    assert layout.previous_ports() == Ports.of(ENDPOINTS)


def test_the_ports_a_gateway_uses_in_pecgateway_toml_win(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    layout.write_ports(ENDPOINTS)
    moved = Endpoints(42993, 42143, 42465, 42587, 42000, "t")
    _write_config(layout, moved)
    assert layout.previous_ports() == Ports(42993, 41143, 42465, 41587)


def test_a_sandbox_json_left_by_a_crash_gives_the_ports_too(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    layout.write_info(ENDPOINTS, ca_file=layout.ca_dir / "ca.pem")
    assert layout.previous_ports() == Ports.of(ENDPOINTS)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"imap": {"port": "993"}, "smtp": null}',
        '{"imap": {"port": true, "starttls_port": 70000}, "smtp": {"port": -1}}',
        "\udcff",
    ],
    ids=["garbage", "list", "wrong-types", "out-of-range", "undecodable"],
)
def test_unreadable_port_files_count_as_absent(tmp_path: Path, text: str) -> None:
    layout = _layout(tmp_path)
    layout.ports_file.write_bytes(text.encode("utf-8", "surrogateescape"))
    layout.config_file.write_bytes(b"[[accounts]]\nsmtp = 3\n" + text.encode("utf-8", "replace"))
    assert layout.previous_ports() == Ports()
    assert _differences(layout) is None


def test_config_written_for_the_same_run_needs_no_rewrite(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    assert _differences(layout) is None
    assert _write_config(layout) is None
    assert _differences(layout) == {}
    layout.password()
    layout.ca_dir.mkdir()
    (layout.ca_dir / "ca.pem").write_text("not checked by load")
    assert config.load(layout.config_file).accounts[0].smtp.port == ENDPOINTS.smtp_port


def test_a_users_own_edits_do_not_count_as_differences(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    _write_config(layout)
    text = layout.config_file.read_text().replace('log_level = "info"', 'log_level = "debug"')
    layout.config_file.write_text(text)
    assert _differences(layout) == {}


def test_a_moved_port_is_a_difference_and_the_old_file_is_kept_aside(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    _write_config(layout)
    old = layout.config_file.read_text()
    moved = Endpoints(41993, 41143, 43465, 41587, 41000, "t")
    assert _differences(layout, moved) == {"smtp": "41465 -> 43465"}
    backup = _write_config(layout, moved)
    assert backup is not None
    assert backup.read_text() == old
    assert _differences(layout, moved) == {}


def test_port_changes_name_only_known_ports_that_moved() -> None:
    before = Ports(imap=993, smtp=465)
    assert before.changes(Ports(993, 143, 465, 587)) == {}
    assert before.changes(Ports(993, 143, 2465, 587)) == {"smtp": "465 -> 2465"}


def test_ports_json_has_the_sandbox_json_shape(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    layout.write_ports(ENDPOINTS)
    assert json.loads(layout.ports_file.read_text()) == {
        "imap": {"port": 41993, "starttls_port": 41143},
        "smtp": {"port": 41465, "starttls_port": 41587},
    }
