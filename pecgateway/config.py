"""The configuration file: TOML (tomllib) into frozen dataclasses, validated at load.

Owns the dataclasses and what each key means; the typed reads are ``tomltable``'s, the passwords
(``password_file`` or a systemd credential) ``credentials``'s. Every problem names its key path; all are
reported at once in one ``ConfigError``. Secrets are ``Secret``s, never shown in a repr or a log.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pecgateway.credentials import (
    DEFAULT_CREDENTIALS_DIR,
    Secret,
    Secrets,
    credentials_dir,
    password,
)
from pecgateway.errors import ConfigError
from pecgateway.sink import Language
from pecgateway.tomltable import TableReader

__all__ = [
    "DEFAULT_CREDENTIALS_DIR",
    "DEFAULT_SCHEMA_DIR",
    "DEFAULT_SDI_ADDRESS",
    "DEFAULT_STORE_PATH",
    "Account",
    "Config",
    "ImapConfig",
    "Secret",
    "Security",
    "SmtpConfig",
    "config_path",
    "credentials_dir",
    "load",
]

DEFAULT_SDI_ADDRESS = "sdi01@pec.fatturapa.it"
DEFAULT_STORE_PATH = "/var/lib/pecgateway/pecgateway.sqlite3"
DEFAULT_SCHEMA_DIR = "/var/lib/pecgateway/schemas"

_BOM = "\ufeff".encode()
_LOG_LEVELS = ("debug", "info", "warning", "error")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_NAME_WHAT = "a name of 1-32 characters a-z 0-9 _ - (starting with a letter or digit)"
_ADDRESS = re.compile(r"[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]+")
_TOP_KEYS = frozenset({"store_path", "schema_dir", "log_level", "inbox_language", "accounts"})
_ACCOUNT_KEYS = frozenset(
    {
        "name",
        "address",
        "outbox",
        "inbox",
        "sdi_address",
        "resend_after_s",
        "stable_for_s",
        "rescan_interval_s",
        "smtp",
        "imap",
    }
)
_SERVER_KEYS = frozenset(
    {
        "host",
        "port",
        "security",
        "username",
        "password_file",
        "password_credential",
        "ca_file",
        "timeout_s",
    }
)
_SMTP_KEYS = _SERVER_KEYS | {"retry_initial_s", "retry_max_s"}
_IMAP_KEYS = _SERVER_KEYS | {
    "folder",
    "move_to",
    "idle",
    "idle_renew_s",
    "poll_interval_s",
    "reconnect_initial_s",
    "reconnect_max_s",
}
_NO_PASSWORD = (
    "passwords never go in this file (it is often readable by others and ends up in backups): "
    "put the password in a file readable only by the service and set password_file, or load it "
    "with systemd LoadCredential= and set password_credential"
)


class Security(enum.Enum):
    """How the connection is protected; certificate verification is always on."""

    TLS = "tls"  # implicit TLS (465 / 993)
    STARTTLS = "starttls"  # plain text upgraded with STARTTLS (587 / 143)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """``[accounts.smtp]``: where and how to send."""

    host: str
    password: Secret
    username: str
    port: int = 465
    security: Security = Security.TLS
    ca_file: Path | None = None
    timeout_s: float = 60.0
    retry_initial_s: float = 5.0
    retry_max_s: float = 900.0


@dataclass(frozen=True, slots=True)
class ImapConfig:
    """``[accounts.imap]``: the mailbox to read."""

    host: str
    password: Secret
    username: str
    port: int = 993
    security: Security = Security.TLS
    ca_file: Path | None = None
    timeout_s: float = 60.0
    folder: str = "INBOX"
    move_to: str | None = None
    idle: bool = True
    idle_renew_s: float = 1500.0
    poll_interval_s: float = 60.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Account:
    """One ``[[accounts]]`` entry: a PEC account with its own folders and servers."""

    name: str
    address: str
    outbox: Path
    inbox: Path
    smtp: SmtpConfig
    imap: ImapConfig
    sdi_address: str = DEFAULT_SDI_ADDRESS
    resend_after_s: float = 86400.0
    stable_for_s: float = 1.0
    rescan_interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file. Paths are absolute (relative ones resolve against the file's folder)."""

    store_path: Path
    schema_dir: Path
    accounts: tuple[Account, ...]
    log_level: str = "info"
    inbox_language: Language = Language.IT
    source: Path | None = None  # the file it was loaded from

    def account(self, name: str) -> Account:
        """The account called ``name``; raises ``ConfigError`` naming the known ones."""
        for account in self.accounts:
            if account.name == name:
                return account
        known = ", ".join(a.name for a in self.accounts)
        raise ConfigError(f"no account named {name!r} (known: {known})", key="accounts")


