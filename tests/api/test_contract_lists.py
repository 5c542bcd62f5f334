"""Contract tests for "Lists, everywhere (v1.1)" (api-contract.md).

Every list is `{"object": "list", "data": [...], "has_more": bool}`, newest first, with
`limit`/`starting_after`; every resource carries `object`. New lists of customers,
payments, refunds, invoices and credit notes (analyst+), the payments and refunds of one
order (a storefront key may list the payments of its own orders), and `created[gte]` /
`created[lt]` on orders, payments, refunds, invoices and credit notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kassa.bootstrap import Kassa
from kassa.domain.ids import new_id
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import Refund
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys

PROBLEM_JSON = "application/problem+json"
HOUR = 3600


# -- helpers ------------------------------------------------------------------------------


def get(client: TestClient, keys: Keys, path: str, role: str = "analyst", **params: Any) -> Any:
    response = client.get(path, params=params, headers=keys.headers(role))
    assert response.status_code == 200, response.text
    return response.json()


def ids(
    client: TestClient, keys: Keys, path: str, role: str = "analyst", **params: Any
) -> list[str]:
    body = get(client, keys, path, role, **params)
    assert body["object"] == "list" and body["has_more"] is False, body
    return [item["id"] for item in body["data"]]


def new_order(client: TestClient, keys: Keys, role: str = "ops", **buyer: str) -> str:
    placed = builders.order(
        client, keys, role, lines=[("MUG", 3)], **(buyer or {"email": "ada@example.com"})
    )
    return str(placed["id"])


def pay(
    client: TestClient, keys: Keys, order_id: str, role: str = "ops", **body: str
) -> dict[str, Any]:
    return builders.pay(client, keys, order_id, role, **body)


def refund(client: TestClient, keys: Keys, order_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=keys.headers("ops"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class World:
    """Three hours of business, one per hour (t0, t0 + 1 h, t0 + 2 h):
    - hour 0: order `a` (ops) paid by card (`pay_a`), refunded 1000 (`re_a`, a credit note);
    - hour 1: order `b` (storefront) declined (`pay_b_failed`), then paid (`pay_b`);
    - hour 2: customer `cus` tops up her wallet (`pay_top_up`), pays order `c` from it
      (`pay_c`, provider wallet) and gets 500 back to the wallet (`re_c`).
    Every order that was paid has its invoice, issued in the hour it was paid."""

    t0: datetime
    a: str
    b: str
    c: str
    cus: str
    pay_a: str
    pay_b_failed: str
    pay_b: str
    pay_top_up: str
    pay_c: str
    re_a: str
    re_c: str


@pytest.fixture
def world(
    kassa: Kassa, system: RequestContext, client: TestClient, keys: Keys, clock: FakeClock
) -> World:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    worker = Worker(kassa, name="test-worker")
    t0 = clock.now
    a = new_order(client, keys)
    pay_a = pay(client, keys, a)["id"]
    re_a = refund(client, keys, a, amount=1000)["id"]
    worker.drain()

    clock.now = t0 + timedelta(seconds=HOUR)
    b = new_order(client, keys, "storefront", email="bob@example.com")
    failed = pay(client, keys, b, "storefront", payment_method="pm_card_chargeDeclined")
    assert failed["status"] == "failed"
    pay_b = pay(client, keys, b, "storefront")["id"]
    worker.drain()

    clock.now = t0 + timedelta(seconds=2 * HOUR)
    cus = client.post(
        "/v1/customers",
        json={"email": "Mixed.Case@Example.com", "name": "Mix"},
        headers=keys.headers("ops"),
    ).json()["id"]
    top_up = client.post(
        f"/v1/customers/{cus}/wallet/top-ups",
        json={"amount": 5000, "currency": "EUR", "payment_method": "pm_card_visa"},
        headers=keys.headers("ops"),
    ).json()
    assert top_up["status"] == "succeeded", top_up
    c = new_order(client, keys, customer=cus)
    pay_c = pay(client, keys, c, provider="wallet")["id"]
    re_c = refund(client, keys, c, amount=500)["id"]
    worker.drain()
    return World(t0, a, b, c, cus, pay_a, failed["id"], pay_b, top_up["id"], pay_c, re_a, re_c)


def hours(w: World, start: int, end: int) -> dict[str, str]:
    """`created[gte]` at hour `start`, `created[lt]` at hour `end` (from t0)."""
    return {
        "created[gte]": rfc3339(w.t0 + timedelta(seconds=start * HOUR)),
        "created[lt]": rfc3339(w.t0 + timedelta(seconds=end * HOUR)),
    }


def invoice_ids(client: TestClient, keys: Keys, *orders: str) -> list[str]:
    return [get(client, keys, f"/v1/orders/{order}/invoice")["id"] for order in orders]


def credit_note_ids(client: TestClient, keys: Keys, order: str) -> list[str]:
    return [n["id"] for n in get(client, keys, f"/v1/orders/{order}/credit-notes")["data"]]


# -- the shape ----------------------------------------------------------------------------


def test_every_list_and_every_resource_says_what_it_is(
    world: World, client: TestClient, keys: Keys
) -> None:
    w = world
    lists: dict[str, str] = {
        "/v1/products": "product",
        "/v1/customers": "customer",
        "/v1/orders": "order",
        "/v1/payments": "payment",
        "/v1/refunds": "refund",
        "/v1/invoices": "invoice",
        "/v1/credit-notes": "credit_note",
        f"/v1/orders/{w.a}/payments": "payment",
        f"/v1/orders/{w.a}/refunds": "refund",
        f"/v1/orders/{w.a}/credit-notes": "credit_note",
        "/v1/audit": "audit_record",
        "/v1/gateways/health": "gateway_health",
        "/v1/providers/mock/charges": "mock_charge",
        "/v1/providers/mock/refunds": "mock_refund",
    }
    for path, kind in lists.items():
        body = get(client, keys, path, "admin")
        assert set(body) == {"object", "data", "has_more"}, (path, body)
        assert body["object"] == "list" and isinstance(body["has_more"], bool), path
        assert body["data"], f"{path} listed nothing"
        assert {item["object"] for item in body["data"]} == {kind}, path
    single: dict[str, str] = {
        f"/v1/orders/{w.a}": "order",
        f"/v1/payments/{w.pay_a}": "payment",
        f"/v1/refunds/{w.re_a}": "refund",
        f"/v1/customers/{w.cus}": "customer",
        "/v1/products/MUG": "product",
        f"/v1/orders/{w.a}/invoice": "invoice",
        f"/v1/customers/{w.cus}/wallet": "wallet",
        "/v1/analytics/payments": "payment_analytics",
    }
    for path, kind in single.items():
        assert get(client, keys, path, "admin")["object"] == kind, path
    wallet = get(client, keys, f"/v1/customers/{w.cus}/wallet")
    assert {e["object"] for e in wallet["entries"]} == {"wallet_entry"}
    health = get(client, keys, "/v1/gateways/health")
    assert health["has_more"] is False
    assert "mock" in {h["provider"] for h in health["data"]}
    for h in health["data"]:
        assert set(h) >= {
            "object", "provider", "state", "window_s", "attempts", "success_rate",
            "failure_rate", "avg_latency_ms", "p95_latency_ms",
        }  # fmt: skip


def test_openapi_documents_object_and_the_time_filters(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["PaymentOut"]["properties"]["object"]["const"] == "payment"
    listed = next(s for name, s in schemas.items() if name.startswith("ListOf_PaymentOut"))
    assert listed["properties"]["object"]["const"] == "list"
    params = {p["name"] for p in spec["paths"]["/v1/payments"]["get"]["parameters"]}
    assert {"created[gte]", "created[lt]", "order", "status", "provider"} <= params
    for path in ("/v1/orders", "/v1/refunds", "/v1/invoices", "/v1/credit-notes"):
        names = {p["name"] for p in spec["paths"][path]["get"]["parameters"]}
        assert {"created[gte]", "created[lt]", "limit", "starting_after"} <= names, path


# -- each list and its filters ------------------------------------------------------------


def test_customers_by_email_whatever_its_case(world: World, client: TestClient, keys: Keys) -> None:
    other = client.post(
        "/v1/customers", json={"email": "zed@example.com"}, headers=keys.headers("ops")
    ).json()["id"]
    assert ids(client, keys, "/v1/customers") == [other, world.cus]
    for email in ("mixed.case@example.com", "MIXED.CASE@EXAMPLE.COM", "Mixed.Case@Example.com"):
        assert ids(client, keys, "/v1/customers", email=email) == [world.cus], email
    assert ids(client, keys, "/v1/customers", email="nobody@example.com") == []
    listed = get(client, keys, "/v1/customers", email="zed@example.com")["data"][0]
    assert set(listed) == {"id", "object", "email", "name", "created_at"}


def test_payments_by_order_status_and_provider(
    world: World, client: TestClient, keys: Keys
) -> None:
    w = world
    everything = [w.pay_c, w.pay_top_up, w.pay_b, w.pay_b_failed, w.pay_a]
    assert ids(client, keys, "/v1/payments") == everything
    assert ids(client, keys, "/v1/payments", order=w.b) == [w.pay_b, w.pay_b_failed]
    assert ids(client, keys, "/v1/payments", status="failed") == [w.pay_b_failed]
    assert ids(client, keys, "/v1/payments", provider="wallet") == [w.pay_c]
    assert ids(client, keys, "/v1/payments", provider="mock", status="succeeded") == [
        w.pay_top_up, w.pay_b, w.pay_a
    ]  # fmt: skip
    assert ids(client, keys, "/v1/payments", provider="stripe") == []
    assert ids(client, keys, "/v1/payments", order="ord_unknown") == []
    # the list shows what GET shows, attempts included
    listed = get(client, keys, "/v1/payments", order=w.a)["data"][0]
    assert listed == get(client, keys, f"/v1/payments/{w.pay_a}")
    assert [a["number"] for a in listed["attempts"]] == [1, 2]
    bad = client.get("/v1/payments?status=lost", headers=keys.headers("analyst"))
    assert bad.status_code == 422


def test_refunds_by_order_and_status(
    world: World, kassa: Kassa, client: TestClient, keys: Keys
) -> None:
    w = world
    assert ids(client, keys, "/v1/refunds") == [w.re_c, w.re_a]
    assert ids(client, keys, "/v1/refunds", order=w.a) == [w.re_a]
    assert ids(client, keys, "/v1/refunds", status="succeeded") == [w.re_c, w.re_a]
    assert ids(client, keys, "/v1/refunds", status="pending") == []
    listed = get(client, keys, "/v1/refunds", order=w.a)["data"][0]
    assert listed == get(client, keys, f"/v1/refunds/{w.re_a}")
    # A refund's status is its parts': give re_c a second part still pending, and fail re_a.
    with kassa.db.transaction() as session:
        session.execute(update(Refund).where(Refund.id == w.re_a).values(status="failed"))
        head = session.scalars(select(Refund).where(Refund.id == w.re_c)).one()
        session.add(
            Refund(
                id=new_id("re"),
                order_id=w.c,
                payment_id=head.payment_id,
                amount=100,
                currency="EUR",
                status="pending",
                destination=head.destination,
                origin="kassa",
                group_id=w.re_c,
                created_at=head.created_at,
            )
        )
        session.execute(update(Refund).where(Refund.id == w.re_c).values(group_id=w.re_c))
    assert ids(client, keys, "/v1/refunds") == [w.re_c, w.re_a]  # a part is not a refund
    assert ids(client, keys, "/v1/refunds", status="pending") == [w.re_c]
    assert ids(client, keys, "/v1/refunds", status="failed") == [w.re_a]
    assert ids(client, keys, "/v1/refunds", status="succeeded") == []
    assert get(client, keys, "/v1/refunds")["data"][0]["amount"] == 600
    assert ids(client, keys, f"/v1/orders/{w.c}/refunds") == [w.re_c]


def test_invoices_and_credit_notes_by_order(world: World, client: TestClient, keys: Keys) -> None:
    w = world
    inv_a, inv_b, inv_c = invoice_ids(client, keys, w.a, w.b, w.c)
    assert ids(client, keys, "/v1/invoices") == [inv_c, inv_b, inv_a]
    assert ids(client, keys, "/v1/invoices", order=w.b) == [inv_b]
    (cn_a,) = credit_note_ids(client, keys, w.a)
    (cn_c,) = credit_note_ids(client, keys, w.c)
    assert ids(client, keys, "/v1/credit-notes") == [cn_c, cn_a]
    assert ids(client, keys, "/v1/credit-notes", order=w.a) == [cn_a]
    assert ids(client, keys, "/v1/credit-notes", order=w.b) == []
    listed = get(client, keys, "/v1/invoices", order=w.a)["data"][0]
    assert listed == get(client, keys, f"/v1/invoices/{inv_a}")
    # the JSON of one document stays under its own kind
    wrong = client.get(f"/v1/credit-notes/{inv_a}", headers=keys.headers("analyst"))
    assert wrong.status_code == 404


def test_the_payments_and_refunds_of_one_order(
    world: World, client: TestClient, keys: Keys
) -> None:
    w = world
    assert ids(client, keys, f"/v1/orders/{w.b}/payments") == [w.pay_b, w.pay_b_failed]
    assert ids(client, keys, f"/v1/orders/{w.c}/payments") == [w.pay_c]
    assert ids(client, keys, f"/v1/orders/{w.b}/refunds") == []
    assert ids(client, keys, f"/v1/orders/{w.a}/refunds") == [w.re_a]
    for path in ("/v1/orders/ord_unknown/payments", "/v1/orders/ord_unknown/refunds"):
        response = client.get(path, headers=keys.headers("admin"))
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert response.json()["code"] == "order_not_found"


# -- time filters -------------------------------------------------------------------------


def test_created_filters_select_by_creation_time(
    world: World, client: TestClient, keys: Keys
) -> None:
    w = world
    inv_a, inv_b, inv_c = invoice_ids(client, keys, w.a, w.b, w.c)
    (cn_a,) = credit_note_ids(client, keys, w.a)
    (cn_c,) = credit_note_ids(client, keys, w.c)
    expected: dict[str, dict[tuple[int, int], list[str]]] = {
        "/v1/orders": {(0, 1): [w.a], (1, 2): [w.b], (1, 3): [w.c, w.b], (3, 4): []},
        "/v1/payments": {
            (0, 1): [w.pay_a],
            (1, 2): [w.pay_b, w.pay_b_failed],
            (2, 3): [w.pay_c, w.pay_top_up],
        },
        "/v1/refunds": {(0, 1): [w.re_a], (1, 2): [], (0, 3): [w.re_c, w.re_a]},
        "/v1/invoices": {(0, 1): [inv_a], (1, 2): [inv_b], (1, 3): [inv_c, inv_b]},
        "/v1/credit-notes": {(0, 1): [cn_a], (1, 3): [cn_c]},
    }
    for path, cases in expected.items():
        for (start, end), want in cases.items():
            assert ids(client, keys, path, **hours(w, start, end)) == want, (path, start, end)
        # the bounds: gte includes its instant, lt excludes it; either may be alone
        at_one = rfc3339(w.t0 + timedelta(seconds=HOUR))
        after = ids(client, keys, path, **{"created[gte]": at_one})
        before = ids(client, keys, path, **{"created[lt]": at_one})
        assert sorted(after + before) == sorted(ids(client, keys, path)), path
        assert not set(after) & set(before), path
    # an offset other than Z means the same instant
    plus_two = (w.t0 + timedelta(seconds=HOUR)).astimezone(timezone(timedelta(hours=2)))
    assert plus_two.isoformat().endswith("+02:00")
    assert ids(client, keys, "/v1/orders", **{"created[gte]": plus_two.isoformat()}) == [w.c, w.b]
    # the filters combine with the others
    assert ids(
        client, keys, "/v1/payments", status="failed", **hours(w, 0, 1)
    ) == []  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-11-25",  # a date is not a date-time
        "2026-11-25T10:00:00",  # no offset
        "2026-13-01T00:00:00Z",  # no such month
        "1700000000",  # not a Unix time either
    ],
)
def test_a_bad_time_is_a_422_naming_the_field(client: TestClient, keys: Keys, value: str) -> None:
    for path in ("/v1/orders", "/v1/payments", "/v1/refunds", "/v1/invoices", "/v1/credit-notes"):
        for name in ("created[gte]", "created[lt]"):
            response = client.get(path, params={name: value}, headers=keys.headers("analyst"))
            assert response.status_code == 422, (path, name, response.text)
            assert response.headers["content-type"].startswith(PROBLEM_JSON)
            body = response.json()
            assert body["code"] == "validation_error"
            assert [e["field"] for e in body["errors"]] == [name], body


# -- pagination ---------------------------------------------------------------------------


def walk(
    client: TestClient, keys: Keys, path: str, role: str = "analyst", **params: Any
) -> tuple[list[str], list[bool]]:
    seen: list[str] = []
    flags: list[bool] = []
    after: str | None = None
    while True:
        query = {**params, "limit": 2, **({"starting_after": after} if after else {})}
        body = get(client, keys, path, role, **query)
        assert body["object"] == "list" and len(body["data"]) <= 2
        seen += [item["id"] for item in body["data"]]
        flags.append(body["has_more"])
        if not body["has_more"]:
            return seen, flags
        after = seen[-1]


def test_cursor_pagination_on_the_new_lists(world: World, client: TestClient, keys: Keys) -> None:
    w = world
    for extra in range(3):
        client.post(
            "/v1/customers", json={"email": f"p{extra}@example.com"}, headers=keys.headers("ops")
        )
    for path, params in [
        ("/v1/customers", {}),
        ("/v1/payments", {}),
        ("/v1/payments", {"provider": "mock"}),
        ("/v1/invoices", {}),
        (f"/v1/orders/{w.b}/payments", {}),
        ("/v1/refunds", {}),
        ("/v1/orders", hours(w, 0, 3)),
    ]:
        everything = ids(client, keys, path, **params)
        seen, flags = walk(client, keys, path, **params)
        assert seen == everything, path
        pages = -(-len(everything) // 2)
        assert flags == [True] * (pages - 1) + [False], (path, flags)
    one = get(client, keys, "/v1/payments", limit=1)
    assert (len(one["data"]), one["has_more"]) == (1, True)
    # a cursor that names nothing in that list is a 422
    for path, cursor in [
        ("/v1/payments", "pay_unknown"),
        ("/v1/refunds", w.pay_a),
        (f"/v1/orders/{w.a}/payments", w.pay_b),
        ("/v1/credit-notes", invoice_ids(client, keys, w.a)[0]),
    ]:
        response = client.get(
            path, params={"starting_after": cursor}, headers=keys.headers("analyst")
        )
        assert (response.status_code, response.json()["code"]) == (422, "invalid_cursor"), path
    assert client.get("/v1/payments?limit=0", headers=keys.headers("analyst")).status_code == 422
    assert client.get("/v1/refunds?limit=101", headers=keys.headers("analyst")).status_code == 422


# -- who may list -------------------------------------------------------------------------


def test_storefront_keys_get_403_on_the_staff_lists(
    world: World, client: TestClient, keys: Keys
) -> None:
    staff_lists = [
        "/v1/customers",
        "/v1/payments",
        "/v1/refunds",
        "/v1/invoices",
        "/v1/credit-notes",
        f"/v1/orders/{world.b}/refunds",
    ]
    for path in staff_lists:
        response = client.get(path, headers=keys.headers("storefront"))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "insufficient_role"
        for role in ("analyst", "ops", "admin"):
            assert client.get(path, headers=keys.headers(role)).status_code == 200, (path, role)
    assert client.get("/v1/payments").status_code == 401


def test_a_storefront_key_lists_the_payments_of_its_own_orders_only(
    world: World, client: TestClient, keys: Keys
) -> None:
    w = world
    own = ids(client, keys, f"/v1/orders/{w.b}/payments", "storefront")
    assert own == [w.pay_b, w.pay_b_failed]
    walked, _ = walk(client, keys, f"/v1/orders/{w.b}/payments", "storefront")
    assert walked == own
    for role, order in [("storefront", w.a), ("other_storefront", w.b)]:
        response = client.get(f"/v1/orders/{order}/payments", headers=keys.headers(role))
        assert response.status_code == 404, (role, order)
        assert response.json()["code"] == "order_not_found"
    # its own order's list does not reveal other payments through the cursor
    probe = client.get(
        f"/v1/orders/{w.b}/payments",
        params={"starting_after": w.pay_a},
        headers=keys.headers("storefront"),
    )
    assert probe.status_code == 422
