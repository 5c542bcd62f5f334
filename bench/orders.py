"""Order-creation throughput over HTTP, as a ratio of the database's own baseline.

For each database (SQLite, PostgreSQL) this script:

1. creates a fresh, migrated database (`harness.scratch_database`), and adds an API key and
   a few unlimited-stock products;
2. measures the *baseline* (`harness.measure_baseline`): N threads running a bare
   insert-and-commit loop through the same driver kassa uses, M inserts in all;
3. starts kassa under uvicorn (W worker processes, loopback only) and has N client threads,
   each with its own `httpx.Client`, POST M orders to /v1/orders; it counts the 201s and
   everything else and records each request's latency;
4. prints orders/s, latency p50/p99, baseline inserts/s and the ratio of the two, writes the
   figures to `bench/results/orders-<timestamp>.json`, and removes everything it created.

Why a ratio (the reasoning is in `harness.measure_baseline`): "orders/s ÷
inserts/s" is the fraction of the database's raw commit rate that survives the whole stack
(HTTP, validation, auth lookup, pricing, several rows per order, audit), and is comparable
between runs and machines where the raw numbers are not.

Each phase is preceded by a short unmeasured warm-up (connections, pools, caches). Every
loop is bounded both by count and by `--time-limit`; a phase cut short by the time limit
is reported as such.

    .venv/bin/python bench/orders.py [--clients 8] [--orders 2000] [--workers 2]
                                     [--databases sqlite,postgresql] [--quick]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    BASELINE_TABLE,
    BenchParser,
    LoadResult,
    Op,
    Stored,
    Target,
    create_baseline_table,
    database_env,
    describe,
    http_client,
    kassa_server,
    measure,
    measure_baseline,
    ratio,
    recorded_params,
    run_benchmark,
    scratch_database,
    stored_mismatches,
    stored_rows,
    stored_summary,
    table_head,
)

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext

CURRENCY = "EUR"
# Unlimited stock (None), so no order is ever refused for want of stock.
PRODUCTS = (
    NewProduct("BENCH-MUG", "Bench mug", 1250, CURRENCY, stock=None),
    NewProduct("BENCH-TEE", "Bench tee", 2400, CURRENCY, stock=None),
    NewProduct("BENCH-CAP", "Bench cap", 1800, CURRENCY, stock=None),
    NewProduct("BENCH-PIN", "Bench pin", 300, CURRENCY, stock=None),
)
BASELINE_PAYLOAD = json.dumps({"email": "bench@example.com", "sku": "BENCH-MUG", "quantity": 1})


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    clients: int
    orders: int
    workers: int
    databases: tuple[str, ...]
    time_limit_s: float
    warmup: int
    postgres_url: str


def parse_args(argv: list[str] | None = None) -> Params:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_sized("--orders", "orders per database", default=2000, quick=200)
    parser.add_databases()
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_quick("a small smoke run")
    parser.add_sized(
        "--time-limit", "seconds allowed per measured phase", default=300, quick=60, kind=float
    )
    parser.add_postgres_url()
    args = parser.parse(argv)
    if args.clients < 1 or args.orders < 1 or args.workers < 1 or args.time_limit <= 0:
        parser.error("--clients, --orders, --workers and --time-limit must be positive")
    return Params(
        clients=args.clients,
        orders=args.orders,
        workers=args.workers,
        databases=args.databases,
        time_limit_s=args.time_limit,
        warmup=2 * args.clients,
        postgres_url=args.postgres_url,
    )


# --------------------------------------------------------------------------- database


def prepare(target: Target) -> str:
    """Add the scratch table, products and an API key; return the key's secret."""
    create_baseline_table(target)
    kassa = Kassa(Settings(database_url=target.url))
    try:
        ctx = RequestContext.system("bench")
        _view, secret = kassa.api_keys.create(ctx, "ops", "bench")
        for product in PRODUCTS:
            kassa.catalogue.create(ctx, product)
    finally:
        kassa.close()
    return secret


# --------------------------------------------------------------------------- HTTP load


