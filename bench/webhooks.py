"""Signed webhook events: acknowledge rate and end-to-end effect rate, as ratios of the
database's own baseline.

A provider event reaches kassa in two steps. The *acknowledgement* is the fast path a
provider waits on: `POST /v1/webhooks/{provider}` checks the Stripe-Signature header,
stores the event once and enqueues its `provider_event.apply` job, all in one write
transaction, and answers 200. The *effect* comes later: a background worker claims the
job and applies the event (here `payment_intent.succeeded`: payment succeeded, order
paid) in the job's own transaction. Both rates matter: the first says how fast kassa can
take a burst of deliveries off a provider's hands, the second how fast the backlog turns
into paid orders.

For each database (SQLite, PostgreSQL) this script:

1. creates a fresh, migrated database (`harness.scratch_database`) and adds an
   unlimited-stock product;
2. measures the *baseline* (`harness.measure_baseline`): C threads running a bare
   insert-and-commit loop through the same driver kassa uses, N inserts in all;
3. prepares N orders, each with a browser-flow mock payment (`requires_action`, with a
   provider intent id), through the service layer directly;
4. starts kassa under uvicorn (W worker processes, loopback only, no embedded job worker
   and no KASSA_MOCK_WEBHOOK_URL, so jobs only queue) and has C client threads, each with
   its own `httpx.Client`, POST N distinct `payment_intent.succeeded` events to
   /v1/webhooks/mock, each signed just before it is sent; every answer must be 200 with
   `duplicate: false`. This gives acks/s and the latency p50/p99;
5. starts P `kassa worker` processes and times from their start until every
   `provider_event.apply` job is `done` (polling the `jobs` table): effects/s = N / that
   time. That time includes the workers' start-up (imports, connections); "steady/s" is
   the rate between the first and the last job finishing, without it;
6. verifies that every order is `paid`, every payment `succeeded`, every event applied
   and every apply job done, and that each acknowledged event was stored exactly once
   (the invoice each paid order enqueues is follow-on work, not timed or required here);
7. prints the figures, writes them to `bench/results/webhooks-<timestamp>.json`, removes
   everything it created, and exits non-zero if anything failed or did not match.

With `--workers-procs 1,2` step 4-5 is repeated (a fresh batch of N payments each time)
for each number of worker processes.

Why ratios (the reasoning is in `harness.measure_baseline`): "acks/s / inserts/s"
and "effects/s / inserts/s" are the fractions of the database's raw commit rate that
survive the whole stack, and are comparable between runs and machines where the raw
numbers are not.

The acknowledge phase is preceded by an unmeasured warm-up (2 x C extra payments and
events, applied in-process before the measured run), the baseline by a warm-up too. Every
loop is bounded both by count and by `--time-limit`; a phase cut short by the time limit
is reported as such.

    .venv/bin/python bench/webhooks.py [--clients 8] [--events 2000] [--workers 2]
                                       [--workers-procs 1] [--databases sqlite,postgresql]
                                       [--quick]
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    BASELINE_TABLE,
    MAX_ERROR_SAMPLES,
    BenchParser,
    LoadResult,
    Op,
    Stored,
    Target,
    background_process,
    create_baseline_table,
    database_env,
    describe,
    http_client,
    kassa_server,
    log_tail,
    measure_baseline,
    positive_ints,
    ratio,
    recorded_params,
    run_benchmark,
    run_load,
    scratch_database,
    stored_mismatches,
    stored_rows,
    stored_summary,
    table_head,
)
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.orders import LineRequest
from kassa.providers.stripe import signatures
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.invoices import ISSUE_INVOICE
from kassa.services.orders import NewOrder
from kassa.services.settlement import RESUME_PAYMENT
from kassa.services.webhooks import APPLY_EVENT
from kassa.storage.tables import Job, Order, Payment, ProviderEvent
from kassa.worker import Worker

PROVIDER = "mock"
# The mock's default webhook secret; the server and workers are started with it explicitly,
# so an ambient KASSA_MOCK_WEBHOOK_SECRET cannot make every delivery a 400.
WEBHOOK_SECRET = "whsec_kassa_mock_sandbox"
CURRENCY = "EUR"
AMOUNT = 1000
# Unlimited stock (None), so no order is ever refused, or short, for want of stock.
PRODUCT = NewProduct("BENCH", "Bench", AMOUNT, CURRENCY, stock=None)
EMAIL = "bench@example.com"
BASELINE_PAYLOAD = json.dumps({"email": EMAIL, "sku": PRODUCT.sku, "quantity": 1})
WORKER_POLL_S = 0.05
JOB_POLL_S = 0.02


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    clients: int
    events: int
    workers: int
    worker_procs: tuple[int, ...]
    databases: tuple[str, ...]
    time_limit_s: float
    warmup: int
    postgres_url: str


def parse_args(argv: list[str] | None = None) -> Params:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_sized("--events", "events per database", default=2000, quick=300)
    parser.add_databases()
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn worker processes (default 2)"
    )
    parser.add_argument(
        "--workers-procs",
        default="1",
        help="`kassa worker` processes applying the events; a comma-separated list runs one "
        "round per entry, each with N fresh events (default 1)",
    )
    parser.add_quick("a small smoke run")
    parser.add_sized(
        "--time-limit", "seconds allowed per measured phase", default=300, quick=60, kind=float
    )
    parser.add_postgres_url()
    args = parser.parse(argv)
    worker_procs = positive_ints(args.workers_procs)
    if not worker_procs:
        parser.error(f"--workers-procs takes positive integers; got {args.workers_procs!r}")
    if args.clients < 1 or args.events < 1 or args.workers < 1 or args.time_limit <= 0:
        parser.error("--clients, --events, --workers and --time-limit must be positive")
    return Params(
        clients=args.clients,
        events=args.events,
        workers=args.workers,
        worker_procs=worker_procs,
        databases=args.databases,
        time_limit_s=args.time_limit,
        warmup=2 * args.clients,
        postgres_url=args.postgres_url,
    )


# --------------------------------------------------------------------------- database


def prepare(target: Target, kassa: Kassa) -> None:
    """Add the scratch table and the product."""
    create_baseline_table(target)
    kassa.catalogue.create(RequestContext.system("bench"), PRODUCT)


# --------------------------------------------------------------------------- payments


@dataclass(frozen=True)
class BenchPayment:
    order_id: str
    payment_id: str
    intent_id: str


def _one_payment(kassa: Kassa) -> BenchPayment:
    ctx = RequestContext.system("bench")
    order = kassa.orders.create(ctx, NewOrder(CURRENCY, [LineRequest(PRODUCT.sku, 1)], email=EMAIL))
    payment = kassa.payments.pay(ctx, order.id, provider=PROVIDER)
    if payment.status != "requires_action" or payment.provider_payment_id is None:
        raise RuntimeError(f"a browser-flow payment came back {payment.status}: {payment.id}")
    return BenchPayment(order.id, payment.id, payment.provider_payment_id)


def create_payments(kassa: Kassa, count: int, threads: int) -> list[BenchPayment]:
    """`count` pending orders, each with a mock payment waiting for the browser."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda _: _one_payment(kassa), range(count)))


