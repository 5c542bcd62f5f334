"""A year of trade for the KPI benchmark (`bench/kpis.py`), set-based on both databases.

What the KPIs (`services/kpis.py`) and the orders export (`services/export_sources.py`)
read must be there, spread over the past year so a 30-day window holds a twelfth of it:

- orders: statuses paid 55 % / fulfilled 25 % / canceled 12 % / pending 8 %, created
  evenly over the year up to ten minutes ago, paid 41 s after creation (paid and
  fulfilled ones), canceled an hour after, fulfilled two days after; one in ten (`pk`
  divisible by 10) in USD, the rest in EUR; 35 % by registered customers;
- payments: a succeeded one per paid order (40 s after its creation), failed ones before
  some (8 % of paid, 30 % of canceled, 5 % of pending orders), in the order's currency;
- refunds: 8 % of the paid orders, half their total, succeeding 0 to 30 days after the
  payment (`succeeded_at`, what the KPIs count by);
- customers: `orders / 5`, created evenly over the year;
- the wallet ledger: a top-up of 50.00 EUR for a quarter of the customers at a random
  time of the year, and a payment of 20.00 EUR from a third of those wallets after it.

PostgreSQL: `bench/scale.py`'s seed (`generate_series`, the whole history: order lines,
audit trail, jobs, events, ...), then `_PG_MORE` for what it leaves out or makes
differently (the USD orders and their payments, customers spread over the year, refunds,
the wallet ledger). SQLite: the same rows for the five tables above, and only those,
from a recursive CTE (`WITH RECURSIVE n(i)`), in one transaction, secondary indexes
dropped during the load and rebuilt after, then ANALYZE (as PostgreSQL's seed ends with
VACUUM ANALYZE). The order totals differ in shape (PostgreSQL's are the sums of 1 to 4
lines of the catalogue, SQLite's are drawn evenly from 3.00 to 303.00), not in kind.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from harness import Target
from scale import QUIET_GAP, SPAN, Shop, prepare, seed

from kassa.storage.database import SQLITE_BUSY_TIMEOUT_MS

COUNTED_TABLES = ("orders", "payments", "refunds", "customers", "wallet_entries")
USD_EVERY = 10  # an order whose pk is a multiple of this is in USD

_PG_MORE = [
    (
        "orders in USD",
        f"UPDATE orders SET currency = 'USD' WHERE mod(pk, {USD_EVERY}) = 0",
    ),
    (
        "their payments in USD",
        """
UPDATE payments p SET currency = 'USD' FROM orders o
WHERE o.id = p.order_id AND o.currency = 'USD'
""",
    ),
    (
        "customers over the year",
        """
UPDATE customers SET created_at = %(start)s::timestamptz
    + make_interval(secs => %(span_s)s * pk / (SELECT max(pk) FROM customers)::float8)
""",
    ),
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

# SQLite. Times are written as SQLAlchemy stores a UTC DateTime there (kassa's UTC_TIME):
# 'YYYY-MM-DD HH:MM:SS.ffffff', so the KPIs' and exports' bound parameters compare as
# they do with rows kassa wrote. :start is the first order's time as Unix seconds.
_U = "(random() & 4294967295) / 4294967296.0"  # uniform in [0, 1)


def _ts(epoch: str) -> str:
    return f"strftime('%Y-%m-%d %H:%M:%S', {epoch}, 'unixepoch') || '.000000'"


_SQLITE_ROWS = [
    (
        "draw the orders",
        f"""
CREATE TEMP TABLE s_orders AS
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n),
drawn AS (
    SELECT i, :start + :span_s * i / :n AS t, {_U} AS r_status, {_U} AS r_cust,
           {_U} AS r_who, {_U} AS r_fail, {_U} AS r_refund, {_U} AS r_refund_at,
           300 + CAST({_U} * 30000 AS INTEGER) AS total
    FROM n
)
SELECT *,
       CASE WHEN r_status < 0.55 THEN 'paid' WHEN r_status < 0.80 THEN 'fulfilled'
            WHEN r_status < 0.92 THEN 'canceled' ELSE 'pending' END AS status,
       r_status < 0.80 AS paid,
       CASE WHEN i % {USD_EVERY} = 0 THEN 'USD' ELSE 'EUR' END AS currency,
       'ord_' || printf('%024d', i) AS id,
       CASE WHEN r_cust < 0.35
            THEN 'cus_' || printf('%024d', 1 + CAST(:customers * r_who * r_who AS INTEGER))
       END AS customer_id
FROM drawn
""",
    ),
    (
        "customers",
        f"""
