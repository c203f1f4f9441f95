"""Builds a gateway configuration file for tests: real aiosmtpd + the session Dovecot's mailbox.

`write_config(tmp_path, ...)` writes `pecgateway.toml` with password files beside it and returns
`config.load()` of it, so tests exercise the same validation as production.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pecgateway import config

__all__ = ["account_table", "write_config"]


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