def event_body(event_id: str, payment: BenchPayment) -> bytes:
    """A Stripe-shaped `payment_intent.succeeded` event for one payment."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {
                "object": {
                    "id": payment.intent_id,
                    "object": "payment_intent",
                    "amount": AMOUNT,
                    "currency": CURRENCY.lower(),
                    "metadata": {"kassa_payment": payment.payment_id},
                }
            },
        }
    ).encode()


# --------------------------------------------------------------------------- processes


def kassa_env(url: str) -> dict[str, str]:
    """The server's and workers' environment: this database, no mock event delivery."""
    env = {**database_env(url), "KASSA_MOCK_WEBHOOK_SECRET": WEBHOOK_SECRET}
    env.pop("KASSA_MOCK_WEBHOOK_URL", None)
    return env


WORKER_COMMAND = [sys.executable, "-m", "kassa.cli", "worker", "--poll", str(WORKER_POLL_S)]


# --------------------------------------------------------------------------- acknowledge


class EventFeed:
    """The events still to send, each taken by exactly one client."""

    def __init__(self, bodies: list[bytes]) -> None:
        self._bodies = deque(bodies)

    def take(self) -> bytes | None:
        try:
            return self._bodies.popleft()  # atomic
        except IndexError:
            return None


@contextmanager
def webhook_client(base_url: str, feed: EventFeed) -> Iterator[Op]:
    with http_client(base_url) as client:

        def deliver() -> str | None:
            body = feed.take()
            if body is None:
                return "no event left to send"
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": signatures.sign(body, WEBHOOK_SECRET, int(time.time())),
            }
            response = client.post(f"/v1/webhooks/{PROVIDER}", content=body, headers=headers)
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:200]}"
            answer = response.json()
            if answer != {"received": True, "duplicate": False}:
                return f"unexpected acknowledgement {answer!r}"
            return None

        yield deliver


def acknowledge(
    base_url: str, bodies: list[bytes], clients: int, time_limit_s: float
) -> LoadResult:
    feed = EventFeed(bodies)
    return run_load(lambda: webhook_client(base_url, feed), clients, len(bodies), time_limit_s)


# --------------------------------------------------------------------------- effects


@dataclass
class EffectResult:
    """How long P worker processes took to apply one batch of acknowledged events."""

    procs: int
    expected: int
    done: int
    dead: int
    wall_s: float
    # First and last job of the batch to finish, seconds after the workers were started.
    first_done_s: float | None
    last_done_s: float | None
    timed_out: bool
    problem: str | None

    @property
    def per_second(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steady_per_second(self) -> float:
        """The rate once the workers were up: first to last job finished."""
        if self.first_done_s is None or self.last_done_s is None or self.done < 2:
            return float("nan")
        span = self.last_done_s - self.first_done_s
        return (self.done - 1) / span if span > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "procs": self.procs,
            "expected": self.expected,
            "done": self.done,
            "dead": self.dead,
            "wall_s": round(self.wall_s, 3),
            "per_second": round(self.per_second, 1),
            "first_done_s": None if self.first_done_s is None else round(self.first_done_s, 3),
            "last_done_s": None if self.last_done_s is None else round(self.last_done_s, 3),
            "steady_per_second": round(self.steady_per_second, 1),
            "timed_out": self.timed_out,
            "problem": self.problem,
        }


def _batch_states(kassa: Kassa, after_pk: int) -> dict[str, int]:
    with kassa.db.transaction(read_only=True) as s:
        rows = s.execute(
            select(Job.state, func.count())
            .where(Job.kind == APPLY_EVENT, Job.pk > after_pk)
            .group_by(Job.state)
        )
        return {str(state): int(n) for state, n in rows}


def _finish_span(kassa: Kassa, after_pk: int) -> tuple[datetime | None, datetime | None]:
    with kassa.db.transaction(read_only=True) as s:
        row = s.execute(
            select(func.min(Job.finished_at), func.max(Job.finished_at)).where(
                Job.kind == APPLY_EVENT, Job.pk > after_pk, Job.state == "done"
            )
        ).one()
        return row[0], row[1]


def apply_events(
    kassa: Kassa,
    target: Target,
    procs: int,
    after_pk: int,
    expected: int,
    params: Params,
    workdir: Path,
) -> EffectResult:
    """Start `procs` workers; time until every apply job after `after_pk` is done."""
    problem: str | None = None
    states: dict[str, int] = {}
    timed_out = False
    with ExitStack() as stack:
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        workers = [
            stack.enter_context(
                background_process(
                    WORKER_COMMAND, kassa_env(target.url), workdir / f"worker-{n}.log"
                )
            )
            for n in range(procs)
        ]
        deadline = time.monotonic() + params.time_limit_s
        while True:
            states = _batch_states(kassa, after_pk)
            if states.get("done", 0) + states.get("dead", 0) >= expected:
                break
            exited = [(n, w.returncode) for n, w in enumerate(workers) if w.poll() is not None]
            if exited:
                n, code = exited[0]
                problem = f"worker {n} exited with {code}:\n{log_tail(workdir / f'worker-{n}.log')}"
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(JOB_POLL_S)
        wall_s = time.perf_counter() - began
    first, last = _finish_span(kassa, after_pk)
    return EffectResult(
        procs=procs,
        expected=expected,
        done=states.get("done", 0),
        dead=states.get("dead", 0),
        wall_s=wall_s,
        first_done_s=None if first is None else (first - started_at).total_seconds(),
        last_done_s=None if last is None else (last - started_at).total_seconds(),
        timed_out=timed_out,
        problem=problem,
    )


def last_job_pk(kassa: Kassa) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.coalesce(func.max(Job.pk), 0))) or 0)


# --------------------------------------------------------------------------- verification


def _sample(ids: list[str]) -> str:
    more = f" (+{len(ids) - MAX_ERROR_SAMPLES} more)" if len(ids) > MAX_ERROR_SAMPLES else ""
    return ", ".join(ids[:MAX_ERROR_SAMPLES]) + more


def verify(kassa: Kassa, payments: list[BenchPayment], event_ids: list[str]) -> list[str]:
    """Every order paid in full, every payment succeeded, every event applied once."""
    problems: list[str] = []
    order_ids = {p.order_id for p in payments}
    payment_ids = {p.payment_id for p in payments}
    with kassa.db.transaction(read_only=True) as s:
        orders = {
            oid: (status, paid)
            for oid, status, paid in s.execute(select(Order.id, Order.status, Order.amount_paid))
        }
        pays = {pid: status for pid, status in s.execute(select(Payment.id, Payment.status))}
        events = {
            eid: (applied, outcome)
            for eid, applied, outcome in s.execute(
                select(ProviderEvent.event_id, ProviderEvent.applied_at, ProviderEvent.outcome)
            )
        }
        jobs = {
            (str(kind), str(state)): int(n)
            for kind, state, n in s.execute(
                select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
            )
        }
    unpaid = sorted(
        f"{oid}={orders[oid][0]}/{orders[oid][1]}" if oid in orders else f"{oid}=missing"
        for oid in order_ids
        if orders.get(oid) != ("paid", AMOUNT)
    )
    if unpaid:
        problems.append(f"{len(unpaid)} order(s) not paid {AMOUNT}: {_sample(unpaid)}")
    failed = sorted(f"{pid}={pays.get(pid)}" for pid in payment_ids if pays.get(pid) != "succeeded")
    if failed:
        problems.append(f"{len(failed)} payment(s) not succeeded: {_sample(failed)}")
    unapplied = sorted(eid for eid in event_ids if eid not in events or events[eid][0] is None)
    if unapplied:
        problems.append(f"{len(unapplied)} event(s) not applied: {_sample(unapplied)}")
    odd = sorted(
        f"{eid}={events[eid][1]!r}"
        for eid in event_ids
        if eid in events and events[eid][0] is not None and events[eid][1] != "payment succeeded"
    )
    if odd:
        problems.append(f"{len(odd)} event(s) with another outcome: {_sample(odd)}")
    if len(events) != len(event_ids):
        problems.append(f"{len(events)} events stored, {len(event_ids)} sent")
    # Paying an order also enqueues its invoice, and opening a payment its resume guard:
    # follow-on work, not timed here (the workers stop once every event is applied), so
    # those jobs may be in any state.
    apply_done = jobs.get((APPLY_EVENT, "done"), 0)
    follow_on = (APPLY_EVENT, ISSUE_INVOICE, RESUME_PAYMENT)
    others = sum(n for (kind, _), n in jobs.items() if kind not in follow_on)
    if (
        apply_done != len(event_ids)
        or others
        or sum(n for (kind, _), n in jobs.items() if kind == APPLY_EVENT) != apply_done
    ):
        problems.append(f"jobs: {len(event_ids)} {APPLY_EVENT} done expected, found {jobs}")
    return problems


# --------------------------------------------------------------------------- one database


@dataclass(frozen=True)
class Round:
    procs: int
    prepare_s: float
    acks: LoadResult
    effects: EffectResult

    def summary(self, baseline: float) -> dict[str, Any]:
        return {
            "worker_procs": self.procs,
            "prepare_s": round(self.prepare_s, 3),
            "acks": self.acks.summary(),
            "effects": self.effects.summary(),
            "ack_ratio": round(ratio(self.acks.per_second, baseline), 4),
            "effect_ratio": round(ratio(self.effects.per_second, baseline), 4),
        }


@dataclass(frozen=True)
class DatabaseResult:
    database: str
    baseline: LoadResult
    rounds: list[Round]
    stored: Stored
    problems: list[str]

    def summary(self) -> dict[str, Any]:
        base = self.baseline.per_second
        return {
            "database": self.database,
            "baseline": self.baseline.summary(),
            "rounds": [r.summary(base) for r in self.rounds],
            "stored": stored_summary(self.stored),
            "verification_problems": self.problems,
        }

    def mismatches(self) -> list[str]:
        return stored_mismatches(self.stored) + self.problems


def bench_database(kind: str, params: Params, workdir: Path) -> DatabaseResult:
    with ExitStack() as stack:
        target = stack.enter_context(scratch_database(kind, workdir, params.postgres_url))
        kassa = Kassa(Settings(database_url=target.url))
        stack.callback(kassa.close)
        prepare(target, kassa)

        n, c = params.events, params.clients
        baseline_warmup, baseline = measure_baseline(
            target, BASELINE_PAYLOAD, c, params.warmup, n, params.time_limit_s
        )

        print(f"[{kind}] warm-up: {params.warmup} payments, events and effects")
        base_url = stack.enter_context(
            kassa_server(kassa_env(target.url), params.workers, workdir / f"server-{kind}.log")
        )
        payments = create_payments(kassa, params.warmup, c)
        event_ids = [f"evt_bench_warmup_{i}" for i in range(len(payments))]
        bodies = [event_body(e, p) for e, p in zip(event_ids, payments, strict=True)]
        warmup = acknowledge(base_url, bodies, c, params.time_limit_s)
        Worker(kassa, name="bench-warmup").drain()
        acked = warmup.succeeded

        rounds: list[Round] = []
        for number, procs in enumerate(params.worker_procs):
            print(f"[{kind}] preparing {n} orders with browser-flow payments")
            began = time.perf_counter()
            batch = create_payments(kassa, n, c)
            prepare_s = time.perf_counter() - began
            ids = [f"evt_bench_{number * n + i}" for i in range(n)]
            bodies = [event_body(e, p) for e, p in zip(ids, batch, strict=True)]
            after_pk = last_job_pk(kassa)
            print(f"[{kind}] acknowledge: {n} signed events to /v1/webhooks/mock, {c} clients")
            acks = acknowledge(base_url, bodies, c, params.time_limit_s)
            acked += acks.succeeded
            print(f"[{kind}] effects: {procs} `kassa worker` process(es)")
            effects = apply_events(kassa, target, procs, after_pk, acks.succeeded, params, workdir)
            payments += batch
            event_ids += ids
            rounds.append(Round(procs, prepare_s, acks, effects))

        problems = verify(kassa, payments, event_ids)
        stored = stored_rows(
            target,
            {"provider_events": acked, BASELINE_TABLE: baseline_warmup + baseline.succeeded},
        )
        return DatabaseResult(kind, baseline, rounds, stored, problems)


# --------------------------------------------------------------------------- report


def render(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> str:
    rows = table_head(
        f"kassa signed webhook events: {params.clients} clients, {params.events} events per "
        f"round, {params.workers} uvicorn workers; {describe(host)}",
        f"{'database':<12}{'procs':>6}{'baseline ins/s':>16}{'acks/s':>9}{'ratio':>8}"
        f"{'effects/s':>11}{'ratio':>8}{'steady/s':>10}{'ack p50 ms':>12}{'ack p99 ms':>12}",
    )
    for r in results:
        base = r.baseline.per_second
        for rnd in r.rounds:
            rows.append(
                f"{r.database:<12}{rnd.procs:>6}{base:>16.1f}{rnd.acks.per_second:>9.1f}"
                f"{ratio(rnd.acks.per_second, base):>8.3f}{rnd.effects.per_second:>11.1f}"
                f"{ratio(rnd.effects.per_second, base):>8.3f}"
                f"{rnd.effects.steady_per_second:>10.1f}"
                f"{rnd.acks.percentile_ms(50):>12.1f}{rnd.acks.percentile_ms(99):>12.1f}"
            )
    rows.append("")
    rows.append("baseline = bare INSERT + COMMIT, same driver and concurrency; ratio = rate / it")
    rows.append("effects/s from the workers' start (start-up included) to the last job done;")
    rows.append("steady/s from the first job done to the last")
    for r in results:
        loads = [("baseline", r.baseline)] + [
            (f"acks ({rnd.procs} procs)", rnd.acks) for rnd in r.rounds
        ]
        for label, load in loads:
            rows.extend(load.warnings(r.database, label))
        for rnd in r.rounds:
            e = rnd.effects
            label = f"effects ({e.procs} procs)"
            if e.timed_out:
                rows.append(f"WARNING {r.database} {label}: stopped by the time limit")
            if e.problem:
                rows.append(f"WARNING {r.database} {label}: {e.problem}")
            if e.done != e.expected:
                rows.append(f"WARNING {r.database} {label}: {e.done}/{e.expected} done")
        rows.extend(f"MISMATCH {r.database}: {m}" for m in r.mismatches())
    return "\n".join(rows)


def clean(results: list[DatabaseResult]) -> bool:
    for r in results:
        if r.baseline.failed or r.baseline.timed_out or r.mismatches():
            return False
        for rnd in r.rounds:
            e = rnd.effects
            if rnd.acks.failed or rnd.acks.timed_out or e.timed_out or e.problem:
                return False
            if e.done != e.expected or e.dead:
                return False
    return True


def bench_databases(params: Params, workdir: Path) -> list[DatabaseResult]:
    return [bench_database(kind, params, workdir) for kind in params.databases]


def document(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> dict[str, Any]:
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": recorded_params(params),
        "machine": host,
        "results": [r.summary() for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("webhooks", parse_args(argv), bench_databases, render, document, clean)


if __name__ == "__main__":
    sys.exit(main())
