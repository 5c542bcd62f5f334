"""Outgoing webhooks under load: events delivered per second to a local receiver with 1, 10
and 100 endpoints (and a dead one beside them), and the CPU each paid order costs kassa
with them, beside the same flow with no endpoint, in the same run (issue 12).

For each database (PostgreSQL, SQLite), on a fresh scratch database, kassa runs as a user
runs it (`kassa serve --workers 1`, its embedded worker with its webhook sender threads,
`KASSA_WEBHOOK_CONCURRENCY` at its default) with `KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1`
(the receiver is on loopback). One receiver process (`receiver.py`) serves the whole run.
Phases, on the same server, one after the other:

  0 endpoints         the flow alone: the events are written and dispatched, nothing sent
  N + dead, N = 1, 10, 100
                      N endpoints subscribed to every event (`"*"`), registered through
                      the API with an admin key, at the receiver (204 at once, signatures
                      checked on a sample with `standardwebhooks`), and one more at a port
                      that accepts and never answers (an endpoint that hangs: each attempt
                      holds a sender thread for kassa's 10 s timeout)
  0 endpoints again   the baseline once more, so a machine whose speed drifts during the
                      run weighs on both sides of the ratio

In each phase: the endpoints are registered; then, quiet to quiet, a burst of `--orders`
paid orders (create, then pay with the sandbox and `pm_card_visa`: `shop.Shop.order_and_pay`)
over `--clients` client threads; then the endpoints are deleted (their pending deliveries
with them). Where the endpoints would make more than `--deliveries` deliveries, the burst
has fewer orders (`orders_for`). One paid order, unmeasured, warms up the first phase and
the first phase with endpoints. Quiet (`cpu.py`): no
job due, no event left undispatched, no delivery to a live endpoint pending, and kassa's
processes idle for a second. The dead endpoint's deliveries never finish inside a phase
(they wait out the timeout and then the retries' backoff), so they are not waited for.

Figures per phase:

  deliv/s    deliveries that succeeded (live endpoints) ÷ the time from the burst's first
             event (`events.created_at`) to its last delivery (`finished_at`): events
             delivered per second. With 1 endpoint it cannot exceed the rate the orders
             make events (`events/s`, first to last event), so read it beside that.
  lag p50/p99  from an event's creation to its delivery, seconds.
  app ms     CPU (user + system) of kassa's processes (API, worker, its sender threads)
             per paid order, quiet to quiet: everything the orders caused, the deliveries
             included; db ms the scratch database's PostgreSQL backends and the server's
             own processes (on SQLite the database is inside the app).
  +app ms, x0  the added cost per paid order and the ratio, against the two 0-endpoint
             phases together.
  +cpu/deliv the added CPU (app + db) per delivery made: the cost of one delivery.
  dead       requests to the hanging endpoint in the window (hanging at its start, or
             sent in it): how many sender threads it held.

Checked: every delivery of the burst to a live endpoint succeeded at its first attempt
and reached the receiver (the receiver's count per endpoint beside kassa's), every
sampled signature verified, every order paid once and invoiced (`suite.check_orders`,
`suite.check_charges`), no phase cut short; anything amiss fails the run (exit 1).

    .venv/bin/python bench/notifications.py [--quick] [--orders 40] [--clients 8]
        [--endpoints 1,10,100] [--databases postgresql,sqlite]

Writes `bench/results/notifications-<timestamp>.json`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import receiver as receiver_module
from cpu import Cpu, CpuMeter, QuietPoint, cpu_between
from harness import (
    HOST,
    BenchParser,
    KassaLaunch,
    LoadResult,
    Target,
    background_process,
    clean_env,
    describe,
    describe_commands,
    free_port,
    http_client,
    kassa_commands,
    percentile,
    positive_ints,
    ratio,
    recorded_params,
    run_benchmark,
    run_kassa,
    run_load,
    scratch_database,
)
from probe import Probe
from shop import PRODUCTS, Ledger, Shop
from suite import check_charges, check_orders, kassa_source, own_folder

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext

RECEIVER_SCRIPT = Path(receiver_module.__file__).resolve()
ALL_EVENTS = ["*"]
# Paid orders before the first phase's burst (the server's first requests) and before the
# first phase with endpoints (the senders' first connection to the receiver, which every
# live endpoint shares), unmeasured. Not before the others: a warm-up's deliveries to 100
# endpoints would be as many as the burst's.
WARMUP = 1
# Kassa's background work before a quiet point: jobs due (probe.JOBS_DUE), events not yet
# dispatched, deliveries to the live endpoints not yet made (the dead one's never end).
UNDISPATCHED = "SELECT count(*) FROM events WHERE NOT dispatched"
LIVE_PENDING = (
    "SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints e "
    "ON e.pk = d.endpoint_pk WHERE d.state = 'pending' AND e.id <> %s"
)
LIVE_DELIVERIES = (
    "SELECT v.created_at, d.finished_at, d.state, d.attempts, e.id FROM webhook_deliveries d "
    "JOIN webhook_endpoints e ON e.pk = d.endpoint_pk JOIN events v ON v.pk = d.event_pk "
    "WHERE d.event_pk > %s AND e.id <> %s"
)
EVENTS_SINCE = "SELECT count(*), min(created_at), max(created_at) FROM events WHERE pk > %s"
LAST_EVENT = "SELECT coalesce(max(pk), 0) FROM events"


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    clients: int
    orders: int
    deliveries: int
    endpoints: tuple[int, ...]
    databases: tuple[str, ...]
    time_limit_s: float
    quiet_timeout_s: float
    postgres_url: str
    label: str | None


def parse_args(argv: list[str] | None = None) -> Params:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_sized("--orders", "paid orders per phase, at most", default=40, quick=4)
    parser.add_sized(
        "--deliveries",
        "deliveries per phase, at most: fewer orders with many endpoints",
        default=2000,
        quick=200,
    )
    parser.add_argument(
        "--endpoints",
        default="1,10,100",
        help="live endpoints per phase, comma-separated (default 1,10,100); each phase "
        "adds one dead endpoint",
    )
    parser.add_databases()
    parser.add_quick("a smoke run (a few orders per phase)")
    parser.add_sized(
        "--time-limit", "seconds allowed per measured burst", default=120, quick=60, kind=float
    )
    parser.add_argument(
        "--quiet-timeout", type=float, default=180, help="seconds to wait for quiet (180)"
    )
    parser.add_argument("--label", default=None, help="a note kept in the results file")
    parser.add_postgres_url()
    args = parser.parse(argv)
    endpoints = positive_ints(args.endpoints)
    if not endpoints:
        parser.error(f"--endpoints takes positive integers; got {args.endpoints!r}")
    if args.clients < 1 or args.orders < 1 or args.deliveries < 1:
        parser.error("--clients, --orders and --deliveries must be positive")
    return Params(
        clients=args.clients,
        orders=args.orders,
        deliveries=args.deliveries,
        endpoints=endpoints,
        databases=args.databases,
        time_limit_s=args.time_limit,
        quiet_timeout_s=args.quiet_timeout,
        postgres_url=args.postgres_url,
        label=args.label,
    )


# --------------------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class Receiver:
    """The receiver process: live endpoints at `url`/hook/<name>, the dead one at
    `dead_url`."""

    url: str
    dead_url: str

    def stats(self) -> dict[str, Any]:
        with http_client(self.url) as http:
            found: dict[str, Any] = http.get("/_stats").raise_for_status().json()
            return found

    def secrets(self, secrets: dict[str, str]) -> None:
        with http_client(self.url) as http:
            http.put("/_secrets", json=secrets).raise_for_status()


@contextmanager
def run_receiver(workdir: Path) -> Iterator[Receiver]:
    port, dead_port = free_port(), free_port()
    command = [sys.executable, str(RECEIVER_SCRIPT), "--host", HOST]
    command += ["--port", str(port), "--dead-port", str(dead_port)]
    log = workdir / "receiver.log"
    with background_process(command, clean_env(), log) as proc:
        url = f"http://{HOST}:{port}"
        _wait_healthy_receiver(proc, url, log)
        yield Receiver(url, f"http://{HOST}:{dead_port}/hook/dead")


def _wait_healthy_receiver(proc: Any, url: str, log: Path) -> None:
    """`harness._wait_healthy` asks for /healthz; the receiver answers /_stats."""
    deadline = time.monotonic() + 30
    with http_client(url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if http.get("/_stats").status_code == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the receiver did not start:\n{log.read_text(errors='replace')[-2000:]}")


# --------------------------------------------------------------------------- one phase


@dataclass
class Phase:
    """One burst of paid orders with `live` endpoints (and the dead one, if `live`)."""

    label: str
    live: int
    load: LoadResult
    cpu: Cpu
    events: int
    events_span_s: float
    delivered: int
    delivery_span_s: float
    lags_s: list[float] = field(repr=False)
    received: int  # by the receiver, from the live endpoints' names, in the window
    verified: int
    bad_signatures: int
    dead_connections: int  # hanging at the window's start, or opened in it
    quiet_waited_s: float
    problems: list[str]

    @property
    def orders(self) -> int:
        return self.load.succeeded

    @property
    def deliveries_per_s(self) -> float:
        return ratio(self.delivered, self.delivery_span_s)

    @property
    def events_per_s(self) -> float:
        return ratio(self.events, self.events_span_s)

    def app_ms(self) -> float:
        return 1000 * self.cpu.app_s / max(self.orders, 1)

    def db_ms(self) -> float:
        return 1000 * self.cpu.database_s / max(self.orders, 1)

    def cpu_ms(self) -> float:
        return 1000 * self.cpu.total_s / max(self.orders, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "live_endpoints": self.live,
            "dead_endpoints": 1 if self.live else 0,
            "orders": self.orders,
            "load": self.load.summary(),
            "events": self.events,
            "events_per_order": round(ratio(self.events, self.orders), 2),
            "events_per_second": round(self.events_per_s, 1),
            "delivered": self.delivered,
            "delivery_span_s": round(self.delivery_span_s, 3),
            "deliveries_per_second": round(self.deliveries_per_s, 1),
            "lag_s": {
                "p50": round(percentile(self.lags_s, 50), 3),
                "p99": round(percentile(self.lags_s, 99), 3),
                "max": round(max(self.lags_s), 3) if self.lags_s else None,
            },
            "receiver": {
                "received": self.received,
                "verified": self.verified,
                "bad_signatures": self.bad_signatures,
                "dead_connections": self.dead_connections,
            },
            "cpu_per_order": self.cpu.per_op_ms(self.orders),
            "cpu_s": {
                "app": round(self.cpu.app_s, 3),
                "database": round(self.cpu.database_s, 3),
                "postgres_service": round(self.cpu.service_s, 3),
                "other_postgres": round(self.cpu.other_postgres_s, 3),
                "wall_quiet_to_quiet": round(self.cpu.wall_s, 3),
            },
            "quiet_waited_s": round(self.quiet_waited_s, 2),
            "problems": self.problems,
        }


@dataclass
class Bench:
    params: Params
    target: Target
    probe: Probe
    meter: CpuMeter
    receiver: Receiver
    base_url: str
    admin_secret: str
    shop: Shop
    ledger: Ledger
    dead_id: str = ""  # the dead endpoint of the phase running, if any

    def log(self, text: str) -> None:
        print(f"[{self.target.kind}] {text}", flush=True)

    def backlog(self) -> int:
        """Work still due: jobs, undispatched events, deliveries to live endpoints."""
        rows = self.probe.rows
        return (
            self.probe.jobs_due()
            + int(rows(UNDISPATCHED)[0][0])
            + int(rows(LIVE_PENDING, (self.dead_id,))[0][0])
        )

    def quiet(self) -> QuietPoint:
        point = self.meter.wait_quiet(
            self.backlog, after=False, timeout_s=self.params.quiet_timeout_s
        )
        if point.timed_out:
            raise RuntimeError(f"no quiet point in {self.params.quiet_timeout_s:.0f} s")
        return point

    def admin(self) -> Any:
        return http_client(self.base_url, headers={"Authorization": f"Bearer {self.admin_secret}"})


def register(bench: Bench, label: str, live: int) -> list[str]:
    """`live` endpoints at the receiver and, if any, the dead one; their ids. The live
    ones' secrets go to the receiver, which checks signatures with them."""
    if not live:
        bench.dead_id = ""
        return []
    ids, secrets = [], {}
    with bench.admin() as http:
        for n in range(live + 1):
            name = f"{bench.target.kind}-{label}-{n}"
            url = f"{bench.receiver.url}/hook/{name}" if n < live else bench.receiver.dead_url
            answer = http.post("/v1/webhook-endpoints", json={"url": url, "events": ALL_EVENTS})
            if answer.status_code != 201:
                raise RuntimeError(f"endpoint refused: {answer.status_code} {answer.text[:300]}")
            ids.append(answer.json()["id"])
            secrets[name] = answer.json()["secret"]
    bench.receiver.secrets(secrets)
    bench.dead_id = ids[-1]
    return ids


