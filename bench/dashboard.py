"""Dashboard pages beside the API calls that answer the same question, at 100,000 orders.

Issue 13 asks for the orders list and an order's page timed with 100,000 orders in the
database, p50/p95 server time beside the matching API call in the same run. Per database
(`--databases`):

1. A scratch database (`harness.scratch_database`), seeded set-based with `--orders`
   orders over the past year: PostgreSQL with `kpis_seed.seed_postgres` (`scale.py`'s
   seed: lines, payments with their attempts, provider events, jobs, invoices, the audit
   trail; then refunds), SQLite with `scale.prepare` (keys, catalogue) and
   `kpis_seed.seed_sqlite(history=...)` (orders, payments, refunds, and the lines,
   attempts, audit trail and invoices an order's page reads). Neither writes e-mails or
   credit notes for the seeded orders.
2. Two orders made through kassa's API on `kassa serve` (its embedded worker, the sandbox
   gateway, e-mail sent to a local SMTP sink), so the order page under test is a full
   one: *small*, paid at the first try (a transient provider error retried: its attempts
   show a retry) and refunded once; *full*, declined nine times, then paid the same way,
   and refunded ten times. The worker issues their invoices, credit notes and e-mails;
   the run waits for all of them.
3. A staff user (`kassa.staff_users`, role admin) who signs in through the forms a browser
   posts (`/dashboard/sign-in` with the form's CSRF token and its `kassa_sign_in` cookie,
   then the forced password change at `/dashboard/password`), and an admin API key.
4. `kassa serve --workers 1 --no-worker` (as `kpis.py` serves it: a reading server, no
   background work beside the requests) and one client over loopback (`httpx`, one kept
   connection per credential), strictly sequential. Each row is `--warmup` unmeasured
   requests, then `--requests` measured ones in four blocks per group (page, API calls,
   API calls in reverse, page: A B B A, so drift falls on both). The rows:

   | dashboard page | beside it |
   |---|---|
   | `GET /dashboard/orders` | `GET /v1/orders?limit=50` |
   | `GET /dashboard/orders?status=paid` | `GET /v1/orders?limit=50&status=paid` |
   | `GET /dashboard/orders?q=K-…` (a seeded order's number) | `GET /v1/orders/{id}` |
   | `GET /dashboard/orders/{number}` (small, full) | `GET /v1/orders/{id}`; that, its |
   | | payments and its refunds; every call a client needs for what the page shows |

   "every call" is the order, its payments, refunds, invoice, credit notes and e-mails,
   and the audit trail of the order and of each payment and refund (`/v1/audit?subject=`
   takes one subject): 27 calls for the full order, timed as one unit.

Columns: `calls` per unit; `p50`/`p95` wall ms per unit as the client saw it (sequential
on loopback: the server's time plus the loopback round trip); `cpu ms` the server's CPU
per unit (`cpu.py`: every process of the server's session from /proc and, on
PostgreSQL, the scratch database's backends; an idle server's own polling is in it, under
a few percent); `stmts` SQL statements per unit; `page÷` the page's p50 divided by the
row's (on page rows: blank).

Statements are counted in a phase of their own, in this process: the same app
(`kassa.api.app.create_app`) on the same database, behind FastAPI's TestClient, signed in
the same way, with a SQLAlchemy `before_cursor_execute` listener on kassa's engine
(`stmts` counts those that read or write rows: not the BEGIN kassa sends on SQLite, where
reads hold a transaction, nor a new connection's PRAGMAs; the driver's COMMIT is not a
cursor statement at all; the results file has every statement by keyword). A page with
no N+1 issues the same number for the small order (1 payment, 1 refund) and the full one
(10 and 10): the report says whether it did.

Results: `bench/results/dashboard-<timestamp>.json`. The run fails (exit 1) if an
answer is not 200, the sign-in does not work, or the fresh orders' documents and e-mails
do not all arrive.

    .venv/bin/python bench/dashboard.py --databases sqlite,postgresql --orders 100000
    .venv/bin/python bench/dashboard.py --quick          # 2,000 orders, 20 requests a row
"""

from __future__ import annotations

