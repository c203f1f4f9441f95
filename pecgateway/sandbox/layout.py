"""The sandbox directory: what `pecgateway sandbox --dir DIR` keeps and writes there.

Owns the paths (CA, Dovecot, SDI state, password, log, outbox, inbox), the sandbox account's
persistent password, and the two files other programs read: ``pecgateway.toml`` (a complete gateway
configuration, keys as in docs/architecture.md) and ``sandbox.json`` (contracts.md §3).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Endpoints", "Layout"]

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

    def write_config(self, endpoints: Endpoints, *, ca_file: Path, schema_dir: Path) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)
        _write(self.config_file, self._toml(endpoints, ca_file, schema_dir), 0o644)

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


def _write(path: Path, text: str, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    temporary.chmod(mode)
    temporary.replace(path)