def unregister(bench: Bench, ids: list[str]) -> None:
    with bench.admin() as http:
        for endpoint_id in ids:
            http.delete(f"/v1/webhook-endpoints/{endpoint_id}").raise_for_status()
    bench.dead_id = ""


def _when(value: Any) -> datetime:
    """A time as the database gives it: aware from PostgreSQL, naive UTC text from SQLite."""
    found = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(found, datetime)
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _received(stats: dict[str, Any], prefix: str) -> tuple[int, int, int]:
    """Requests, verified and bad signatures over the receiver's names that start with
    `prefix` (one phase's live endpoints)."""
    hooks = [c for name, c in stats["hooks"].items() if name.startswith(prefix)]
    return (
        sum(c["received"] for c in hooks),
        sum(c["verified"] for c in hooks),
        sum(c["bad"] for c in hooks),
    )


@dataclass(frozen=True)
class Window:
    """A burst of paid orders, quiet to quiet, with the receiver's counts at both ends."""

    load: LoadResult
    before: QuietPoint
    after: QuietPoint
    stats_before: dict[str, Any]
    stats_after: dict[str, Any]
    first_pk: int  # the last event before the burst

    def received(self, prefix: str) -> tuple[int, int, int]:
        """Requests in the window to the names starting with `prefix`; signatures
        verified and bad over the phase (its warm-up's requests too)."""
        got = _received(self.stats_after, prefix)[0] - _received(self.stats_before, prefix)[0]
        _, verified, bad = _received(self.stats_after, prefix)
        return got, verified, bad

    @property
    def dead(self) -> int:
        taken = self.stats_after["dead"]["connections"] - self.stats_before["dead"]["connections"]
        return int(self.stats_before["dead"]["open"]) + int(taken)


