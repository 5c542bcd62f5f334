"""A database outage (api-contract.md, Operations v1.1): every route answers 503
`database_unavailable` as problem+json with `Retry-After`, `/healthz` included; an
Idempotency-Key is never left locked by a request the outage killed; kassa recovers by
itself when the database is back, and the worker rides the outage out.

The in-process tests make the engine's connect fail (both databases); the live tests
take a real PostgreSQL database away from a running server.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.context import RequestContext
from kassa.services.jobs import JobHandler
from kassa.storage.migrate import upgrade
from kassa.worker import Worker
from tests.conftest import PG_ADMIN_URL, Keys, allow_connections, start_server, stop_server

PROBLEM_JSON = "application/problem+json"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert body["status"] == 503
    assert body["type"].endswith("/database_unavailable")
    assert int(response.headers["retry-after"]) > 0


class Outage:
    """Makes every new connection of a Kassa's engine fail the way its driver does when
    the server is gone, and drops the pooled ones."""

    def __init__(self, kassa: Kassa) -> None:
        self.kassa = kassa
        self.down = False
        event.listen(kassa.db.engine, "do_connect", self._connect)

    def _connect(self, *_: Any) -> None:
        if not self.down:
            return
        if self.kassa.db.is_sqlite:
            raise sqlite3.OperationalError("unable to open database file")
        raise psycopg.OperationalError("connection failed: Connection refused")

    def begin(self) -> None:
        self.down = True
        self.kassa.db.engine.dispose()

    def end(self) -> None:
        self.down = False


@pytest.fixture
def outage(kassa: Kassa) -> Outage:
    return Outage(kassa)


def _product_and_order_body(client: TestClient, keys: Keys) -> dict[str, Any]:
    product = {"sku": "MUG", "title": "Mug", "unit_amount": 1200, "currency": "EUR"}
    created = client.post("/v1/products", json=product, headers=keys.headers("ops"))
    assert created.status_code == 201, created.text
    return {"currency": "EUR", "email": "a@example.com", "lines": [{"sku": "MUG", "quantity": 1}]}


# -- in process ---------------------------------------------------------------------------


def test_every_route_answers_503_while_the_database_is_away_and_recovers(
    client: TestClient, keys: Keys, outage: Outage
) -> None:
    body = _product_and_order_body(client, keys)
    order = client.post("/v1/orders", json=body, headers=keys.headers("storefront")).json()
    outage.begin()
    idem = keys.headers("storefront", **{"Idempotency-Key": "outage-1"})
    assert_unavailable(client.get("/v1/products", headers=keys.headers("ops")))
    assert_unavailable(client.post("/v1/orders", json=body, headers=idem))
    assert_unavailable(client.get("/healthz"))
    assert_unavailable(client.get(f"/v1/orders/{order['id']}", headers=keys.headers("admin")))
    outage.end()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/products", headers=keys.headers("ops")).status_code == 200
    retried = client.post("/v1/orders", json=body, headers=idem)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers


def test_a_key_claimed_before_the_database_died_is_free_for_the_retry(
    client: TestClient, keys: Keys, kassa: Kassa, outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim commits, then the database goes away before the order is written (and
    before the claim can be released): the retry once it is back must run, not 409."""
    body = _product_and_order_body(client, keys)
    create = kassa.orders.create

    def dies_first(ctx: RequestContext, new: Any) -> Any:
        outage.begin()
        return create(ctx, new)

    monkeypatch.setattr(kassa.orders, "create", dies_first)
    idem = keys.headers("storefront", **{"Idempotency-Key": "outage-2"})
    assert_unavailable(client.post("/v1/orders", json=body, headers=idem))
    monkeypatch.setattr(kassa.orders, "create", create)
    outage.end()
    retried = client.post("/v1/orders", json=body, headers=idem)
    assert retried.status_code == 201, retried.text
    replay = client.post("/v1/orders", json=body, headers=idem)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == retried.json()["id"]


