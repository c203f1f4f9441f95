"""preflight.check: what check-config says about the places a configuration names."""

from __future__ import annotations

from pathlib import Path

from pecgateway import preflight
from pecgateway.config import Config
from tests.factory.gateway import account_table, write_config

SERVER = {"host": "127.0.0.1", "port": 9, "password": "pw"}


def _config(tmp_path: Path, outbox: Path) -> Config:
    table = account_table(tmp_path, "main", address="main@pec.example.it", smtp=SERVER, imap=SERVER)
    table = table.replace(f'outbox = "{tmp_path / "main" / "outbox"}"', f'outbox = "{outbox}"')
    return write_config(tmp_path, tmp_path / "schemas", [table])


def _outbox_finding(config: Config) -> preflight.Finding:
    [finding] = [f for f in preflight.check(config) if f.key.endswith(".outbox")]
    return finding


def test_an_outbox_whose_parent_is_missing_is_not_promised_to_be_created(tmp_path: Path) -> None:
    outbox = tmp_path / "srv" / "main" / "outbox"
    finding = _outbox_finding(_config(tmp_path, outbox))
    assert finding.problem is None
    assert finding.detail.startswith(f"does not exist yet, nor does {outbox.parent}: ")
    assert f"only if its user may write in {tmp_path}" in finding.detail
    assert f"install -d -m 2770 -o pecgateway -g pecgateway {outbox}" in finding.detail
    assert not (tmp_path / "srv").exists(), "check-config creates nothing"


def test_an_outbox_in_an_existing_folder_names_that_folder(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    finding = _outbox_finding(_config(tmp_path, outbox))
    assert finding.detail.startswith("does not exist yet: the service creates it at start only ")
    assert f"may write in {tmp_path} and" in finding.detail


def test_an_existing_outbox_is_simply_ok(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    finding = _outbox_finding(_config(tmp_path, outbox))
    assert (finding.problem, finding.detail) == (None, "exists")
