"""The configuration file: TOML (tomllib) into frozen dataclasses, validated at load.

Owns the dataclasses, what each key means and the secrets it points to (``password_file`` or a
systemd credential); the typed reads are ``tomltable``'s. Every problem names its key path; all are
reported at once in one ``ConfigError``. Secrets are ``Secret``s, never shown in a repr or a log.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pecgateway.errors import ConfigError
from pecgateway.sink import Language
from pecgateway.tomltable import TableReader

__all__ = [
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
    "load",
]

DEFAULT_SDI_ADDRESS = "sdi01@pec.fatturapa.it"
DEFAULT_STORE_PATH = "/var/lib/pecgateway/pecgateway.sqlite3"
DEFAULT_SCHEMA_DIR = "/var/lib/pecgateway/schemas"

_LOG_LEVELS = ("debug", "info", "warning", "error")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_NAME_WHAT = "a name of 1-32 characters a-z 0-9 _ - (starting with a letter or digit)"
_ADDRESS = re.compile(r"[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]+")
_CREDENTIAL = re.compile(r"[A-Za-z0-9_.-]+")
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
_ONE_PASSWORD_SOURCE = "set exactly one of password_file and password_credential"
_NO_CREDENTIALS_DIRECTORY = (
    "$CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential=, or use "
    "password_file"
)


class Security(enum.Enum):
    """How the connection is protected; certificate verification is always on."""

    TLS = "tls"  # implicit TLS (465 / 993)
    STARTTLS = "starttls"  # plain text upgraded with STARTTLS (587 / 143)


@dataclass(frozen=True, slots=True)
class Secret:
    """A password; ``repr`` and ``str`` never show it, ``reveal()`` does."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it (login)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"


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


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; read the passwords now (files or ``$CREDENTIALS_DIRECTORY``).

    ``environ`` defaults to ``os.environ`` (only ``CREDENTIALS_DIRECTORY`` is used). Raises one
    ``ConfigError`` listing every problem, one per line, each starting with its key path.
    """
    document = _read_toml(path)
    reader = TableReader(
        path.parent, os.environ if environ is None else environ, refused={"password": _NO_PASSWORD}
    )
    config = _config(reader, document, path)
    _check_accounts(reader, config.accounts if config else ())
    if reader.problems or config is None:
        raise ConfigError(
            f"{path}: {len(reader.problems)} problem(s):\n" + "\n".join(reader.problems)
        )
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}", key=str(path)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}", key=str(path)) from None


def _config(reader: TableReader, document: Mapping[str, Any], path: Path) -> Config | None:
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
        _account(reader, reader.table(raw, f"accounts[{index}]"), f"accounts[{index}]")
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


def _account(reader: TableReader, table: Mapping[str, Any], prefix: str) -> Account:
    reader.keys(table, prefix, _ACCOUNT_KEYS)
    address = reader.text(table, prefix, "address", pattern=_ADDRESS, what="a mail address")
    return Account(
        name=reader.text(table, prefix, "name", pattern=_NAME, what=_NAME_WHAT),
        address=address,
        outbox=reader.path(table, prefix, "outbox"),
        inbox=reader.path(table, prefix, "inbox"),
        smtp=_smtp(
            reader, reader.table(table.get("smtp"), f"{prefix}.smtp"), f"{prefix}.smtp", address
        ),
        imap=_imap(
            reader, reader.table(table.get("imap"), f"{prefix}.imap"), f"{prefix}.imap", address
        ),
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
) -> dict[str, Any]:
    """The keys SMTP and IMAP share."""
    security = reader.choice(table, prefix, "security", "tls", list(ports))
    return {
        "host": reader.text(table, prefix, "host", pattern=_HOST, what="a host name"),
        "port": reader.integer(table, prefix, "port", ports[security], 1, 65535),
        "security": Security(security),
        "username": reader.text(table, prefix, "username", address or "unset"),
        "password": _password(reader, table, prefix),
        "ca_file": reader.optional_file(table, prefix, "ca_file"),
        "timeout_s": reader.seconds(table, prefix, "timeout_s", 60.0),
    }


def _smtp(reader: TableReader, table: Mapping[str, Any], prefix: str, address: str) -> SmtpConfig:
    reader.keys(table, prefix, _SMTP_KEYS)
    return SmtpConfig(
        **_server(reader, table, prefix, address, {"tls": 465, "starttls": 587}),
        retry_initial_s=reader.seconds(table, prefix, "retry_initial_s", 5.0),
        retry_max_s=reader.seconds(table, prefix, "retry_max_s", 900.0),
    )


def _imap(reader: TableReader, table: Mapping[str, Any], prefix: str, address: str) -> ImapConfig:
    reader.keys(table, prefix, _IMAP_KEYS)
    folder = reader.text(table, prefix, "folder", "INBOX", what="a mailbox folder name")
    move_to = reader.raw(table, prefix, "move_to", "")
    if not isinstance(move_to, str) or move_to == folder:
        reader.fail(f"{prefix}.move_to", f'expected "" or a folder other than {folder!r}')
        move_to = ""
    return ImapConfig(
        **_server(reader, table, prefix, address, {"tls": 993, "starttls": 143}),
        folder=folder,
        move_to=move_to or None,
        idle=reader.flag(table, prefix, "idle", True),
        idle_renew_s=reader.seconds(table, prefix, "idle_renew_s", 1500.0),
        poll_interval_s=reader.seconds(table, prefix, "poll_interval_s", 60.0),
        reconnect_initial_s=reader.seconds(table, prefix, "reconnect_initial_s", 1.0),
        reconnect_max_s=reader.seconds(table, prefix, "reconnect_max_s", 300.0),
    )


def _password(reader: TableReader, table: Mapping[str, Any], prefix: str) -> Secret:
    has_file, has_credential = "password_file" in table, "password_credential" in table
    if has_file == has_credential:
        reader.fail(f"{prefix}.password_file", _ONE_PASSWORD_SOURCE)
        return Secret("")
    if has_file:
        return _read_secret(
            reader, reader.path(table, prefix, "password_file"), f"{prefix}.password_file"
        )
    name = reader.text(
        table,
        prefix,
        "password_credential",
        pattern=_CREDENTIAL,
        what="a credential name (letters, digits, . _ -)",
    )
    directory = reader.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        reader.fail(f"{prefix}.password_credential", _NO_CREDENTIALS_DIRECTORY)
        return Secret("")
    return _read_secret(reader, Path(directory) / name, f"{prefix}.password_credential")


def _read_secret(reader: TableReader, path: Path, key: str) -> Secret:
    if path == Path():
        return Secret("")
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        reader.fail(key, f"cannot read the password from {path}: {error.strerror}")
        return Secret("")
    except UnicodeDecodeError:
        reader.fail(key, f"{path} is not UTF-8 text")
        return Secret("")
    if not value:
        reader.fail(key, f"{path} is empty: write the password in it")
    return Secret(value)


def _check_accounts(reader: TableReader, accounts: Sequence[Account]) -> None:
    """Names unique; every outbox and inbox folder distinct from all others and not nested."""
    seen: dict[str, int] = {}
    for index, account in enumerate(accounts):
        if account.name and account.name in seen:
            reader.fail(
                f"accounts[{index}].name",
                f"{account.name!r} is also accounts[{seen[account.name]}]'s name",
            )
        seen.setdefault(account.name, index)
    folders = [
        (f"accounts[{index}].{role}", getattr(account, role))
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
