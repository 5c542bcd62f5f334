"""Contract tests for `/v1/orders` (api-contract.md: Conventions, Orders).

Prices come from the catalogue, lines keep a snapshot, unique items are reserved for
the reservation TTL (30 min in the test settings), and the status machine is
`pending -> paid -> fulfilled`, `pending -> canceled`; anything else is 409
`invalid_order_transition`. Storefront keys see only their own orders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kassa.bootstrap import Kassa
from kassa.services.context import RequestContext
from tests.conftest import FakeClock, Keys
from tests.support import force_paid

PROBLEM_JSON = "application/problem+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")
ORDER_FIELDS = {
    "id", "number", "status", "currency", "subtotal", "total", "amount_paid",
    "amount_refunded", "refund_status", "refunded_at", "stock_shortage", "customer", "email",
    "lines", "created_at", "paid_at",
}  # fmt: skip
LINE_FIELDS = {"sku", "title", "unit_amount", "quantity", "amount", "product_status"}
TTL_S = 1800

Lines = Sequence[tuple[str, int]]


# -- helpers ------------------------------------------------------------------------------


def make_product(
    client: TestClient,
    keys: Keys,
    sku: str,
    unit_amount: int = 1000,
    currency: str = "EUR",
    **extra: Any,
) -> dict[str, Any]:
    body = {"sku": sku, "title": f"Title {sku}", "unit_amount": unit_amount, "currency": currency}
    response = client.post("/v1/products", json={**body, **extra}, headers=keys.headers("ops"))
    assert response.status_code == 201, response.text
    return response.json()


def make_unique(
    client: TestClient, keys: Keys, sku: str = "VASE", unit_amount: int = 9000
) -> dict[str, Any]:
    return make_product(client, keys, sku, unit_amount, unique=True)


def make_customer(
    client: TestClient, keys: Keys, email: str, role: str = "storefront"
) -> dict[str, Any]:
    response = client.post("/v1/customers", json={"email": email}, headers=keys.headers(role))
    assert response.status_code == 201, response.text
    return response.json()


def order_body(lines: Lines, currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    if "customer" not in extra and "email" not in extra:
        extra["email"] = "guest@example.com"
    return {
        "currency": currency,
        "lines": [{"sku": sku, "quantity": qty} for sku, qty in lines],
        **extra,
    }


def post_order(
    client: TestClient, keys: Keys, lines: Lines, role: str = "storefront", **extra: Any
) -> httpx.Response:
    return client.post("/v1/orders", json=order_body(lines, **extra), headers=keys.headers(role))


def create_order(
    client: TestClient, keys: Keys, lines: Lines, role: str = "storefront", **extra: Any
) -> dict[str, Any]:
    response = post_order(client, keys, lines, role, **extra)
    assert response.status_code == 201, response.text
    return response.json()


def get_order(
    client: TestClient, keys: Keys, order_id: str, role: str = "analyst"
) -> httpx.Response:
    return client.get(f"/v1/orders/{order_id}", headers=keys.headers(role))


def order_status(client: TestClient, keys: Keys, order_id: str) -> str:
    response = get_order(client, keys, order_id)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def cancel(client: TestClient, keys: Keys, order_id: str, role: str = "ops") -> httpx.Response:
    return client.post(f"/v1/orders/{order_id}/cancel", headers=keys.headers(role))


def fulfill(client: TestClient, keys: Keys, order_id: str, role: str = "ops") -> httpx.Response:
    return client.post(f"/v1/orders/{order_id}/fulfill", headers=keys.headers(role))


def product_status(client: TestClient, keys: Keys, sku: str) -> str:
    response = client.get(f"/v1/products/{sku}", headers=keys.headers("analyst"))
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def list_orders(
    client: TestClient, keys: Keys, role: str = "analyst", **params: Any
) -> tuple[list[str], bool]:
    response = client.get("/v1/orders", params=params, headers=keys.headers(role))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"data", "has_more"}
    return [o["id"] for o in body["data"]], body["has_more"]


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = response.json()
    for member in ("type", "title", "status", "detail", "code"):
        assert member in body, f"problem body lacks {member!r}: {body}"
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_field_error(body: dict[str, Any], field: str) -> None:
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, f"422 without an errors list: {body}"
    assert any(field in json.dumps(e) for e in errors), f"no error about {field!r}: {errors}"


def parse_utc(value: Any) -> datetime:
    assert isinstance(value, str) and RFC3339_UTC.match(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def paid_order(client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock) -> dict[str, Any]:
    make_product(client, keys, "PAID-ITEM", 1200)
    order = create_order(client, keys, [("PAID-ITEM", 1)])
    force_paid(kassa, order["id"], clock.now)
    return order


# -- creation -----------------------------------------------------------------------------


def test_guest_order_has_every_contract_field(
    client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    make_product(client, keys, "MUG", 1450)
    make_product(client, keys, "TEA", 500)
    response = post_order(client, keys, [("MUG", 2), ("TEA", 1)], email="guest@example.com")
    assert response.status_code == 201, response.text
    order = response.json()
    assert order.keys() >= ORDER_FIELDS, ORDER_FIELDS - order.keys()
    assert order["id"].startswith("ord_") and len(order["id"]) > len("ord_")
    assert re.fullmatch(r"K-\d{6}", order["number"]), order["number"]
    assert order["status"] == "pending"
    assert order["currency"] == "EUR"
    assert order["subtotal"] == 2 * 1450 + 500
    assert order["total"] == 2 * 1450 + 500
    assert order["amount_paid"] == 0
    assert order["amount_refunded"] == 0
    assert order["refund_status"] == "none"
    assert order["refunded_at"] is None
    assert order["stock_shortage"] is False
    assert order["customer"] is None
    assert order["email"] == "guest@example.com"
    assert order["paid_at"] is None
    assert abs(parse_utc(order["created_at"]) - clock.now) < timedelta(seconds=1)
    assert [line["sku"] for line in order["lines"]] == ["MUG", "TEA"]
    # GET answers the same order
    assert get_order(client, keys, order["id"]).json() == order


def test_line_snapshot_fields(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG", 1450)
    order = create_order(client, keys, [("MUG", 3)])
    [line] = order["lines"]
    assert line.keys() >= LINE_FIELDS
    assert line["sku"] == "MUG"
    assert line["title"] == "Title MUG"
    assert line["unit_amount"] == 1450
    assert line["quantity"] == 3
    assert line["amount"] == 3 * 1450
    assert line["product_status"] == "available"


def test_order_for_a_customer(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    customer = make_customer(client, keys, "ada@example.com")
    order = create_order(client, keys, [("MUG", 1)], customer=customer["id"])
    assert order["customer"] == customer["id"]
    assert get_order(client, keys, order["id"]).json()["customer"] == customer["id"]


@pytest.mark.parametrize("role", ["storefront", "ops", "admin"])
def test_roles_that_may_create_orders(client: TestClient, keys: Keys, role: str) -> None:
    make_product(client, keys, "MUG")
    assert post_order(client, keys, [("MUG", 1)], role=role).status_code == 201


def test_order_needs_a_customer_or_an_email(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    body = {"currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]}
    response = client.post("/v1/orders", json=body, headers=keys.headers("storefront"))
    assert_field_error(assert_problem(response, 422), "email")
    assert list_orders(client, keys) == ([], False)


def test_order_with_null_customer_and_email_is_422(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    response = post_order(client, keys, [("MUG", 1)], customer=None, email=None)
    assert_problem(response, 422)


def test_order_for_an_unknown_customer_is_refused(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    response = post_order(client, keys, [("MUG", 1)], customer="cus_doesnotexist")
    assert response.status_code in (404, 422), response.text
    assert_problem(response, response.status_code)
    assert list_orders(client, keys) == ([], False)


@pytest.mark.parametrize("email", ["not-an-email", "", 42])
def test_order_with_an_invalid_email_is_422(client: TestClient, keys: Keys, email: Any) -> None:
    make_product(client, keys, "MUG")
    body = assert_problem(post_order(client, keys, [("MUG", 1)], email=email), 422)
    assert_field_error(body, "email")


def test_order_currency_accepted_in_any_case(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)], currency="eur")
    assert order["currency"] == "EUR"


def test_prices_come_from_the_catalogue(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG", 1450)
    make_product(client, keys, "TEA", 333)
    order = create_order(client, keys, [("MUG", 2), ("TEA", 3)])
    by_sku = {line["sku"]: line for line in order["lines"]}
    assert (by_sku["MUG"]["unit_amount"], by_sku["MUG"]["amount"]) == (1450, 2900)
    assert (by_sku["TEA"]["unit_amount"], by_sku["TEA"]["amount"]) == (333, 999)
    assert order["subtotal"] == order["total"] == 2900 + 999


@pytest.mark.parametrize(
    "line_extra",
    [{"unit_amount": 1}, {"amount": 1}, {"price": 1}, {"title": "Cheap"}],
    ids=["unit_amount", "amount", "price", "title"],
)
def test_client_may_not_send_line_prices(
    client: TestClient, keys: Keys, line_extra: dict[str, Any]
) -> None:
    make_product(client, keys, "MUG", 1450)
    body = order_body([("MUG", 1)])
    body["lines"][0].update(line_extra)
    response = client.post("/v1/orders", json=body, headers=keys.headers("storefront"))
    assert_problem(response, 422)
    assert list_orders(client, keys) == ([], False)


@pytest.mark.parametrize("field", ["total", "subtotal", "amount_paid", "status", "number"])
def test_client_may_not_send_order_totals(client: TestClient, keys: Keys, field: str) -> None:
    make_product(client, keys, "MUG", 1450)
    value: Any = "paid" if field in ("status", "number") else 1
    response = post_order(client, keys, [("MUG", 1)], **{field: value})
    assert_problem(response, 422)
    assert list_orders(client, keys) == ([], False)


def test_line_snapshot_survives_catalogue_changes(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG", 1450)
    old = create_order(client, keys, [("MUG", 2)])
    patched = client.patch(
        "/v1/products/MUG",
        json={"title": "Renamed mug", "unit_amount": 9999},
        headers=keys.headers("ops"),
    )
    assert patched.status_code == 200, patched.text
    again = get_order(client, keys, old["id"]).json()
    assert again["lines"] == old["lines"]
    assert (again["subtotal"], again["total"]) == (2900, 2900)
    new = create_order(client, keys, [("MUG", 2)])
    assert new["lines"][0]["title"] == "Renamed mug"
    assert (new["lines"][0]["unit_amount"], new["total"]) == (9999, 19998)


def test_order_numbers_are_human_and_unique(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    numbers = [create_order(client, keys, [("MUG", 1)])["number"] for _ in range(4)]
    assert all(re.fullmatch(r"K-\d{6}", n) for n in numbers), numbers
    assert len(set(numbers)) == 4


def test_currency_mismatch_is_422(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG", 1450, currency="EUR")
    body = assert_problem(post_order(client, keys, [("MUG", 1)], currency="USD"), 422)
    assert_field_error(body, "lines")
    assert list_orders(client, keys) == ([], False)


def test_mixed_currency_lines_are_422(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG", 1450, currency="EUR")
    make_product(client, keys, "CUP", 1450, currency="USD")
    assert_problem(post_order(client, keys, [("MUG", 1), ("CUP", 1)], currency="EUR"), 422)


def test_unknown_sku_is_422(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    body = assert_problem(post_order(client, keys, [("MUG", 1), ("NOPE", 1)]), 422)
    assert_field_error(body, "lines")
    assert list_orders(client, keys) == ([], False)


def test_unknown_currency_is_422(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    assert_problem(post_order(client, keys, [("MUG", 1)], currency="XYZ"), 422)


def test_unknown_currency_problem_lists_the_currency_field(client: TestClient, keys: Keys) -> None:
    """Conventions: `errors` lists field problems for 422."""
    make_product(client, keys, "MUG")
    body = assert_problem(post_order(client, keys, [("MUG", 1)], currency="XYZ"), 422)
    assert_field_error(body, "currency")


@pytest.mark.parametrize(
    "quantity", [0, -1, 1.5, "2", None, True], ids=["0", "-1", "float", "str", "null", "bool"]
)
def test_quantity_must_be_a_positive_integer(client: TestClient, keys: Keys, quantity: Any) -> None:
    make_product(client, keys, "MUG")
    body = order_body([("MUG", 1)])
    body["lines"][0]["quantity"] = quantity
    response = client.post("/v1/orders", json=body, headers=keys.headers("storefront"))
    assert_field_error(assert_problem(response, 422), "quantity")


def test_order_without_lines_is_422(client: TestClient, keys: Keys) -> None:
    body = assert_problem(post_order(client, keys, []), 422)
    assert_field_error(body, "lines")


def test_metadata_values_must_be_strings(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    response = post_order(client, keys, [("MUG", 1)], metadata={"cart": 17})
    assert_problem(response, 422)


def test_order_accepts_shipping_address_and_metadata(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    response = post_order(
        client,
        keys,
        [("MUG", 1)],
        shipping_address={"line1": "1 Main St", "city": "Berlin", "country": "DE"},
        metadata={"cart": "c_17"},
    )
    assert response.status_code == 201, response.text


# -- unique items and reservations --------------------------------------------------------


def test_unique_item_is_reserved_by_an_order(client: TestClient, keys: Keys) -> None:
    make_unique(client, keys, "VASE", 9000)
    assert product_status(client, keys, "VASE") == "available"
    order = create_order(client, keys, [("VASE", 1)])
    assert order["status"] == "pending"
    assert order["total"] == 9000
    assert order["lines"][0]["product_status"] in ("available", "reserved", "sold")
    assert product_status(client, keys, "VASE") == "reserved"


def test_second_order_for_a_reserved_unique_item_is_409(client: TestClient, keys: Keys) -> None:
    make_unique(client, keys, "VASE")
    make_product(client, keys, "MUG")
    first = create_order(client, keys, [("VASE", 1)])
    second = post_order(client, keys, [("MUG", 1), ("VASE", 1)], role="other_storefront")
    assert_problem(second, 409, "item_unavailable")
    assert order_status(client, keys, first["id"]) == "pending"
    assert list_orders(client, keys) == ([first["id"]], False)


def test_cancel_pending_releases_the_reservation(client: TestClient, keys: Keys) -> None:
    make_unique(client, keys, "VASE")
    first = create_order(client, keys, [("VASE", 1)])
    response = cancel(client, keys, first["id"])
    assert response.status_code == 200, response.text
    assert response.json()["id"] == first["id"]
    assert response.json()["status"] == "canceled"
    assert order_status(client, keys, first["id"]) == "canceled"
    assert product_status(client, keys, "VASE") == "available"
    second = create_order(client, keys, [("VASE", 1)], role="other_storefront")
    assert second["status"] == "pending"
    assert product_status(client, keys, "VASE") == "reserved"


def test_storefront_may_not_cancel_even_its_own_order(client: TestClient, keys: Keys) -> None:
    """Conventions: a storefront "may create customers, orders and payments and read its
    own orders; nothing else" - cancelling is staff work (ops+)."""
    make_unique(client, keys, "VASE")
    order = create_order(client, keys, [("VASE", 1)])
    assert_problem(cancel(client, keys, order["id"], role="storefront"), 403)
    assert order_status(client, keys, order["id"]) == "pending"
    assert product_status(client, keys, "VASE") == "reserved"


