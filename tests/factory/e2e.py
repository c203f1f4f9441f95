"""End-to-end helpers: a `pecgateway sandbox` subprocess, its mailbox and log, the service driven
in-process until the store shows the expected state, and the store's view per mailbox message.

Plain functions and one small handle class; no pytest fixtures (those live in tests/test_e2e.py).
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from pecgateway import config, service, status
from pecgateway.store import Store

__all__ = [
    "WAIT_S",
    "Sandbox",
    "alive",
    "descendants",
    "filed_by_uid",
    "run_until",
    "start_sandbox",
    "status_document",
    "wait_ready",
]

WAIT_S = 20.0  # the bound of every wait for the sandbox or the service
_READY_S = 30.0


def pecgateway(*args: str) -> list[str]:
    """The command line of `pecgateway ARGS` run with this interpreter."""
    return [sys.executable, "-m", "pecgateway", *args]


# ---- processes -----------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren ...), read from /proc."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            child = int(entry.name)
            found += [child, *descendants(child)]
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. a sandbox directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# ---- the sandbox ---------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """A running `pecgateway sandbox --dir DIR` subprocess."""

    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def config_file(self) -> Path:
        return self.directory / "pecgateway.toml"

    @property
    def info(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.directory / "sandbox.json").read_text())
        return loaded

    def config(self) -> config.Config:
        return config.load(self.config_file)

    def log(self) -> list[dict[str, Any]]:
        """The sandbox's own log (DIR/sandbox.log), one record per JSON line."""
        text = (self.directory / "sandbox.log").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [record for record in self.log() if record.get("event") == name]

    def mailbox(self) -> tuple[int, dict[int, bytes]]:
        """(UIDVALIDITY, {uid: raw message}) of the user's INBOX, read-only."""
        imap = self.info["imap"]
        context = ssl.create_default_context(cafile=str(self.info["ca_cert"]))
        with imaplib.IMAP4_SSL(
            imap["host"], int(imap["port"]), ssl_context=context, timeout=10
        ) as client:
            client.login(imap["user"], imap["password"])
            client.select("INBOX", readonly=True)
            _, values = client.status("INBOX", "(UIDVALIDITY)")
            uidvalidity = int(values[0].split(b"UIDVALIDITY")[1].strip(b" )"))
            _, found = client.uid("SEARCH", "ALL")
            raws: dict[int, bytes] = {}
            for uid in found[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                assert isinstance(parts[0], tuple)
                raws[int(uid)] = parts[0][1]
            return uidvalidity, raws

    def wait_for_mail(self, count: int) -> tuple[int, dict[int, bytes]]:
        deadline = time.monotonic() + WAIT_S
        uidvalidity, raws = self.mailbox()
        while len(raws) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            uidvalidity, raws = self.mailbox()
        assert len(raws) >= count, f"{len(raws)} messages in the mailbox, expected {count}"
        return uidvalidity, raws

    def stop(self) -> list[int]:
        """SIGTERM and wait; returns the processes left behind (Dovecot's included): none, we hope."""
        below = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        left = [pid for pid in below if alive(pid)]
        return sorted({*left, *processes_mentioning(str(self.directory))})


def start_sandbox(directory: Path, schema_dir: Path, ca_dir: Path) -> Sandbox:
    """Starts `pecgateway sandbox --delays fast` in ``directory`` (reusing the CA in ``ca_dir``)."""
    shutil.copytree(ca_dir, directory / "ca")  # no key generation at start
    process = subprocess.Popen(
        pecgateway(
            "sandbox", "--dir", str(directory), "--schemas", str(schema_dir), "--delays", "fast"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    wait_ready(process)
    return Sandbox(directory, process)


def wait_ready(process: subprocess.Popen[bytes], timeout_s: float = _READY_S) -> None:
    """Waits for the sandbox child's `ready` line on its stdout pipe; kills it on a timeout."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if line.strip() == b"ready":
                return
            if not line:
                break
    process.kill()
    raise AssertionError(f"the sandbox did not print ready: {process.communicate()}")


# ---- the service ---------------------------------------------------------------------------------


def status_document(cfg: config.Config) -> dict[str, Any]:
    """What `status --json` prints for the (single) account of ``cfg``."""
    with Store(cfg.store_path) as store:
        return status.document(store, cfg, datetime.now(UTC))


async def run_until(
    cfg: config.Config,
    done: Callable[[dict[str, Any]], bool],
    *,
    logs: list[dict[str, Any]] | None = None,
    timeout_s: float = WAIT_S,
) -> dict[str, Any]:
    """Runs `once` passes until ``done(status document)``; the service's log lines go to ``logs``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with capture_logs(processors=[merge_contextvars]) as captured:
            await service.run_once(cfg)
        if logs is not None:
            logs += [dict(line) for line in captured]
        document = status_document(cfg)
        if done(document):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s; status: {document}")
        await asyncio.sleep(0.05)  # a poll interval, not a wait for an outcome


def outgoing(document: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The status entry of the outgoing file ``name``, if any."""
    for entry in document["outgoing"]:
        if entry["file"] == name:
            found: dict[str, Any] = entry
            return found
    return None


def state_of(name: str, *states: str) -> Callable[[dict[str, Any]], bool]:
    """A `run_until` condition: ``name`` has reached one of ``states``."""

    def check(document: dict[str, Any]) -> bool:
        entry = outgoing(document, name)
        return entry is not None and entry["state"] in states

    return check


# ---- where each mailbox message ended up ---------------------------------------------------------


def filed_by_uid(document: dict[str, Any], uidvalidity: int) -> dict[int, list[dict[str, Any]]]:
    """uid -> the items the store recorded for that message (orphans, incoming, quarantine).

    Each item: ``{"as": "orphan"|"incoming"|"quarantine", "kind", "paths", "reason"}``. Messages
    about files we sent are not listed here (they are in the outgoing audit trail).
    """
    found: dict[int, list[dict[str, Any]]] = {}
    prefix = f"imap:{uidvalidity}/"
    for orphan in document.get("orphans", []):
        source = str(orphan["source"])
        if source.startswith(prefix):
            item = {"as": "orphan", "kind": orphan["kind"], "paths": orphan["paths"]}
            found.setdefault(int(source[len(prefix) :]), []).append(item)
    for incoming in document["incoming"]:
        sidecars = [p for p in incoming["paths"] if p.endswith(".json")]
        source = json.loads(Path(sidecars[0]).read_text())["source"] if sidecars else ""
        if source.startswith(prefix):
            item = {"as": "incoming", "kind": "invoice", "paths": incoming["paths"]}
            found.setdefault(int(source[len(prefix) :]), []).append(item)
    for quarantined in document["quarantined"]:
        source = str(quarantined["source"])  # "what" is the label for people
        if not source.startswith(prefix):
            continue
        uid = int(source[len(prefix) :])
        item = {
            "as": "quarantine",
            "kind": "quarantine",
            "paths": [quarantined["path"]],
            "reason": quarantined["reason"],
        }
        found.setdefault(uid, []).append(item)
    return found
