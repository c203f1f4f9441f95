"""`pecgateway sandbox`: run the sandbox, and hand it a supplier invoice or a raw message.

Owns the three commands of contracts.md §3 and the composition of a running sandbox (Dovecot, the
PEC provider's listeners, the SDI simulator, the control channel), its restart in the same DIR (the
same ports where free, so a gateway configured by the first run keeps working; the mailbox and SDI's
memory are kept), its log (DIR/sandbox.log as JSON lines plus a readable console on stderr) and its
clean stop on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from pecgateway.errors import ConfigError
from pecgateway.sandbox.control import ControlError, Request, send_request
from pecgateway.sandbox.layout import Endpoints, Layout, Ports
from pecgateway.sandbox.simulator import SimulatorConfig

__all__ = ["DELAYS", "main", "register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DELAYS = {
    "demo": SimulatorConfig(
        answer_delay_s=2.0, pa_outcome_delay_s=6.0, dt_delay_s=10.0, at_delay_s=8.0
    ),
    "fast": SimulatorConfig(
        answer_delay_s=0.05, pa_outcome_delay_s=0.2, dt_delay_s=0.3, at_delay_s=0.3
    ),
}
CONSEGNA_DELAY_S = {"demo": 1.0, "fast": 0.0}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``sandbox`` (with ``deliver`` and ``inject``) to pecgateway's command line.

    ``--dir`` is accepted before or after ``deliver``/``inject``.
    """
    p = sub.add_parser(
        "sandbox",
        help="run a local PEC provider and SDI simulator on real mail servers",
        description="Without a sub-command: start the sandbox in DIR and run until SIGINT/SIGTERM.",
    )
    p.add_argument("--dir", metavar="DIR", help=_DIR_HELP + " (created when missing)")
    p.add_argument(
        "--schemas",
        metavar="DIR",
        help="the official XSDs, installed or as downloaded (default: the installed ones, in "
        "$STATE_DIRECTORY/schemas or ~/.local/share/pecgateway/schemas)",
    )
    p.add_argument(
        "--delays",
        choices=sorted(DELAYS),
        default="demo",
        help="SDI's answer delays: demo (seconds) or fast (near zero)",
    )
    p.add_argument(
        "--first-address-grace-s",
        metavar="SECONDS",
        type=_seconds,
        help="how long SDI still answers files sent to sdi01 after its first answer named your "
        f"sdiNN address (default: {SimulatorConfig().first_address_grace_s:g}; 0: never)",
    )
    p.set_defaults(handler=_cmd_run)
    commands = p.add_subparsers(dest="sandbox_command", metavar="COMMAND")
    for name, text, target, target_help, handler in (
        (
            "deliver",
            "a supplier's invoice reaches the mailbox the way SDI delivers it",
            "invoice",
            "the supplier's invoice: .xml or .xml.p7m",
            _cmd_deliver,
        ),
        (
            "inject",
            "put a raw message into the mailbox unchanged",
            "message",
            "a raw mail message (.eml), e.g. a real PEC message",
            _cmd_inject,
        ),
    ):
        command = commands.add_parser(name, help=text, description=text)
        # SUPPRESS: when absent here, the --dir given before the sub-command is kept.
        command.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS, help=_DIR_HELP)
        command.add_argument(target, metavar=target.upper(), help=target_help)
        command.set_defaults(handler=handler)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    config = DELAYS[args.delays]
    if args.first_address_grace_s is None:
        return config
    return dataclasses.replace(config, first_address_grace_s=args.first_address_grace_s)


_DIR_HELP = "the sandbox directory"
_NO_DIR = "--dir DIR is required: where the sandbox keeps its files"


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"pecgateway sandbox: {message}", file=sys.stderr)
    return code


# ---- deliver / inject: clients of the running sandbox -------------------------------------------


