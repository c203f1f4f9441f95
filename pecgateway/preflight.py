"""What a configuration cannot tell by itself: whether the places it names are usable on this disk.

Owns the on-disk checks of ``check-config`` (the store's folder, the installed schemas, the account
folders) and ``require_store``, which ``status``, ``once`` and ``run`` call before opening the store.
Reads the file system only: it creates nothing, so running it as root leaves no root-owned file.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from pecgateway import schema
from pecgateway.config import Config
from pecgateway.errors import ConfigError

__all__ = ["Finding", "check", "require_store"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One place checked: its key path, the path, and what is fine or what is wrong with it."""

    key: str  # "store_path", "schema_dir", "accounts[0] (main).outbox"
    path: Path
    problem: str | None  # None when usable; else what is wrong and what to do
    detail: str = ""  # when usable: a short note ("will be created at start")


def check(config: Config) -> list[Finding]:
    """Every place the configuration names, in file order: store, schemas, then each account's."""
    findings = [_store(config.store_path), _schemas(config.schema_dir)]
    for index, account in enumerate(config.accounts):
        for role in ("outbox", "inbox"):
            key = f"accounts[{index}] ({account.name}).{role}"
            findings.append(_folder(key, getattr(account, role)))
    return findings


def require_store(config: Config) -> None:
    """ConfigError naming ``store_path`` and what to do when the store cannot be opened here."""
    finding = _store(config.store_path)
    if finding.problem is not None:
        raise ConfigError(f"{finding.path}: {finding.problem}", key="store_path")


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _store(path: Path) -> Finding:
    folder = path.parent
    if not folder.is_dir():
        return Finding(
            "store_path",
            path,
            f"its folder {folder} does not exist: create it for the service's user (e.g. "
            f"install -d -m 0750 -o pecgateway -g pecgateway {folder}) or change store_path",
        )
    if path.exists() and not path.is_file():
        return Finding("store_path", path, "is not a file: point store_path at a file name")
    if not os.access(folder, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        return Finding(
            "store_path",
            path,
            f"{_user()} may not write in {folder}: run this as the service's user (or root), or "
            "give that user the folder",
        )
    return Finding("store_path", path, None, "exists" if path.exists() else "created at start")


def _schemas(directory: Path) -> Finding:
    try:
        schema.load(directory)
    except ConfigError as exc:
        return Finding("schema_dir", directory, exc.reason)
    return Finding("schema_dir", directory, None, "schemas installed")


def _folder(key: str, path: Path) -> Finding:
    if path.exists():
        if not path.is_dir():
            return Finding(key, path, "is not a folder: point it at a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            return Finding(key, path, f"{_user()} may not write in it: give the service's user it")
        return Finding(key, path, None, "exists")
    ancestor = next(parent for parent in path.parents if parent.exists())
    if ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK):
        return Finding(key, path, None, _created_at_start(path, ancestor))
    return Finding(
        key,
        path,
        f"does not exist and {_user()} may not create it in {ancestor}: create it (e.g. install -d "
        f"-m 2770 -o pecgateway -g pecgateway {path})",
    )


def _created_at_start(path: Path, ancestor: Path) -> str:
    """The note for a folder not there yet that this user could make: the service's user may not."""
    missing = "" if ancestor == path.parent else f", nor does {path.parent}"
    return (
        f"does not exist yet{missing}: the service creates it at start only if its user may "
        f"write in {ancestor} and, under systemd, {ancestor} is in ReadWritePaths; to be sure, "
        f"create it now: install -d -m 2770 -o pecgateway -g pecgateway {path}"
    )