INSERT INTO customers (pk, id, email, name, created_at)
WITH RECURSIVE n(c) AS (SELECT 1 UNION ALL SELECT c + 1 FROM n WHERE c < :customers)
SELECT c, 'cus_' || printf('%024d', c), 'customer' || c || '@example.com', 'Customer ' || c,
       {_ts(":start + :span_s * c / :customers")}
FROM n
""",
    ),
    (
        "orders",
        f"""
INSERT INTO orders (pk, id, number, status, currency, subtotal, total, amount_paid,
                    amount_refunded, stock_shortage, disputed, customer_id, email, metadata,
                    cancel_reason, created_at, paid_at, fulfilled_at, canceled_at)
SELECT i, id, 'K-' || printf('%06d', i), status, currency, total, total,
       CASE WHEN paid THEN total ELSE 0 END, 0, 0, 0, customer_id,
       CASE WHEN customer_id IS NULL
            THEN 'buyer' || CAST(:n * 0.4 * r_who * r_who AS INTEGER) || '@example.com' END,
       '{{}}', CASE WHEN status = 'canceled' THEN 'requested' END, {_ts("t")},
       CASE WHEN paid THEN {_ts("t + 41")} END,
       CASE WHEN status = 'fulfilled' THEN {_ts("t + 172800")} END,
       CASE WHEN status = 'canceled' THEN {_ts("t + 3600")} END
FROM s_orders
""",
    ),
    (
        "payments",
        f"""
INSERT INTO payments (pk, id, order_id, provider, provider_payment_id, idempotency_base,
                      status, amount, currency, payment_method, retry_count,
                      recovered_by_retry, created_at, updated_at, succeeded_at)
SELECT j, 'pay_' || printf('%024d', j), id,
       CASE WHEN j % 10 < 7 THEN 'mock' ELSE 'stripe' END, 'pi_' || printf('%024d', j),
       'kassa:req:' || j, CASE WHEN ok THEN 'succeeded' ELSE 'failed' END, total, currency,
       CASE WHEN ok THEN 'pm_card_visa' ELSE 'pm_card_chargeDeclined' END, 0, 0, {_ts("at")},
       {_ts("at + 1")}, CASE WHEN ok THEN {_ts("at + 1")} END
FROM (
    SELECT 2 * i - 1 AS j, id, total, currency, 0 AS ok, t + 20 AS at FROM s_orders
    WHERE r_fail < CASE status WHEN 'canceled' THEN 0.3 WHEN 'pending' THEN 0.05 ELSE 0.08 END
    UNION ALL
    SELECT 2 * i, id, total, currency, 1, t + 40 FROM s_orders WHERE paid
)
""",
    ),
    (
        "refunds",
        f"""
INSERT INTO refunds (pk, id, order_id, payment_id, amount, currency, status, destination,
                     provider, provider_refund_id, origin, created_at, updated_at, succeeded_at)
SELECT i, 're_' || printf('%024d', i), id, 'pay_' || printf('%024d', 2 * i),
       max(1, total / 2), currency, 'succeeded', 'original',
       CASE WHEN (2 * i) % 10 < 7 THEN 'mock' ELSE 'stripe' END,
       're_seed_' || printf('%020d', i), 'kassa', {_ts("at")}, {_ts("at")}, {_ts("at")}
FROM (SELECT *, t + 41 + r_refund_at * 2592000 AS at FROM s_orders)
WHERE paid AND r_refund < 0.08
""",
    ),
    (
        "wallet top-ups",
        f"""
CREATE TEMP TABLE s_top_ups AS
SELECT pk, id, :now - {_U} * :span_s AS at FROM customers WHERE pk % 4 = 0
""",
    ),
    (
        "wallet entries",
        f"""
INSERT INTO wallet_entries (id, customer_id, currency, amount, balance_after, kind,
                            reference, created_at)
SELECT 'we_t' || printf('%020d', pk), id, 'EUR', 5000, 5000, 'top_up', 'pay_t' || pk,
       {_ts("at")}
FROM s_top_ups
UNION ALL
SELECT 'we_w' || printf('%020d', pk), id, 'EUR', -2000, 3000, 'payment', 'pay_w' || pk,
       {_ts(f"at + {_U} * (:now - at)")}
