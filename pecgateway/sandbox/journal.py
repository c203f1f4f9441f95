"""The sandbox's log: what the provider and SDI did and why, for a person and for a program.

Owns one structlog logger writing every event twice: as a JSON line to DIR/sandbox.log and as a
readable line on stderr. Local to the sandbox process; the gateway's logging lives in log.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

__all__ = ["open_journal"]


class _Tee:
    """The last processor: writes the JSON line to the file, returns the console line."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._console = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    def __call__(self, logger: object, method: str, event_dict: MutableMapping[str, Any]) -> str:
        self._file.write(json.dumps(dict(event_dict), default=str, ensure_ascii=False) + "\n")
        self._file.flush()
        return str(self._console(logger, method, event_dict))


@contextlib.contextmanager
def open_journal(path: Path, level: int = logging.INFO) -> Iterator[Any]:
    """A bound logger for the sandbox; the file is appended to and closed at the end."""
    with path.open("a", encoding="utf-8") as file:
        yield structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=False),
                _Tee(file),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            cache_logger_on_first_use=False,
        )
