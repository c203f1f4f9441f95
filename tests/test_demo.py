"""`make demo` keeps working: the guided demo runs end to end on the real sandbox and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import schema_source_dir

pytestmark = pytest.mark.servers


@pytest.mark.timeout(240)
def test_demo_shows_every_outcome_and_the_filed_supplier_invoice(public_tmp_path: Path) -> None:
    demo_dir = public_tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pecgateway.sandbox.demo",
            "--dir",
            str(demo_dir),
            "--schemas-from",
            str(schema_source_dir()),
            "--no-linger",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "IT01234567890_00001.xml: sdi-delivered" in out
    assert "IT01234567890_00002.xml: pa-accepted" in out
    assert "IT01234567890_00003.xml: sdi-rejected" in out
    assert "error 00404" in out
    assert "IT01234567890_00004.xml: rejected" in out
    assert "some invoices are still on their way" not in out
    received = demo_dir / "inbox" / "fatture-ricevute"
    assert any(received.rglob("IT09876543210_A0001.xml.p7m"))
    assert any(received.rglob("IT09876543210_A0001_MT_001.xml"))
    assert (demo_dir / "outbox" / "rejected" / "IT01234567890_00004.xml.reason.txt").is_file()
    assert "Traceback" not in result.stderr
    gateway_log = (demo_dir / "gateway.log").read_text(encoding="utf-8")
    assert '"event": "unit_done"' in gateway_log or "unit_done" in gateway_log
    assert (demo_dir / ".pecgateway-demo").is_file()
