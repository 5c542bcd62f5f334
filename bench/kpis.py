"""Revenue KPIs at scale: GET /v1/kpis's statements on PostgreSQL with 1,000,000 orders.

A scratch PostgreSQL database is seeded as `bench/scale.py` seeds its full one (a year of
trade: `--orders` orders, their payments, customers, ...), plus what that seed leaves out
and the KPIs read: refunds (8 % of the paid orders, half their total, succeeding 0 to 30
days after the payment) and a wallet ledger (a top-up for a quarter of the customers, a
payment from the wallet for a third of those). Then, for each window (in Europe/Berlin),
`Kpis.report` runs `--runs` times (the median is printed) and each statement it sent is
run again under EXPLAIN (ANALYZE, BUFFERS): its time, the indexes it used and any table
it read whole (with JIT off, as in the report's own transaction). Last, for windows up to
a month, the same statements with migration 0012's indexes dropped (inside a transaction
that is rolled back), to show what they change.

    .venv/bin/python bench/kpis.py [--orders 1000000] [--runs 5] [--postgres-url URL]
                                   [--keep | --database-url URL]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from harness import Target
from scale import prepare, seed
from sqlalchemy import event, make_url

from kassa.services.kpis import Kpis
from kassa.storage.database import Database
from kassa.storage.migrate import upgrade

ZONE = "Europe/Berlin"
KPI_INDEXES = (
    "ix_orders_paid_at",
    "ix_orders_canceled_at",
    "ix_refunds_succeeded_at",
    "ix_customers_created_at",
    "ix_wallet_entries_created_at",
)

_MORE_ROWS = [
    (
        "refunds",
        """
INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, destination,
                     provider, provider_refund_id, origin, created_at, updated_at, succeeded_at)
SELECT 're_' || substr(md5('r' || o.pk), 1, 24), o.id, p.id, greatest(1, o.total / 2),
       o.currency, 'succeeded', 'original', p.provider,
       're_seed_' || substr(md5('r' || o.pk), 1, 20), 'kassa', r.at, r.at, r.at
FROM orders o
JOIN payments p ON p.order_id = o.id AND p.status = 'succeeded'
CROSS JOIN LATERAL (SELECT o.paid_at + random() * interval '30 days' AS at) r
WHERE o.paid_at IS NOT NULL AND random() < 0.08
""",
    ),
    (
        "wallet top-ups",
        """
INSERT INTO wallet_entries (id, customer_id, currency, amount, balance_after, kind,
                            reference, created_at)
SELECT 'we_' || substr(md5('t' || c.pk), 1, 24), c.id, 'EUR', 5000, 5000, 'top_up',
       'pay_t' || c.pk, now() - random() * interval '365 days'
FROM customers c WHERE mod(c.pk, 4) = 0
""",
    ),
    (
        "wallet payments",
        """
INSERT INTO wallet_entries (id, customer_id, currency, amount, balance_after, kind,
                            reference, created_at)
SELECT 'we_' || substr(md5('w' || e.pk), 1, 24), e.customer_id, 'EUR', -2000, 3000,
       'payment', 'pay_w' || e.pk, e.created_at + random() * (now() - e.created_at)
FROM wallet_entries e WHERE e.kind = 'top_up' AND mod(e.pk, 3) = 0
""",
    ),
]


@dataclass(frozen=True)
class Statement:
    sql: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    ms: float
    indexes: list[str]
    whole: list[str]  # tables read by a sequential scan


def seed_more(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for label, sql in _MORE_ROWS:
            began = time.perf_counter()
            conn.execute(sql)
            print(f"  {label}: {time.perf_counter() - began:.1f} s", flush=True)
        for table in ("refunds", "wallet_entries"):
            conn.execute(f"VACUUM (ANALYZE) {table}")


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


def report_windows(url: str, runs: int, now: datetime) -> None:
    kpis_db = Database(url)
    kpis = Kpis(kpis_db, lambda: now, ZONE)
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


def seeded(admin_url: str, orders: int) -> Target:
    """A new scratch database `kassa_kpis_<random>`, migrated and seeded; kept."""
    name = f"kassa_kpis_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    target = Target("postgresql", make_url(admin_url).set(database=name).render_as_string(False))
    upgrade(target.url)
    seed(target, prepare(target), orders)
    print("[seed] refunds and wallets", flush=True)
    seed_more(target.url)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--database-url", help="a database this script seeded before (--keep)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    args = parser.parse_args(argv)
    url = args.database_url or seeded(args.postgres_url, args.orders).url
    try:
        with psycopg.connect(url) as conn:
            for table in ("orders", "refunds", "payments", "customers", "wallet_entries"):
                count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                print(f"  {table}: {count[0] if count else 0:,} rows")
        report_windows(url, args.runs, datetime.now(UTC))
    finally:
        if args.database_url is None and not args.keep:
            with psycopg.connect(args.postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        elif args.database_url is None:
            print(f"kept: --database-url {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