def burst(bench: Bench, label: str, orders: int) -> Window:
    factory = bench.shop.factory(bench.shop.order_and_pay)
    before = bench.quiet()
    stats_before = bench.receiver.stats()
    first_pk = int(bench.probe.rows(LAST_EVENT)[0][0])
    clients = min(bench.params.clients, orders)
    load = run_load(factory, clients, orders, bench.params.time_limit_s)
    after = bench.quiet()
    bench.log(
        f"{label}: {load.succeeded} orders in {load.wall_s:.1f} s, quiet again "
        f"{after.settled_at - before.snapshot.at:.1f} s after the start"
    )
    return Window(load, before, after, stats_before, bench.receiver.stats(), first_pk)


def delivery_problems(
    label: str, live: int, events: int, rows: list[tuple[Any, ...]], received: tuple[int, int, int]
) -> list[str]:
    """Every event of the burst delivered to every live endpoint at the first attempt,
    each delivery received once, the signatures checked good."""
    problems = []
    odd = sum(1 for _, _, state, tries, _ in rows if state != "succeeded" or tries != 1)
    if odd:
        problems.append(f"{label}: {odd} live deliveries not succeeded at their first attempt")
    if len(rows) != events * live:
        problems.append(f"{label}: {len(rows)} deliveries for {events} events x {live} endpoints")
    got, verified, bad = received
    delivered = len(rows) - odd
    if got != delivered:
        problems.append(f"{label}: kassa delivered {delivered}, the receiver got {got}")
    if bad:
        problems.append(f"{label}: {bad} signatures did not verify")
    if live and not verified:
        problems.append(f"{label}: no signature was checked")
    return problems