def test_reservation_holds_until_the_ttl(client: TestClient, keys: Keys, clock: FakeClock) -> None:
    make_unique(client, keys, "VASE")
    first = create_order(client, keys, [("VASE", 1)])
    clock.advance(TTL_S - 1)
    assert_problem(post_order(client, keys, [("VASE", 1)]), 409, "item_unavailable")
    assert order_status(client, keys, first["id"]) == "pending"


def test_expired_reservation_lets_a_new_order_take_the_item(
    client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    make_unique(client, keys, "VASE")
    first = create_order(client, keys, [("VASE", 1)])
    clock.advance(TTL_S + 1)
    second = create_order(client, keys, [("VASE", 1)], role="other_storefront")
    assert second["status"] == "pending"
    assert order_status(client, keys, first["id"]) == "canceled"
    assert product_status(client, keys, "VASE") == "reserved"
    # the new holder is protected for a full TTL of its own
    clock.advance(TTL_S - 1)
    assert_problem(post_order(client, keys, [("VASE", 1)]), 409, "item_unavailable")
    assert order_status(client, keys, second["id"]) == "pending"


def test_release_expired_reservations_cancels_only_expired_orders(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    make_unique(client, keys, "OLD")
    make_unique(client, keys, "NEW")
    make_product(client, keys, "MUG")
    expiring = create_order(client, keys, [("OLD", 1)])
    clock.advance(1000)
    fresh = create_order(client, keys, [("NEW", 1)])
    plain = create_order(client, keys, [("MUG", 1)])
    ctx = RequestContext.system("test")

    clock.advance(TTL_S - 1000 - 1)  # nothing has expired yet
    kassa.orders.release_expired_reservations(ctx)
    assert order_status(client, keys, expiring["id"]) == "pending"

    clock.advance(2)  # `expiring` is past its TTL, `fresh` is not
    kassa.orders.release_expired_reservations(ctx)
    assert order_status(client, keys, expiring["id"]) == "canceled"
    assert product_status(client, keys, "OLD") == "available"
    assert order_status(client, keys, fresh["id"]) == "pending"
    assert product_status(client, keys, "NEW") == "reserved"
    assert order_status(client, keys, plain["id"]) == "pending"
    # the released item can be ordered again
    create_order(client, keys, [("OLD", 1)], role="other_storefront")


# -- the status machine -------------------------------------------------------------------


def test_cancel_twice_is_409_invalid_order_transition(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)])
    assert cancel(client, keys, order["id"]).status_code == 200
    assert_problem(cancel(client, keys, order["id"]), 409, "invalid_order_transition")
    assert order_status(client, keys, order["id"]) == "canceled"


