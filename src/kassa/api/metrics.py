"""`GET /metrics`: what the API processes count themselves, and the exposition.

Two kinds of figures, each counted where it can be counted whole:

- **Per request** (`kassa_http_requests_total`, `kassa_http_request_duration_seconds`),
  and **provider webhook deliveries received** (`kassa_webhook_events_received_total`:
  new, duplicate, rejected), are known only to the API process that served them, so
  each process counts its own in memory, with prometheus-client.
- **Payments, provider events by state and jobs** happen in every process, workers
  included (which serve no HTTP), so they are read from the database at scrape time
  (`kassa.services.metrics`) and every process answers the same figures.

**Several API processes** (`kassa serve --workers N`): a scrape reaches one process, whose
memory holds its own share of the requests only. So `kassa serve` runs its API processes
in prometheus-client's multiprocess mode: before it starts them it points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory of its own (`kassa.server`), each process
writes its counters to its own memory-mapped file there, and a scrape sums the files of
all of them (`MultiProcessCollector`). The documented caveats, and how they are met:

- The variable must be set before prometheus-client is imported: the processes are
  spawned, fresh interpreters that inherit it, and whether values go to files is read
  from prometheus-client itself (`_multiprocess`), never guessed from the environment.
- The directory must start empty: `kassa serve` makes a new one per run (or, if the
  operator set the variable, empties it first) and removes its own when it stops.
- Dead processes: uvicorn's supervisor restarts a process that dies. Its file stays, and
  must: a counter is a total since the server started, and that process's requests
  belong to it (dropping them would make the totals go backwards, which Prometheus reads
  as a reset). Only gauges kept live in a process need `mark_process_dead`; kassa keeps
  none (its gauges come from the database), so nothing is marked.
- No process or platform collectors: per-process CPU and memory figures cannot be summed.

With one process (`kassa serve`, the default, or tests) the counters live in memory. A
server started some other way with several processes (`uvicorn --workers N`) must set
`PROMETHEUS_MULTIPROC_DIR` itself, or each scrape shows one process's share.

Several hosts: each is its own scrape target and its request counters are its own
(sum them); the database figures are the same on every host (take one, or `max`).

**Labels are bounded**: the route is the matched route's template
(`/v1/orders/{order_id}`, read from the scope Starlette's router fills in, no path
matching of our own), a path that matches no route is `<unmatched>`, a method outside
HTTP's usual ones is `OTHER`; webhook deliveries are counted only for providers whose
webhook route is open. A client cannot create series by inventing paths or methods.

**Cost per request**: a pure ASGI middleware (not `BaseHTTPMiddleware`, see
`api/request_id.py`); the labelled children of each (method, route, status) are looked
up once and kept, so a request costs one dict lookup, one counter increment and one
histogram observation: about 4 µs of CPU in memory and 7 µs in multiprocess mode, some
0.2-0.4 % of a small authenticated read's 2 ms (`bench/metrics_overhead.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.services.metrics import MetricsSnapshot

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus reads
UNMATCHED = "<unmatched>"
OTHER_METHOD = "OTHER"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: kassa's own requests take milliseconds; a payment waits for its provider.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WEBHOOK_RESULTS = ("new", "duplicate", "rejected")

# No `<counter>_created` series beside each counter and histogram (the time its labels were
# first seen, per process): they would double the series, and multiprocess mode, which
# cannot sum them, leaves them out anyway, so one process and several look alike.
disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess_mode() -> bool:
    """Whether prometheus-client writes this process's values to PROMETHEUS_MULTIPROC_DIR
    (decided once, when it was imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class ApiMetrics:
    """The figures one API process counts: requests, and webhook deliveries received."""

    def __init__(self, webhook_providers: Iterable[str] = ()) -> None:
        # registry=None: exposed by `exposition` (from memory, or from every process's
        # files in multiprocess mode), never through prometheus-client's global registry
        self.requests = Counter(
            "kassa_http_requests",
            "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"),
            registry=None,
        )
        self.latency = Histogram(
            "kassa_http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte, by method, route "
            "template and status",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.webhook_events = Counter(
            "kassa_webhook_events_received",
            "Provider webhook deliveries received: a new event (stored), a duplicate of one "
            "stored already, or rejected (bad signature or malformed)",
            ("provider", "result"),
            registry=None,
        )
        for provider in webhook_providers:  # a series for each, from 0
            for result in WEBHOOK_RESULTS:
                self.webhook_events.labels(provider, result)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def webhook_received(self, provider: str, result: str) -> None:
        self.webhook_events.labels(provider, result).inc()

    def collect(self) -> Iterator[Metric]:
        """This process's figures; in multiprocess mode every process's, summed."""
        if multiprocess_mode():
            yield from MultiProcessCollector(None).collect()  # type: ignore[no-untyped-call]
            return
        for metric in (self.requests, self.latency, self.webhook_events):
            yield from metric.collect()


def _route_of(scope: Scope) -> str:
    route = scope.get("route")  # set by Starlette's router on the match it dispatched to
    path = getattr(route, "path", None) if route is not None else None
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # unless an answer starts: an exception reaches the server's handler

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"]
            self.metrics.observe_request(
                method if method in _METHODS else OTHER_METHOD,
                _route_of(scope),
                status,
                time.perf_counter() - began,
            )


def _gauge(
    name: str, documentation: str, labels: tuple[str, ...], figures: dict[tuple[str, str], int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in sorted(figures.items()):
        family.add_metric(label_values, value)
    return family


def _deliveries(figures: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "kassa_webhook_deliveries",
        "Outgoing webhook deliveries (one per event and endpoint) by outcome: pending "
        "(not yet delivered; being retried), succeeded, failed (every attempt failed)",
        labels=("state",),
    )
    for state, value in sorted(figures.items()):
        family.add_metric((state,), value)
    return family


def database_families(snapshot: MetricsSnapshot, read_s: float) -> list[Metric]:
    """The database's figures (`kassa.services.metrics`) as Prometheus gauges."""
    return [
        _gauge(
            "kassa_payments",
            "Payments by provider and current status (processing, requires_action, "
            "succeeded, failed, canceled)",
            ("provider", "status"),
            snapshot.payments,
        ),
        _gauge(
            "kassa_provider_events",
            "Provider webhook events kept in the database (applied ones for "
            "KASSA_EVENT_RETENTION_S) by provider and state: pending (not applied yet), "
            "applied, ignored (nothing to do), refused (another provider's payment)",
            ("provider", "state"),
            snapshot.events,
        ),
        _gauge(
            "kassa_jobs",
            "Background jobs by kind and state: queued, running, dead (done jobs are not counted)",
            ("kind", "state"),
            snapshot.jobs,
        ),
        GaugeMetricFamily(
            "kassa_jobs_oldest_queued_age_seconds",
            "How long the longest-waiting queued job has been due (0 when none is due)",
            value=snapshot.oldest_due_job_s,
        ),
        _deliveries(snapshot.deliveries),
        GaugeMetricFamily(
            "kassa_metrics_database_read_seconds",
            "How long this scrape's database queries took",
            value=read_s,
        ),
        _gauge(
            "kassa_emails",
            "E-mails to buyers by kind (order_confirmation, invoice, refund_notice) and "
            "status: queued, sent, failed",
            ("kind", "status"),
            snapshot.emails,
        ),
    ]


class _Collected:
    """A collector over functions that yield metrics, for one scrape's registry."""

    def __init__(self, *sources: Callable[[], Iterable[Metric]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()


def exposition(metrics: ApiMetrics, read: Callable[[], MetricsSnapshot]) -> bytes:
    """The Prometheus text of a scrape: the processes' own figures and the database's
    (`read` queries it; run this in a worker thread)."""
    began = time.perf_counter()
    snapshot = read()
    families = database_families(snapshot, time.perf_counter() - began)
    registry = CollectorRegistry()
    registry.register(_Collected(metrics.collect, lambda: families))
    return generate_latest(registry)