FROM s_top_ups WHERE pk % 3 = 0
""",
    ),
]


# SQLite, `seed_sqlite(..., history=True)` (bench/dashboard.py): what an order's page
# reads beyond the five tables above, as scale.py's PostgreSQL seed writes it: the order's
# lines (one per order here, the order's total at quantity 1, a product of the shop's
# catalogue in turn), two provider attempts per payment, the audit trail, an invoice per
# paid order with its counter. Neither seed writes e-mails or credit notes.
# Placeholders: products (the catalogue's size), actor (an API key's id), audit_base.
HISTORY_TABLES = ("order_lines", "payment_attempts", "audit_log", "documents")

_SQLITE_HISTORY = [
    (
        "catalogue",
        """
CREATE TEMP TABLE s_products AS
SELECT row_number() OVER (ORDER BY pk) - 1 AS ix, id, sku, title FROM products
""",
    ),
    (
        "order lines",
        """
INSERT INTO order_lines (pk, order_id, position, product_id, sku, title, unit_amount,
                         quantity, amount, product_status, "unique")
SELECT o.i, o.id, 0, p.id, p.sku, p.title, o.total, 1, o.total, 'available', 0
FROM s_orders o JOIN s_products p ON p.ix = o.i % :products
""",
    ),
    (
        "payment attempts",
        """
INSERT INTO payment_attempts (pk, payment_id, provider, number, operation, started_at,
                              duration_ms, outcome, error_type, code, decline_code,
                              gateway_failure)
SELECT 2 * p.pk - 2 + a.n, p.id, p.provider, a.n,
       CASE a.n WHEN 1 THEN 'create_intent' ELSE 'confirm_intent' END,
       p.created_at, 8 + p.pk % 7,
       CASE WHEN a.n = 2 AND p.status = 'failed' THEN 'hard_failure' ELSE 'succeeded' END,
       CASE WHEN a.n = 2 AND p.status = 'failed' THEN 'card_error' END,
       CASE WHEN a.n = 2 AND p.status = 'failed' THEN 'card_declined' END,
       CASE WHEN a.n = 2 AND p.status = 'failed' THEN 'generic_decline' END, 0
FROM payments p CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) AS a
""",
    ),
    (
        "audit trail",
        f"""
INSERT INTO audit_log (pk, id, actor_key_id, action, subject_id, before, after, request_id,
                       created_at)
SELECT :audit_base + row_number() OVER (ORDER BY at, subject, action),
       'aud_' || substr(lower(hex(randomblob(12))), 1, 24), :actor, action, subject, before,
       after, NULL, at
FROM (
    SELECT id AS subject, 'order.created' AS action, NULL AS before,
           json_object('status', 'pending', 'total', total, 'currency', currency) AS after,
           {_ts("t")} AS at
    FROM s_orders
    UNION ALL
    SELECT id, 'payment.created', NULL,
           json_object('order', order_id, 'amount', amount, 'provider', provider), created_at
    FROM payments
    UNION ALL
    SELECT id, 'payment.' || status, json_object('status', 'processing'),
           json_object('status', status, 'amount', amount, 'order', order_id), updated_at
    FROM payments
    UNION ALL
    SELECT id, 'order.paid', json_object('status', 'pending'),
           json_object('status', 'paid', 'amount_paid', total), {_ts("t + 41")}
    FROM s_orders WHERE paid
    UNION ALL
    SELECT id, 'order.' || status, json_object('status', 'paid'),
           json_object('status', status), {_ts("t + 172800")}
    FROM s_orders WHERE status IN ('fulfilled', 'canceled')
    UNION ALL
    SELECT id, 'refund.succeeded', json_object('status', 'pending'),
           json_object('status', 'succeeded', 'amount', amount, 'order', order_id),
           succeeded_at
    FROM refunds
)
""",
    ),
    (
        "invoices",
        f"""
INSERT INTO documents (pk, id, kind, series, year, sequence, number, order_id,
                       invoiced_order_id, currency, total, tax, content, issued_at)
SELECT i, 'inv_' || printf('%024d', i), 'invoice', 'INV', year, sequence,
       'INV-' || year || '-' || printf('%06d', sequence), id, id, currency, total, 0,
       json_object(
           'kind', 'invoice', 'number', 'INV-' || year || '-' || printf('%06d', sequence),
           'issued_at', issued_at, 'currency', currency,
           'seller', json_object('name', 'Kassa Demo Shop', 'lines', json_array(),
                                 'tax_id', NULL, 'email', NULL),
           'buyer', json_object('name', 'Buyer ' || i, 'lines', json_array(), 'tax_id', NULL,
                                'email', NULL),
           'lines', json_array(json_object('description', 'Goods', 'quantity', 1,
                                           'unit_amount', total, 'amount', total)),
           'subtotal', total, 'taxes', json_array(), 'total', total,
           'reference', 'Order K-' || printf('%06d', i), 'notes', NULL, 'locale', 'en_US'),
       issued_at