def test_fulfill_pending_is_409_invalid_order_transition(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)])
    assert_problem(fulfill(client, keys, order["id"]), 409, "invalid_order_transition")
    assert order_status(client, keys, order["id"]) == "pending"


def test_fulfill_canceled_is_409(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)])
    assert cancel(client, keys, order["id"]).status_code == 200
    assert_problem(fulfill(client, keys, order["id"]), 409, "invalid_order_transition")
    assert order_status(client, keys, order["id"]) == "canceled"


def test_paid_order_shows_payment_fields(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    order = paid_order(client, keys, kassa, clock)
    fetched = get_order(client, keys, order["id"]).json()
    assert fetched["status"] == "paid"
    assert fetched["amount_paid"] == fetched["total"] == 1200
    assert fetched["refund_status"] == "none"
    assert abs(parse_utc(fetched["paid_at"]) - clock.now) < timedelta(seconds=1)


@pytest.mark.parametrize("role", ["ops", "admin"])
def test_fulfill_paid_order(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock, role: str
) -> None:
    order = paid_order(client, keys, kassa, clock)
    response = fulfill(client, keys, order["id"], role)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.keys() >= ORDER_FIELDS
    assert (body["id"], body["status"]) == (order["id"], "fulfilled")
    assert order_status(client, keys, order["id"]) == "fulfilled"
    assert_problem(fulfill(client, keys, order["id"]), 409, "invalid_order_transition")


@pytest.mark.parametrize("role", ["storefront", "analyst"])
def test_fulfill_needs_ops(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock, role: str
) -> None:
    order = paid_order(client, keys, kassa, clock)
    assert_problem(fulfill(client, keys, order["id"], role), 403)
    assert order_status(client, keys, order["id"]) == "paid"


def test_cancel_paid_order_is_409(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    order = paid_order(client, keys, kassa, clock)
    assert_problem(cancel(client, keys, order["id"]), 409, "invalid_order_transition")
    assert order_status(client, keys, order["id"]) == "paid"


def test_cancel_fulfilled_order_is_409(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    order = paid_order(client, keys, kassa, clock)
    assert fulfill(client, keys, order["id"]).status_code == 200
    assert_problem(cancel(client, keys, order["id"]), 409, "invalid_order_transition")
    assert order_status(client, keys, order["id"]) == "fulfilled"


def test_analyst_may_not_cancel(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)])
    assert_problem(cancel(client, keys, order["id"], "analyst"), 403)
    assert order_status(client, keys, order["id"]) == "pending"


@pytest.mark.parametrize("action", ["get", "cancel", "fulfill"])
def test_unknown_order_is_404_order_not_found(client: TestClient, keys: Keys, action: str) -> None:
    if action == "get":
        response = get_order(client, keys, "ord_doesnotexist", "admin")
    elif action == "cancel":
        response = cancel(client, keys, "ord_doesnotexist", "admin")
    else:
        response = fulfill(client, keys, "ord_doesnotexist", "admin")
    assert_problem(response, 404, "order_not_found")


# -- listing and visibility ---------------------------------------------------------------


def test_list_filters_by_customer_status_and_email(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    ada = make_customer(client, keys, "ada@example.com")
    bob = make_customer(client, keys, "bob@example.com")
    a = create_order(client, keys, [("MUG", 1)], customer=ada["id"])
    b = create_order(client, keys, [("MUG", 1)], customer=bob["id"])
    g = create_order(client, keys, [("MUG", 1)], email="guest@example.com")
    assert cancel(client, keys, b["id"]).status_code == 200

    assert list_orders(client, keys, customer=ada["id"]) == ([a["id"]], False)
    assert list_orders(client, keys, customer=bob["id"]) == ([b["id"]], False)
    assert list_orders(client, keys, status="canceled") == ([b["id"]], False)
    pending, _ = list_orders(client, keys, status="pending")
    assert set(pending) == {a["id"], g["id"]}
    assert list_orders(client, keys, email="guest@example.com") == ([g["id"]], False)
    assert list_orders(client, keys, status="paid") == ([], False)
    assert list_orders(client, keys, customer=ada["id"], status="canceled") == ([], False)
    everything, _ = list_orders(client, keys)
    assert set(everything) == {a["id"], b["id"], g["id"]}


def test_list_returns_full_orders(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)])
    response = client.get("/v1/orders", headers=keys.headers("analyst"))
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "list", "data": [order], "has_more": False}


