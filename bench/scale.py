"""Cost flat in the data: kassa on an empty shop beside one with 1,000,000 orders.

Issue 10 asks that order create and pay cost the same CPU (within ±15 %) and that the list
endpoints answer in the same time whether the database is empty or holds a million orders
with their history, and that the tables that only grow are pruned. This script shows it:

1. Two scratch PostgreSQL databases (`harness.scratch_database`), each with the same API
   keys (an ops, an admin and four storefront keys) and 200 products, made through kassa's
   services. One stays empty; the other is *seeded* set-based, in SQL (`INSERT … SELECT
   generate_series`, never through the API, so a million orders take minutes, not hours),
   with what a year of trade leaves behind: `--orders` orders (default 1,000,000) with 1 to 3
   lines, statuses paid 55 % / fulfilled 25 % / canceled 12 % / pending 8 %, four storefront
   keys and an ops key creating them (skewed 50/25/15/10 among storefronts), 35 % by
   registered customers (`--orders`/5 of them) and the rest by guests among `--orders`·0.4
   e-mail addresses, both drawn with a square law so some addresses have hundreds of
   orders (the e-mail lists below ask for those); a succeeded payment per paid order and
   failed ones before some (70 % sandbox, 30 % Stripe), two provider attempts each, one
   provider event per payment (a few never applied), the jobs those caused (delivery,
   apply, invoice: done, a few dead, a few queued for tomorrow), an invoice per paid order,
   the Idempotency-Keys of every storefront request (never purged before this work) and
   the audit trail. The secondary indexes are dropped while the rows go in and rebuilt
   after (exactly as declared), and every table is VACUUM ANALYZEd, as autovacuum would
   have left it.
2. Both databases are served the same way, as the other benchmarks serve kassa
   (`harness.run_kassa`): `kassa serve --workers 1 --no-worker` and one `kassa worker`
   process beside it, which delivers the sandbox's events to the server and applies them.
   Rounds alternate empty, full, full, empty, … so drift on a shared machine falls on
   both alike. In each round `--clients` threads run `--creates` POST /v1/orders
   (storefront key, Idempotency-Key, one of the ten busiest buyers' e-mails) and then
   `--pays` create + pay (POST /v1/orders, then POST /v1/orders/{id}/payments with the
   sandbox and `pm_card_visa`, both with Idempotency-Keys). CPU is read from /proc
   (`bench/cpu.py`), quiet to quiet: no job due and the processes idle before and after,
   so the sandbox's delivery, the webhook, its apply and the invoice each operation causes
   are counted. "request path" is the server's session alone; "with background" adds
   the worker's; "database" is the scratch database's backends (and PostgreSQL's own
   processes).
3. List latency, one client, `--list-requests` requests per query after a warm-up, p50
   and p95: `GET /v1/orders?email=` (the ten busiest buyers), `GET /v1/payments?order=`
   (orders paid in step 2), `GET /v1/orders?starting_after=` (cursors between 40 % and
   60 % of the orders table), and a few more filters (a storefront's own orders,
   `status=pending`, the audit log by action and by subject).
4. Table sizes (`pg_total_relation_size`, rows) of the full database before and after one
   pruning pass (`kassa.services.pruning.Pruning` with the default retentions, which the
   seeded year of history exceeds, and no time limit), how long the pass took and what it
   removed, how long the next pass takes (the steady state), and the sizes after a plain
   VACUUM with the heap space it left free (PostgreSQL keeps a deleted row's space for
   new rows rather than handing it back, so a pruned table stops growing; it does not
   shrink).

SQLite is not part of this run: a million-order SQLite file is not a deployment kassa
recommends, and the indexes (migration 0008) are the same on both.

    .venv/bin/python bench/scale.py [--orders 1000000] [--rounds 3] [--creates 300]
                                    [--pays 150] [--clients 4] [--list-requests 200] [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from cpu import CLOCK_TICKS, Cpu, CpuMeter, QuietPoint, cpu_between, read_stat
from harness import (
    BenchParser,
    KassaLaunch,
    LoadResult,
    Op,
    Running,
    Target,
    clean_env,
    describe,
    http_client,
    percentile,
    ratio,
    recorded_params,
    run_benchmark,
    run_kassa,
    run_load,
    scratch_database,
)
from probe import Probe

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext

CURRENCY = "EUR"
PRODUCTS = 200
STOREFRONTS = 4
HOT_BUYERS = 10  # buyer0..buyer9@example.com: the busiest guest e-mails (square law)
SPAN = timedelta(days=365)  # the seeded history ends QUIET_GAP before the run
QUIET_GAP = timedelta(minutes=10)
STUCK_EVENT_EVERY = 20_000  # one payment event in this many was never applied
DEAD_DELIVERY_EVERY = 2_000  # one sandbox delivery in this many was dead-lettered
QUIET_TIMEOUT_S = 120.0
CARD = "pm_card_visa"


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    orders: int
    rounds: int
    creates: int
    pays: int
    clients: int
    list_requests: int
    time_limit_s: float
    postgres_url: str


def parse_args(argv: list[str] | None = None) -> Params:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_sized(
        "--orders", "orders seeded into the full database", default=1_000_000, quick=20_000
    )
    parser.add_sized("--rounds", "alternating empty/full rounds", default=3, quick=1)
    parser.add_sized("--creates", "POST /v1/orders per database per round", default=300, quick=40)
    parser.add_sized("--pays", "create + pay per database per round", default=150, quick=20)
    parser.add_sized("--list-requests", "requests per list query", default=200, quick=30)
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_sized(
        "--time-limit", "seconds allowed per measured phase", default=600, quick=120, kind=float
    )
    parser.add_quick("a small run (20,000 orders) that goes through every phase")
    parser.add_postgres_url()
    args = parser.parse(argv)
    numbers = (args.orders, args.rounds, args.creates, args.pays, args.clients, args.list_requests)
    if min(numbers) < 1 or args.time_limit <= 0:
        parser.error("every count and --time-limit must be positive")
    return Params(
        orders=args.orders,
        rounds=args.rounds,
        creates=args.creates,
        pays=args.pays,
        clients=args.clients,
        list_requests=args.list_requests,
        time_limit_s=args.time_limit,
        postgres_url=args.postgres_url,
    )


# --------------------------------------------------------------------------- the shop


@dataclass(frozen=True)
class Shop:
    """What both databases get through kassa's own services before anything else."""

    ops: str  # secrets
    admin: str
    storefronts: tuple[str, ...]
    key_ids: tuple[str, ...]  # ops first, then the storefronts (the seed's created_by_key)


