"""`bench/kpis.py --explain`: where the time of GET /v1/kpis goes on PostgreSQL.

For each window (in the shop's zone), `Kpis.report` runs `runs` times in this process (the
median is printed) and each statement it sent is run again under EXPLAIN (ANALYZE,
BUFFERS): its time, the indexes it used and any table it read whole (with JIT off, as in
the report's own transaction). Last, for windows up to a month, the same statements with
migration 0012's indexes dropped (inside a transaction that is rolled back), to show what
they change.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import event

from kassa.config import normalize_database_url
from kassa.services.kpis import Kpis
from kassa.storage.database import Database

KPI_INDEXES = (
    "ix_orders_paid_at",
    "ix_orders_canceled_at",
    "ix_refunds_succeeded_at",
    "ix_customers_created_at",
    "ix_wallet_entries_created_at",
)


@dataclass(frozen=True)
class Statement:
    sql: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    ms: float
    indexes: list[str]
    whole: list[str]  # tables read by a sequential scan


@contextmanager
def captured(db: Database) -> Iterator[list[Statement]]:
    """The statements sent through `db` inside the block, with their parameters."""
    sent: list[Statement] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: Any) -> None:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append(Statement(sql, dict(params or {})))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def explain(conn: psycopg.Connection[Any], statement: Statement) -> Plan:
    row = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.sql, statement.params
    ).fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    nodes = list(_walk(document[0]["Plan"]))
    return Plan(
        ms=float(document[0]["Execution Time"]),
        indexes=sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
        whole=sorted({n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}),
    )


def what(statement: Statement) -> str:
    sql = statement.sql
    for needle, label in [
        ("wallet_entries", "wallet liability"),
        ("refunds.succeeded_at >= days", "refunds per day"),
        ("orders.paid_at >= days", "sales per day"),
        ("payments.created_at", "payments"),
        ("customers", "created, canceled, customers"),
    ]:
        if needle in sql:
            return label
    return sql[:40]


def report_windows(url: str, runs: int, now: datetime, zone: str) -> None:
    kpis_db = Database(normalize_database_url(url))
    kpis = Kpis(kpis_db, lambda: now, zone)
    windows = ["today", "7d", "30d", "mtd", "ytd"]
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET jit = off")  # as the report's own transaction (services/kpis.py)
        for window in windows:
            query = kpis.query(window=window)
            times = []
            for _ in range(runs):
                with captured(kpis_db) as sent:
                    began = time.perf_counter()
                    kpis.report(query)
                    times.append((time.perf_counter() - began) * 1000)
            print(
                f"\n{window} ({query.period.first}..{query.period.last}): report median"
                f" {statistics.median(times):.1f} ms over {runs} runs"
            )
            for statement in sent:
                plan = explain(conn, statement)
                print(
                    f"  {what(statement):30} {plan.ms:8.1f} ms  indexes {plan.indexes}"
                    f"  seq scans {plan.whole}"
                )
            if query.period.days > 31:
                continue  # a year without them: minutes (122 s for the sales alone)
            with conn.transaction(force_rollback=True):
                for name in KPI_INDEXES:
                    conn.execute(f"DROP INDEX {name}")
                for statement in sent:
                    plan = explain(conn, statement)
                    print(
                        f"  without 0012's indexes: {what(statement):30} {plan.ms:8.1f} ms"
                        f"  seq scans {plan.whole}"
                    )
    kpis_db.dispose()