import re
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cpu import Cpu, CpuMeter, Snapshot, cpu_between
from harness import (
    HOST,
    BenchParser,
    KassaLaunch,
    Target,
    clean_env,
    describe,
    free_port,
    http_client,
    no_problems,
    percentile,
    problem_lines,
    ratio,
    recorded_params,
    run_benchmark,
    run_kassa,
    scratch_database,
    table_head,
)
from kpis_seed import Seeded, seed_postgres, seed_sqlite
from probe import Probe
from scale import prepare
from statements import CONTROL, keyword

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.context import RequestContext

PAGE_SIZE = 50  # the dashboard's orders list (dashboard/pages/orders.py)
FULL_REFUNDS = 10  # the full order: this many payments (all declined but the last), refunds
DECLINE = "pm_card_chargeDeclined"
CARD_RETRIED = "pm_card_visa|api_error"  # a transient error on the first call, retried
MAIL_FROM = "shop@example.com"
STAFF_EMAIL = "bench-admin@shop.example"
DOCUMENTS_TIMEOUT_S = 120.0
STATEMENT_REPEATS = 3
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how kassa's UTC times sort as text on SQLite
MAX_PROBLEMS = 20  # kept per database; a broken page repeats the same one


@dataclass(frozen=True)
class Params:
    orders: int
    requests: int
    warmup: int
    databases: tuple[str, ...]
    postgres_url: str


def parse_args(argv: list[str] | None = None) -> Params:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_sized("--orders", "orders seeded", default=100_000, quick=2_000)
    parser.add_sized("--requests", "measured requests per row", default=200, quick=20)
    parser.add_sized("--warmup", "unmeasured requests per row first", default=20, quick=3)
    parser.add_quick("a small run (2,000 orders, 20 requests a row)")
    parser.add_databases()
    parser.add_postgres_url()
    args = parser.parse(argv)
    if min(args.orders, args.requests) < 1 or args.warmup < 0:
        parser.error("--orders and --requests must be positive, --warmup not negative")
    return Params(
        orders=args.orders,
        requests=args.requests,
        warmup=args.warmup,
        databases=args.databases,
        postgres_url=args.postgres_url,
    )


# --------------------------------------------------------------------------- the e-mail sink


class _Sink:
    """An SMTP server that takes every message and counts it (aiosmtpd's handler API)."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


@contextmanager
def smtp_sink() -> Iterator[tuple[str, _Sink]]:
    """A local SMTP server for the worker's e-mails; yields its smtp:// URL and handler."""
    from aiosmtpd.controller import Controller

    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname=HOST, port=port)
    controller.start()
    try:
        yield f"smtp://{HOST}:{port}", sink
    finally:
        controller.stop()


# --------------------------------------------------------------------------- the shop


@dataclass
class FreshOrder:
    """An order made through the API for the page under test."""

    label: str
    id: str
    number: str
    payments: list[str] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Accounts:
    admin_key: str
    staff_email: str
    one_time_password: str


def make_accounts(target: Target) -> Accounts:
    """An admin API key and a staff user (role admin), through kassa's services."""
    kassa = Kassa(Settings(database_url=target.url))
    try:
        ctx = RequestContext.system("bench")
        _view, admin = kassa.api_keys.create(ctx, "admin", "dashboard bench")
        _user, password = kassa.staff_users.create(ctx, STAFF_EMAIL, "admin")
    finally:
        kassa.close()
    return Accounts(admin, STAFF_EMAIL, password)


def seed(kind: str, target: Target, orders: int) -> Seeded:
    if kind == "postgresql":
        return seed_postgres(target, orders)
    return seed_sqlite(target, orders, history=prepare(target))