def run_phase(bench: Bench, label: str, live: int, orders: int, *, warm: bool) -> Phase:
    bench.log(f"{label}: {live} endpoint(s){' + 1 dead' if live else ''}, {orders} orders")
    ids = register(bench, label, live)
    problems = []
    if warm:
        factory = bench.shop.factory(bench.shop.order_and_pay)
        warmed = run_load(factory, WARMUP, WARMUP, bench.params.time_limit_s)
        problems += warmed.warnings(bench.target.kind, f"{label} warm-up")
    window = burst(bench, label, orders)
    problems += window.load.warnings(bench.target.kind, label)
    (events, first_at, last_at) = bench.probe.rows(EVENTS_SINCE, (window.first_pk,))[0]
    rows = bench.probe.rows(LIVE_DELIVERIES, (window.first_pk, bench.dead_id))
    unregister(bench, ids)

    received = window.received(f"{bench.target.kind}-{label}-")
    problems += delivery_problems(label, live, int(events), rows, received)
    done = [(_when(made), _when(sent)) for made, sent, state, _, _ in rows if state == "succeeded"]
    first = _when(first_at) if first_at is not None else None
    span = (max(s for _, s in done) - first).total_seconds() if done and first else 0.0
    return Phase(
        label=label,
        live=live,
        load=window.load,
        cpu=cpu_between(window.before.snapshot, window.after.snapshot),
        events=int(events),
        events_span_s=(_when(last_at) - first).total_seconds() if first else 0.0,
        delivered=len(done),
        delivery_span_s=span,
        lags_s=[(s - m).total_seconds() for m, s in done],
        received=received[0],
        verified=received[1],
        bad_signatures=received[2],
        dead_connections=window.dead,
        quiet_waited_s=window.before.waited_s + window.after.waited_s,
        problems=problems,
    )