def prepare(target: Target) -> Shop:
    kassa = Kassa(Settings(database_url=target.url))
    try:
        ctx = RequestContext.system("bench")
        ops_view, ops = kassa.api_keys.create(ctx, "ops", "bench ops")
        _admin_view, admin = kassa.api_keys.create(ctx, "admin", "bench admin")
        fronts = [kassa.api_keys.create(ctx, "storefront", f"shop {n}") for n in range(STOREFRONTS)]
        for n in range(PRODUCTS):
            price = 300 + (n * 137) % 9700
            kassa.catalogue.create(
                ctx, NewProduct(f"SKU-{n:04d}", f"Product {n}", price, CURRENCY, stock=None)
            )
    finally:
        kassa.close()
    return Shop(
        ops=ops,
        admin=admin,
        storefronts=tuple(secret for _view, secret in fronts),
        key_ids=(ops_view.id, *(view.id for view, _secret in fronts)),
    )


# --------------------------------------------------------------------------- seeding

# Each step is one statement over the whole data set. Placeholders: n (orders),
# customers, emails, products, start (the first order's time), span_s, keys (ops first),
# stuck, dead, tomorrow. Primary keys are computed, not drawn from the sequences, so the
# rows of one order line up across tables without a sort: payment j of order i is
# 2i-1 (a failed one before) or 2i (the succeeded one); its attempts 2j-1 and 2j, its
# event j, its jobs 4j-3 (delivery) and 4j-2 (apply); the invoice job is 8i-1, the
# order's Idempotency-Keys 3i-2 (create) and i+j (pay), its audit rows 8(i-1)+slot+1
# (after whatever the shop's preparation wrote). The sequences are set past them after.

_TEMP_ROWS = [
    (
        "draw the orders",
        """
CREATE TEMP TABLE s_draw AS
SELECT i,
       %(start)s::timestamptz + make_interval(secs => %(span_s)s * i / %(n)s::float8) AS created_at,
       random() AS r_status, random() AS r_key, random() AS r_cust, random() AS r_who,
       random() AS r_lines
FROM generate_series(1, %(n)s) AS i
""",
    ),
    (
        "draw the lines",
        """
CREATE TEMP TABLE s_lines AS
SELECT d.i, p.pos, 1 + floor(random() * %(products)s)::int AS product_ix,
       1 + floor(random() * 3)::int AS qty
FROM s_draw d CROSS JOIN LATERAL generate_series(0, floor(d.r_lines * 3)::int) AS p(pos)
""",
    ),
    (
        "products",
        """
CREATE TEMP TABLE s_products AS
SELECT row_number() OVER (ORDER BY pk)::int AS ix, id, sku, title, unit_amount FROM products
""",
    ),
    (
        "shape the orders",
        """
CREATE TEMP TABLE s_orders AS
WITH totals AS (
    SELECT l.i, sum(p.unit_amount * l.qty)::bigint AS total
    FROM s_lines l JOIN s_products p ON p.ix = l.product_ix GROUP BY l.i
), shaped AS (
    SELECT d.i, d.created_at, t.total,
           CASE WHEN d.r_status < 0.55 THEN 'paid' WHEN d.r_status < 0.80 THEN 'fulfilled'
                WHEN d.r_status < 0.92 THEN 'canceled' ELSE 'pending' END AS status,
           (%(keys)s::text[])[CASE WHEN d.r_key < 0.15 THEN 1 WHEN d.r_key < 0.575 THEN 2
                WHEN d.r_key < 0.7875 THEN 3 WHEN d.r_key < 0.915 THEN 4 ELSE 5 END] AS key_id,
           CASE WHEN d.r_cust < 0.35
                THEN 1 + floor(%(customers)s * d.r_who * d.r_who)::int END AS customer_ix,
           floor(%(emails)s * d.r_who * d.r_who)::int AS email_ix
    FROM s_draw d JOIN totals t USING (i)
)
SELECT i, created_at, total, status, key_id,
       'ord_' || substr(md5('o' || i), 1, 24) AS id,
       'K-' || lpad(i::text, greatest(6, length(i::text)), '0') AS number,
       CASE WHEN customer_ix IS NOT NULL
            THEN 'cus_' || substr(md5('c' || customer_ix), 1, 24) END AS customer_id,
       CASE WHEN customer_ix IS NOT NULL THEN 'customer' || customer_ix || '@example.com'
            ELSE 'buyer' || email_ix || '@example.com' END AS email,
       status IN ('paid', 'fulfilled') AS paid,
       created_at + interval '41 seconds' AS paid_at
FROM shaped
""",
    ),
    (
        "shape the payments",
        """
CREATE TEMP TABLE s_pay AS
WITH drawn AS (
    SELECT 2 * i - 1 AS j, i, false AS ok, created_at + interval '20 seconds' AS at
    FROM s_orders
    WHERE random() < CASE status WHEN 'canceled' THEN 0.3 WHEN 'pending' THEN 0.05 ELSE 0.08 END
    UNION ALL
    SELECT 2 * i, i, true, created_at + interval '40 seconds' FROM s_orders WHERE paid
)
SELECT d.j, d.i, d.ok, d.at, o.id AS order_id, o.number, o.total, o.key_id,
       'pay_' || substr(md5('p' || d.j), 1, 24) AS id,
       CASE WHEN mod(d.j, 10) < 7 THEN 'mock' ELSE 'stripe' END AS provider,
       CASE WHEN mod(d.j, 10) < 7 THEN 'pi_mock_' || substr(md5('i' || d.j), 1, 20)
            ELSE 'pi_' || substr(md5('i' || d.j), 1, 24) END AS intent,
       CASE WHEN mod(d.j, 10) < 7 THEN 'evt_mock_' || substr(md5('e' || d.j), 1, 20)
            ELSE 'evt_' || substr(md5('e' || d.j), 1, 24) END AS event_id,
       'kassa:req:' || md5('b' || d.j) AS base
FROM drawn d JOIN s_orders o USING (i)
""",
    ),
]

_FAILURE = (  # as the sandbox records a decline
    "json_build_object('type', 'card_error', 'message', 'Your card was declined.',"
    " 'code', 'card_declined', 'decline_code', 'generic_decline', 'http_status', 402)"
)

