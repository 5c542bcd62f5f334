"""`GET /metrics`: what it counts, under which labels, and who may read it (both databases).

The multi-process totals of `kassa serve --workers 2` are in
tests/reliability/test_serve_metrics.py."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.metrics import EVENT_STATES
from kassa.services.webhooks import APPLY_EVENT, outcome_class
from kassa.storage.tables import Job, ProviderEvent
from kassa.worker import Worker
from tests.conftest import FakeClock, Keys
from tests.events import MOCK_SECRET, event, intent, signed

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    r = client.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; a KeyError (a failing test) if the series is not there at all."""
    return samples[(name, frozenset(labels.items()))]


def labels_of(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(lbls)[label] for n, lbls in samples if n == name}


# -- requests --------------------------------------------------------------------------


def test_requests_count_under_their_route_template_and_status(
    client: TestClient, keys: Keys
) -> None:
    analyst = keys.headers("analyst")
    for order_id in ("ord_missing1", "ord_missing2", "ord_missing1"):
        assert client.get(f"/v1/orders/{order_id}", headers=analyst).status_code == 404
    assert client.get("/v1/orders", headers=analyst).status_code == 200
    assert client.get("/v1/no/such/route/ord_x").status_code == 404
    assert client.request("BREW", "/v1/orders/ord_missing3").status_code == 405

    samples = scrape(client, keys.headers("ops"))
    requests = "kassa_http_requests_total"
    template = {"method": "GET", "route": "/v1/orders/{order_id}", "status": "404"}
    assert value(samples, requests, **template) == 3
    assert value(samples, requests, method="GET", route="/v1/orders", status="200") == 1
    assert value(samples, requests, method="GET", route="<unmatched>", status="404") == 1
    assert (
        value(samples, requests, method="OTHER", route="/v1/orders/{order_id}", status="405") == 1
    )
    # latency: a histogram per (method, route, status), its count the requests
    assert value(samples, "kassa_http_request_duration_seconds_count", **template) == 3
    assert value(samples, "kassa_http_request_duration_seconds_sum", **template) > 0
    assert value(samples, "kassa_http_request_duration_seconds_bucket", le="+Inf", **template) == 3
    # bounded: no raw path and no invented method ever becomes a label value
    routes = labels_of(samples, requests, "route")
    assert not [r for r in routes if "ord_" in r or "no/such" in r], routes
    assert labels_of(samples, requests, "method") <= {"GET", "OTHER"}


def test_the_scrape_itself_is_counted_by_the_next(client: TestClient, keys: Keys) -> None:
    scrape(client, keys.headers("ops"))
    samples = scrape(client, keys.headers("ops"))
    assert value(samples, "kassa_http_requests_total", method="GET", route="/metrics", status="200")


# -- access ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 401), ("storefront", 403), ("analyst", 403), ("ops", 200), ("admin", 200)],
)
def test_metrics_take_an_ops_key(
    client: TestClient, keys: Keys, role: str | None, status: int
) -> None:
    r = client.get("/metrics", headers=keys.headers(role) if role else {})
    assert r.status_code == status, r.text
    if status != 200:
        assert r.headers["content-type"] == "application/problem+json", r.headers
        assert r.json()["code"] == ("missing_api_key" if role is None else "insufficient_role")
    else:
        assert "kassa_http_requests_total" in r.text


def test_metrics_are_public_with_kassa_metrics_public(database_url: str) -> None:
    core = Kassa(Settings(database_url=database_url, metrics_public=True))
    try:
        with TestClient(create_app(core)) as public:
            r = public.get("/metrics")
            assert r.status_code == 200, r.text
            assert "kassa_jobs" in r.text
            # a key, even a bad one, is not looked at
            assert public.get("/metrics", headers={"Authorization": "Bearer nope"}).is_success
    finally:
        core.close()


def test_kassa_metrics_public_is_read_from_the_environment() -> None:
    assert Settings.from_env({"KASSA_METRICS_PUBLIC": "1"}).metrics_public is True
    assert Settings.from_env({}).metrics_public is False


# -- payments ----------------------------------------------------------------------------


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    return kassa


def _order(client: TestClient, keys: Keys) -> str:
    order = client.post(
        "/v1/orders",
        json={
            "email": "m@example.com",
            "currency": "EUR",
            "lines": [{"sku": "MUG", "quantity": 1}],
        },
        headers=keys.headers("storefront"),
    )
    assert order.status_code == 201, order.text
    return str(order.json()["id"])


def _pay(client: TestClient, keys: Keys, **body: str) -> dict[str, Any]:
    r = client.post(
        f"/v1/orders/{_order(client, keys)}/payments", json=body, headers=keys.headers("storefront")
    )
    assert r.status_code in (201, 202), r.text
    return dict(r.json())


def test_payments_by_provider_and_outcome(shop: Kassa, client: TestClient, keys: Keys) -> None:
    before = scrape(client, keys.headers("ops"))
    for provider in ("mock", "wallet"):  # every enabled provider has its series, from 0
        for status in ("processing", "requires_action", "succeeded", "failed", "canceled"):
            assert value(before, "kassa_payments", provider=provider, status=status) == 0

    assert _pay(client, keys, payment_method="pm_card_visa")["status"] == "succeeded"
    assert _pay(client, keys, payment_method="pm_card_visa")["status"] == "succeeded"
    assert _pay(client, keys, payment_method="pm_card_chargeDeclined")["status"] == "failed"
    assert _pay(client, keys)["status"] == "requires_action"  # the browser's turn

    after = scrape(client, keys.headers("ops"))
    assert value(after, "kassa_payments", provider="mock", status="succeeded") == 2
    assert value(after, "kassa_payments", provider="mock", status="failed") == 1
    assert value(after, "kassa_payments", provider="mock", status="requires_action") == 1
    assert value(after, "kassa_payments", provider="wallet", status="succeeded") == 0