def _send(directory: str | None, command: str, path: Path) -> int:
    if not directory:
        return _fail(_NO_DIR, EXIT_USAGE)
    layout = Layout(Path(directory).resolve())
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _fail(f"{path}: cannot read the file ({exc.strerror}); check the path")
    if command == "inject" and not data.strip():
        return _fail(
            f"{path}: the file is empty (or only blank lines): give a raw mail message, e.g. a "
            ".eml file saved from a mail client; nothing was appended"
        )
    try:
        port, token = layout.read_control()
    except (OSError, ValueError, KeyError):
        return _fail(
            f"{path}: no running sandbox in {layout.root} (no readable sandbox.json); start one "
            f"with `pecgateway sandbox --dir {layout.root}`"
        )
    try:
        detail = send_request(port, token, Request(command, path.name, data))
    except ControlError as exc:
        return _fail(f"{path}: {exc}")
    print(f"{path}: {detail}")
    return EXIT_OK


def _cmd_deliver(args: argparse.Namespace) -> int:
    return _send(args.dir, "deliver", Path(args.invoice))


def _cmd_inject(args: argparse.Namespace) -> int:
    return _send(args.dir, "inject", Path(args.message))


# ---- the running sandbox ------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.dir:
        return _fail(_NO_DIR, EXIT_USAGE)
    from pecgateway.sandbox.dovecot import INSTALL_HINT

    if shutil.which("dovecot") is None:
        raise ConfigError(INSTALL_HINT)
    schemas, schema_dir = _schemas(args)
    layout = Layout(Path(args.dir).resolve())
    _refuse_second_sandbox(layout)
    layout.root.mkdir(parents=True, exist_ok=True)
    from pecgateway.sandbox.journal import open_journal

    with open_journal(layout.log_file) as log:
        return _run(layout, args, log, schemas, schema_dir)


def _refuse_second_sandbox(layout: Layout) -> None:
    """Two sandboxes in one DIR would share Dovecot's files and fight over the ports."""
    try:
        port, _ = layout.read_control()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except (OSError, ValueError, KeyError, TypeError):
        return
    raise ConfigError(
        f"a sandbox already runs in {layout.root} (the control port {port} of its sandbox.json "
        "answers): stop it first, or use another --dir; if none runs, delete sandbox.json",
        key="--dir",
    )


def _schemas(args: argparse.Namespace) -> tuple[Any, Path]:
    """The XSDs SDI checks files against, and the schema_dir the written config names.

    Refuses (ConfigError, exit 2) when none are usable: without them SDI's answers would not be
    SDI's, and the written configuration would not run."""
    from pecgateway import schema

    directory = Path(args.schemas).resolve() if args.schemas else schema.default_dir()
    try:
        return schema.load(directory), directory
    except ConfigError as exc:
        looked = "" if args.schemas else " (without --schemas, the installed ones)"
        raise ConfigError(
            f"the sandbox needs the official XSDs{looked}: {exc.reason}; or start it with "
            "--schemas DIR (the folder you downloaded them to)",
            key="--schemas",
        ) from None


def _dovecot_dir(layout: Layout, log: Any) -> tuple[Path, bool]:
    """Dovecot's directory and whether it is temporary (when DIR is not world-traversable)."""
    from pecgateway.sandbox.dovecot import blocking_ancestor

    blocked = blocking_ancestor(layout.dovecot_dir)
    if blocked is None:
        return layout.dovecot_dir, False
    temporary = Path(tempfile.mkdtemp(prefix="pecgateway-sandbox-dovecot-"))
    log.warning(
        "sandbox_dovecot_elsewhere",
        blocked=str(blocked),
        dovecot_dir=str(temporary),
        reason="Dovecot's helper users cannot enter DIR; the mailbox is not kept",
    )
    return temporary, True