FROM (
    SELECT i, id, currency, total, {_ts("t + 43")} AS issued_at,
           CAST(strftime('%Y', t + 43, 'unixepoch') AS INTEGER) AS year,
           row_number() OVER (PARTITION BY strftime('%Y', t + 43, 'unixepoch') ORDER BY i)
               AS sequence
    FROM s_orders WHERE paid
)
""",
    ),
    (
        "invoice counters",
        """
INSERT INTO document_counters (series, year, last_number)
SELECT 'INV', year, max(sequence) FROM documents WHERE series = 'INV' GROUP BY year
ON CONFLICT (series, year) DO UPDATE SET last_number = excluded.last_number
""",
    ),
]


@dataclass
class Seeded:
    """What a seed wrote: rows per table, and how long it took (steps too)."""

    seconds: float
    rows: dict[str, int]
    steps: list[tuple[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The seed as the results files of the benchmarks that seed this way report it."""
        return {
            "seconds": round(self.seconds, 1),
            "rows": self.rows,
            "steps": {k: round(v, 2) for k, v in self.steps},
        }


def _step(steps: list[tuple[str, float]], label: str, began: float) -> None:
    steps.append((label, time.perf_counter() - began))
    print(f"  {label}: {steps[-1][1]:.1f} s", flush=True)


def seed_postgres(target: Target, orders: int) -> Seeded:
    began = time.perf_counter()
    report = seed(target, prepare(target), orders)
    steps = list(report.steps)
    print("[seed] USD, customers over the year, refunds and wallets", flush=True)
    start = datetime.now(UTC) - QUIET_GAP - SPAN
    values = {"start": start, "span_s": SPAN.total_seconds()}
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for label, sql in _PG_MORE:
            at = time.perf_counter()
            conn.execute(sql, values if "%(" in sql else None)
            _step(steps, label, at)
        at = time.perf_counter()
        for table in COUNTED_TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        _step(steps, "vacuum analyze", at)
        rows = {
            t: _count(conn.execute(f"SELECT count(*) FROM {t}").fetchone()) for t in COUNTED_TABLES
        }
    return Seeded(time.perf_counter() - began, rows, steps)


def _count(row: Any) -> int:
    return int(row[0]) if row else 0


def seed_sqlite(target: Target, orders: int, history: Shop | None = None) -> Seeded:
    """The five tables above; with `history` (a shop `scale.prepare` made: its catalogue
    and its ops key, the audit trail's actor) also `HISTORY_TABLES` (`_SQLITE_HISTORY`)."""
    assert target.sqlite_path is not None
    what = "payments, refunds, customers, wallets"
    what += ", lines, attempts, audit trail, invoices" if history else ""
    print(f"[seed] {orders:,} orders and their {what}", flush=True)
    tables = (*COUNTED_TABLES, *HISTORY_TABLES) if history else COUNTED_TABLES
    statements = [*_SQLITE_ROWS, *_SQLITE_HISTORY] if history else _SQLITE_ROWS
    began = time.perf_counter()
    steps: list[tuple[str, float]] = []
    now = datetime.now(UTC).timestamp() - QUIET_GAP.total_seconds()
    values: dict[str, Any] = {
        "n": orders,
        "customers": max(1, orders // 5),
        "start": now - SPAN.total_seconds(),
        "span_s": SPAN.total_seconds(),
        "now": now,
    }
    conn = sqlite3.connect(
        target.sqlite_path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MB, for the index builds
        if history is not None:
            values["products"] = _count(conn.execute("SELECT count(*) FROM products").fetchone())
            values["actor"] = history.key_ids[0]
            values["audit_base"] = _count(
                conn.execute("SELECT coalesce(max(pk), 0) FROM audit_log").fetchone()
            )
        placeholders = ", ".join("?" * len(tables))
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({placeholders})",
            tables,
        ).fetchall()
        conn.execute("BEGIN")
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for label, sql in statements:
            at = time.perf_counter()
            conn.execute(sql, values)
            _step(steps, label, at)
        at = time.perf_counter()
        for _name, sql in indexes:
            conn.execute(sql)
        _step(steps, "rebuild indexes", at)
        conn.execute("COMMIT")
        at = time.perf_counter()
        conn.execute("ANALYZE")
        _step(steps, "analyze", at)
        rows = {t: _count(conn.execute(f"SELECT count(*) FROM {t}").fetchone()) for t in tables}
    finally:
        conn.close()
    return Seeded(time.perf_counter() - began, rows, steps)