_TABLE_ROWS = [
    (
        "customers",
        """
INSERT INTO customers (pk, id, email, name, created_by_key, created_at)
SELECT c, 'cus_' || substr(md5('c' || c), 1, 24), 'customer' || c || '@example.com',
       'Customer ' || c, (%(keys)s::text[])[2 + mod(c, 4)],
       %(start)s::timestamptz - make_interval(secs => c)
FROM generate_series(1, %(customers)s) AS c
""",
    ),
    (
        "orders",
        """
INSERT INTO orders (pk, id, number, status, currency, subtotal, total, amount_paid,
                    amount_refunded, stock_shortage, disputed, customer_id, email, metadata,
                    created_by_key, cancel_reason, created_at, paid_at, fulfilled_at,
                    canceled_at)
SELECT i, id, number, status, 'EUR', total, total, CASE WHEN paid THEN total ELSE 0 END, 0,
       false, false, customer_id, email, '{}', key_id,
       CASE WHEN status = 'canceled' THEN 'requested' END, created_at,
       CASE WHEN paid THEN paid_at END,
       CASE WHEN status = 'fulfilled' THEN created_at + interval '2 days' END,
       CASE WHEN status = 'canceled' THEN created_at + interval '1 hour' END
FROM s_orders
""",
    ),
    (
        "order_lines",
        """
INSERT INTO order_lines (pk, order_id, position, product_id, sku, title, unit_amount,
                         quantity, amount, product_status, "unique")
SELECT 3 * l.i - 2 + l.pos, 'ord_' || substr(md5('o' || l.i), 1, 24), l.pos, p.id, p.sku,
       p.title, p.unit_amount, l.qty, p.unit_amount * l.qty, 'available', false
FROM s_lines l JOIN s_products p ON p.ix = l.product_ix
""",
    ),
    (
        "payments",
        f"""
INSERT INTO payments (pk, id, order_id, provider, provider_payment_id, idempotency_base,
                      status, amount, currency, payment_method, client_secret, failure,
                      retry_count, recovered_by_retry, orchestration_ms, created_by_key,
                      created_at, updated_at, succeeded_at)
SELECT j, id, order_id, provider, intent, base,
       CASE WHEN ok THEN 'succeeded' ELSE 'failed' END, total, 'EUR',
       CASE WHEN ok THEN 'pm_card_visa' ELSE 'pm_card_chargeDeclined' END,
       intent || '_secret_' || substr(md5('s' || j), 1, 16),
       CASE WHEN NOT ok THEN {_FAILURE} END, 0, false, 20 + mod(j, 17), key_id, at,
       at + interval '1 second', CASE WHEN ok THEN at + interval '1 second' END
FROM s_pay
""",
    ),
    (
        "payment_attempts",
        """
INSERT INTO payment_attempts (pk, payment_id, provider, number, operation, started_at,
                              duration_ms, outcome, error_type, code, decline_code,
                              gateway_failure)
SELECT 2 * p.j - 2 + a.n, p.id, p.provider, a.n,
       CASE a.n WHEN 1 THEN 'create_intent' ELSE 'confirm_intent' END,
       p.at + a.n * interval '10 milliseconds', 8 + mod(p.j, 7),
       CASE WHEN a.n = 2 AND NOT p.ok THEN 'hard_failure' ELSE 'succeeded' END,
       CASE WHEN a.n = 2 AND NOT p.ok THEN 'card_error' END,
       CASE WHEN a.n = 2 AND NOT p.ok THEN 'card_declined' END,
       CASE WHEN a.n = 2 AND NOT p.ok THEN 'generic_decline' END, false
FROM s_pay p CROSS JOIN (VALUES (1), (2)) AS a(n)
""",
    ),
    (
        "provider_events",
        f"""
INSERT INTO provider_events (pk, provider, event_id, type, payload, signed_at, received_at,
                             applied_at, outcome, deliveries)
SELECT j, provider, event_id,
       CASE WHEN ok THEN 'payment_intent.succeeded' ELSE 'payment_intent.payment_failed' END,
       json_build_object(
           'id', event_id, 'object', 'event',
           'type', CASE WHEN ok THEN 'payment_intent.succeeded'
                        ELSE 'payment_intent.payment_failed' END,
           'created', extract(epoch FROM at)::bigint, 'livemode', false,
           'data', json_build_object('object', json_build_object(
               'id', intent, 'object', 'payment_intent', 'amount', total,
               'amount_received', CASE WHEN ok THEN total ELSE 0 END, 'currency', 'eur',
               'status', CASE WHEN ok THEN 'succeeded' ELSE 'requires_payment_method' END,
               'metadata', json_build_object('kassa_payment', id, 'kassa_order', order_id,
                                             'kassa_order_number', number),
               'next_action', NULL,
               'last_payment_error', CASE WHEN NOT ok THEN {_FAILURE} END))),
       at + interval '1 second', at + interval '1 second',
       CASE WHEN mod(j, %(stuck)s) <> 0 THEN at + interval '1200 milliseconds' END,
       CASE WHEN mod(j, %(stuck)s) = 0 THEN NULL
            WHEN ok THEN 'payment succeeded' ELSE 'payment failed' END, 1
FROM s_pay
""",
    ),
    (
        "jobs: sandbox deliveries",
        """
INSERT INTO jobs (pk, kind, payload, state, attempts, max_attempts, run_after, locked_by,
                  last_error, created_at, finished_at)
SELECT 4 * pk - 3, 'mock.deliver_event', json_build_object('event', payload),
       CASE WHEN mod(pk, %(dead)s) = 0 THEN 'dead' ELSE 'done' END,
       CASE WHEN mod(pk, %(dead)s) = 0 THEN 15 ELSE 1 END, 15,
       received_at - interval '500 milliseconds', 'seed',
       CASE WHEN mod(pk, %(dead)s) = 0 THEN 'RuntimeError: delivery answered 500' END,
       received_at - interval '500 milliseconds', received_at
FROM provider_events WHERE provider = 'mock'
""",
    ),
    (
        "jobs: event applies",
        """
INSERT INTO jobs (pk, kind, payload, state, attempts, max_attempts, run_after, locked_by,
                  last_error, created_at, finished_at)
SELECT 4 * pk - 2, 'provider_event.apply', json_build_object('event_pk', pk),
       CASE WHEN applied_at IS NULL THEN 'queued' ELSE 'done' END,
       CASE WHEN applied_at IS NULL THEN 5 ELSE 1 END, 20,
       CASE WHEN applied_at IS NULL THEN %(tomorrow)s ELSE received_at END,
       CASE WHEN applied_at IS NOT NULL THEN 'seed' END,
       CASE WHEN applied_at IS NULL THEN 'RetryLater: the payment is not known yet' END,
       received_at, applied_at
FROM provider_events
""",
    ),
    (
        "jobs: invoices",
        """
INSERT INTO jobs (pk, kind, payload, state, attempts, max_attempts, run_after, locked_by,
                  created_at, finished_at)
SELECT 8 * i - 1, 'documents.issue_invoice', json_build_object('order', id), 'done', 1, 12,
       paid_at, 'seed', paid_at, paid_at + interval '2 seconds'
FROM s_orders WHERE paid
""",
    ),
    (
        "idempotency_keys: order creates",
        """
INSERT INTO idempotency_keys (pk, api_key_id, key, fingerprint, state, locked_at,
                              resource_type, resource_id, response_status, response_headers,
                              response_body, created_at, completed_at)
SELECT 3 * i - 2, key_id, 'ik_' || md5('k' || i), md5('f' || i) || md5('g' || i),
       'completed', created_at - interval '5 milliseconds', 'order', id, 201,
       '{"content-type": "application/json"}',
       convert_to(format(
           '{"id":"%%s","object":"order","number":"%%s","status":"pending","currency":"EUR",'
           '"subtotal":%%s,"total":%%s,"amount_paid":0,"amount_refunded":0,'
           '"refund_status":"none","refunded_at":null,"stock_shortage":false,'
           '"disputed":false,"disputed_at":null,"customer":%%s,"email":"%%s","lines":'
           '[{"sku":"SKU-0001","title":"Product 1","unit_amount":%%s,"quantity":1,'
           '"amount":%%s,"product_status":"available"}],"shipping_address":null,'
           '"metadata":{},"reservation_expires_at":null,"cancel_reason":null,'
           '"created_at":"%%s","paid_at":null,"fulfilled_at":null,"canceled_at":null}',
           id, number, total, total, coalesce('"' || customer_id || '"', 'null'), email,
           total, total, created_at), 'UTF8'),
       created_at - interval '5 milliseconds', created_at + interval '20 milliseconds'
FROM s_orders WHERE key_id <> (%(keys)s::text[])[1]
""",
    ),
    (
        "idempotency_keys: payments",
        """
INSERT INTO idempotency_keys (pk, api_key_id, key, fingerprint, state, locked_at,
                              resource_type, resource_id, response_status, response_headers,
                              response_body, created_at, completed_at)
SELECT i + j, key_id, 'ik_' || md5('q' || j), md5('f' || j) || md5('h' || j), 'completed',
       at - interval '5 milliseconds', 'payment', id, CASE WHEN ok THEN 201 ELSE 402 END,
       '{"content-type": "application/json"}',
       convert_to(format(
           '{"id":"%%s","object":"payment","order":"%%s","top_up_customer":null,'
           '"provider":"%%s","provider_payment_id":"%%s","status":"%%s","amount":%%s,'
           '"currency":"EUR","client_secret":"%%s_secret_0000000000000000",'
           '"next_action":null,"failure":null,"attempts":[{"number":1,'
           '"operation":"create_intent","started_at":"%%s","duration_ms":11,'
           '"outcome":"succeeded","error_type":null,"code":null,"decline_code":null,'
           '"retry_delay_ms":null},{"number":2,"operation":"confirm_intent",'
           '"started_at":"%%s","duration_ms":12,"outcome":"succeeded","error_type":null,'
           '"code":null,"decline_code":null,"retry_delay_ms":null}],"retry_count":0,'
           '"recovered_by_retry":false,"no_retry_reason":null,"orchestration_ms":31,'
           '"created_at":"%%s","succeeded_at":"%%s"}',
           id, order_id, provider, intent, CASE WHEN ok THEN 'succeeded' ELSE 'failed' END,
           total, intent, at, at, at, at), 'UTF8'),
       at - interval '5 milliseconds', at + interval '1 second'
FROM s_pay WHERE key_id <> (%(keys)s::text[])[1]
""",
    ),
    (
        "audit_log",
        """
INSERT INTO audit_log (pk, id, actor_key_id, action, subject_id, before, after, request_id,
                       created_at)
SELECT a.pk, 'aud_' || substr(md5('a' || a.pk), 1, 24), a.actor, a.action, a.subject,
       a.before, a.after, a.request_id, a.at
FROM (
    SELECT %(audit_base)s + 8 * (i - 1) + 1 AS pk, key_id AS actor, 'order.created' AS action,
           id AS subject, NULL::json AS before,
           json_build_object('status', 'pending', 'total', total, 'currency', 'EUR') AS after,
           'req_' || substr(md5('r' || i), 1, 24) AS request_id, created_at AS at
    FROM s_orders
    UNION ALL
    SELECT %(audit_base)s + 8 * (p.i - 1) + CASE WHEN p.ok THEN 4 ELSE 2 END, p.key_id,
           'payment.created', p.id, NULL,
           json_build_object('order', p.order_id, 'amount', p.total, 'provider', p.provider),
           'req_' || substr(md5('t' || p.j), 1, 24), p.at
    FROM s_pay p
    UNION ALL
    SELECT %(audit_base)s + 8 * (p.i - 1) + CASE WHEN p.ok THEN 5 ELSE 3 END, p.key_id,
           CASE WHEN p.ok THEN 'payment.succeeded' ELSE 'payment.failed' END, p.id,
           json_build_object('status', 'processing'),
           json_build_object('status', CASE WHEN p.ok THEN 'succeeded' ELSE 'failed' END,
                             'amount', p.total, 'order', p.order_id),
           'req_' || substr(md5('t' || p.j), 1, 24), p.at + interval '1 second'
    FROM s_pay p
    UNION ALL
    SELECT %(audit_base)s + 8 * (i - 1) + 6, key_id, 'order.paid', id,
           json_build_object('status', 'pending'),
           json_build_object('status', 'paid', 'amount_paid', total, 'stock_shortage', false),
           'req_' || substr(md5('t' || 2 * i), 1, 24), paid_at
    FROM s_orders WHERE paid
    UNION ALL
    SELECT %(audit_base)s + 8 * (i - 1) + 7, 'worker', 'invoice.issued',
           'inv_' || substr(md5('v' || i), 1, 24), NULL,
           json_build_object('order', id, 'total', total), NULL, paid_at + interval '2 seconds'
    FROM s_orders WHERE paid
    UNION ALL
    SELECT %(audit_base)s + 8 * (i - 1) + 8, (%(keys)s::text[])[1],
           'order.' || status, id, json_build_object('status', 'paid'),
           json_build_object('status', status), NULL,
           CASE WHEN status = 'fulfilled' THEN created_at + interval '2 days'
                ELSE created_at + interval '1 hour' END
    FROM s_orders WHERE status IN ('fulfilled', 'canceled')
) AS a
""",
    ),
    (
        "documents",
        """
INSERT INTO documents (pk, id, kind, series, year, sequence, number, order_id,
                       invoiced_order_id, currency, total, tax, content, issued_at)
SELECT i, 'inv_' || substr(md5('v' || i), 1, 24), 'invoice', 'INV', year, sequence,
       'INV-' || year || '-' || lpad(sequence::text, 6, '0'), id, id, 'EUR', total, 0,
       json_build_object(
           'kind', 'invoice', 'number', 'INV-' || year || '-' || lpad(sequence::text, 6, '0'),
           'issued_at', issued_at, 'currency', 'EUR',
           'seller', json_build_object('name', 'Kassa Demo Shop', 'lines', '[]'::json,
                                       'tax_id', NULL, 'email', NULL),
           'buyer', json_build_object('name', email, 'lines', '[]'::json, 'tax_id', NULL,
                                      'email', email),
           'lines', json_build_array(json_build_object('description', 'Goods', 'quantity', 1,
                                                       'unit_amount', total, 'amount', total)),
           'subtotal', total, 'taxes', '[]'::json, 'total', total,
           'reference', 'Order ' || number, 'notes', NULL, 'locale', 'en_US'),
       issued_at
FROM (
    SELECT o.*, extract(year FROM o.paid_at)::int AS year,
           o.paid_at + interval '2 seconds' AS issued_at,
           row_number() OVER (PARTITION BY extract(year FROM o.paid_at) ORDER BY o.i)
               AS sequence
    FROM s_orders o WHERE o.paid
) AS invoiced
""",
    ),
    (
        "document_counters",
        """
INSERT INTO document_counters (series, year, last_number)
SELECT 'INV', year, max(sequence) FROM documents WHERE series = 'INV' GROUP BY year
ON CONFLICT (series, year) DO UPDATE SET last_number = excluded.last_number
""",
    ),
    (
        "mock_intents",
        f"""
INSERT INTO mock_intents (pk, id, reference, amount, currency, status, payment_method,
                          client_secret, last_error, metadata, created_at)
SELECT j, intent, id, total, 'EUR',
       CASE WHEN ok THEN 'succeeded' ELSE 'requires_payment_method' END,
       CASE WHEN ok THEN 'pm_card_visa' ELSE 'pm_card_chargeDeclined' END,
       intent || '_secret_' || substr(md5('s' || j), 1, 16),
       CASE WHEN NOT ok THEN {_FAILURE} END,
       json_build_object('kassa_payment', id, 'kassa_order', order_id,
                         'kassa_order_number', number), at
FROM s_pay WHERE provider = 'mock'
""",
    ),
    (
        "mock_charges",
        """
INSERT INTO mock_charges (pk, id, intent_id, reference, order_ref, amount, amount_refunded,
                          currency, status, created_at)
SELECT j, 'ch_mock_' || substr(md5('h' || j), 1, 20), intent, id, order_id, total, 0, 'EUR',
       'succeeded', at + interval '500 milliseconds'
FROM s_pay WHERE provider = 'mock' AND ok
""",
    ),
    (
        "mock_idempotency",
        """
INSERT INTO mock_idempotency (key, operation, object_id, created_at)
SELECT p.base || ':' || o.step, o.step || '_intent', p.intent, p.at
FROM s_pay p CROSS JOIN (VALUES ('create'), ('confirm')) AS o(step)
WHERE p.provider = 'mock'
""",
    ),
]

