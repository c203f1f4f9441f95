"""`make demo` keeps working: the guided demo runs end to end on the real sandbox and exits 0."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import schema_source_dir
from tests.factory.e2e import alive, descendants, processes_mentioning

pytestmark = pytest.mark.servers


STILL_RUNNING = "The sandbox and the gateway are still running."


def _demo(demo_dir: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pecgateway.sandbox.demo",
        "--dir",
        str(demo_dir),
        "--schemas-from",
        str(schema_source_dir()),
        *options,
    ]


@pytest.mark.timeout(240)
def test_demo_shows_every_outcome_and_the_filed_supplier_invoice(public_tmp_path: Path) -> None:
    demo_dir = public_tmp_path / "demo"
    result = subprocess.run(
        _demo(demo_dir, "--no-linger", "--timeout", "120"),
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


def _read_until(process: subprocess.Popen[str], text: str, timeout_s: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if not ready:
            continue
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"the demo never printed {text!r}: {''.join(lines)[-3000:]}")


@pytest.mark.timeout(240)
def test_sigterm_to_the_lingering_demo_stops_the_gateway_and_the_sandbox_and_leaves_no_process(
    public_tmp_path: Path,
) -> None:
    """Its children run in their own session: the demo itself must stop them on SIGTERM."""
    demo_dir = public_tmp_path / "demo"
    process = subprocess.Popen(
        _demo(demo_dir, "--linger", "--timeout", "120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        _read_until(process, STILL_RUNNING, timeout_s=180)
        children = descendants(process.pid)
        assert len(children) >= 3, "the sandbox, Dovecot and the gateway should be running"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err[-3000:]
    assert "Stopping the gateway and the sandbox" in out
    assert "Traceback" not in err
    assert [pid for pid in children if alive(pid)] == []
    assert processes_mentioning(str(demo_dir)) == []
    assert not (demo_dir / "sandbox.json").exists()  # the sandbox stopped cleanly


def test_a_folder_that_is_not_a_demo_directory_is_left_alone_and_the_message_says_how_with_make(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "mine.txt").write_text("a person's file")
    result = subprocess.run(_demo(folder), capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "is not a demo directory" in result.stderr
    assert "make demo" in result.stderr
    assert f"mv {folder} {folder}.old" in result.stderr
    assert (folder / "mine.txt").read_text() == "a person's file"