# --------------------------------------------------------------------------- one database


@dataclass
class DatabaseResult:
    database: str
    phases: list[Phase]
    problems: list[str]

    @property
    def baseline(self) -> tuple[float, float, float]:
        """App, database and total CPU ms per order of the 0-endpoint phases together."""
        zero = [p for p in self.phases if not p.live]
        orders = max(sum(p.orders for p in zero), 1)
        app = sum(p.cpu.app_s for p in zero)
        db = sum(p.cpu.database_s for p in zero)
        return 1000 * app / orders, 1000 * db / orders, 1000 * (app + db) / orders

    def summary(self) -> dict[str, Any]:
        app, db, total = self.baseline
        return {
            "database": self.database,
            "baseline_cpu_per_order_ms": {
                "app_ms": round(app, 3),
                "database_ms": round(db, 3),
                "total_ms": round(total, 3),
            },
            "phases": [
                {
                    **p.summary(),
                    "added_app_ms": round(p.app_ms() - app, 3),
                    "added_cpu_ms_per_delivery": round(
                        ratio((p.cpu_ms() - total) * p.orders, p.delivered), 3
                    ),
                    "app_x_baseline": round(ratio(p.app_ms(), app), 3),
                    "cpu_x_baseline": round(ratio(p.cpu_ms(), total), 3),
                }
                for p in self.phases
            ],
            "problems": self.problems,
        }