# The tables the seed writes; their secondary indexes are rebuilt after the load.
SEEDED_TABLES = (
    "customers",
    "orders",
    "order_lines",
    "payments",
    "payment_attempts",
    "provider_events",
    "jobs",
    "idempotency_keys",
    "audit_log",
    "documents",
    "mock_intents",
    "mock_charges",
    "mock_idempotency",
)
# Every table worth reporting the size of.
REPORTED_TABLES = (*SEEDED_TABLES, "products", "api_keys")
# The tables that start empty (the seed's keys assume it); audit_log has the preparation's.
_EMPTY_BEFORE = tuple(t for t in SEEDED_TABLES if t != "audit_log")


@dataclass
class SeedReport:
    orders: int
    seconds: float
    steps: list[tuple[str, float]] = field(default_factory=list)


def _secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, definition) of every index on a seeded table that backs no constraint."""
    rows = conn.execute(
        """
        SELECT ic.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        WHERE tc.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        ORDER BY ic.relname
        """,
        (list(SEEDED_TABLES),),
    ).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


def _seed_values(conn: psycopg.Connection[Any], shop: Shop, orders: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    audit_base = conn.execute("SELECT coalesce(max(pk), 0) FROM audit_log").fetchone()
    return {
        "n": orders,
        "customers": max(1, orders // 5),
        "emails": max(HOT_BUYERS, orders * 2 // 5),
        "products": PRODUCTS,
        "start": now - QUIET_GAP - SPAN,
        "span_s": SPAN.total_seconds(),
        "keys": list(shop.key_ids),
        "stuck": STUCK_EVENT_EVERY,
        "dead": DEAD_DELIVERY_EVERY,
        "tomorrow": now + timedelta(days=1),
        "audit_base": int(audit_base[0]) if audit_base else 0,
    }


def _timed(steps: list[tuple[str, float]], label: str, action: Callable[[], object]) -> None:
    began = time.perf_counter()
    action()
    steps.append((label, time.perf_counter() - began))
    print(f"  {label}: {steps[-1][1]:.1f} s", flush=True)


def seed(target: Target, shop: Shop, orders: int) -> SeedReport:
    """Fill `target` (prepared, otherwise empty) with `orders` orders and their history."""
    print(f"[seed] {orders:,} orders and their history, set-based", flush=True)
    began = time.perf_counter()
    report = SeedReport(orders, 0.0)
    with psycopg.connect(target.url, autocommit=True) as conn:
        for table in _EMPTY_BEFORE:
            row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
            if row and row[0]:
                raise RuntimeError(f"the seed needs an empty {table}")
        # Only this session: no foreign-key triggers (the rows are consistent by
        # construction), no waiting for each commit's flush, room to sort and build.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        values = _seed_values(conn, shop, orders)
        indexes = _secondary_indexes(conn)
        for name, _definition in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for label, sql in (*_TEMP_ROWS, *_TABLE_ROWS):
            _timed(report.steps, label, partial(conn.execute, sql, values))
        _timed(report.steps, "rebuild indexes", lambda: _rebuild(conn, indexes))
        _timed(report.steps, "sequences", lambda: _advance_sequences(conn))
        _timed(report.steps, "vacuum analyze", lambda: _vacuum(conn, REPORTED_TABLES))
    report.seconds = time.perf_counter() - began
    print(f"[seed] done in {report.seconds:.0f} s", flush=True)
    return report


def _rebuild(conn: psycopg.Connection[Any], indexes: list[tuple[str, str]]) -> None:
    for _name, definition in indexes:
        conn.execute(definition)


def _advance_sequences(conn: psycopg.Connection[Any]) -> None:
    """Each serial key's sequence past the largest key the seed wrote."""
    for table in SEEDED_TABLES:
        row = conn.execute(
            "SELECT pg_get_serial_sequence(%s, 'pk') FROM information_schema.columns"
            " WHERE table_name = %s AND column_name = 'pk'",
            (table, table),
        ).fetchone()
        if row and row[0]:
            conn.execute(
                f"SELECT setval(%s, greatest(1, (SELECT coalesce(max(pk), 0) FROM {table})))",
                (row[0],),
            )


