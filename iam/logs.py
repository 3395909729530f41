"""Log lines as text or one JSON object a line (`IAM_LOG_FORMAT`), for the server and uvicorn."""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
#: The id of the HTTP request being answered (set by `iam.telemetry`), "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
#: What could end or fake a line in a reader of the log: C0 and C1 controls, DEL, the Unicode
#: line and paragraph separators, and the backslash (so that an escape cannot be faked).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\]")
#: Line breaks for `str.splitlines` that `json.dumps(ensure_ascii=False)` leaves as they are.
_JSON_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` on one line, each unsafe character written as `\\xNN` (or `\\uNNNN`)."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, one record a line: whatever a client managed to put into a message (a
    path with `%0A` in it) is escaped, not written as a line of its own. A traceback, added
    after the line, keeps its lines."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape_controls(super().formatMessage(record))


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id, so every line of a request can be found
    from the id its answer carried in `X-Request-ID`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, so a log shipper needs no parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, ensure_ascii=False)
        return _JSON_LINE_BREAKS.sub(lambda match: f"\\u{ord(match.group()):04x}", line)


def log_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping (also uvicorn's `log_config`): everything goes to
    stderr in one format, each line with its request id. The access log is `iam.access`
    (`iam.telemetry`), not uvicorn's, whose lines carry query strings with codes and tokens."""
    formatter: dict[str, Any] = {"()": JsonFormatter if log_format == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            # Its lines carry the query string (codes, states): `iam.access` logs requests instead.
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # httpx logs each request URL at INFO, and WeCom's URLs carry secrets and tokens.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