def test_list_unknown_status_filter_is_422(client: TestClient, keys: Keys) -> None:
    response = client.get("/v1/orders", params={"status": "lost"}, headers=keys.headers("ops"))
    assert_field_error(assert_problem(response, 422), "status")


def test_list_pagination(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    ids = {create_order(client, keys, [("MUG", 1)])["id"] for _ in range(5)}
    seen: list[str] = []
    flags: list[bool] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(10):
        page, has_more = list_orders(client, keys, **params)
        assert len(page) <= 2
        seen.extend(page)
        flags.append(has_more)
        if not has_more:
            break
        params = {"limit": 2, "starting_after": page[-1]}
    assert flags == [True, True, False]
    assert len(seen) == len(set(seen)) == 5 and set(seen) == ids


def test_list_default_limit_is_20(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    for _ in range(21):
        create_order(client, keys, [("MUG", 1)])
    page, has_more = list_orders(client, keys)
    assert (len(page), has_more) == (20, True)


@pytest.mark.parametrize("limit", ["0", "101"])
def test_list_limit_out_of_range_is_422(client: TestClient, keys: Keys, limit: str) -> None:
    response = client.get("/v1/orders", params={"limit": limit}, headers=keys.headers("ops"))
    assert_problem(response, 422)


def test_storefront_sees_only_its_own_orders(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    mine = create_order(client, keys, [("MUG", 1)], role="storefront")
    theirs = create_order(client, keys, [("MUG", 1)], role="other_storefront")
    staff = create_order(client, keys, [("MUG", 1)], role="ops")

    assert get_order(client, keys, mine["id"], "storefront").json() == mine
    assert_problem(get_order(client, keys, theirs["id"], "storefront"), 404, "order_not_found")
    assert_problem(get_order(client, keys, staff["id"], "storefront"), 404, "order_not_found")
    assert_problem(get_order(client, keys, mine["id"], "other_storefront"), 404, "order_not_found")

    assert list_orders(client, keys, "storefront") == ([mine["id"]], False)
    assert list_orders(client, keys, "other_storefront") == ([theirs["id"]], False)


def test_storefront_filters_stay_within_its_own_orders(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    create_order(client, keys, [("MUG", 1)], role="other_storefront", email="x@example.com")
    assert list_orders(client, keys, "storefront", email="x@example.com") == ([], False)
    assert list_orders(client, keys, "storefront", status="pending") == ([], False)


def test_storefront_cannot_act_on_another_storefronts_order(client: TestClient, keys: Keys) -> None:
    make_unique(client, keys, "VASE")
    theirs = create_order(client, keys, [("VASE", 1)], role="other_storefront")
    response = cancel(client, keys, theirs["id"], "storefront")
    assert response.status_code in (403, 404), response.text
    assert_problem(response, response.status_code)
    assert order_status(client, keys, theirs["id"]) == "pending"
    assert product_status(client, keys, "VASE") == "reserved"


@pytest.mark.parametrize("role", ["analyst", "ops", "admin"])
def test_staff_read_every_order(client: TestClient, keys: Keys, role: str) -> None:
    make_product(client, keys, "MUG")
    ids = {
        create_order(client, keys, [("MUG", 1)], role=creator)["id"]
        for creator in ("storefront", "other_storefront", "ops")
    }
    listed, has_more = list_orders(client, keys, role)
    assert set(listed) == ids and has_more is False
    for order_id in ids:
        assert get_order(client, keys, order_id, role).status_code == 200


def test_orders_need_a_key(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    order = create_order(client, keys, [("MUG", 1)])
    assert_problem(client.get("/v1/orders"), 401)
    assert_problem(client.get(f"/v1/orders/{order['id']}"), 401)
    assert_problem(client.post("/v1/orders", json=order_body([("MUG", 1)])), 401)
    assert_problem(client.post(f"/v1/orders/{order['id']}/cancel"), 401)
    assert order_status(client, keys, order["id"]) == "pending"