def prepare(target: Target) -> tuple[str, str]:
    """The shop's products and two API keys: `ops` for the orders, `admin` for the
    endpoints; their secrets."""
    kassa = Kassa(Settings(database_url=target.url))
    try:
        ctx = RequestContext.system("bench")
        _view, shop_secret = kassa.api_keys.create(ctx, "ops", "bench shop")
        _view, admin_secret = kassa.api_keys.create(ctx, "admin", "bench webhooks")
        for sku, amount in PRODUCTS:
            kassa.catalogue.create(ctx, NewProduct(sku, sku.title(), amount, "EUR", stock=None))
    finally:
        kassa.close()
    return shop_secret, admin_secret


LAUNCH = KassaLaunch(workers=1)
# kassa's default sender threads (the servers run with no KASSA_* setting of their own)
SENDERS = Settings.model_fields["webhook_concurrency"].default


def phases_of(params: Params) -> list[tuple[str, int]]:
    return [
        ("0-first", 0),
        *((f"{n}-live", n) for n in params.endpoints),
        ("0-last", 0),
    ]


def orders_for(params: Params, live: int, per_order: float | None) -> int:
    """`--orders`, or fewer where `live` endpoints would get more than `--deliveries`
    deliveries at `per_order` events per paid order (the first phase's), but never none.
    Why: the senders make some tens of deliveries a second here, so 40 orders' 160 events
    to 100 endpoints would take minutes; CPU per order and deliveries per second need
    fewer."""
    if not live or not per_order:
        return params.orders
    return max(1, min(params.orders, int(params.deliveries / (max(per_order, 1.0) * live))))


def bench_database(kind: str, params: Params, workdir: Path, receiver: Receiver) -> DatabaseResult:
    workdir = own_folder(workdir, kind)
    with ExitStack() as stack:
        target = stack.enter_context(scratch_database(kind, workdir, params.postgres_url))
        shop_secret, admin_secret = prepare(target)
        probe = Probe(target)
        stack.callback(probe.close)
        meter = CpuMeter(postgres=probe.postgres_scope())
        meter.start()
        stack.callback(meter.close)
        env = clean_env(KASSA_DATABASE_URL=target.url, KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS="1")
        running = stack.enter_context(run_kassa(LAUNCH, env, workdir / "kassa"))
        meter.sessions |= running.sessions
        ledger = Ledger()
        shop = Shop(running.base_url, shop_secret, ledger)
        bench = Bench(
            params, target, probe, meter, receiver, running.base_url, admin_secret, shop, ledger
        )
        phases: list[Phase] = []
        for label, live in phases_of(params):
            per_order = ratio(phases[0].events, phases[0].orders) if phases else None
            orders = orders_for(params, live, per_order if per_order == per_order else None)
            warm = not phases or (live > 0 and not any(p.live for p in phases))
            phases.append(run_phase(bench, label, live, orders, warm=warm))
        meter.read()
        problems = [p for phase in phases for p in phase.problems]
        problems += check_orders(probe, ledger) + check_charges(probe, ledger)
        return DatabaseResult(kind, phases, problems)


@dataclass
class Outcome:
    databases: list[DatabaseResult]
    load_average: tuple[float, float, float]


def bench_all(params: Params, workdir: Path) -> Outcome:
    with run_receiver(workdir) as receiver:
        results = [bench_database(kind, params, workdir, receiver) for kind in params.databases]
    return Outcome(results, os.getloadavg())


# --------------------------------------------------------------------------- report


def _fmt(value: float, spec: str = ".1f") -> str:
    return "-" if value != value else format(value, spec)  # NaN -> "-"


COLUMNS = (
    f"{'database':<11}{'endpoints':<11}{'orders':>7}{'events':>7}{'events/s':>9}"
    f"{'delivered':>10}{'deliv/s':>9}{'lag p50 s':>10}{'lag p99 s':>10}{'dead':>5}"
    f"{'app ms':>9}{'+app ms':>9}{'x0 app':>7}{'db ms':>8}{'cpu ms':>9}{'x0 cpu':>7}"
    f"{'+cpu/deliv':>11}"
)