def order_body(sku: str) -> dict[str, Any]:
    return {
        "email": "bench@example.com",
        "currency": CURRENCY,
        "lines": [{"sku": sku, "quantity": 1}],
    }


@contextmanager
def order_client(base_url: str, secret: str) -> Iterator[Op]:
    headers = {"Authorization": f"Bearer {secret}"}
    skus = [p.sku for p in PRODUCTS]
    sent = 0
    with http_client(base_url, headers=headers) as client:

        def create_order() -> str | None:
            nonlocal sent
            sku = skus[sent % len(skus)]
            sent += 1
            response = client.post("/v1/orders", json=order_body(sku))
            if response.status_code == 201:
                return None
            return f"HTTP {response.status_code}: {response.text[:200]}"

        yield create_order


# --------------------------------------------------------------------------- one database


@dataclass(frozen=True)
class DatabaseResult:
    database: str
    orders: LoadResult
    baseline: LoadResult
    stored: Stored

    @property
    def ratio(self) -> float:
        return ratio(self.orders.per_second, self.baseline.per_second)

    def summary(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "orders": self.orders.summary(),
            "baseline": self.baseline.summary(),
            "ratio": round(self.ratio, 4),
            "stored": stored_summary(self.stored),
        }


def bench_database(kind: str, params: Params, workdir: Path) -> DatabaseResult:
    with ExitStack() as stack:
        target = stack.enter_context(scratch_database(kind, workdir, params.postgres_url))
        secret = prepare(target)
        baseline_warmup, baseline = measure_baseline(
            target,
            BASELINE_PAYLOAD,
            params.clients,
            params.warmup,
            params.orders,
            params.time_limit_s,
        )
        print(f"[{kind}] orders: {params.orders} POST /v1/orders, {params.clients} clients")
        base_url = stack.enter_context(
            kassa_server(database_env(target.url), params.workers, workdir / f"server-{kind}.log")
        )
        orders_warmup, orders = measure(
            lambda: order_client(base_url, secret),
            params.clients,
            params.warmup,
            params.orders,
            params.time_limit_s,
        )
        stored = stored_rows(
            target,
            {
                "orders": orders_warmup + orders.succeeded,
                BASELINE_TABLE: baseline_warmup + baseline.succeeded,
            },
        )
        return DatabaseResult(kind, orders, baseline, stored)


# --------------------------------------------------------------------------- report


def render(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> str:
    rows = table_head(
        f"kassa order creation over HTTP: {params.clients} clients, {params.orders} orders per "
        f"database, {params.workers} uvicorn workers; {describe(host)}",
        f"{'database':<12}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
        f"{'baseline ins/s':>16}{'ratio':>8}",
    )
    for r in results:
        rows.append(
            f"{r.database:<12}{r.orders.per_second:>10.1f}{r.orders.percentile_ms(50):>9.1f}"
            f"{r.orders.percentile_ms(99):>9.1f}{r.orders.failed:>8}"
            f"{r.baseline.per_second:>16.1f}{r.ratio:>8.3f}"
        )
    rows.append("")
    rows.append("ratio = orders/s / baseline inserts/s (bare INSERT + COMMIT, same concurrency)")
    for r in results:
        rows.extend(r.orders.warnings(r.database, "orders"))
        rows.extend(r.baseline.warnings(r.database, "baseline"))
        rows.extend(f"WARNING {r.database} rows stored: {m}" for m in stored_mismatches(r.stored))
    return "\n".join(rows)


def bench_databases(params: Params, workdir: Path) -> list[DatabaseResult]:
    return [bench_database(kind, params, workdir) for kind in params.databases]


def document(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> dict[str, Any]:
    return {
        "params": recorded_params(params),
        "machine": host,
        "results": [r.summary() for r in results],
    }


def clean(results: list[DatabaseResult]) -> bool:
    return all(
        not (load.failed or load.timed_out or stored_mismatches(r.stored))
        for r in results
        for load in (r.orders, r.baseline)
    )


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("orders", parse_args(argv), bench_databases, render, document, clean)


if __name__ == "__main__":
    sys.exit(main())
