"""The ceiling app (bench/ceiling.py) and the due-jobs probe (bench/probe.py) on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import ceiling
from fastapi.testclient import TestClient
from harness import Target
from probe import Probe
from sqlalchemy import create_engine, insert

from kassa.storage.migrate import upgrade
from kassa.storage.tables import Job


def test_the_ceiling_validates_inserts_one_row_and_answers_201(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ceiling.db'}"
    ceiling.create_table(url)
    body = {"email": "a@example.com", "currency": "EUR", "lines": [{"sku": "S", "quantity": 2}]}
    with TestClient(ceiling.create_app(url)) as client:
        first = client.post("/orders", json=body)
        second = client.post("/orders", json=body)
        refused = client.post("/orders", json={**body, "currency": "euro"})
    assert (first.status_code, second.status_code, refused.status_code) == (201, 201, 422)
    assert second.json() == {"id": first.json()["id"] + 1, "object": "order", "currency": "EUR"}
    engine = ceiling.make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(ceiling.orders.select()).all()
    engine.dispose()
    stored = [("a@example.com", [{"sku": "S", "quantity": 2}])] * 2
    assert [(r.email, r.lines) for r in rows] == stored


def test_jobs_due_counts_running_and_queued_jobs_whose_time_has_come(tmp_path: Path) -> None:
    path = tmp_path / "kassa.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        for state, run_after, attempts in (
            ("queued", now - timedelta(seconds=1), 0),  # due
            ("queued", now + timedelta(minutes=5), 0),  # not yet (a resume guard)
            ("queued", now + timedelta(seconds=4), 1),  # failed once, backing off
            ("running", now - timedelta(minutes=1), 1),  # a worker has it
            ("done", now - timedelta(minutes=1), 2),
            ("dead", now - timedelta(minutes=1), 5),
        ):
            conn.execute(
                insert(Job).values(
                    kind="k",
                    payload={},
                    state=state,
                    attempts=attempts,
                    max_attempts=5,
                    run_after=run_after,
                    created_at=now,
                )
            )
    engine.dispose()
    probe = Probe(Target("sqlite", url, sqlite_path=path))
    try:
        assert probe.jobs_due() == 3
        assert probe.retried_jobs() == {"k": 2}
        assert probe.postgres_scope() is None
        assert probe.write_open() is False
    finally:
        probe.close()
