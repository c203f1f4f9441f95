"""Logging: structlog configured once, JSON lines on stdout for journald, a console on a TTY.

Owns the processor chain (context variables, level, ISO time, secret redaction, renderer) and the
per-unit context (``unit(...)``). Events are snake_case past-tense facts with fields; the core never
logs. No log files and no rotation here: journald (or the unit's StandardOutput=) does that.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "configure", "get_logger", "redact_secrets", "unit"]

REDACTED = "********"
_SECRET_WORDS = ("password", "secret", "token", "credential", "authorization")


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A processor that masks any field whose name says it holds a secret."""
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = REDACTED
    return event_dict


def configure(
    level: str = "info", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Configures structlog for the whole process; ``json=None`` picks JSON unless on a TTY."""
    out = stream or sys.stdout
    as_json = not out.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.dict_tracebacks if as_json else _keep_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _keep_exc_info(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return event_dict  # the console renderer prints the traceback itself


def _level(name: str) -> int:
    value = logging.getLevelNamesMapping().get(name.upper())
    return value if isinstance(value, int) else logging.INFO


def get_logger(**fields: Any) -> Any:
    """A lazy structlog logger with ``fields`` bound: it follows ``configure`` made later."""
    return structlog.get_logger(**fields)


@contextmanager
def unit(**context: Any) -> Iterator[None]:
    """Binds the context of one unit of work (``account``, ``file`` or ``uid``) to every event."""
    with structlog.contextvars.bound_contextvars(**_clean(context)):
        yield


def _clean(context: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in context.items() if value is not None}
