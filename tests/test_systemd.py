"""systemd/pecgateway.service: `systemd-analyze verify` is silent, and the hardening is in place."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "pecgateway.service"


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    script = Path(sys.executable).parent / "pecgateway"
    assert script.exists(), "the package's console script is missing: pip install -e ."
    text = UNIT.read_text(encoding="utf-8")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={script}", text, flags=re.MULTILINE)
    copy = tmp_path / "pecgateway.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_unit_is_type_notify_with_watchdog_and_restart() -> None:
    directives = _directives()
    assert directives["Type"] == ["notify"]
    assert directives["Restart"] == ["on-failure"]
    assert "WatchdogSec" in directives
    assert directives["ExecStart"][0].endswith("run --config /etc/pecgateway/pecgateway.toml")


def test_stop_timeout_exceeds_the_longest_network_timeout() -> None:
    stop_s = int(_directives()["TimeoutStopSec"][0].removesuffix("s"))
    assert stop_s > 60 * 2  # the default timeout_s, for the unit in hand and its last step


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("User", "pecgateway"),
    ],
)
def test_hardening_directive_is_set(key: str, value: str) -> None:
    assert value in _directives()[key]


def test_the_state_directory_is_closed_to_other_users() -> None:
    directives = _directives()
    assert directives["StateDirectory"] == ["pecgateway"]
    assert directives["StateDirectoryMode"] == ["0750"]


def test_readme_says_what_protecthome_and_readwritepaths_need() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "ProtectHome=read-only" in readme
    assert "ReadWritePaths" in readme
    assert "must exist before" in readme


def test_credentials_and_writable_paths_are_declared() -> None:
    directives = _directives()
    assert directives["LoadCredential"]
    assert "/var/lib/pecgateway" in directives["ReadWritePaths"][0]
    assert "AF_INET" in directives["RestrictAddressFamilies"][0]


README = UNIT.parent.parent / "README.md"
EXAMPLE = UNIT.parent.parent / "config" / "pecgateway.example.toml"


def test_documentation_points_at_a_file_the_install_steps_put_there() -> None:
    (documentation,) = _directives()["Documentation"]
    path = documentation.removeprefix("file://")
    assert documentation.startswith("file:///")
    assert f"README.md {path}" in README.read_text(encoding="utf-8")


def test_credential_names_agree_between_unit_example_and_readme() -> None:
    loaded = {
        value.split(":", 1)[0]: value.split(":", 1)[1] for value in _directives()["LoadCredential"]
    }
    example = set(
        re.findall(r'^password_credential = "([^"]+)"', EXAMPLE.read_text(), re.MULTILINE)
    )
    readme = README.read_text(encoding="utf-8")
    in_readme = set(re.findall(r'password_credential = "([^"]+)"', readme))
    assert set(loaded) == example == in_readme == {"main-smtp", "main-imap"}
    for source in loaded.values():
        assert f"> {source})" in readme, f"the install steps must write {source}"


def test_the_legacy_softwares_group_may_write_the_outbox() -> None:
    assert _directives()["UMask"] == ["0007"]
    readme = README.read_text(encoding="utf-8")
    assert "install -d -m 2770 -o pecgateway -g pecgateway" in readme
    assert "usermod -aG pecgateway" in readme