class ApiShop:
    """Orders made, paid and refunded through the API with an admin key, one step at a
    time: after a payment and after each refund, the worker's jobs are let finish (the
    sandbox's events, their applies, the documents) before the next step, as a person
    at the dashboard would take seconds between two refunds. (Refunds fired back to back
    on PostgreSQL can deadlock with the worker applying the previous one's event: the
    refund request then answers 500; seen while writing this benchmark.)"""

    def __init__(self, client: httpx.Client, probe: Probe) -> None:
        self.client = client
        self.probe = probe

    def jobs_due(self) -> int:
        """Jobs running, or queued and due within the hour: as `scale.Served.jobs_due`, the
        seed's never-applied events (one in 20,000 payments), retried tomorrow, are
        history, not work of ours."""
        soon = datetime.now(UTC) + timedelta(hours=1)
        at = soon if self.probe.target.sqlite_path is None else soon.strftime(SQLITE_TIME)
        rows = self.probe.rows(
            "SELECT count(*) FROM jobs WHERE state = 'running'"
            " OR (state = 'queued' AND run_after <= %s)",
            (at,),
        )
        return int(rows[0][0])

    def settle(self) -> None:
        deadline = time.monotonic() + DOCUMENTS_TIMEOUT_S
        while self.jobs_due() > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker's jobs did not finish")
            time.sleep(0.1)

    def _post(self, path: str, body: dict[str, Any], ok: tuple[int, ...] = (201,)) -> Any:
        answer = self.client.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        if answer.status_code not in ok:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def order(self, label: str, declines: int, refunds: int) -> FreshOrder:
        lines = [{"sku": f"SKU-{n:04d}", "quantity": 1 + n % 2} for n in (1, 2, 3)]
        made = self._post(
            "/v1/orders",
            {"email": f"{label}@example.com", "currency": "EUR", "lines": lines},
        )
        order = FreshOrder(label, made["id"], made["number"])
        for _ in range(declines):
            declined = self._post(
                f"/v1/orders/{order.id}/payments", {"payment_method": DECLINE}, (201, 402)
            )
            if declined.get("status") not in ("failed", None):
                raise RuntimeError(f"{label}: a declined card's payment is {declined}")
        paid = self._post(f"/v1/orders/{order.id}/payments", {"payment_method": CARD_RETRIED})
        if paid["status"] != "succeeded":
            raise RuntimeError(f"{label}: the payment is {paid['status']}")
        self.settle()
        share = made["total"] // (2 * refunds)
        for n in range(refunds):
            refund = self._post(
                f"/v1/orders/{order.id}/refunds", {"amount": share, "reason": f"bench {n}"}
            )
            order.refunds.append(refund["id"])
            self.settle()
        listed = self.client.get(f"/v1/orders/{order.id}/payments", params={"limit": 100})
        order.payments = [p["id"] for p in listed.json()["data"]]
        return order

    def documents_done(self, order: FreshOrder) -> bool:
        """Whether the worker has issued the order's invoice, its credit notes and e-mails
        (a confirmation, the invoice, one refund notice per refund), all sent."""
        invoice = self.client.get(f"/v1/orders/{order.id}/invoice")
        notes = self.client.get(f"/v1/orders/{order.id}/credit-notes")
        mails = self.client.get("/v1/emails", params={"order": order.id, "limit": 100})
        if invoice.status_code != 200 or notes.status_code != 200 or mails.status_code != 200:
            return False
        sent = [m for m in mails.json()["data"] if m["status"] == "sent"]
        return len(notes.json()["data"]) == len(order.refunds) and len(sent) == 2 + len(
            order.refunds
        )


def make_fresh_orders(target: Target, accounts: Accounts, workdir: Path) -> list[FreshOrder]:
    """The small and the full order, made on `kassa serve` (embedded worker), e-mail on."""
    with ExitStack() as stack:
        smtp_url, _sink = stack.enter_context(smtp_sink())
        env = clean_env(
            KASSA_DATABASE_URL=target.url, KASSA_SMTP_URL=smtp_url, KASSA_MAIL_FROM=MAIL_FROM
        )
        launch = KassaLaunch(workers=1, embedded_worker=True, log_level="warning")
        running = stack.enter_context(run_kassa(launch, env, workdir / f"make-{target.kind}"))
        headers = {"Authorization": f"Bearer {accounts.admin_key}"}
        client = stack.enter_context(http_client(running.base_url, headers=headers))
        probe = Probe(target)
        stack.callback(probe.close)
        shop = ApiShop(client, probe)
        made = [
            shop.order("small", declines=0, refunds=1),
            shop.order("full", declines=FULL_REFUNDS - 1, refunds=FULL_REFUNDS),
        ]
        deadline = time.monotonic() + DOCUMENTS_TIMEOUT_S
        while not all(shop.documents_done(o) for o in made):
            if time.monotonic() > deadline:
                raise RuntimeError("the fresh orders' invoices, credit notes or e-mails are late")
            time.sleep(0.5)
    return made


