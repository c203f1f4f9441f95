"""The configuration file: TOML (tomllib) into frozen dataclasses, validated at load.

Owns reading and checking the file and the secrets it points to (``password_file`` or a systemd
credential). Every problem names its key path; all problems are reported at once in one
``ConfigError``. Secrets are wrapped in ``Secret`` and never appear in a repr or a log.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pecgateway.errors import ConfigError
from pecgateway.sink import Language

__all__ = [
    "DEFAULT_SDI_ADDRESS",
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
    raise NotImplementedError


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; read the passwords now (files or ``$CREDENTIALS_DIRECTORY``).

    ``environ`` defaults to ``os.environ`` (only ``CREDENTIALS_DIRECTORY`` is used). Raises one
    ``ConfigError`` listing every problem, one per line, each starting with its key path.
    """
    raise NotImplementedError(os.fspath(path))
