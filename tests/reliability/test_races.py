"""Real races: many clients at once against a server running in two processes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockCharge
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import Order, Product
from tests.conftest import Keys, LiveServer


def _fire(n: int, send: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """Send `n` requests from `n` threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            return send(http)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def _orders(kassa: Kassa) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).select_from(Order)) or 0)


def test_50_concurrent_identical_posts_make_exactly_one_order(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR", stock=None))
    body = {
        "email": "race@example.com",
        "currency": "EUR",
        "lines": [{"sku": "MUG", "quantity": 1}],
    }
    headers = keys.headers("storefront", **{"Idempotency-Key": "one-order-please"})

    responses = _fire(
        50, lambda h: h.post(live_server.url + "/v1/orders", json=body, headers=headers)
    )

    assert _orders(kassa) == 1
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1
    assert all(r.content == originals[0].content for r in created)
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_key_in_use"
    # once settled, a retry always replays
    with httpx.Client() as http:
        after = http.post(live_server.url + "/v1/orders", json=body, headers=headers)
    assert after.content == originals[0].content
    assert after.headers["idempotent-replayed"] == "true"


def test_64_concurrent_orders_for_one_unique_item_exactly_one_wins(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("VASE", "Vase", 18500, "EUR", unique=True))

    def buy(http: httpx.Client) -> httpx.Response:
        return http.post(
            live_server.url + "/v1/orders",
            json={
                "email": "b@example.com",
                "currency": "EUR",
                "lines": [{"sku": "VASE", "quantity": 1}],
            },
            headers=keys.headers("storefront"),
        )

    responses = _fire(64, buy)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 1, 409: 63}), statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"item_unavailable"}
    winner = next(r.json() for r in responses if r.status_code == 201)
    with kassa.db.transaction(read_only=True) as s:
        vase = s.scalar(select(Product).where(Product.sku == "VASE"))
        assert vase is not None
        assert (vase.status, vase.reserved_by_order) == ("reserved", winner["id"])
    assert _orders(kassa) == 1


def test_concurrent_cancels_settle_once(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("VASE", "Vase", 18500, "EUR", unique=True))
    with httpx.Client() as http:
        order = http.post(
            live_server.url + "/v1/orders",
            json={
                "email": "c@example.com",
                "currency": "EUR",
                "lines": [{"sku": "VASE", "quantity": 1}],
            },
            headers=keys.headers("ops"),
        ).json()
    responses = _fire(
        16,
        lambda h: h.post(
            f"{live_server.url}/v1/orders/{order['id']}/cancel", headers=keys.headers("ops")
        ),
    )
    assert Counter(r.status_code for r in responses) == Counter({200: 1, 409: 15})
    audit = kassa.audit.list(limit=100, subject_id=order["id"], action="order.canceled")
    assert len(audit.data) == 1


def test_16_concurrent_payments_of_one_order_charge_once(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR", stock=None))
    with httpx.Client() as http:
        order = http.post(
            live_server.url + "/v1/orders",
            json={
                "email": "p@example.com",
                "currency": "EUR",
                "lines": [{"sku": "MUG", "quantity": 1}],
            },
            headers=keys.headers("storefront"),
        ).json()
    responses = _fire(
        16,
        lambda h: h.post(
            f"{live_server.url}/v1/orders/{order['id']}/payments",
            json={"payment_method": "pm_card_visa"},
            headers=keys.headers("storefront"),
        ),
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1 and statuses[201] + statuses[409] == 16, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {
        "payment_in_progress",
        "order_not_pending",
    }
    with kassa.db.transaction(read_only=True) as s:
        charged = s.scalar(
            select(func.count()).select_from(MockCharge).where(MockCharge.order_ref == order["id"])
        )
        paid = s.scalar(select(Order.amount_paid).where(Order.id == order["id"]))
    assert charged == 1
    assert paid == 1450


def test_64_buyers_of_the_last_10_units_never_oversell(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("LAST10", "Last ten", 2500, "EUR", stock=10))
    body = {
        "email": "b@example.com",
        "currency": "EUR",
        "lines": [{"sku": "LAST10", "quantity": 1}],
    }
    created = _fire(
        64,
        lambda h: h.post(
            live_server.url + "/v1/orders", json=body, headers=keys.headers("storefront")
        ),
    )
    assert [r.status_code for r in created] == [201] * 64
    ids = iter([r.json()["id"] for r in created])
    lock = threading.Lock()

    def buy(http: httpx.Client) -> httpx.Response:
        with lock:
            order_id = next(ids)
        return http.post(
            f"{live_server.url}/v1/orders/{order_id}/payments",
            json={"payment_method": "pm_card_visa"},
            headers=keys.headers("storefront"),
        )

    paid = _fire(64, buy)
    assert all(r.status_code == 201 and r.json()["status"] == "succeeded" for r in paid)
    with kassa.db.transaction(read_only=True) as s:
        stock = s.scalar(select(Product.stock).where(Product.sku == "LAST10"))
        orders = s.execute(select(Order.status, Order.stock_shortage)).all()
    assert stock == 0
    assert Counter(orders) == Counter({("paid", False): 10, ("paid", True): 54})