# -- provider webhooks and jobs ------------------------------------------------------------


def _post_event(
    client: TestClient, body: bytes, clock: FakeClock, secret: str = MOCK_SECRET
) -> Any:
    headers = signed(body, int(clock.now.timestamp()), secret)
    return client.post("/v1/webhooks/mock", content=body, headers=headers)


def test_webhook_deliveries_events_and_jobs(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    ops = keys.headers("ops")
    early = event("evt_early", "payment_intent.succeeded", intent("pi_later", "pay_later", 1000))
    ignored = event("evt_other", "customer.created", {"id": "cus_1", "object": "customer"})
    assert _post_event(client, early, clock).json() == {"received": True, "duplicate": False}
    assert _post_event(client, early, clock).json()["duplicate"] is True
    assert _post_event(client, ignored, clock).status_code == 200
    assert _post_event(client, ignored, clock, "whsec_wrong").status_code == 400
    assert client.post("/v1/webhooks/nope", content=early).status_code == 404

    clock.advance(90)  # both apply jobs have been due for 90 s
    samples = scrape(client, ops)
    received = "kassa_webhook_events_received_total"
    assert value(samples, received, provider="mock", result="new") == 2
    assert value(samples, received, provider="mock", result="duplicate") == 1
    assert value(samples, received, provider="mock", result="rejected") == 1
    assert labels_of(samples, received, "provider") == {"mock"}  # no series for "nope"
    assert value(samples, "kassa_provider_events", provider="mock", state="pending") == 2
    assert value(samples, "kassa_jobs", kind=APPLY_EVENT, state="queued") == 2
    assert value(samples, "kassa_jobs", kind=APPLY_EVENT, state="running") == 0
    assert value(samples, "kassa_jobs_oldest_queued_age_seconds") == 90

    # The worker applies the ignorable event; the early one waits for its payment
    # (RetryLater: queued again, not due until its backoff is over).
    Worker(shop, name="w").drain()
    samples = scrape(client, ops)
    assert value(samples, "kassa_provider_events", provider="mock", state="ignored") == 1
    assert value(samples, "kassa_provider_events", provider="mock", state="pending") == 1
    assert value(samples, "kassa_jobs", kind=APPLY_EVENT, state="queued") == 1  # done: not counted
    assert value(samples, "kassa_jobs_oldest_queued_age_seconds") == 0  # backing off

    clock.advance(120)  # past the backoff (at most 2 s for a first retry)
    age = value(scrape(client, ops), "kassa_jobs_oldest_queued_age_seconds")
    assert 118 <= age <= 120, age

    # An applied event: a browser payment finished by its provider's event.
    payment = _pay(client, keys)
    body = event(
        "evt_paid",
        "payment_intent.succeeded",
        intent(payment["provider_payment_id"], payment["id"], 1000),
    )
    assert _post_event(client, body, clock).status_code == 200
    with shop.db.transaction() as s:  # the early event's job gives up: a dead letter
        s.execute(update(Job).where(Job.kind == APPLY_EVENT, Job.state == "queued",
                                    Job.attempts > 0).values(state="dead"))  # fmt: skip
    Worker(shop, name="w").drain()
    samples = scrape(client, ops)
    assert value(samples, "kassa_provider_events", provider="mock", state="applied") == 1
    assert value(samples, "kassa_payments", provider="mock", status="succeeded") == 1
    assert value(samples, "kassa_jobs", kind=APPLY_EVENT, state="dead") == 1
    assert value(samples, "kassa_jobs", kind=APPLY_EVENT, state="queued") == 0


def test_event_states_in_sql_are_the_services_outcome_classes(kassa: Kassa) -> None:
    """The scrape's SQL classes every stored outcome as `outcome_class` does."""
    outcomes = [
        None,
        "payment succeeded",
        "already succeeded",
        "already disputed",
        "ignored: not an event kassa acts on",
        "ignored: payment failed",
        "refused: payment pay_x was not made at mock",
        "2 refund(s) recorded",
        "order flagged disputed",
        "ignored_% with LIKE's wildcards",
    ]
    now = kassa.clock()
    with kassa.db.transaction() as s:
        s.execute(
            insert(ProviderEvent),
            [
                {
                    "provider": "mock",
                    "event_id": f"evt_{i}",
                    "type": "t",
                    "payload": {},
                    "signed_at": now,
                    "received_at": now,
                    "applied_at": None if outcome is None else now,
                    "outcome": outcome,
                    "deliveries": 1,
                }
                for i, outcome in enumerate(outcomes)
            ],
        )
    expected = Counter(outcome_class(o is not None, o) for o in outcomes)
    assert set(expected) == set(EVENT_STATES)
    snapshot = kassa.metrics.read(webhook_providers=["mock"])
    assert {state: snapshot.events[("mock", state)] for state in EVENT_STATES} == expected


def test_oldest_queued_age_counts_only_due_jobs(kassa: Kassa, clock: FakeClock) -> None:
    from kassa.storage.outbox import enqueue

    with kassa.db.transaction() as s:
        enqueue(s, "k.later", {}, clock.now, run_after=clock.now + timedelta(hours=1))
        enqueue(s, "k.now", {}, clock.now)
        enqueue(s, "k.earlier", {}, clock.now, run_after=clock.now - timedelta(seconds=30))
    snapshot = kassa.metrics.read(job_kinds=["k.none"])
    assert snapshot.oldest_due_job_s == 30
    assert snapshot.jobs[("k.later", "queued")] == 1
    assert snapshot.jobs[("k.none", "dead")] == 0  # named kinds are reported from 0
    clock.advance(7200)
    assert kassa.metrics.read().oldest_due_job_s == 7230