def _run(layout: Layout, args: argparse.Namespace, log: Any, schemas: Any, schema_dir: Path) -> int:
    """Dovecot is started and stopped from the main thread (its death signal is tied to it)."""
    from pecgateway.sandbox.ca import SandboxCA
    from pecgateway.sandbox.dovecot import Dovecot

    ca = SandboxCA.load_or_create(layout.ca_dir)
    directory, temporary = _dovecot_dir(layout, log)
    dovecot = Dovecot(directory, {layout.user: layout.password()}, ca=ca)
    previous = layout.previous_ports()
    try:
        _start_dovecot(dovecot, previous, log)
        log.info(
            "dovecot_started",
            imaps_port=dovecot.port,
            starttls_port=dovecot.starttls_port,
            dir=str(directory),
        )
        asyncio.run(_serve(layout, args, log, ca, dovecot, schemas, schema_dir, previous))
    finally:
        dovecot.stop()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        layout.remove_info()
        log.info("sandbox_stopped", dovecot="stopped", info_file="removed")
    return EXIT_OK


def _start_dovecot(dovecot: Any, previous: Ports, log: Any) -> None:
    """On the previous run's IMAP ports where free; if Dovecot cannot listen there, on new ones."""
    from pecgateway.sandbox.dovecot import port_free

    dovecot.port = previous.imap if port_free(previous.imap) else 0
    dovecot.starttls_port = previous.imap_starttls if port_free(previous.imap_starttls) else 0
    if not (dovecot.port or dovecot.starttls_port):
        dovecot.start()
        return
    try:
        dovecot.start()
    except ConfigError as exc:
        log.warning(
            "dovecot_retry_on_new_ports",
            reason=f"Dovecot did not start on the previous run's ports: {exc}",
        )
        dovecot.port = dovecot.starttls_port = 0
        dovecot.start()


def _publish(
    layout: Layout, endpoints: Endpoints, previous: Ports, log: Any, ca: Any, schema_dir: Path
) -> None:
    """``pecgateway.toml`` (only when missing or no longer right), ``ports.json``, ``sandbox.json``."""
    changed = previous.changes(Ports.of(endpoints))
    if changed:
        log.warning(
            "sandbox_ports_changed",
            changes=changed,
            reason="the previous run's ports are taken by another program",
        )
    differences = layout.config_differences(endpoints, ca_file=ca.ca_file, schema_dir=schema_dir)
    if differences == {}:
        layout.make_folders()
        log.info("sandbox_config_kept", config=str(layout.config_file))
    else:
        backup = layout.write_config(endpoints, ca_file=ca.ca_file, schema_dir=schema_dir)
        if backup is not None:
            log.warning(
                "sandbox_config_rewritten",
                config=str(layout.config_file),
                changes=differences or "it was not a readable sandbox configuration",
                previous_copy=str(backup),
                what_to_do="restart a gateway that runs with it",
            )
    layout.write_ports(endpoints)
    layout.write_info(endpoints, ca_file=ca.ca_file)


async def _serve(
    layout: Layout,
    args: argparse.Namespace,
    log: Any,
    ca: Any,
    dovecot: Any,
    schemas: Any,
    schema_dir: Path,
    previous: Ports,
) -> None:
    from pecgateway.sandbox.running import RunningSandbox

    simulator_config = _simulator_config(args)
    running = RunningSandbox(
        layout,
        ca=ca,
        dovecot=dovecot,
        schemas=schemas,
        log=log,
        simulator_config=simulator_config,
        consegna_delay_s=CONSEGNA_DELAY_S[args.delays],
        control_token=secrets.token_urlsafe(24),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        endpoints = await running.start(previous.smtp, previous.smtp_starttls)
        _publish(layout, endpoints, previous, log, ca, schema_dir)
        log.info(
            "sandbox_ready",
            config=str(layout.config_file),
            info=str(layout.info_file),
            smtps_port=endpoints.smtp_port,
            imaps_port=endpoints.imap_port,
            pec_address=layout.user,
            delays=args.delays,
            first_address_grace_s=simulator_config.first_address_grace_s,
        )
        print("ready", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        await running.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m pecgateway.sandbox.main``: the sandbox commands alone (same as the CLI's)."""
    parser = argparse.ArgumentParser(prog="pecgateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigError as exc:
        return _fail(f"configuration: {exc}", EXIT_USAGE)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
