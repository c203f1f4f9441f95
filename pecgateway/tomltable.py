"""Typed reads from a parsed TOML document, each problem collected with its key path.

Owns the checks every configuration value needs (type, range, pattern, required, unknown keys) and
the problem list; knows nothing of what the keys mean (that is ``config``). Never raises: the caller
turns ``problems`` into one ConfigError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MAX_SECONDS", "REQUIRED", "TableReader"]

REQUIRED: Any = object()  # the default of a key that must be there
MAX_SECONDS = 366 * 86400


class TableReader:
    """Typed reads from TOML tables; every problem is collected with its key path."""

    def __init__(
        self, base: Path, environ: Mapping[str, str], *, refused: Mapping[str, str] | None = None
    ) -> None:
        self.base = base  # relative paths resolve against it
        self.environ = environ
        self.refused = dict(refused or {})  # key -> why it may never appear, in any table
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, value: object, key: str) -> Mapping[str, Any]:
        """``value`` when it is a TOML table, else ``{}`` and a problem at ``key``."""
        if not isinstance(value, dict):
            self.fail(key, "expected a table")
            return {}
        return value

    def keys(self, table: Mapping[str, Any], prefix: str, known: frozenset[str]) -> None:
        for key in table:
            if key in self.refused:
                self.fail(_join(prefix, key), self.refused[key])
            elif key not in known:
                self.fail(_join(prefix, key), f"unknown key (known: {', '.join(sorted(known))})")

    def raw(self, table: Mapping[str, Any], prefix: str, key: str, default: object) -> object:
        if key in table:
            return table[key]
        if default is REQUIRED:
            self.fail(_join(prefix, key), "missing (required)")
        return default

    def text(
        self,
        table: Mapping[str, Any],
        prefix: str,
        key: str,
        default: object = REQUIRED,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "a non-empty string",
    ) -> str:
        value = self.raw(table, prefix, key, default)
        if value is REQUIRED:
            return ""
        if not isinstance(value, str) or (pattern and not pattern.fullmatch(value)) or not value:
            self.fail(_join(prefix, key), f"expected {what}, found {value!r}")
            return ""
        return value

    def choice(
        self, table: Mapping[str, Any], prefix: str, key: str, default: str, choices: Sequence[str]
    ) -> str:
        value = self.raw(table, prefix, key, default)
        if value not in choices:
            expected = " or ".join(f'"{choice}"' for choice in choices)
            self.fail(_join(prefix, key), f"expected {expected}, found {value!r}")
            return default
        return str(value)

    def integer(
        self, table: Mapping[str, Any], prefix: str, key: str, default: int, low: int, high: int
    ) -> int:
        value = self.raw(table, prefix, key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(
                _join(prefix, key), f"expected an integer from {low} to {high}, found {value!r}"
            )
            return default
        return value

    def seconds(
        self, table: Mapping[str, Any], prefix: str, key: str, default: float, *, zero: bool = False
    ) -> float:
        value = self.raw(table, prefix, key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not (value >= 0 if zero else value > 0) or value > MAX_SECONDS:  # type: ignore[operator]
            bound = "0 or more" if zero else "more than 0"
            self.fail(_join(prefix, key), f"expected a number of seconds, {bound}, found {value!r}")
            return default
        return float(value)  # type: ignore[arg-type]

    def flag(self, table: Mapping[str, Any], prefix: str, key: str, default: bool) -> bool:
        value = self.raw(table, prefix, key, default)
        if not isinstance(value, bool):
            self.fail(_join(prefix, key), f"expected true or false, found {value!r}")
            return default
        return value

    def path(
        self, table: Mapping[str, Any], prefix: str, key: str, default: object = REQUIRED
    ) -> Path:
        value = self.text(table, prefix, key, default, what="a path")
        return self.base / value if value else Path()

    def optional_file(self, table: Mapping[str, Any], prefix: str, key: str) -> Path | None:
        value = self.raw(table, prefix, key, "")
        if value == "":
            return None
        if not isinstance(value, str):
            self.fail(_join(prefix, key), f'expected a path or "", found {value!r}')
            return None
        path = self.base / value
        if not path.is_file():
            self.fail(_join(prefix, key), f"{path} does not exist or is not a file")
        return path


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
