"""The sandbox directory: what `pecgateway sandbox --dir DIR` keeps and writes there.

Owns the paths (CA, Dovecot, SDI state, the provider's queue, password, log, outbox, inbox), the
sandbox account's persistent password, the ports of the last run (``ports.json``, kept so a restart
listens where a gateway already looks), and the two files other programs read: ``pecgateway.toml``
(a complete gateway configuration, keys as in docs/architecture.md) and ``sandbox.json``
(contracts.md §3).
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

__all__ = ["Endpoints", "Layout", "Ports"]

USER = "fatture@pec.sandbox.test"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the running sandbox listens."""

    imap_port: int
    imap_starttls_port: int
    smtp_port: int
    smtp_starttls_port: int
    control_port: int
    control_token: str


@dataclass(frozen=True, slots=True)
class Ports:
    """Listening ports of the account's two servers; 0 where none is known (pick any)."""

    imap: int = 0
    imap_starttls: int = 0
    smtp: int = 0
    smtp_starttls: int = 0

    @classmethod
    def of(cls, endpoints: Endpoints) -> Ports:
        return cls(
            endpoints.imap_port,
            endpoints.imap_starttls_port,
            endpoints.smtp_port,
            endpoints.smtp_starttls_port,
        )

    def changes(self, now: Ports) -> dict[str, str]:
        """``{"smtp": "2465 -> 40123"}`` for each known port that ``now`` does not keep."""
        return {
            name: f"{old} -> {new}"
            for name in ("imap", "imap_starttls", "smtp", "smtp_starttls")
            if (old := getattr(self, name)) and old != (new := getattr(now, name))
        }


