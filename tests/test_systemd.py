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


def test_credentials_and_writable_paths_are_declared() -> None:
    directives = _directives()
    assert directives["LoadCredential"]
    assert "/var/lib/pecgateway" in directives["ReadWritePaths"][0]
    assert "AF_INET" in directives["RestrictAddressFamilies"][0]
