"""Structured logs: one line per event, JSON when configured."""

from __future__ import annotations

import io
import json
import logging

import pytest

from feedsvc.config import LogSettings
from feedsvc.logging import configure_logging, fields


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(format_: str) -> list[str]:
    stream = io.StringIO()
    configure_logging(LogSettings(format=format_, level="INFO"), stream)
    log = logging.getLogger("feedsvc.test")
    log.info("rebuild.done", extra=fields(posts=3, reason="posts changed", took_ms=12.5))
    log.debug("not shown at INFO")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("job.failed", extra=fields(job="digest-daily"))
    logging.getLogger("uvicorn.error").info("Started server process")
    return stream.getvalue().splitlines()


def test_json_lines_one_object_per_event(restore_root_logging):
    lines = _emit("json")
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert events[0]["event"] == "rebuild.done" and events[0]["level"] == "info"
    assert (events[0]["posts"], events[0]["reason"], events[0]["took_ms"]) == (3, "posts changed", 12.5)
    assert events[0]["logger"] == "feedsvc.test" and events[0]["ts"].endswith("Z")
    assert events[1]["event"] == "job.failed" and events[1]["job"] == "digest-daily"
    assert "ValueError: bad\nthing" in events[1]["error"]
    assert events[2] == events[2] | {"logger": "uvicorn.error", "event": "Started server process"}


def test_text_lines_keep_fields_and_tracebacks_on_one_line(restore_root_logging):
    lines = _emit("text")
    assert len(lines) == 3
    assert "rebuild.done posts=3 reason=\"posts changed\" took_ms=12.5" in lines[0]
    assert lines[1].split()[1] == "error" and "job.failed job=digest-daily error=\"Traceback" in lines[1]
    assert "uvicorn.error: Started server process" in lines[2]