# --------------------------------------------------------------------------- signing in

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str, where: str) -> str:
    match = _CSRF.search(html)
    if match is None:
        raise RuntimeError(f"no CSRF token on {where}")
    return match.group(1)


def _expect_redirect(answer: httpx.Response, to: str) -> None:
    location = answer.headers.get("location", "")
    if answer.status_code != 303 or not location.startswith(to):
        raise RuntimeError(
            f"{answer.request.method} {answer.request.url.path}: expected 303 to {to}, got"
            f" {answer.status_code} {location!r} {answer.text[:200]}"
        )


def sign_in(client: httpx.Client, accounts: Accounts, password: str | None) -> str:
    """Sign in as a browser does: the form and its CSRF token and cookie, the post, then
    (with the one-time password) the forced change to a password of our own, which is
    returned (`password`: the one already set)."""
    form = client.get("/dashboard/sign-in")
    answer = client.post(
        "/dashboard/sign-in",
        data={
            "csrf_token": _csrf(form.text, "the sign-in form"),
            "email": accounts.staff_email,
            "password": password or accounts.one_time_password,
            "next": "",
        },
    )
    if password is not None:
        _expect_redirect(answer, "/dashboard/orders")
        return password
    _expect_redirect(answer, "/dashboard/password")
    chosen = "bench-" + secrets.token_urlsafe(18)
    page = client.get("/dashboard/password")
    form = {
        "csrf_token": _csrf(page.text, "the password form"),
        "new_password": chosen,
        "confirm_password": chosen,
    }
    if 'name="current_password"' in page.text:  # the form asks for it: a reader types it
        form["current_password"] = accounts.one_time_password
    answer = client.post("/dashboard/password", data=form)
    _expect_redirect(answer, "/dashboard/orders")
    return chosen


# --------------------------------------------------------------------------- what is timed


@dataclass(frozen=True)
class Unit:
    """One row: the GETs a reader makes for it, in turn, with one client."""

    label: str
    paths: tuple[str, ...]
    dashboard: bool  # the staff session's client, else the API key's
    shows: str = ""  # text every answer must hold (an order page: the order's number)

    @property
    def calls(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Group:
    """A page and the API calls beside it."""

    page: Unit
    besides: tuple[Unit, ...]

    @property
    def units(self) -> tuple[Unit, ...]:
        return (self.page, *self.besides)


def _order_units(order: FreshOrder) -> Group:
    o = f"/v1/orders/{order.id}"
    pays_refunds = (o, f"{o}/payments?limit=100", f"{o}/refunds?limit=100")
    subjects = (order.id, *order.payments, *order.refunds)
    everything = (
        *pays_refunds,
        f"{o}/invoice",
        f"{o}/credit-notes",
        f"/v1/emails?order={order.id}&limit=50",
        *(f"/v1/audit?subject={s}&limit=100" for s in subjects),
    )
    what = f"{len(order.payments)} pay, {len(order.refunds)} ref"
    return Group(
        Unit(
            f"GET /dashboard/orders/{{number}} ({what})",
            (f"/dashboard/orders/{order.number}",),
            True,
            shows=order.number,
        ),
        (
            Unit("GET /v1/orders/{id}", (o,), False),
            Unit("  + its payments, refunds", pays_refunds, False),
            Unit("  every call for what the page shows", everything, False),
        ),
    )


def groups(orders: list[FreshOrder], searched: tuple[str, str]) -> list[Group]:
    number, order_id = searched
    return [
        Group(
            Unit("GET /dashboard/orders", ("/dashboard/orders",), True),
            (Unit(f"GET /v1/orders?limit={PAGE_SIZE}", (f"/v1/orders?limit={PAGE_SIZE}",), False),),
        ),
        Group(
            Unit("GET /dashboard/orders?status=paid", ("/dashboard/orders?status=paid",), True),
            (
                Unit(
                    f"GET /v1/orders?limit={PAGE_SIZE}&status=paid",
                    (f"/v1/orders?limit={PAGE_SIZE}&status=paid",),
                    False,
                ),
            ),
        ),
        Group(
            Unit(
                "GET /dashboard/orders?q=<number>",
                (f"/dashboard/orders?q={number}",),
                True,
                shows=number,
            ),
            (Unit("GET /v1/orders/{id}", (f"/v1/orders/{order_id}",), False),),
        ),
        *(_order_units(order) for order in orders),
    ]


@dataclass
class Timing:
    latencies_ms: list[float] = field(default_factory=list)
    cpu: Cpu = field(default_factory=lambda: Cpu(0.0, 0.0, 0.0, 0.0, 0.0))
    statements: float = float("nan")  # data statements (`data_statements`)
    by_keyword: dict[str, float] = field(default_factory=dict)  # every statement

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies_ms, 95)

    @property
    def cpu_ms(self) -> float:
        n = len(self.latencies_ms)
        return 1000 * self.cpu.total_s / n if n else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies_ms),
            "p50_ms": round(self.p50, 2),
            "p95_ms": round(self.p95, 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else None,
            "cpu": self.cpu.per_op_ms(len(self.latencies_ms)),
            "statements": self.statements,
            "statements_by_keyword": self.by_keyword,
        }