# the values of pecgateway.toml that the sandbox decides; every other key is the user's to edit
_OWNED = ("store_path", "schema_dir", "outbox", "inbox", "password_file", "ca_file")


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def user(self) -> str:
        return USER

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def dovecot_dir(self) -> Path:
        return self.root / "dovecot"

    @property
    def sdi_state(self) -> Path:
        return self.root / "sdi-state.json"

    @property
    def password_file(self) -> Path:
        return self.root / "sandbox.password"

    @property
    def log_file(self) -> Path:
        return self.root / "sandbox.log"

    @property
    def config_file(self) -> Path:
        return self.root / "pecgateway.toml"

    @property
    def info_file(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def provider_queue(self) -> Path:
        return self.root / "provider-queue"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def store(self) -> Path:
        return self.root / "pecgateway.sqlite3"

    def password(self) -> str:
        """The account's password: made once, then kept in ``sandbox.password`` (mode 0600)."""
        if self.password_file.is_file():
            return self.password_file.read_text(encoding="utf-8").strip()
        password = secrets.token_urlsafe(18)
        _write(self.password_file, password + "\n", 0o600)
        return password

    # ---- the ports of the last run -------------------------------------------------------------

    def previous_ports(self) -> Ports:
        """Where the last sandbox in this directory listened: ``ports.json`` or a ``sandbox.json``
        left by a crash, with the SMTP and IMAP ports of ``pecgateway.toml`` taking precedence
        (a gateway uses those). All 0 for a new directory; unreadable files count as absent."""
        found: dict[str, int] = {}
        for path in (self.info_file, self.ports_file):
            found.update(_json_ports(path))
        written = self.written_settings() or {}
        found.update({k: v for k in ("imap", "smtp") if _is_port(v := written.get(k))})
        return Ports(**found)

    def write_ports(self, endpoints: Endpoints) -> None:
        ports = Ports.of(endpoints)
        data = {
            "imap": {"port": ports.imap, "starttls_port": ports.imap_starttls},
            "smtp": {"port": ports.smtp, "starttls_port": ports.smtp_starttls},
        }
        _write(self.ports_file, json.dumps(data, indent=2) + "\n", 0o644)

    # ---- pecgateway.toml -----------------------------------------------------------------------

    def written_settings(self) -> dict[str, object] | None:
        """The values of the existing ``pecgateway.toml`` the sandbox decides (ports and paths);
        None when there is no such file or it is not a configuration this sandbox wrote."""
        try:
            data = tomllib.loads(self.config_file.read_text(encoding="utf-8"))
            account = data["accounts"][0]
            found = {**data, **account, **account["smtp"]}
            return {
                **{key: found.get(key) for key in _OWNED},
                "smtp": account["smtp"].get("port"),
                "imap": account["imap"].get("port"),
            }
        except (OSError, UnicodeError, tomllib.TOMLDecodeError, LookupError, TypeError):
            return None

    def config_differences(
        self, endpoints: Endpoints, *, ca_file: Path, schema_dir: Path
    ) -> dict[str, str] | None:
        """What the existing ``pecgateway.toml`` says differently from this run, as
        ``{key: "old -> new"}``; None when there is no usable file to compare."""
        written = self.written_settings()
        if written is None:
            return None
        wanted: dict[str, object] = {
            "store_path": str(self.store),
            "schema_dir": str(schema_dir),
            "outbox": str(self.outbox),
            "inbox": str(self.inbox),
            "password_file": str(self.password_file),
            "ca_file": str(ca_file),
            "smtp": endpoints.smtp_port,
            "imap": endpoints.imap_port,
        }
        return {
            key: f"{written.get(key)} -> {value}"
            for key, value in wanted.items()
            if written.get(key) != value
        }

    def make_folders(self) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)

    def write_config(self, endpoints: Endpoints, *, ca_file: Path, schema_dir: Path) -> Path | None:
        """Writes ``pecgateway.toml``; an existing one is kept first as ``pecgateway.toml.bak``,
        whose path is returned (None when there was none)."""
        self.make_folders()
        backup = None
        if self.config_file.is_file():
            backup = self.config_file.with_name(self.config_file.name + ".bak")
            _write(backup, self.config_file.read_text(encoding="utf-8", errors="replace"), 0o644)
        _write(self.config_file, self._toml(endpoints, ca_file, schema_dir), 0o644)
        return backup

    def _toml(self, endpoints: Endpoints, ca_file: Path, schema_dir: Path) -> str:
        q = json.dumps  # a JSON string is a valid TOML basic string
        server = [
            f"username = {q(self.user)}",
            f"password_file = {q(str(self.password_file))}",
            f"ca_file = {q(str(ca_file))}",
            "timeout_s = 30.0",
        ]
        return "\n".join(
            [
                "# Written by `pecgateway sandbox`: a gateway configuration for this sandbox.",
                f"store_path = {q(str(self.store))}",
                f"schema_dir = {q(str(schema_dir))}",
                'log_level = "info"',
                'inbox_language = "it"',
                "",
                "[[accounts]]",
                'name = "sandbox"',
                f"address = {q(self.user)}",
                f"outbox = {q(str(self.outbox))}",
                f"inbox = {q(str(self.inbox))}",
                'sdi_address = "sdi01@pec.fatturapa.it"',
                "resend_after_s = 86400",
                "stable_for_s = 0.5",
                "rescan_interval_s = 5.0",
                "",
                "[accounts.smtp]",
                'host = "127.0.0.1"',
                f"port = {endpoints.smtp_port}",
                'security = "tls"',
                *server,
                "",
                "[accounts.imap]",
                'host = "127.0.0.1"',
                f"port = {endpoints.imap_port}",
                'security = "tls"',
                *server,
                'folder = "INBOX"',
                'move_to = ""',
                "idle = true",
                "idle_renew_s = 1500.0",
                "poll_interval_s = 10.0",
                "",
            ]
        )

    def write_info(self, endpoints: Endpoints, *, ca_file: Path) -> None:
        """``sandbox.json`` with exactly the keys of contracts.md §3, plus ``control``."""
        password = self.password()
        info: dict[str, Any] = {
            "imap": {
                "host": "127.0.0.1",
                "port": endpoints.imap_port,
                "starttls_port": endpoints.imap_starttls_port,
                "user": self.user,
                "password": password,
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": endpoints.smtp_port,
                "starttls_port": endpoints.smtp_starttls_port,
                "user": self.user,
                "password": password,
            },
            "ca_cert": str(ca_file),
            "pec_address": self.user,
            "control": {"port": endpoints.control_port, "token": endpoints.control_token},
        }
        _write(self.info_file, json.dumps(info, indent=2) + "\n", 0o600)

    def read_control(self) -> tuple[int, str]:
        """(port, token) of the running sandbox; ValueError/OSError when there is none."""
        info = json.loads(self.info_file.read_text(encoding="utf-8"))
        return int(info["control"]["port"]), str(info["control"]["token"])

    def remove_info(self) -> None:
        self.info_file.unlink(missing_ok=True)


def _json_ports(path: Path) -> dict[str, int]:
    """The ports in a ``sandbox.json``-shaped file (``{"imap": {"port", "starttls_port"}, ...}``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = {
            f"{server}{suffix}": data[server][key]
            for server in ("imap", "smtp")
            for suffix, key in (("", "port"), ("_starttls", "starttls_port"))
        }
    except (OSError, UnicodeError, ValueError, LookupError, TypeError):
        return {}
    return {name: port for name, port in pairs.items() if _is_port(port)}


def _is_port(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _write(path: Path, text: str, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    temporary.chmod(mode)
    temporary.replace(path)
