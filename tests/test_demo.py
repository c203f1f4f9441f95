"""`make demo` keeps working: the guided demo runs end to end on the real sandbox and exits 0."""

from __future__ import annotations

import contextlib
import os
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


def _kill_all(process: subprocess.Popen[bytes]) -> None:
    """A failed test leaves nothing running: the demo's children first, then the demo."""
    for pid in descendants(process.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    process.kill()
    process.wait()


def _wait_for_text(
    path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float
) -> None:
    """Polls the file the demo's stdout goes to (a pipe read with select misses buffered lines)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if text in path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.5)
    _kill_all(process)
    tail = path.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise AssertionError(f"the demo never printed {text!r}: {tail}")


@pytest.mark.timeout(240)
def test_sigterm_to_the_lingering_demo_stops_the_gateway_and_the_sandbox_and_leaves_no_process(
    public_tmp_path: Path,
) -> None:
    """Its children run in their own session: the demo itself must stop them on SIGTERM."""
    demo_dir = public_tmp_path / "demo"
    out_path, err_path = public_tmp_path / "demo.out", public_tmp_path / "demo.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            _demo(demo_dir, "--linger", "--timeout", "120"),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_for_text(out_path, STILL_RUNNING, process, timeout_s=180)
        children = descendants(process.pid)
        assert len(children) >= 3, "the sandbox, Dovecot and the gateway should be running"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            _kill_all(process)
    errors = err_path.read_text(encoding="utf-8", errors="replace")
    assert process.returncode == 0, errors[-3000:]
    assert "Stopping the gateway and the sandbox" in out_path.read_text(encoding="utf-8")
    assert "Traceback" not in errors
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
