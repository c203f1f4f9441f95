"""The command line: the only composition root of pecgateway.

Parses arguments, builds collaborators (config, store, schemas, clock) and hands them to the modules
that do the work. Exit status: 0 success, 1 the input or the operation failed, 2 usage or configuration.
Every failure message names the file or setting and says what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pecgateway import __version__
from pecgateway import config as config_module
from pecgateway.errors import ConfigError, MalformedMessage, PecGatewayError
from pecgateway.instance import AlreadyRunning

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE, like any program writing into `| head`
MAX_INPUT_BYTES = 256 * 1024 * 1024

Handler = Callable[[argparse.Namespace], int]


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"pecgateway: {message}", file=sys.stderr)
    return code


def _read_input(path: Path) -> bytes:
    """A regular file's bytes, refusing devices, pipes and anything larger than any real input."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a regular file; give the path of a file")
        if size > MAX_INPUT_BYTES:
            raise FileNotFoundError(
                f"{path}: {size} bytes is larger than any invoice or PEC message "
                f"({MAX_INPUT_BYTES} bytes at most); check that this is the right file"
            )
        return path.read_bytes()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and exc.strerror is None:
            raise
        raise FileNotFoundError(
            f"{path}: cannot read the file ({exc.strerror}); check the path"
        ) from exc


# ---- inspect / validate / unwrap / schemas -------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pecgateway import classify, report

    node = classify.classify(_read_input(Path(args.path)), Path(args.path).name)
    obj = report.to_json(node, str(args.path))
    text = json.dumps(obj, ensure_ascii=False, indent=2) if args.json else None
    try:
        print(text if text is not None else report.render_text(node, str(args.path)))
    except UnicodeEncodeError:  # a terminal that cannot show some characters, or a raw file name
        fallback = json.dumps(obj, indent=2) if args.json else report.render_text(node, args.path)
        print(fallback.encode("ascii", "backslashreplace").decode("ascii"))
    if any(item.internal_error for item in classify.walk(node)):
        print(
            f"pecgateway: {args.path}: hit a bug while reading it; please report it",
            file=sys.stderr,
        )
    if node.kind in (classify.Kind.MALFORMED, classify.Kind.UNKNOWN):
        damaged = node.kind is classify.Kind.MALFORMED
        return _fail(_not_understood(args.path, damaged, node.error, said=not args.json))
    return EXIT_OK


def _not_understood(path: str, damaged: bool, error: str | None, said: bool = False) -> str:
    """inspect's one stderr line for a file it could not read: short when stdout said why."""
    why = " (see above)" if said else f": {error}"
    if not damaged:
        return f"{path}: not understood{why}"
    advice = "" if "ask the sender" in (error or "") else "; ask the sender for a new copy"
    return f"{path}: damaged or unreadable{why}{advice}"


def _schema_dir(args: argparse.Namespace) -> Path:
    from pecgateway import schema

    if getattr(args, "schemas", None):
        return Path(args.schemas)
    config_path = args.config or schema.config_path_from_env()
    if config_path:
        from pecgateway import config

        return config.load(Path(config_path), read_secrets=False).schema_dir
    return schema.default_dir()


def _schemas_for_validate(args: argparse.Namespace) -> Any:
    """The schemas of ``--schemas``, else of the config's schema_dir, else the installed ones."""
    from pecgateway import schema

    try:
        return schema.load(_schema_dir(args))
    except ConfigError as exc:
        if args.schemas:
            raise
        raise ConfigError(f"{exc}, or pass --schemas DIR") from None