def _phase_line(result: DatabaseResult, p: Phase) -> str:
    app0, _, total0 = result.baseline
    db_ms = p.db_ms() if result.database == "postgresql" else float("nan")
    live = bool(p.live)
    who = f"{p.live} + dead" if live else f"0 ({p.label.split('-')[1]})"
    per_delivery = ratio((p.cpu_ms() - total0) * p.orders, p.delivered)
    return (
        f"{result.database:<11}{who:<11}{p.orders:>7}{p.events:>7}{_fmt(p.events_per_s):>9}"
        f"{p.delivered:>10}{_fmt(p.deliveries_per_s) if live else '-':>9}"
        f"{_fmt(percentile(p.lags_s, 50), '.2f'):>10}{_fmt(percentile(p.lags_s, 99), '.2f'):>10}"
        f"{p.dead_connections if live else '-':>5}"
        f"{p.app_ms():>9.1f}{_fmt(p.app_ms() - app0, '+.1f') if live else '-':>9}"
        f"{_fmt(ratio(p.app_ms(), app0), '.2f'):>7}{_fmt(db_ms, '.1f'):>8}{p.cpu_ms():>9.1f}"
        f"{_fmt(ratio(p.cpu_ms(), total0), '.2f'):>7}"
        f"{_fmt(per_delivery, '.2f') if live else '-':>11}"
    )


def render(params: Params, host: dict[str, Any], outcome: Outcome) -> str:
    ran = describe_commands(kassa_commands(LAUNCH, 0))
    load = ", ".join(f"{x:.2f}" for x in outcome.load_average)
    lines = [
        f"kassa's outgoing webhooks: {params.clients} clients, {params.orders} paid orders per "
        f"phase, {ran}, {SENDERS} sender threads; {describe(host)}; "
        f"load average at the end {load}",
        "",
        COLUMNS,
        "-" * len(COLUMNS),
    ]
    for result in outcome.databases:
        lines.extend(_phase_line(result, p) for p in result.phases)
    lines += [
        "",
        "endpoints: live endpoints at the receiver (204, signatures sampled) + 1 that accepts "
        "and never answers (10 s timeout);",
        "events/s: the burst's events, first to last; deliv/s: deliveries succeeded / (first "
        "event -> last delivery); lag: event -> delivered;",
        "dead: requests to the hanging endpoint, hanging at the window's start or sent in it; "
        "app ms: kassa's processes' CPU per paid order, quiet to quiet;",
        "db ms: PostgreSQL's; cpu ms = app + db; +app ms, x0: against the two 0-endpoint "
        "phases together;",
        "+cpu/deliv: the added cpu ms (app + db) per delivery made",
    ]
    for result in outcome.databases:
        zero = [p.app_ms() for p in result.phases if not p.live]
        spread = f"{min(zero):.2f}-{max(zero):.2f}" if zero else "-"
        lines.append(
            f"{result.database}: the 0-endpoint phases' app ms per order, first and last: "
            f"{spread} (median {statistics.median(zero):.2f})"
            if zero
            else f"{result.database}: no 0-endpoint phase"
        )
    for result in outcome.databases:
        lines += [f"PROBLEM {result.database}: {p}" for p in result.problems]
    return "\n".join(lines)


def document(params: Params, host: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "label": params.label,
        "kassa": kassa_source(),
        "params": recorded_params(params),
        "kassa_launch": describe_commands(kassa_commands(LAUNCH, 0)),
        "webhook_concurrency": SENDERS,
        "machine": host,
        "load_average": list(outcome.load_average),
        "results": [r.summary() for r in outcome.databases],
    }


def clean(outcome: Outcome) -> bool:
    return not any(r.problems for r in outcome.databases)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("notifications", parse_args(argv), bench_all, render, document, clean)


if __name__ == "__main__":
    sys.exit(main())