class Clients:
    """The dashboard's client (the staff session's cookie) and the API's (the key)."""

    def __init__(self, dashboard: httpx.Client, api: httpx.Client) -> None:
        self.dashboard = dashboard
        self.api = api
        self.problems: list[str] = []

    def run(self, unit: Unit) -> None:
        client = self.dashboard if unit.dashboard else self.api
        for path in unit.paths:
            try:
                answer = client.get(path)
            except httpx.TransportError as exc:  # a server that dies on a page
                self._problem(f"GET {path}: {type(exc).__name__}: {exc}")
                continue
            if answer.status_code != 200:
                self._problem(f"GET {path}: {answer.status_code} {answer.text[:200]}")
            elif unit.shows not in answer.text:
                self._problem(f"GET {path}: 200 without {unit.shows!r}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def _block(clients: Clients, unit: Unit, n: int, meter: CpuMeter | None, into: Timing) -> None:
    before: Snapshot | None = meter.read() if meter else None
    for _ in range(n):
        began = time.perf_counter()
        clients.run(unit)
        into.latencies_ms.append((time.perf_counter() - began) * 1000)
    if meter is not None and before is not None:
        into.cpu = into.cpu + cpu_between(before, meter.read())


def measure_group(
    clients: Clients, group: Group, params: Params, meter: CpuMeter | None
) -> dict[str, Timing]:
    """Warm-up of each unit, then A B B A blocks of half the requests each."""
    timings = {u.label: Timing() for u in group.units}
    for unit in group.units:
        for _ in range(params.warmup):
            clients.run(unit)
    first = params.requests // 2
    for order, n in ((group.units, first), (tuple(reversed(group.units)), params.requests - first)):
        for unit in order:
            _block(clients, unit, n, meter, timings[unit.label])
    return timings


# --------------------------------------------------------------------------- statements


@contextmanager
def in_process(target: Target) -> Iterator[tuple[httpx.Client, list[str]]]:
    """The app in this process on `target` (TestClient), and the list every SQL statement
    its engine sends is appended to."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from kassa.api.app import create_app

    kassa = Kassa(Settings(database_url=target.url))
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(kassa.db.engine, "before_cursor_execute", record)
    try:
        with TestClient(create_app(kassa), follow_redirects=False) as client:
            yield client, sent
    finally:
        event.remove(kassa.db.engine, "before_cursor_execute", record)
        kassa.close()


def count_statements(
    target: Target, accounts: Accounts, password: str, all_groups: list[Group]
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Statements per unit by first keyword: each unit run once unmeasured, then
    STATEMENT_REPEATS times."""
    counts: dict[str, dict[str, float]] = {}
    with in_process(target) as (client, sent), in_process_api(client, accounts) as api:
        sign_in(client, accounts, password)
        clients = Clients(client, api)
        for group in all_groups:
            for unit in group.units:
                clients.run(unit)
                before = len(sent)
                for _ in range(STATEMENT_REPEATS):
                    clients.run(unit)
                words = Counter(keyword(sql) for sql in sent[before:])
                counts[unit.label + group.page.label] = {
                    word: n / STATEMENT_REPEATS for word, n in sorted(words.items())
                }
    return counts, clients.problems


def data_statements(by_keyword: dict[str, float]) -> float:
    """The statements that read or write rows: not BEGIN (which kassa sends itself on
    SQLite, where reads hold a transaction; PostgreSQL's reads run in autocommit) nor a
    new connection's PRAGMAs."""
    return sum(n for word, n in by_keyword.items() if word not in (*CONTROL, "PRAGMA"))


@contextmanager
def in_process_api(client: httpx.Client, accounts: Accounts) -> Iterator[httpx.Client]:
    """The API's client beside the dashboard's: the same app, the key's header."""
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    api = TestClient(client.app, headers={"Authorization": f"Bearer {accounts.admin_key}"})
    try:
        yield api
    finally:
        api.close()


# --------------------------------------------------------------------------- one database


@dataclass
class DatabaseRun:
    database: str
    seeded: Seeded
    fresh: list[FreshOrder]
    searched: str
    groups: list[Group]
    timings: list[dict[str, Timing]]
    problems: list[str]

    def n_plus_one(self) -> tuple[float, float] | None:
        """Statements of the order page for the small order and the full one."""
        found = [
            timings[group.page.label].statements
            for group, timings in zip(self.groups, self.timings, strict=True)
            if group.page.paths[0].startswith("/dashboard/orders/K")
        ]
        return (found[0], found[1]) if len(found) == 2 else None


def searched_order(target: Target, orders: int) -> tuple[str, str]:
    """A seeded order halfway through the table: its number and id."""
    number = f"K-{max(1, orders // 2):06d}"
    probe = Probe(target)
    try:
        rows = probe.rows("SELECT id FROM orders WHERE number = %s", (number,))
    finally:
        probe.close()
    if not rows:
        raise RuntimeError(f"no seeded order {number}")
    return number, str(rows[0][0])


def bench_database(kind: str, params: Params, workdir: Path) -> DatabaseRun:
    with scratch_database(kind, workdir, params.postgres_url) as target:
        seeded = seed(kind, target, params.orders)
        print(
            f"[{kind}] seeded in {seeded.seconds:.1f} s: "
            + ", ".join(f"{t} {n:,}" for t, n in seeded.rows.items()),
            flush=True,
        )
        accounts = make_accounts(target)
        print(f"[{kind}] the small and the full order, through the API", flush=True)
        fresh = make_fresh_orders(target, accounts, workdir)
        searched = searched_order(target, params.orders)
        all_groups = groups(fresh, searched)
        launch = KassaLaunch(workers=1, embedded_worker=False, log_level="warning")
        env = clean_env(KASSA_DATABASE_URL=target.url)
        timings: list[dict[str, Timing]] = []
        with ExitStack() as stack:
            running = stack.enter_context(run_kassa(launch, env, workdir / f"kassa-{kind}"))
            probe = Probe(target)
            stack.callback(probe.close)
            meter = CpuMeter(postgres=probe.postgres_scope(), sessions=running.sessions)
            dashboard = stack.enter_context(http_client(running.base_url))
            api_headers = {"Authorization": f"Bearer {accounts.admin_key}"}
            api = stack.enter_context(http_client(running.base_url, headers=api_headers))
            password = sign_in(dashboard, accounts, None)
            clients = Clients(dashboard, api)
            for group in all_groups:
                print(f"[{kind}] {group.page.label}: {params.requests} requests a row", flush=True)
                timings.append(measure_group(clients, group, params, meter))
        print(f"[{kind}] statements per row, in process", flush=True)
        counts, more_problems = count_statements(target, accounts, password, all_groups)
        for group, found in zip(all_groups, timings, strict=True):
            for unit in group.units:
                by_keyword = counts[unit.label + group.page.label]
                found[unit.label].by_keyword = by_keyword
                found[unit.label].statements = data_statements(by_keyword)
        return DatabaseRun(
            kind,
            seeded,
            fresh,
            searched[0],
            all_groups,
            timings,
            clients.problems + more_problems,
        )


def bench(params: Params, workdir: Path) -> list[DatabaseRun]:
    return [bench_database(kind, params, workdir) for kind in params.databases]


# --------------------------------------------------------------------------- report


def _fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)  # NaN: not measured


def _count(value: float) -> str:
    """A count per unit: whole, or to a tenth where a repeat differed (a session's
    seen-mark is written at most once a minute)."""
    return _fmt(value, ".0f" if value == round(value) else ".1f")


def _rows(run: DatabaseRun) -> list[str]:
    lines = []
    for group, timings in zip(run.groups, run.timings, strict=True):
        page = timings[group.page.label]
        for unit in group.units:
            t = timings[unit.label]
            versus = "" if unit is group.page else _fmt(ratio(page.p50, t.p50), ".2f")
            lines.append(
                f"{run.database:<11}{unit.label:<50}{unit.calls:>6}{t.p50:>9.1f}{t.p95:>9.1f}"
                f"{_fmt(t.cpu_ms, '.1f'):>9}{_count(t.statements):>7}{versus:>8}"
            )
        lines.append("")
    return lines


def _n_plus_one_line(run: DatabaseRun) -> str:
    pair = run.n_plus_one()
    if pair is None:
        return f"{run.database}: the order pages were not both measured"
    small, full = pair
    verdict = "the same: no N+1" if small == full else "NOT the same: grows with the order"
    return (
        f"{run.database}: order page statements, 1 payment + 1 refund: {small:.0f};"
        f" {FULL_REFUNDS} payments + {FULL_REFUNDS} refunds: {full:.0f} ({verdict})"
    )


def render(params: Params, host: dict[str, Any], runs: list[DatabaseRun]) -> str:
    columns = (
        f"{'database':<11}{'page / API call':<50}{'calls':>6}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'cpu ms':>9}{'stmts':>7}{'page÷':>8}"
    )
    lines = table_head(
        f"kassa's staff dashboard beside its API, {params.orders:,} orders seeded;"
        f" {params.requests} sequential requests a row after {params.warmup} warm-up, one"
        f" client on loopback, kassa serve --workers 1 --no-worker; {describe(host)}",
        columns,
    )
    for run in runs:
        lines += _rows(run)
    lines += [
        "calls: GETs per row (timed together); p50/p95: wall ms per row on loopback; cpu ms:"
        " the server's CPU (and PostgreSQL's backends) per row;",
        "stmts: SQL statements reading or writing rows per row (counted in process;"
        " BEGIN, COMMIT, PRAGMA left out);"
        " page÷: the page's p50 ÷ the row's.",
        f"searched: {', '.join(f'{r.database} {r.searched}' for r in runs)} (seeded);"
        " order pages: fresh orders made through the API (sandbox, worker, SMTP sink).",
        "seeded orders have no e-mails or credit notes (kpis_seed/scale.py write none);"
        " SQLite's have one line each, PostgreSQL's 1 to 4.",
        "seed: " + "; ".join(f"{r.database} {r.seeded.seconds:.0f} s" for r in runs),
    ]
    lines += [_n_plus_one_line(run) for run in runs]
    lines += problem_lines(runs)
    return "\n".join(lines)


def document(params: Params, host: dict[str, Any], runs: list[DatabaseRun]) -> dict[str, Any]:
    return {
        "params": recorded_params(params),
        "machine": host,
        "results": [
            {
                "database": run.database,
                "seed": run.seeded.summary(),
                "searched": run.searched,
                "fresh_orders": [
                    {
                        "label": o.label,
                        "number": o.number,
                        "payments": len(o.payments),
                        "refunds": len(o.refunds),
                    }
                    for o in run.fresh
                ],
                "groups": [
                    {
                        "page": group.page.label,
                        "rows": [
                            {
                                "label": unit.label,
                                "paths": list(unit.paths),
                                **timings[unit.label].summary(),
                            }
                            for unit in group.units
                        ],
                    }
                    for group, timings in zip(run.groups, run.timings, strict=True)
                ],
                "order_page_statements_small_full": run.n_plus_one(),
                "problems": run.problems,
            }
            for run in runs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(
        "dashboard",
        parse_args(argv),
        bench,
        render,
        document,
        no_problems,
    )


if __name__ == "__main__":
    sys.exit(main())
