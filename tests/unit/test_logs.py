"""KASSA_LOG_FORMAT=json: one JSON object per record, with the request id inside a request
and the fields a call passes in `extra=`. (The real server's lines, uvicorn's included,
are checked in tests/reliability/test_serve_metrics.py.)"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import ConfigError, Settings
from kassa.logs import REQUEST_ID, JsonFormatter
from kassa.services import jobs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What kassa's loggers write, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    kassa_logger = logging.getLogger("kassa")
    previous = kassa_logger.level
    kassa_logger.addHandler(handler)
    kassa_logger.setLevel(logging.INFO)
    yield stream
    kassa_logger.removeHandler(handler)
    kassa_logger.setLevel(previous)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_its_extra_fields(captured: io.StringIO) -> None:
    log = logging.getLogger("kassa.test")
    log.info("two\nlines %s", "here", extra={"order": "ord_1", "thing": object()})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    assert len(captured.getvalue().splitlines()) == 2  # a newline in a message stays inside
    first, second = entries(captured)
    assert first["message"] == "two\nlines here"
    assert first["level"] == "INFO" and first["logger"] == "kassa.test"
    assert first["order"] == "ord_1" and first["thing"].startswith("<object object")
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "request_id" not in first  # not in a request
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_the_request_id_is_on_records_logged_while_it_is_set(captured: io.StringIO) -> None:
    token = REQUEST_ID.set("req_abc")
    try:
        logging.getLogger("kassa.test").warning("inside")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("kassa.test").warning("outside")
    inside, outside = entries(captured)
    assert inside["request_id"] == "req_abc" and "request_id" not in outside


def test_a_job_line_carries_its_kind_and_id(captured: io.StringIO) -> None:
    jobs._log_job(42, "documents.issue_invoice", 1, time.monotonic(), jobs.DONE)
    jobs._log_job(43, "mock.deliver_event", 20, time.monotonic(), jobs.DEAD, "refused")
    done, dead = entries(captured)
    assert done["job_kind"] == "documents.issue_invoice" and done["job_id"] == 42
    assert done["outcome"] == "done" and done["message"].startswith("job done kind=")
    assert dead["level"] == "WARNING" and dead["outcome"] == "dead"
    assert dead["error"] == "refused" and dead["job_id"] == 43


def test_a_request_logs_with_the_id_its_response_carries(
    captured: io.StringIO, tmp_path: Path
) -> None:
    """A database that is not there: /healthz answers 503 and kassa.api logs a warning,
    inside the request, with the id the response's X-Request-Id carries."""
    core = Kassa(Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/kassa.db"))
    try:
        with TestClient(create_app(core)) as client:
            r = client.get("/healthz")
    finally:
        core.close()
    assert r.status_code == 503, r.text
    warnings = [e for e in entries(captured) if e["logger"] == "kassa.api"]
    assert warnings, captured.getvalue()
    assert {e["request_id"] for e in warnings} == {r.headers["x-request-id"]}


def test_kassa_log_format_is_text_or_json() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"KASSA_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="KASSA_LOG_FORMAT"):
        Settings.from_env({"KASSA_LOG_FORMAT": "xml"})