def test_a_claim_the_outage_kept_is_released_in_the_background(
    client: TestClient, keys: Keys, kassa: Kassa, outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only by the next request on the same process: another process retrying the
    key must find it free, so the release may not wait for one."""
    body = _product_and_order_body(client, keys)
    create = kassa.orders.create

    def dies_first(ctx: RequestContext, new: Any) -> Any:
        outage.begin()
        return create(ctx, new)

    monkeypatch.setattr(kassa.orders, "create", dies_first)
    idem = keys.headers("storefront", **{"Idempotency-Key": "outage-3"})
    assert_unavailable(client.post("/v1/orders", json=body, headers=idem))
    monkeypatch.setattr(kassa.orders, "create", create)
    outage.end()
    other = Kassa(kassa.settings, clock=kassa.clock)  # another process, same database
    try:
        with TestClient(_app(other)) as elsewhere:
            deadline = time.monotonic() + 5
            while True:
                retried = elsewhere.post("/v1/orders", json=body, headers=idem)
                if retried.status_code != 409 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        other.close()
    assert retried.status_code == 201, retried.text


def _app(kassa: Kassa) -> Any:
    from kassa.api.app import create_app

    return create_app(kassa)


def test_the_worker_rides_out_an_outage_with_one_line_per_cycle(
    kassa: Kassa, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    ran = threading.Event()
    kassa.jobs.enqueue("test.outage", {})
    worker = Worker(
        kassa,
        poll_s=0.01,
        max_backoff_s=0.2,
        handlers={"test.outage": JobHandler(lambda _session, _payload: ran.set())},
    )
    caplog.set_level(logging.INFO, logger="kassa.worker")
    outage.begin()
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert failures, "the worker said nothing about the outage"
        assert all(r.exc_info is None for r in failures), "a traceback per cycle"
        assert all("\n" not in r.getMessage() for r in failures)
        assert len(failures) <= 15, f"{len(failures)} lines in a second: no back-off"
        assert not ran.is_set()
        outage.end()
        assert ran.wait(5), "the worker did not resume when the database came back"
    finally:
        worker.stop()
        thread.join(5)


# -- a real outage of a real PostgreSQL ---------------------------------------------------


def test_a_live_server_answers_503_in_a_real_outage_and_recovers(
    own_pg_database: str, capfd: pytest.CaptureFixture[str]
) -> None:
    core = Kassa(Settings(database_url=own_pg_database))
    try:
        _, ops = core.api_keys.create(RequestContext.system("test"), "ops", "ops")
        _, shop = core.api_keys.create(RequestContext.system("test"), "storefront", "shop")
    finally:
        core.close()
    server = start_server(own_pg_database, workers=1)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            auth_ops = {"Authorization": f"Bearer {ops}"}
            auth_shop = {"Authorization": f"Bearer {shop}"}
            product = {"sku": "MUG", "title": "Mug", "unit_amount": 1200, "currency": "EUR"}
            assert http.post("/v1/products", json=product, headers=auth_ops).status_code == 201
            body = {
                "currency": "EUR",
                "email": "a@example.com",
                "lines": [{"sku": "MUG", "quantity": 1}],
            }
            order = http.post("/v1/orders", json=body, headers=auth_shop)
            assert order.status_code == 201, order.text
            idem = {**auth_shop, "Idempotency-Key": "live-outage-1"}

            allow_connections(own_pg_database, False)
            for _ in range(2):  # each of the two server processes, pooled connections dead
                assert_unavailable(http.get("/v1/products", headers=auth_ops))
                assert_unavailable(http.post("/v1/orders", json=body, headers=idem))
                assert_unavailable(http.get("/healthz"))
                assert_unavailable(http.get(f"/v1/orders/{order.json()['id']}", headers=auth_shop))

            allow_connections(own_pg_database, True)
            assert http.get("/healthz").status_code == 200
            for _ in range(2):
                assert http.get("/v1/products", headers=auth_ops).status_code == 200
            again = http.get(f"/v1/orders/{order.json()['id']}", headers=auth_shop)
            assert again.status_code == 200, again.text
            retried = http.post("/v1/orders", json=body, headers=idem)
            assert retried.status_code == 201, retried.text
            replay = http.post("/v1/orders", json=body, headers=idem)
            assert replay.status_code == 201 and replay.json()["id"] == retried.json()["id"]
    finally:
        allow_connections(own_pg_database, True)
        stop_server(server)
    logged = capfd.readouterr().err  # the server's own stderr
    assert "Traceback" not in logged and "Exception in ASGI application" not in logged, logged


# -- a database without kassa's schema ----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}")
    name = f"kassa_unmigrated_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unmigrated_database_is_503_database_not_migrated(unmigrated_url: str) -> None:
    core = Kassa(Settings(database_url=unmigrated_url))
    try:
        with TestClient(_app(core)) as client:
            for response in (
                client.get("/healthz"),
                client.get("/v1/products", headers={"Authorization": "Bearer kassa_sk_x"}),
            ):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith(PROBLEM_JSON)
                assert response.json()["code"] == "database_not_migrated"
                assert "kassa migrate" in response.json()["detail"]
            upgrade(unmigrated_url)
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        core.close()
