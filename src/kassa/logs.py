"""Log lines, for people or for a log pipeline: `KASSA_LOG_FORMAT=text` (the default) or
`json`.

In `json` every line kassa's processes write to stderr is one JSON object: `time` (RFC
3339 UTC, milliseconds), `level`, `logger`, `message`, `request_id` for whatever is
logged while a request is served (the id its `X-Request-Id` header carries: see
`api/request_id.py`, which sets `REQUEST_ID`), the fields a call passes in `extra=`
(a job's `job_kind`, `job_id`, ...), `exception` with the traceback, and for uvicorn's
access lines `client`, `method`, `path`, `status`. uvicorn's own loggers (startup,
errors, access) get the same formatter through its `log_config` (`uvicorn_config`),
and all of it goes to stderr: one stream, one format.

The standard library's `logging` with a small Formatter, not a structured-logging
library: kassa logs through `logging` everywhere (and so do uvicorn, SQLAlchemy and
Alembic), so the one thing needed is how a record is written out, which is this
module's forty lines.

`REQUEST_ID` is a context variable: set in the request's task, it is seen by code the
request runs in the thread pool too (Starlette copies the context into it), and by
uvicorn's access line, written while the response starts.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REQUEST_ID: ContextVar[str | None] = ContextVar("kassa_request_id", default=None)

# What every LogRecord has; anything else on a record came from `extra=`. (uvicorn adds
# `color_message`, the message with terminal colours, which JSON has no use for.)
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _rfc3339(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            entry.update(zip(_ACCESS_FIELDS, map(_jsonable, record.args), strict=False))
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str = "text", level: str = "info") -> None:
    """kassa's own log lines (the worker's, the jobs') on stderr in `log_format`, unless
    logging is configured already (as `logging.basicConfig`)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def uvicorn_config(log_format: str = "text", level: str = "info") -> dict[str, Any] | None:
    """uvicorn's `log_config`: its own in `text` (None: uvicorn's default); in `json`
    every logger, the root included (API processes started by uvicorn configure nothing
    else), to stderr as JSON."""
    if log_format != "json":
        return None
    formatter = {"()": f"{__name__}.JsonFormatter"}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn names its formatters `default` and `access` (and may set options there)
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }
