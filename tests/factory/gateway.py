"""Builds a gateway for service tests: its configuration (real aiosmtpd + the session Dovecot's
mailbox), a settable clock, a logged `run_once` pass, and readers of what a pass left behind.

`write_config(tmp_path, ...)` writes `pecgateway.toml` with password files beside it and returns
`config.load()` of it, so tests exercise the same validation as production.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from pecgateway import config, sample, service

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import MailAccount
    from tests.factory.smtp_server import SmtpServer

__all__ = [
    "Clock",
    "Logs",
    "account_table",
    "drop_invoice",
    "event_names",
    "file_names",
    "files_under",
    "lines_of",
    "once_logged",
    "rejection_reason",
    "service_account",
    "service_config",
    "write_config",
]

Logs = list[MutableMapping[str, Any]]

QUICK_SMTP = {"retry_initial_s": 0.05, "retry_max_s": 0.1}
QUICK_IMAP = {"reconnect_initial_s": 0.05}


class Clock:
    """A clock the test sets: `.now` starts at 2024-05-06 10:00 UTC."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def account_table(
    base: Path,
    name: str,
    *,
    address: str,
    smtp: Mapping[str, Any],
    imap: Mapping[str, Any],
    **extra: Any,
) -> str:
    """One `[[accounts]]` entry; `smtp`/`imap` hold host, port, username, password, ca_file ..."""
    lines = [
        "[[accounts]]",
        f'name = "{name}"',
        f'address = "{address}"',
        f'outbox = "{base / name / "outbox"}"',
        f'inbox = "{base / name / "inbox"}"',
        "stable_for_s = 0.0",
        "rescan_interval_s = 0.5",
    ]
    lines += [f"{key} = {_toml(value)}" for key, value in extra.items()]
    for section, values in (("smtp", smtp), ("imap", imap)):
        secret = base / f"{name}-{section}.password"
        secret.write_text(str(values["password"]) + "\n", encoding="utf-8")
        lines.append(f"[accounts.{section}]")
        for key, value in values.items():
            if key != "password":
                lines.append(f"{key} = {_toml(value)}")
        lines.append(f'password_file = "{secret}"')
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return f'"{value}"'


def write_config(
    base: Path, schema_dir: Path, accounts: list[str], language: str = "it"
) -> config.Config:
    text = (
        f'store_path = "{base / "store.sqlite3"}"\n'
        f'schema_dir = "{schema_dir}"\n'
        f'inbox_language = "{language}"\n\n' + "\n".join(accounts)
    )
    path = base / "pecgateway.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path, environ={})


def service_account(
    base: Path,
    name: str,
    smtp: SmtpServer,
    mail_user: MailAccount,
    *,
    quick: bool = False,
    imap: Mapping[str, Any] | None = None,
    **extra: Any,
) -> str:
    """An `[[accounts]]` entry sending through `smtp` and reading `mail_user`'s mailbox.

    `quick`: SMTP retries and IMAP reconnects after 0.05 s (at most 0.1 s) instead of the defaults.
    `imap` adds or overrides IMAP keys; `extra` are keys of the account itself.
    """
    return account_table(
        base,
        name,
        address=mail_user.user,
        smtp={
            "host": smtp.host,
            "port": smtp.port,
            "username": smtp.username,
            "password": smtp.password,
            "ca_file": str(smtp.ca_file),
            "timeout_s": 5.0,
            **(QUICK_SMTP if quick else {}),
        },
        imap={
            "host": mail_user.host,
            "port": mail_user.port,
            "username": mail_user.user,
            "password": mail_user.password,
            "ca_file": str(mail_user.ca_file),
            "timeout_s": 5.0,
            **(QUICK_IMAP if quick else {}),
            **(imap or {}),
        },
        **extra,
    )


def service_config(
    base: Path,
    schema_dir: Path,
    smtp: SmtpServer,
    mail_user: MailAccount,
    *,
    quick: bool = False,
    imap: Mapping[str, Any] | None = None,
) -> config.Config:
    """The configuration of one account, "main" (see `service_account`)."""
    table = service_account(base, "main", smtp, mail_user, quick=quick, imap=imap)
    return write_config(base, schema_dir, [table])


async def once_logged(
    gateway_config: config.Config,
    clock: service.Clock,
    *,
    new_token: service.TokenFactory | None = None,
    timeout_s: float | None = None,
) -> tuple[service.PassReport, Logs]:
    """`service.run_once` with its log lines captured (within `timeout_s` when given)."""
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with asyncio.timeout(timeout_s):
            if new_token is None:
                report = await service.run_once(gateway_config, clock=clock)
            else:
                report = await service.run_once(gateway_config, clock=clock, new_token=new_token)
    return report, logs


def drop_invoice(
    gateway_config: config.Config, name: str = sample.file_name(), data: bytes | None = None
) -> bytes:
    """Writes `data` (default: `sample.fpr12()`) as `name` in the first account's outbox."""
    outbox = gateway_config.accounts[0].outbox
    outbox.mkdir(parents=True, exist_ok=True)
    content = sample.fpr12() if data is None else data
    (outbox / name).write_bytes(content)
    return content


def event_names(logs: Sequence[Mapping[str, Any]], level: str | None = None) -> list[str]:
    """The events logged, in order (only those at `level` when given)."""
    return [str(line["event"]) for line in logs if level is None or line["log_level"] == level]


def lines_of(
    logs: Sequence[MutableMapping[str, Any]], event: str
) -> list[MutableMapping[str, Any]]:
    """The log lines of one event."""
    return [line for line in logs if line["event"] == event]


def files_under(root: Path) -> list[str]:
    """Every file below `root`, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def file_names(folder: Path) -> list[str]:
    """The sorted names in `folder` (none when it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def rejection_reason(outbox: Path, name: str) -> dict[str, Any]:
    """The JSON reason beside a file the outbox rejected."""
    document = json.loads((outbox / "rejected" / f"{name}.reason.json").read_bytes())
    assert isinstance(document, dict)
    return document
