"""The command line: the only composition root of pecgateway.

Parses arguments, builds collaborators (config, store, schemas, clock) and hands them to the modules
that do the work. Exit status: 0 success, 1 the input or the operation failed, 2 usage or configuration.
Every failure message names the file or setting and says what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pecgateway import __version__
from pecgateway import config as config_module
from pecgateway.errors import ConfigError, MalformedMessage, PecGatewayError

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
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
    if node.kind is classify.Kind.MALFORMED:
        return _fail(
            f"{args.path}: damaged or unreadable ({node.error}); ask the sender for a new copy"
        )
    if node.kind is classify.Kind.UNKNOWN:
        return _fail(
            f"{args.path}: not an invoice, signed invoice, SDI notification, PEC message or zip of "
            f"them ({node.error})"
        )
    return EXIT_OK


def _schema_dir(args: argparse.Namespace) -> Path:
    from pecgateway import schema

    if args.schemas:
        return Path(args.schemas)
    config_path = args.config or schema.config_path_from_env()
    if config_path:
        from pecgateway import config

        return config.load(Path(config_path)).schema_dir
    return schema.default_dir()


def _cmd_validate(args: argparse.Namespace) -> int:
    from pecgateway import schema, validate

    schemas = schema.load(_schema_dir(args))
    failed = 0
    for name in args.files:
        path = Path(name)
        problems = validate.check(_read_input(path), path.name, schemas)
        if not problems:
            print(f"{path}: OK, ready to send to SDI")
            continue
        failed += 1
        print(f"{path}: {len(problems)} problem(s), SDI would reject this file")
        for problem in problems:
            where = f"line {problem.line}, column {problem.column}: " if problem.line else ""
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
        print(f"pecgateway: {source}: note: {warning}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.buffer.write(unwrapped.payload)
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
    layers = len(unwrapped.layers)
    print(f"{target}: {len(unwrapped.payload)} bytes extracted from {layers} layer(s)")
    return EXIT_OK


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


def _add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers run, once, status and check-config."""
    for name, handler, text in (
        ("run", _cmd_run, "serve every account until SIGTERM/SIGINT (systemd Type=notify)"),
        ("once", _cmd_once, "one full pass over outboxes and mailboxes, then exit"),
        ("status", _cmd_status, "what the store knows: invoices, receipts, quarantine"),
        ("check-config", _cmd_check_config, "validate the configuration and log in to servers"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--config", metavar="FILE", help="configuration file (or $PECGATEWAY_CONFIG)"
        )
        p.set_defaults(handler=handler)
        if name == "status":
            p.add_argument("--json", action="store_true", help="print one JSON object")
            p.add_argument("--account", metavar="NAME", help="only this account")


def _service_config(args: argparse.Namespace) -> config_module.Config:
    return config_module.load(config_module.config_path(args.config))


def _cmd_run(args: argparse.Namespace) -> int:
    from pecgateway import log

    cfg = _service_config(args)
    log.configure(cfg.log_level)
    return asyncio.run(_serve(cfg))


async def _serve(cfg: config_module.Config) -> int:
    """Signals only set the stop flag; a second signal cancels at once."""
    import signal

    import sdnotify

    from pecgateway import service

    stop = asyncio.Event()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal)
    notifier = sdnotify.SystemdNotifier()
    try:
        await service.run(cfg, stop, notify=notifier.notify)
    except asyncio.CancelledError:
        return 130 if stop.is_set() else EXIT_FAILED
    return EXIT_OK


def _cmd_once(args: argparse.Namespace) -> int:
    from pecgateway import log, service

    cfg = _service_config(args)
    log.configure(cfg.log_level)
    asyncio.run(service.run_once(cfg))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from pecgateway import status
    from pecgateway.store import Store

    cfg = _service_config(args)
    if args.account:
        cfg.account(args.account)  # ConfigError naming the known accounts
    with Store(cfg.store_path) as store:
        doc = status.document(store, cfg, datetime.now(UTC), args.account)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(status.render_text(doc))
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    from pecgateway import service

    cfg = _service_config(args)
    print(f"{cfg.source}: configuration OK ({len(cfg.accounts)} account(s))")
    results = asyncio.run(service.check_servers(cfg))
    for what, problem in results:
        print(f"{what}: login OK" if problem is None else f"{what}: FAILED: {problem}")
    failed = [what for what, problem in results if problem is not None]
    if failed:
        return _fail(f"cannot log in to: {', '.join(failed)}; fix the settings named above")
    return EXIT_OK


# ---- parser --------------------------------------------------------------------------------------


def _add_core_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="tell what a file is (invoice, p7m, notification, PEC, zip)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("validate", help="run the outbound checks SDI would run on invoice files")
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_schema_options(p)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("unwrap", help="extract the content of a signed .p7m (any encoding)")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", metavar="OUT", help="where to write; '-' for stdout")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(handler=_cmd_unwrap)

    p = sub.add_parser("schemas", help="manage the official XSD schemas")
    schemas_sub = p.add_subparsers(dest="schemas_command", required=True)
    inst = schemas_sub.add_parser("install", help="copy the official XSDs after checking SHA-256")
    inst.add_argument("--from", dest="source", required=True, metavar="DIR")
    inst.add_argument("--to", dest="target", metavar="DIR", help="default: the configured dir")
    _add_schema_options(inst)
    inst.set_defaults(handler=_cmd_schemas_install)


def _add_schema_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schemas", metavar="DIR", help="schema directory (default: from the config)")
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
    try:
        return handler(args)
    except ConfigError as exc:
        return _fail(f"configuration: {exc}", EXIT_USAGE)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except PecGatewayError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