def config_path(arg: str | Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The configuration file: ``arg``, else ``$PECGATEWAY_CONFIG``, else ``ConfigError``."""
    env = os.environ if environ is None else environ
    chosen = arg if arg else env.get("PECGATEWAY_CONFIG")
    if not chosen:
        raise ConfigError(
            "no configuration file: pass --config FILE or set PECGATEWAY_CONFIG", key="--config"
        )
    return Path(chosen)


def load(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    read_secrets: bool = True,
    credentials_dir: Path | None = None,
) -> Config:
    """Read and validate ``path``; with ``read_secrets`` read the passwords now.

    ``password_credential`` names a file in ``credentials_dir``, else in ``$CREDENTIALS_DIRECTORY``
    of ``environ`` (default ``os.environ``). Without ``read_secrets`` (status, validate: commands
    that never log in) every password is an empty ``Secret`` and only its setting is checked.
    Raises one ``ConfigError`` listing every problem, one per line, each starting with its key path.
    """
    document = _read_toml(path)
    env = os.environ if environ is None else environ
    reader = TableReader(path.absolute().parent, env, refused={"password": _NO_PASSWORD})
    directory = credentials_dir or (
        Path(env["CREDENTIALS_DIRECTORY"]) if env.get("CREDENTIALS_DIRECTORY") else None
    )
    config = _config(reader, document, path, Secrets(read_secrets, directory))
    _check_accounts(reader, config.accounts if config else ())
    if reader.problems or config is None:
        raise ConfigError(
            f"{path}: {len(reader.problems)} problem(s):\n" + "\n".join(reader.problems)
        )
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the file ({error.strerror})", key=str(path)) from None
    try:
        return tomllib.loads(_text(data, path))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}; fix the place named", key=str(path)) from None


def _text(data: bytes, path: Path) -> str:
    """The file's text: UTF-8, a leading byte order mark (Notepad's) dropped."""
    body = data.removeprefix(_BOM)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path} is not UTF-8 (byte 0x{body[error.start]:02X} at line {line}): save it as UTF-8"
        ) from None


def _config(
    reader: TableReader, document: Mapping[str, Any], path: Path, secrets: Secrets
) -> Config | None:
    reader.keys(document, "", _TOP_KEYS)
    store_path = reader.path(document, "", "store_path", DEFAULT_STORE_PATH)
    schema_dir = reader.path(document, "", "schema_dir", DEFAULT_SCHEMA_DIR)
    log_level = reader.choice(document, "", "log_level", "info", _LOG_LEVELS)
    language = reader.choice(
        document, "", "inbox_language", "it", [lang.value for lang in Language]
    )
    raw_accounts = document.get("accounts")
    if not isinstance(raw_accounts, list) or not raw_accounts:
        reader.fail("accounts", "expected at least one [[accounts]] table")
        return None
    accounts = tuple(
        _account(reader, reader.table(raw, _label(index, raw)), _label(index, raw), secrets)
        for index, raw in enumerate(raw_accounts)
    )
    return Config(
        store_path=store_path,
        schema_dir=schema_dir,
        accounts=accounts,
        log_level=log_level,
        inbox_language=Language(language),
        source=path,
    )


def _label(index: int, raw: object) -> str:
    """``accounts[0]``, with the account's name when it has a valid one: ``accounts[0] (main)``."""
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and _NAME.fullmatch(name):
        return f"accounts[{index}] ({name})"
    return f"accounts[{index}]"