def _vacuum(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> None:
    for table in tables:
        conn.execute(f"VACUUM (ANALYZE) {table}")


# --------------------------------------------------------------------------- kassa, served


def session_cpu_s(session: int) -> float:
    """CPU seconds so far of every live process in `session` (one server: its supervisor,
    API processes and their children)."""
    stats = (read_stat(pid) for pid in (int(n) for n in os.listdir("/proc") if n.isdigit()))
    return sum(s.ticks for s in stats if s is not None and s.session == session) / CLOCK_TICKS


@dataclass
class Served:
    """One database served: `kassa serve --no-worker` and one `kassa worker` beside it
    (so the request path and the background work can be told apart), the CPU meter over
    both and the database's backends, and the benchmark's own connection."""

    label: str
    target: Target
    shop: Shop
    running: Running
    probe: Probe
    meter: CpuMeter
    paid_orders: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.running.base_url

    @property
    def server_session(self) -> int:
        return self.running.processes[0].pid

    def jobs_due(self) -> int:
        """Jobs the operations may still cause work in: running, due, or waiting out a
        retry's backoff, as `Probe.jobs_due` counts them, except the seed's stuck events,
        whose next try is a day away (they are history, not work the run caused)."""
        rows = self.probe.rows(
            "SELECT count(*) FROM jobs WHERE state = 'running' OR (state = 'queued' AND"
            " (run_after <= %s OR (attempts > 0 AND run_after <= %s)))",
            (datetime.now(UTC), datetime.now(UTC) + timedelta(hours=1)),
        )
        return int(rows[0][0])

    def quiet(self, *, after: bool) -> tuple[QuietPoint, float]:
        """A quiet point (no job due, the processes idle) and the server's CPU there."""
        point = self.meter.wait_quiet(self.jobs_due, after=after, timeout_s=QUIET_TIMEOUT_S)
        if point.timed_out:
            print(f"WARNING [{self.label}] not quiet after {QUIET_TIMEOUT_S:.0f} s")
        return point, session_cpu_s(self.server_session)


# While the operations are measured the worker prunes nothing (its passes find nothing
# this old), so the seeded year's backlog is neither in the CPU figures nor gone before
# `prune` measures one whole pass over it.
_NO_PRUNING = {
    f"KASSA_{name}": str(100 * 365 * 86400)
    for name in ("JOB_RETENTION_S", "EVENT_RETENTION_S", "IDEMPOTENCY_RETENTION_S")
}


@contextmanager
def serve(label: str, target: Target, shop: Shop, workdir: Path) -> Iterator[Served]:
    launch = KassaLaunch(workers=1, embedded_worker=False, worker_procs=1, log_level="warning")
    env = clean_env(KASSA_DATABASE_URL=target.url, **_NO_PRUNING)
    with ExitStack() as stack:
        running = stack.enter_context(run_kassa(launch, env, workdir / f"kassa-{label}"))
        probe = Probe(target)
        stack.callback(probe.close)
        meter = CpuMeter(postgres=probe.postgres_scope(), sessions=running.sessions)
        meter.start()
        stack.callback(meter.close)
        yield Served(label, target, shop, running, probe, meter)


# --------------------------------------------------------------------------- operations


def _hot_email(n: int) -> str:
    return f"buyer{n % HOT_BUYERS}@example.com"


def _order_body(n: int) -> dict[str, Any]:
    return {
        "email": _hot_email(n),
        "currency": CURRENCY,
        "lines": [{"sku": f"SKU-{n % PRODUCTS:04d}", "quantity": 1 + n % 2}],
    }


class _Counter:
    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


@contextmanager
def creator(served: Served, counter: _Counter, pay: bool) -> Iterator[Op]:
    """POST /v1/orders (and, with `pay`, its payment) as one storefront, with keys."""
    n0 = counter.next()
    secret = served.shop.storefronts[n0 % len(served.shop.storefronts)]
    with http_client(served.base_url, headers={"Authorization": f"Bearer {secret}"}) as client:

        def op() -> str | None:
            n = counter.next()
            made = client.post(
                "/v1/orders", json=_order_body(n), headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            if made.status_code != 201:
                return f"create: HTTP {made.status_code}: {made.text[:200]}"
            if not pay:
                return None
            order_id = made.json()["id"]
            paid = client.post(
                f"/v1/orders/{order_id}/payments",
                json={"provider": "mock", "payment_method": CARD},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            if paid.status_code != 201 or paid.json()["status"] != "succeeded":
                return f"pay: HTTP {paid.status_code}: {paid.text[:200]}"
            served.paid_orders.append(order_id)
            return None

        yield op


@dataclass
class CpuSample:
    """One measured phase on one database: ops done and the CPU they cost, quiet to
    quiet: the server alone, server and worker (`app`), and the database."""

    ops: int
    failed: int
    wall_s: float
    server_s: float
    cpu: Cpu

    def per_op_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.ops if self.ops else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "failed": self.failed,
            "wall_s": round(self.wall_s, 2),
            "server_ms_per_op": round(self.per_op_ms(self.server_s), 2),
            **self.cpu.per_op_ms(self.ops),
        }


def measure_cpu(served: Served, pay: bool, total: int, params: Params) -> CpuSample:
    counter = _Counter()
    before, server_before = served.quiet(after=False)
    load: LoadResult = run_load(
        lambda: creator(served, counter, pay), params.clients, total, params.time_limit_s
    )
    after, server_after = served.quiet(after=True)
    for line in load.warnings(served.label, "create + pay" if pay else "create"):
        print(line)
    return CpuSample(
        ops=load.succeeded,
        failed=load.failed + int(before.timed_out or after.timed_out),
        wall_s=load.wall_s,
        server_s=server_after - server_before,
        cpu=cpu_between(before.snapshot, after.snapshot),
    )


# --------------------------------------------------------------------------- list latency


def _cursors(target: Target, how_many: int = 10) -> list[str]:
    """Order ids between 40 % and 60 % of the orders table, by key: cursors deep in it."""
    with psycopg.connect(target.url) as conn:
        row = conn.execute("SELECT min(pk), max(pk) FROM orders").fetchone()
        low, high = (int(row[0]), int(row[1])) if row and row[0] is not None else (0, 0)
        picks = [low + (high - low) * (40 + 20 * k // how_many) // 100 for k in range(how_many)]
        found = [
            conn.execute(
                "SELECT id FROM orders WHERE pk <= %s ORDER BY pk DESC LIMIT 1", (pk,)
            ).fetchone()
            for pk in picks
        ]
    return [str(r[0]) for r in found if r]


def list_queries(served: Served) -> dict[str, tuple[str, list[str]]]:
    """Name → (the key's secret, the paths to request in turn) on one database."""
    shop = served.shop
    paid = served.paid_orders[:50]
    emails = [f"buyer{n}@example.com" for n in range(HOT_BUYERS)]
    return {
        "GET /v1/orders?email=": (shop.ops, [f"/v1/orders?email={e}" for e in emails]),
        "GET /v1/payments?order=": (shop.ops, [f"/v1/payments?order={o}" for o in paid]),
        "GET /v1/orders?starting_after=": (
            shop.ops,
            [f"/v1/orders?starting_after={c}" for c in _cursors(served.target)],
        ),
        "GET /v1/orders (a storefront's own)": (shop.storefronts[0], ["/v1/orders"]),
        "GET /v1/orders?status=pending": (shop.ops, ["/v1/orders?status=pending"]),
        "GET /v1/audit?action=order.paid": (shop.admin, ["/v1/audit?action=order.paid"]),
        "GET /v1/audit?subject=": (shop.admin, [f"/v1/audit?subject={o}" for o in paid[:20]]),
    }


@dataclass
class Latency:
    requests: int
    failed: int
    rows: float  # objects per answer, on average (the same page sizes make a fair race)
    latencies_ms: list[float] = field(repr=False)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p95_ms(self) -> float:
        return percentile(self.latencies_ms, 95)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "rows_per_answer": round(self.rows, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
        }


class _Lister:
    """One client of one database, requesting `paths` in turn."""

    def __init__(self, served: Served, secret: str, paths: list[str]) -> None:
        self._client = http_client(served.base_url, headers={"Authorization": f"Bearer {secret}"})
        self._paths = paths
        self.latencies_ms: list[float] = []
        self.rows: list[int] = []
        self.failed = 0

    def warm(self) -> None:
        for n in range(len(self._paths)):
            self.get(n, record=False)

    def get(self, n: int, record: bool = True) -> None:
        began = time.perf_counter()
        answer = self._client.get(self._paths[n % len(self._paths)])
        elapsed = (time.perf_counter() - began) * 1000
        if not record:
            return
        if answer.status_code != 200:
            self.failed += 1
            return
        self.latencies_ms.append(elapsed)
        self.rows.append(len(answer.json()["data"]))

    def close(self) -> None:
        self._client.close()

    def result(self, requests: int) -> Latency:
        rows = statistics.fmean(self.rows) if self.rows else 0.0
        return Latency(requests, self.failed, rows, self.latencies_ms)


def measure_lists(served: dict[str, Served], requests: int) -> dict[str, dict[str, Latency]]:
    """Per query, one client per database taking turns request by request (whatever the
    machine is doing meanwhile falls on both), after a warm-up round of each path."""
    queries = {label: list_queries(s) for label, s in served.items()}
    found: dict[str, dict[str, Latency]] = {}
    for name in queries[EMPTY]:
        listers = {label: _Lister(served[label], *queries[label][name]) for label in (EMPTY, FULL)}
        try:
            for lister in listers.values():
                lister.warm()
            for n in range(requests):
                for label in (EMPTY, FULL) if n % 2 == 0 else (FULL, EMPTY):
                    listers[label].get(n)
        finally:
            for lister in listers.values():
                lister.close()
        found[name] = {label: lister.result(requests) for label, lister in listers.items()}
    return found


# --------------------------------------------------------------------------- sizes, pruning


def table_sizes(target: Target) -> dict[str, dict[str, int]]:
    """Per reported table: its rows and its size with indexes and TOAST, in bytes."""
    sizes = {}
    with psycopg.connect(target.url, autocommit=True) as conn:
        for table in REPORTED_TABLES:
            row = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}"
            ).fetchone()
            assert row is not None
            sizes[table] = {"rows": int(row[0]), "bytes": int(row[1])}
    return sizes


PRUNED_TABLES = ("jobs", "provider_events", "idempotency_keys")


def free_heap_bytes(target: Target, tables: tuple[str, ...]) -> dict[str, int]:
    """Per table, the free space its heap holds for new rows (pg_freespacemap), or nothing
    where the extension cannot be had."""
    with psycopg.connect(target.url, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_freespacemap")
        except psycopg.Error:
            return {}
        free = {}
        for table in tables:
            row = conn.execute(
                "SELECT coalesce(sum(avail), 0) FROM pg_freespace(%s::regclass)", (table,)
            ).fetchone()
            free[table] = int(row[0]) if row else 0
        return free


@dataclass
class PruneRun:
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    vacuumed: dict[str, dict[str, int]]
    free_after_vacuum: dict[str, int]
    next_pass_s: float
    deleted: dict[str, int]
    batches: int
    seconds: float
    vacuum_seconds: float
    settings: dict[str, int]


def prune(target: Target) -> PruneRun:
    """One pruning pass over the full database with kassa's default retentions (no time
    limit: the point is what a whole pass costs), then a plain VACUUM."""
    before = table_sizes(target)
    settings = Settings(database_url=target.url)
    kassa = Kassa(settings)
    try:
        # kassa's own pruning (every table it prunes, its settings), without the time
        # limit of a pass
        pruning = kassa.pruning.without_time_limit()
        print("[prune] one pass with the default retentions", flush=True)
        report = pruning.run()
        again = pruning.run()  # what each pass costs once the backlog is gone
    finally:
        kassa.close()
    after = table_sizes(target)
    began = time.perf_counter()
    with psycopg.connect(target.url, autocommit=True) as conn:
        _vacuum(conn, PRUNED_TABLES)
    vacuum_seconds = time.perf_counter() - began
    return PruneRun(
        before=before,
        after=after,
        vacuumed=table_sizes(target),
        free_after_vacuum=free_heap_bytes(target, PRUNED_TABLES),
        next_pass_s=again.seconds,
        deleted={
            "jobs": report.jobs,
            "provider_events": report.events,
            "idempotency_keys": report.idempotency_keys,
        },
        batches=report.batches,
        seconds=report.seconds,
        vacuum_seconds=vacuum_seconds,
        settings={
            "job_retention_s": settings.job_retention_s,
            "event_retention_s": settings.event_retention_s,
            "idempotency_retention_s": settings.idempotency_retention_s,
            "prune_batch": settings.prune_batch,
        },
    )


# --------------------------------------------------------------------------- the run

EMPTY, FULL = "empty", "full"


@dataclass
class Outcome:
    seed: SeedReport
    create: dict[str, list[CpuSample]]
    pay: dict[str, list[CpuSample]]
    lists: dict[str, dict[str, Latency]]
    pruning: PruneRun

    def failures(self) -> int:
        samples = [s for runs in (*self.create.values(), *self.pay.values()) for s in runs]
        lists = [lat for by_db in self.lists.values() for lat in by_db.values()]
        return sum(s.failed for s in samples) + sum(lat.failed for lat in lists)


def bench(params: Params, workdir: Path) -> Outcome:
    with ExitStack() as stack:
        targets = {
            label: stack.enter_context(scratch_database("postgresql", workdir, params.postgres_url))
            for label in (EMPTY, FULL)
        }
        shops = {label: prepare(target) for label, target in targets.items()}
        seeded = seed(targets[FULL], shops[FULL], params.orders)
        served = {
            label: stack.enter_context(serve(label, targets[label], shops[label], workdir))
            for label in (EMPTY, FULL)
        }
        create: dict[str, list[CpuSample]] = {EMPTY: [], FULL: []}
        pay: dict[str, list[CpuSample]] = {EMPTY: [], FULL: []}
        for round_ in range(params.rounds):
            for label in (EMPTY, FULL) if round_ % 2 == 0 else (FULL, EMPTY):
                print(
                    f"[{label}] round {round_ + 1}: {params.creates} creates, "
                    f"{params.pays} create + pay, {params.clients} clients",
                    flush=True,
                )
                create[label].append(measure_cpu(served[label], False, params.creates, params))
                pay[label].append(measure_cpu(served[label], True, params.pays, params))
        print(f"[lists] {params.list_requests} requests per query per database", flush=True)
        lists = measure_lists(served, params.list_requests)
        pruning = prune(targets[FULL])
        return Outcome(seeded, create, pay, lists, pruning)


def _median_ms(samples: list[CpuSample], part: Callable[[CpuSample], float]) -> float:
    return statistics.median(s.per_op_ms(part(s)) for s in samples)


_PARTS: dict[str, Callable[[CpuSample], float]] = {
    "request path (server)": lambda s: s.server_s,
    "with background (server + worker)": lambda s: s.cpu.app_s,
    "database": lambda s: s.cpu.database_s,
}


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f}"


def render(params: Params, host: dict[str, Any], out: Outcome) -> str:
    lines = [
        f"kassa, an empty shop beside {params.orders:,} orders (seeded in"
        f" {out.seed.seconds:.0f} s); {params.rounds} alternating rounds,"
        f" {params.clients} clients; {describe(host)}",
        "",
        "CPU per operation, ms (median of the rounds)",
        f"{'operation':<46}{'empty':>9}{'full':>9}{'full/empty':>12}",
    ]
    for op_name, samples in (("POST /v1/orders", out.create), ("create + pay (sandbox)", out.pay)):
        for part_name, part in _PARTS.items():
            empty = _median_ms(samples[EMPTY], part)
            full = _median_ms(samples[FULL], part)
            lines.append(
                # a tiny (--quick) run may measure no tick of database CPU at all: NaN
                f"{op_name + ', ' + part_name:<46}{empty:>9.2f}{full:>9.2f}"
                f"{ratio(full, empty):>12.2f}"
            )
    lines += ["", "List latency, ms (one client per database, taking turns; rows: empty/full)"]
    lines.append(
        f"{'query':<38}{'rows':>7}{'empty p50':>11}{'p95':>8}{'full p50':>10}{'p95':>8}"
        f"{'p95 full/empty':>16}"
    )
    for name, by_db in out.lists.items():
        e, f = by_db[EMPTY], by_db[FULL]
        lines.append(
            f"{name:<38}{f'{e.rows:.0f}/{f.rows:.0f}':>7}{e.p50_ms:>11.2f}{e.p95_ms:>8.2f}"
            f"{f.p50_ms:>10.2f}{f.p95_ms:>8.2f}{f.p95_ms / e.p95_ms:>16.2f}"
        )
    p = out.pruning
    lines += [
        "",
        f"Pruning pass on the full database: {p.seconds:.1f} s, {p.batches} batches of up to "
        f"{p.settings['prune_batch']} rows; the next pass {1000 * p.next_pass_s:.0f} ms;"
        f" then VACUUM {p.vacuum_seconds:.1f} s",
        f"(retentions: jobs {p.settings['job_retention_s'] // 86400} d, events "
        f"{p.settings['event_retention_s'] // 86400} d, Idempotency-Keys "
        f"{p.settings['idempotency_retention_s'] // 3600} h)",
        f"{'table':<20}{'rows before':>13}{'rows after':>12}{'MB before':>11}"
        f"{'MB after':>10}{'after VACUUM':>14}{'of it free':>12}",
    ]
    for table in REPORTED_TABLES:
        b, a, v = p.before[table], p.after[table], p.vacuumed[table]
        free = _mb(p.free_after_vacuum[table]) if table in p.free_after_vacuum else ""
        lines.append(
            f"{table:<20}{b['rows']:>13,}{a['rows']:>12,}{_mb(b['bytes']):>11}"
            f"{_mb(a['bytes']):>10}{_mb(v['bytes']):>14}{free:>12}"
        )
    total_before = sum(t["bytes"] for t in p.before.values())
    total_vacuumed = sum(t["bytes"] for t in p.vacuumed.values())
    lines.append(
        f"{'all':<20}{'':>13}{'':>12}{_mb(total_before):>11}{'':>10}{_mb(total_vacuumed):>14}"
    )
    lines.append(
        '(sizes with indexes and TOAST; "of it free": heap space VACUUM left for new rows,'
        " which PostgreSQL reuses rather than returns, so a pruned table stops growing)"
    )
    if out.failures():
        lines.append(f"\nWARNING: {out.failures()} operations or requests failed")
    return "\n".join(lines)


def document(params: Params, host: dict[str, Any], out: Outcome) -> dict[str, Any]:
    p = out.pruning
    return {
        "params": recorded_params(params),
        "machine": host,
        "seed": {
            "orders": out.seed.orders,
            "seconds": round(out.seed.seconds, 1),
            "steps": {k: round(v, 1) for k, v in out.seed.steps},
        },
        "cpu": {
            op: {label: [s.summary() for s in samples[label]] for label in (EMPTY, FULL)}
            for op, samples in (("create", out.create), ("create_and_pay", out.pay))
        },
        "lists": {
            name: {label: lat.summary() for label, lat in by_db.items()}
            for name, by_db in out.lists.items()
        },
        "pruning": {
            "settings": p.settings,
            "seconds": round(p.seconds, 2),
            "batches": p.batches,
            "deleted": p.deleted,
            "next_pass_seconds": round(p.next_pass_s, 3),
            "vacuum_seconds": round(p.vacuum_seconds, 2),
            "free_heap_bytes_after_vacuum": p.free_after_vacuum,
            "before": p.before,
            "after": p.after,
            "after_vacuum": p.vacuumed,
        },
    }


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(
        "scale", parse_args(argv), bench, render, document, lambda out: out.failures() == 0
    )


if __name__ == "__main__":
    sys.exit(main())