def _cmd_validate(args: argparse.Namespace) -> int:
    from pecgateway import validate

    schemas = _schemas_for_validate(args)
    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            problems = validate.check(_read_input(path), path.name, schemas)
        except FileNotFoundError as exc:  # one unreadable path never hides the others' results
            print(f"pecgateway: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not problems:
            print(f"{path}: OK, ready to send to SDI")
            continue
        failed += 1
        verdict = (
            "SDI would reject this file"
            if any(problem.blames_file for problem in problems)
            else "this machine cannot check it yet"
        )
        print(f"{path}: {len(problems)} problem(s), {verdict}")
        for problem in problems:
            where = f"{problem.location}: " if problem.location else ""
            print(f"  [{problem.code}] {where}{problem.message}")
            print(f"      fix: {problem.hint}")
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_unwrap(args: argparse.Namespace) -> int:
    from pecgateway import p7m

    source = Path(args.input)
    try:
        unwrapped = p7m.unwrap(_read_input(source))
    except MalformedMessage as exc:
        return _fail(f"{source}: cannot extract the signed content: {exc.reason}")
    for warning in unwrapped.warnings:
        if warning != p7m.PLAIN_XML_WARNING:
            print(f"pecgateway: {source}: note: {warning}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.buffer.write(unwrapped.payload)
        if not unwrapped.signed:
            print(f"pecgateway: {source}: {_NOT_SIGNED}; wrote it unchanged", file=sys.stderr)
        return EXIT_OK
    target = Path(args.output) if args.output else _default_unwrap_target(source)
    if target.resolve() == source.resolve():
        return _fail(f"{target}: is the input file itself; choose another name with -o")
    if target.exists() and not args.force:
        return _fail(f"{target}: already exists; choose another name with -o or add --force")
    try:
        target.write_bytes(unwrapped.payload)
    except OSError as exc:
        return _fail(f"{target}: cannot write ({exc.strerror}); check the folder")
    if not unwrapped.signed:
        print(f"{source}: {_NOT_SIGNED}; wrote it unchanged to {target}")
        return EXIT_OK
    layers = len(unwrapped.layers)
    print(f"{target}: {len(unwrapped.payload)} bytes extracted from {layers} signed layer(s)")
    return EXIT_OK


_NOT_SIGNED = "is not signed (plain XML): nothing to unwrap"


def _default_unwrap_target(source: Path) -> Path:
    """x.xml.p7m -> x.xml, x.txt.p7m -> x.txt, x.p7m/.pk7 (any case) -> x.xml, else x + .payload."""
    name = source.name
    if len(name) > 4 and name.lower().endswith((".p7m", ".pk7")):
        inner = name[:-4]
        return source.with_name(inner if Path(inner).suffix else inner + ".xml")
    return source.with_name(name + ".payload")


def _cmd_schemas_install(args: argparse.Namespace) -> int:
    from pecgateway import schema

    target = Path(args.target) if args.target else _schema_dir(args)
    installed = schema.install(Path(args.source), target)
    for item in installed:
        print(f"installed {item.role} {item.version}: {target / item.filename}")
    print(f"{len(installed)} schema file(s) in {target}")
    return EXIT_OK


# ---- run / once / status / check-config (owned by the service) ---------------------------------

_SERVICE_COMMANDS = (
    ("run", "serve every account until SIGTERM/SIGINT (systemd Type=notify)"),
    ("once", "one full pass over outboxes and mailboxes, then exit; prints a summary"),
    ("status", "what the store knows: invoices, receipts, quarantine (needs no password)"),
    ("check-config", "check the configuration, its folders and schemas, and log in to servers"),
)
_LOGS_IN = frozenset({"run", "once", "check-config"})


def _add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers run, once, status and check-config."""
    handlers: dict[str, Handler] = {
        "run": _cmd_run,
        "once": _cmd_once,
        "status": _cmd_status,
        "check-config": _cmd_check_config,
    }
    for name, text in _SERVICE_COMMANDS:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "--config", metavar="FILE", help="configuration file (or $PECGATEWAY_CONFIG)"
        )
        p.set_defaults(handler=handlers[name])
        if name in _LOGS_IN:
            p.add_argument(
                "--credentials-dir",
                metavar="DIR",
                help="where password_credential names are files (default: $CREDENTIALS_DIRECTORY "
                f"under systemd, else {config_module.DEFAULT_CREDENTIALS_DIR} when readable)",
            )
        if name == "status":
            p.add_argument("--json", action="store_true", help="print one JSON object")
            p.add_argument("--account", metavar="NAME", help="only this account")


def _service_config(args: argparse.Namespace) -> config_module.Config:
    """The configuration; passwords are read only for the commands that log in."""
    path = config_module.config_path(args.config)
    if args.command not in _LOGS_IN:
        return config_module.load(path, read_secrets=False)
    directory = config_module.credentials_dir(args.credentials_dir)
    return config_module.load(path, credentials_dir=directory)


def _cmd_run(args: argparse.Namespace) -> int:
    from pecgateway import log, preflight

    cfg = _service_config(args)
    preflight.require_store(cfg)
    log.configure(cfg.log_level)
    return asyncio.run(_serve(cfg))


async def _serve(cfg: config_module.Config) -> int:
    """Signals only set the stop flag; a second signal cancels at once."""
    import signal

    import sdnotify

    from pecgateway import log, service

    stop = asyncio.Event()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(number: signal.Signals) -> None:
        received.append(number.name)
        if stop.is_set() and main_task is not None:
            main_task.cancel()
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    notifier = sdnotify.SystemdNotifier()
    try:
        await service.run(cfg, stop, notify=notifier.notify)
    except asyncio.CancelledError:  # service.run logged service_stopped_immediately
        return 130 if stop.is_set() else EXIT_FAILED
    log.get_logger().info("service_stopped", signal=received[0] if received else None)
    return EXIT_OK


def _cmd_once(args: argparse.Namespace) -> int:
    from pecgateway import log, preflight, service, status

    cfg = _service_config(args)
    preflight.require_store(cfg)
    before = _status_document(cfg)
    log.configure(cfg.log_level)
    report = asyncio.run(service.run_once(cfg))
    print(status.pass_summary(before, _status_document(cfg)), flush=True)
    if not report.ok:
        print("pecgateway: this pass could not finish everything:", file=sys.stderr)
        print(report.summary(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _status_document(cfg: config_module.Config, account: str | None = None) -> dict[str, Any]:
    """The status object; a store not created yet reads as an empty one (and stays uncreated)."""
    from datetime import UTC, datetime

    from pecgateway import status
    from pecgateway.store import Store

    path = cfg.store_path if cfg.store_path.exists() else Path(":memory:")
    with Store(path) as store:
        return status.document(store, cfg, datetime.now(UTC), account)


def _cmd_status(args: argparse.Namespace) -> int:
    from pecgateway import preflight, status

    cfg = _service_config(args)
    if args.account:
        cfg.account(args.account)  # ConfigError naming the known accounts
    preflight.require_store(cfg)
    if not cfg.store_path.exists():
        print(
            f"pecgateway: {cfg.store_path}: no store yet (the service creates it when it first "
            "runs): nothing sent or received",
            file=sys.stderr,
        )
    doc = _status_document(cfg, args.account)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(status.render_text(doc))
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    from pecgateway import preflight, service

    cfg = _service_config(args)
    print(f"{cfg.source}: configuration OK ({len(cfg.accounts)} account(s))")
    findings = preflight.check(cfg)
    for item in findings:
        state = f"FAILED: {item.problem}" if item.problem else f"OK ({item.detail})"
        print(f"{item.key} {item.path}: {state}")
    results = asyncio.run(service.check_servers(cfg))
    for what, problem in results:
        print(f"{what}: login OK" if problem is None else f"{what}: FAILED: {problem}")
    unusable = [item.key for item in findings if item.problem]
    if unusable:
        return _fail(f"not usable: {', '.join(unusable)}; fix the places named above", EXIT_USAGE)
    failed = [what for what, problem in results if problem is not None]
    if failed:
        return _fail(f"cannot log in to: {', '.join(failed)}; fix the settings named above")
    return EXIT_OK


# ---- parser --------------------------------------------------------------------------------------


def _add_core_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "tell what a file is (invoice, p7m, notification, PEC message, zip)"
    p = sub.add_parser("inspect", help=text, description=text)
    p.add_argument("path", metavar="PATH", help="the file to look at (any name or extension)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_inspect)

    text = "run the outbound checks SDI would run on invoice files"
    p = sub.add_parser("validate", help=text, description=text)
    p.add_argument("files", nargs="+", metavar="FILE", help="invoice files (.xml or .xml.p7m)")
    _add_schema_options(p)
    p.set_defaults(handler=_cmd_validate)

    text = "extract the content of a signed .p7m (any encoding)"
    p = sub.add_parser("unwrap", help=text, description=text)
    p.add_argument("input", metavar="IN", help="the signed file (.p7m, .pk7, any encoding)")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write; '-' for stdout (default: IN without .p7m, e.g. x.xml.p7m -> x.xml)",
    )
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(handler=_cmd_unwrap)

    p = sub.add_parser("schemas", help="manage the official XSD schemas")
    schemas_sub = p.add_subparsers(dest="schemas_command", required=True, metavar="COMMAND")
    text = "copy the official XSDs and stylesheets (XSL) after checking their SHA-256"
    inst = schemas_sub.add_parser("install", help=text, description=text)
    inst.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="DIR",
        help="the folder (or one file) with the XSDs downloaded from the Agenzia delle Entrate",
    )
    inst.add_argument(
        "--to",
        dest="target",
        metavar="DIR",
        help="where to install them (default: schema_dir of --config, else "
        "$STATE_DIRECTORY/schemas or ~/.local/share/pecgateway/schemas)",
    )
    _add_schema_options(inst, schemas=False)
    inst.set_defaults(handler=_cmd_schemas_install)


def _add_schema_options(p: argparse.ArgumentParser, *, schemas: bool = True) -> None:
    if schemas:
        p.add_argument(
            "--schemas", metavar="DIR", help="schema directory (default: from the config)"
        )
    p.add_argument("--config", metavar="FILE", help="configuration file (or $PECGATEWAY_CONFIG)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pecgateway",
        description="Send FatturaPA invoices to SDI over PEC and file what comes back.",
    )
    parser.add_argument("--version", action="version", version=f"pecgateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_core_commands(sub)
    _add_service_commands(sub)
    from pecgateway.sandbox import main as sandbox_main

    sandbox_main.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    if sys.stdout is None:  # started with stdout closed (`>&-`): write nowhere rather than fail
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - lives as long as the process
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        return _stdout_closed()
    except AlreadyRunning as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(f"configuration: {exc}", EXIT_USAGE)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except PecGatewayError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the disk holding the redirected output is full
        _stdout_closed()
        return _fail(f"cannot finish: {exc.strerror or exc}; check free disk space and permissions")
    return code


def _stdout_closed() -> int:
    """The reader of our output went away (``status --json | head``): what a program killed by
    SIGPIPE does, quietly. stdout goes to /dev/null so the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