def _account(
    reader: TableReader, table: Mapping[str, Any], prefix: str, secrets: Secrets
) -> Account:
    reader.keys(table, prefix, _ACCOUNT_KEYS)
    address = reader.text(table, prefix, "address", pattern=_ADDRESS, what="a mail address")
    smtp_table = reader.table(table.get("smtp"), f"{prefix}.smtp")
    imap_table = reader.table(table.get("imap"), f"{prefix}.imap")
    return Account(
        name=reader.text(table, prefix, "name", pattern=_NAME, what=_NAME_WHAT),
        address=address,
        outbox=reader.path(table, prefix, "outbox"),
        inbox=reader.path(table, prefix, "inbox"),
        smtp=_smtp(reader, smtp_table, f"{prefix}.smtp", address, secrets),
        imap=_imap(reader, imap_table, f"{prefix}.imap", address, secrets),
        sdi_address=reader.text(
            table,
            prefix,
            "sdi_address",
            DEFAULT_SDI_ADDRESS,
            pattern=_ADDRESS,
            what="a mail address",
        ),
        resend_after_s=reader.seconds(table, prefix, "resend_after_s", 86400.0),
        stable_for_s=reader.seconds(table, prefix, "stable_for_s", 1.0, zero=True),
        rescan_interval_s=reader.seconds(table, prefix, "rescan_interval_s", 30.0),
    )


def _server(
    reader: TableReader,
    table: Mapping[str, Any],
    prefix: str,
    address: str,
    ports: Mapping[str, int],
    secrets: Secrets,
) -> dict[str, Any]:
    """The keys SMTP and IMAP share."""
    security = reader.choice(table, prefix, "security", "tls", list(ports))
    return {
        "host": reader.text(table, prefix, "host", pattern=_HOST, what="a host name"),
        "port": reader.integer(table, prefix, "port", ports[security], 1, 65535),
        "security": Security(security),
        "username": reader.text(table, prefix, "username", address or "unset"),
        "password": password(reader, table, prefix, secrets),
        "ca_file": reader.optional_file(table, prefix, "ca_file"),
        "timeout_s": reader.seconds(table, prefix, "timeout_s", 60.0),
    }


def _smtp(
    reader: TableReader, table: Mapping[str, Any], prefix: str, address: str, secrets: Secrets
) -> SmtpConfig:
    reader.keys(table, prefix, _SMTP_KEYS)
    return SmtpConfig(
        **_server(reader, table, prefix, address, {"tls": 465, "starttls": 587}, secrets),
        retry_initial_s=reader.seconds(table, prefix, "retry_initial_s", 5.0),
        retry_max_s=reader.seconds(table, prefix, "retry_max_s", 900.0),
    )


def _imap(
    reader: TableReader, table: Mapping[str, Any], prefix: str, address: str, secrets: Secrets
) -> ImapConfig:
    reader.keys(table, prefix, _IMAP_KEYS)
    folder = reader.text(table, prefix, "folder", "INBOX", what="a mailbox folder name")
    move_to = reader.raw(table, prefix, "move_to", "")
    if not isinstance(move_to, str) or move_to == folder:
        reader.fail(f"{prefix}.move_to", f'expected "" or a folder other than {folder!r}')
        move_to = ""
    return ImapConfig(
        **_server(reader, table, prefix, address, {"tls": 993, "starttls": 143}, secrets),
        folder=folder,
        move_to=move_to or None,
        idle=reader.flag(table, prefix, "idle", True),
        idle_renew_s=reader.seconds(table, prefix, "idle_renew_s", 1500.0),
        poll_interval_s=reader.seconds(table, prefix, "poll_interval_s", 60.0),
        reconnect_initial_s=reader.seconds(table, prefix, "reconnect_initial_s", 1.0),
        reconnect_max_s=reader.seconds(table, prefix, "reconnect_max_s", 300.0),
    )


def _check_accounts(reader: TableReader, accounts: Sequence[Account]) -> None:
    """Names unique; every outbox and inbox folder distinct from all others and not nested."""
    labels = [_label(index, {"name": account.name}) for index, account in enumerate(accounts)]
    seen: dict[str, int] = {}
    for index, account in enumerate(accounts):
        if account.name and account.name in seen:
            reader.fail(
                f"{labels[index]}.name",
                f"{account.name!r} is also accounts[{seen[account.name]}]'s name",
            )
        seen.setdefault(account.name, index)
    folders = [
        (f"{labels[index]}.{role}", getattr(account, role))
        for index, account in enumerate(accounts)
        for role in ("outbox", "inbox")
    ]
    for position, (key, folder) in enumerate(folders):
        for other_key, other in folders[:position]:
            if folder != Path() and other != Path() and _overlap(folder, other):
                reader.fail(key, f"{folder} overlaps {other_key} ({other}): use separate folders")


def _overlap(a: Path, b: Path) -> bool:
    a, b = Path(os.path.normpath(a)), Path(os.path.normpath(b))
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)
