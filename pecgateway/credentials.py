"""The passwords a configuration points to: a ``password_file`` or a systemd credential.

Owns ``Secret`` (never shown in a repr or a log), where credentials are looked for (the argument,
``$CREDENTIALS_DIRECTORY``, the unit's source folder) and reading them, or not: commands that never
log in (status, validate) leave every password unread. Problems go to the config's ``TableReader``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pecgateway.tomltable import TableReader

__all__ = ["DEFAULT_CREDENTIALS_DIR", "Secret", "Secrets", "credentials_dir", "password"]

DEFAULT_CREDENTIALS_DIR = Path("/etc/pecgateway/credentials")  # the unit's LoadCredential= files
_CREDENTIAL = re.compile(r"[A-Za-z0-9_.-]+")
_ONE_PASSWORD_SOURCE = "set exactly one of password_file and password_credential"
_NO_CREDENTIALS_DIRECTORY = (
    "$CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=) and "
    f"{DEFAULT_CREDENTIALS_DIR} is missing or not readable by this user: pass --credentials-dir "
    "DIR (the folder holding the credential files; root may read the unit's), or use password_file"
)


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


def credentials_dir(
    arg: str | Path | None,
    environ: Mapping[str, str] | None = None,
    default: Path = DEFAULT_CREDENTIALS_DIR,
) -> Path | None:
    """Where ``password_credential`` names are files: ``arg``, else ``$CREDENTIALS_DIRECTORY``
    (systemd's, for ``LoadCredential=``), else ``default`` (the unit's source folder) when this
    user may read it (root, by hand), else None."""
    env = os.environ if environ is None else environ
    chosen = arg or env.get("CREDENTIALS_DIRECTORY")
    if chosen:
        return Path(chosen)
    if default.is_dir() and os.access(default, os.R_OK | os.X_OK):
        return default
    return None


@dataclass(frozen=True, slots=True)
class Secrets:
    """How passwords are read at load: not at all (commands that never log in), or from files."""

    read: bool
    directory: Path | None  # where password_credential names are files


def password(
    reader: TableReader, table: Mapping[str, Any], prefix: str, secrets: Secrets
) -> Secret:
    has_file, has_credential = "password_file" in table, "password_credential" in table
    if has_file == has_credential:
        reader.fail(f"{prefix}.password_file", _ONE_PASSWORD_SOURCE)
        return Secret("")
    if has_file:
        path = reader.path(table, prefix, "password_file")
        return _read_secret(reader, path, f"{prefix}.password_file") if secrets.read else Secret("")
    name = reader.text(
        table,
        prefix,
        "password_credential",
        pattern=_CREDENTIAL,
        what="a credential name (letters, digits, . _ -)",
    )
    if not secrets.read or not name:
        return Secret("")
    if secrets.directory is None:
        reader.fail(f"{prefix}.password_credential", _NO_CREDENTIALS_DIRECTORY)
        return Secret("")
    return _read_secret(reader, secrets.directory / name, f"{prefix}.password_credential")


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
