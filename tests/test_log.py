"""log.py: JSON lines when not on a TTY, per-unit context, secrets masked."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from pecgateway import log


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_events_are_json_lines_with_fields_level_and_time() -> None:
    out = io.StringIO()
    log.configure("info", stream=out)
    log.get_logger().info("invoice_sent", file="IT01234567890_00001.xml", attempts=1)
    [line] = _lines(out)
    assert line["event"] == "invoice_sent"
    assert line["file"] == "IT01234567890_00001.xml"
    assert line["attempts"] == 1
    assert line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")


def test_unit_context_is_attached_to_every_event_inside_it_only() -> None:
    out = io.StringIO()
    log.configure("info", stream=out)
    with log.unit(account="main", uid=42, file=None):
        log.get_logger().info("message_fetched")
    log.get_logger().info("pass_finished")
    inside, outside = _lines(out)
    assert inside["account"] == "main"
    assert inside["uid"] == 42
    assert "file" not in inside
    assert "account" not in outside


def test_fields_named_like_secrets_are_masked() -> None:
    out = io.StringIO()
    log.configure("info", stream=out)
    log.get_logger().info("login_tried", username="u@x.it", password="hunter2", api_token="t")
    text = out.getvalue()
    assert "hunter2" not in text
    [line] = _lines(out)
    assert line["password"] == log.REDACTED
    assert line["username"] == "u@x.it"


def test_level_filters_lower_events() -> None:
    out = io.StringIO()
    log.configure("warning", stream=out)
    log.get_logger().info("ignored_event")
    log.get_logger().warning("kept_event")
    assert [line["event"] for line in _lines(out)] == ["kept_event"]


def test_exceptions_are_rendered_as_structured_tracebacks() -> None:
    out = io.StringIO()
    log.configure("info", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        log.get_logger().exception("unit_failed")
    [line] = _lines(out)
    assert line["event"] == "unit_failed"
    assert "boom" in json.dumps(line["exception"])


def test_console_renderer_when_asked() -> None:
    out = io.StringIO()
    log.configure("info", stream=out, json=False)
    log.get_logger().info("invoice_sent", file="a.xml")
    assert "invoice_sent" in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")


def test_a_logger_made_before_configure_follows_it() -> None:
    early = log.get_logger()
    out = io.StringIO()
    log.configure("info", stream=out)
    early.info("invoice_sent")
    assert _lines(out)[0]["event"] == "invoice_sent"
