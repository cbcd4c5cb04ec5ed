"""Structured logs: one line per event, `key=value` text or JSON lines (`[log] format = "json"`).

Code logs an event name plus fields: `log.info("feeds.built", extra=fields(written=3, took_ms=12))`.
Every logger of the process (uvicorn, APScheduler, feedsvc) goes through the same handler, so a line never
spans several lines (tracebacks are folded into one field).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from feedsvc.config import LogSettings

# Attributes every LogRecord has (and uvicorn's ANSI-coloured copy of the message); anything else on a record
# came from `extra=` and is an event field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
_FIELDS = "feedsvc_fields"


def fields(**values: Any) -> dict[str, Any]:
    """Pass as `extra=`: the values become fields of the log line."""
    return {_FIELDS: values}


def _event_fields(record: logging.LogRecord) -> dict[str, Any]:
    values = dict(getattr(record, _FIELDS, {}))
    for key, value in vars(record).items():
        if key not in _STANDARD and key != _FIELDS and not key.startswith("_"):
            values.setdefault(key, value)
    return values


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(_event_fields(record))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower().ljust(7), record.name + ":", record.getMessage()]
        parts += [f"{key}={_text_value(value)}" for key, value in _event_fields(record).items()]
        if record.exc_info:
            parts.append("error=" + _text_value(self.formatException(record.exc_info)))
        return " ".join(parts)


def _text_value(value: Any) -> str:
    text = str(value)
    if text and not any(char in text for char in ' "=\n\r\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


def configure_logging(settings: LogSettings, stream: TextIO | None = None) -> None:
    """Route every logger of the process to one stream handler in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # APScheduler logs every job execution at INFO; our jobs log what they did themselves.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
