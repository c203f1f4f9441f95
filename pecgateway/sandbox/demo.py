"""The guided demo behind `make demo`: the sandbox and the gateway, invoices flowing end to end.

Starts `pecgateway sandbox` and `pecgateway run` as child processes, drops sample invoices made by
pecgateway into the outbox (valid B2B, valid PA, one that fails our checks, one that SDI rejects),
has SDI deliver a supplier's signed invoice, then shows the status and the inbox folder. Only the
public commands are used, exactly as a person would use them. Ctrl-C, SIGTERM and SIGHUP (the
terminal closed) all stop the gateway, then the sandbox, then the demo: no child is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from pecgateway import sample
from pecgateway.sandbox.ca import SandboxCA

__all__ = ["main"]

# What each demo file ends as: SDI's simulator answers the PA invoice with RC, then NE EC01.
_EXPECTED = {
    "IT01234567890_00001.xml": "sdi-delivered",
    "IT01234567890_00002.xml": "pa-accepted",
    "IT01234567890_00003.xml": "sdi-rejected",
    "IT01234567890_00004.xml": "rejected",
}


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled as Ctrl-C is (the children are stopped on the way out)."""

    def __init__(self, signum: int) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(self.signum.name)


_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum: int, _frame: object) -> None:
    """The first stop signal unwinds the demo; later ones are ignored so the stop is not cut short
    (each child gets 30 s, then is killed)."""
    for each in _STOPPING:
        signal.signal(each, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise _Stopped(signum)


def _tell(text: str) -> None:
    """A line that may find no terminal (SIGHUP: it was closed); the stop goes on without it."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _pecgateway(*args: str) -> list[str]:
    return [sys.executable, "-m", "pecgateway", *args]


def _sample_invoices() -> dict[str, bytes]:
    """The four files dropped into the outbox, by the name the legacy software would give them."""
    b2b = sample.fpr12(progressivo_invio="00001", numero="2026/101", data="2026-12-01")
    pa = sample.fpa12(progressivo_invio="00002", numero="2026/102", data="2026-12-01")
    # Same seller, year, number and type as the B2B one: SDI refuses it as a duplicate (00404).
    duplicate = sample.fpr12(progressivo_invio="00003", numero="2026/101", data="2026-12-02")
    # Saved with a byte-order mark and a control character: our checks stop it before SDI sees it.
    broken = b"\xef\xbb\xbf" + sample.fpr12(progressivo_invio="00004", numero="2026/104").replace(
        b"Consulenza informatica", b"Consulenza\x1b informatica"
    )
    return {
        sample.file_name(progressivo="00001"): b2b,
        sample.file_name(progressivo="00002"): pa,
        sample.file_name(progressivo="00003"): duplicate,
        sample.file_name(progressivo="00004"): broken,
    }


def _supplier_invoice(directory: Path, ca_dir: Path) -> Path:
    """A supplier's invoice to us, signed (CAdES, .xml.p7m) with the sandbox supplier's key."""
    xml = sample.fpr12(
        transmitter="IT09876543210",
        progressivo_invio="A0001",
        seller=sample.BUYER_B2B,
        buyer=sample.SELLER,
        numero="F-778",
        data="2026-11-28",
    )
    pair = SandboxCA.load_or_create(ca_dir).supplier
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(xml)
        .add_signer(pair.certificate, pair.private_key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    target = directory / "IT09876543210_A0001.xml.p7m"
    target.write_bytes(signed)
    return target


@contextlib.contextmanager
def _child(name: str, argv: Sequence[str], log_path: Path, ready: str | None) -> Iterator[None]:
    """A child whose stdout and stderr go to ``log_path`` (never a pipe nobody reads)."""
    with log_path.open("ab") as log:
        # Own session: Ctrl-C reaches only the demo, which then stops each child once, in order.
        proc = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        if ready is not None:
            _wait_for_line(proc, ready, name, log_path)
        yield
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, 30 s, then SIGKILL; a stop signal arriving meanwhile waits until this one is done."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _wait_for_line(proc: subprocess.Popen[bytes], expected: str, name: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        if expected in (line.strip() for line in lines):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"{name} did not start; its messages are in {log}")


def _status(config: Path) -> dict[str, object]:
    out = subprocess.run(
        _pecgateway("status", "--config", str(config), "--json"),
        capture_output=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _wait_until_settled(config: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = _status(config)
        outgoing = status.get("outgoing")
        incoming = status.get("incoming")
        if not isinstance(outgoing, list) or not isinstance(incoming, list):
            raise SystemExit(f"pecgateway status printed an unexpected object: {status}")
        for item in outgoing:
            if seen.get(item["file"]) != item["state"]:
                seen[item["file"]] = item["state"]
                print(f"  {item['file']}: {item['state']}", flush=True)
        if incoming and all(seen.get(name) == state for name, state in _EXPECTED.items()):
            return
        time.sleep(0.5)
    print("(some invoices are still on their way; the status below is a snapshot)")


def _show_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            print(f"  {path.relative_to(root.parent)}")


def _run(args: argparse.Namespace) -> int:
    demo = Path(args.dir).resolve()
    _fresh(demo)
    schemas = demo / "schemas"
    _say(f"Installing the official XSD schemas from {args.schemas_from}")
    subprocess.run(
        _pecgateway("schemas", "install", "--from", args.schemas_from, "--to", str(schemas)),
        check=True,
    )
    if args.stylesheets_from and Path(args.stylesheets_from).is_dir():
        _say(f"Installing the official stylesheets (HTML of invoices) from {args.stylesheets_from}")
        subprocess.run(
            _pecgateway(
                "schemas", "install", "--from", args.stylesheets_from, "--to", str(schemas)
            ),
            check=False,
        )
    _say("Starting the sandbox: Dovecot (IMAP), the PEC provider (SMTP) and the SDI simulator")
    sandbox = _pecgateway("sandbox", "--dir", str(demo), "--schemas", str(schemas))
    with _child("the sandbox", sandbox, demo / "sandbox.stderr.log", "ready"):
        config = demo / "pecgateway.toml"
        print(f"  configuration written to {config}")
        _say("Starting the gateway: pecgateway run --config " + str(config))
        service = _pecgateway("run", "--config", str(config))
        with _child("the gateway", service, demo / "gateway.log", None):
            _drop_and_deliver(demo, config)
            _say("Watching the invoices' states change (pecgateway status --json)")
            _wait_until_settled(config, timeout_s=args.timeout)
            _report(demo, config)
            if args.linger:
                _linger(demo, config)
    return 0


def _fresh(demo: Path) -> None:
    """Each run starts from scratch: the demo owns its directory (never a user's real folders)."""
    marker = demo / ".pecgateway-demo"
    if demo.exists() and any(demo.iterdir()):
        if not marker.exists():
            raise SystemExit(
                f"{demo} exists and is not a demo directory (no {marker.name} file in it), so the "
                "demo will not empty it: choose another --dir, or, with make (`make demo` uses "
                f"./demo), move that folder away first (e.g. `mv {demo} {demo}.old`) and run "
                "`make demo` again"
            )
        shutil.rmtree(demo)
    demo.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by pecgateway's demo; removed and made anew by each run\n")


def _drop_and_deliver(demo: Path, config: Path) -> None:
    outbox = demo / "outbox"
    outbox.mkdir(exist_ok=True)
    _say(f"Dropping four invoices into {outbox}")
    for name, data in _sample_invoices().items():
        tmp = outbox / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.rename(outbox / name)
        print(f"  {name}")
    _say("A supplier sends us a signed invoice through SDI")
    supplier = _supplier_invoice(demo, _ca_dir(demo))
    subprocess.run(
        _pecgateway("sandbox", "deliver", "--dir", str(demo), str(supplier)),
        check=True,
    )


def _ca_dir(demo: Path) -> Path:
    info = json.loads((demo / "sandbox.json").read_text())
    return Path(info["ca_cert"]).parent


def _report(demo: Path, config: Path) -> None:
    _say("What the gateway knows (pecgateway status)")
    subprocess.run(_pecgateway("status", "--config", str(config)), check=False)
    _say("The inbox folder")
    _show_tree(demo / "inbox")
    _say("Files our checks refused (outbox/rejected)")
    _show_tree(demo / "outbox" / "rejected")


def _linger(demo: Path, config: Path) -> None:
    _say("The sandbox and the gateway are still running.")
    print(f"  Drop your own invoice files into {demo / 'outbox'} and watch them flow:")
    print(f"    {Path(sys.executable).parent / 'pecgateway'} status --config {config}")
    print("  Press Ctrl-C to stop.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, SIGTERM or SIGHUP (_on_signal)
        signal.pause()
    _tell("\nStopping the gateway and the sandbox...")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pecgateway.sandbox.demo", description=__doc__)
    parser.add_argument("--dir", default="demo", help="where the demo lives (default: ./demo)")
    parser.add_argument("--schemas-from", required=True, help="directory holding the official XSDs")
    parser.add_argument(
        "--stylesheets-from",
        help="directory holding the official XSL stylesheets (optional: HTML of received invoices)",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for SDI")
    parser.add_argument(
        "--linger",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty() and os.environ.get("CI") is None,
        help="keep running after the scripted part (default: when run from a terminal)",
    )
    args = parser.parse_args(argv)
    for signum in _STOPPING:
        signal.signal(signum, _on_signal)
    try:
        return _run(args)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        _tell(f"\nInterrupted: the gateway and the sandbox were stopped ({signum.name}).")
        return 128 + signum


if __name__ == "__main__":
    raise SystemExit(main())
