"""Contract tests for `/v1/products` (api-contract.md: Conventions, Products).

Products: ops+ write, any role reads. Money is integer minor units plus an ISO 4217
code accepted in any case and answered upper case; floats and strings are refused.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Keys

PROBLEM_JSON = "application/problem+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")
ALL_ROLES = ["admin", "ops", "analyst", "storefront", "other_storefront"]
PRODUCT_FIELDS = {"id", "sku", "title", "unit_amount", "currency", "stock", "unique", "status"}


# -- helpers ------------------------------------------------------------------------------


def product_body(sku: str = "MUG", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": sku,
        "title": f"Product {sku}",
        "unit_amount": 1450,
        "currency": "EUR",
    }
    body.update(overrides)
    return body


def post_product(
    client: TestClient, keys: Keys, role: str = "ops", sku: str = "MUG", **fields: Any
) -> httpx.Response:
    return client.post("/v1/products", json=product_body(sku, **fields), headers=keys.headers(role))


def create_product(
    client: TestClient, keys: Keys, sku: str = "MUG", **fields: Any
) -> dict[str, Any]:
    response = post_product(client, keys, "ops", sku, **fields)
    assert response.status_code == 201, response.text
    return response.json()


def get_product(client: TestClient, keys: Keys, sku: str, role: str = "analyst") -> httpx.Response:
    return client.get(f"/v1/products/{sku}", headers=keys.headers(role))


def patch_product(
    client: TestClient, keys: Keys, sku: str, body: dict[str, Any], role: str = "ops"
) -> httpx.Response:
    return client.patch(f"/v1/products/{sku}", json=body, headers=keys.headers(role))


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
    """A 422 problem lists field problems, one of which names `field`."""
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, f"422 without an errors list: {body}"
    assert all(isinstance(e, dict) for e in errors)
    assert any(field in json.dumps(e) for e in errors), f"no error about {field!r}: {errors}"


def assert_utc_time(value: Any) -> None:
    assert isinstance(value, str) and RFC3339_UTC.match(value), value
    assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


def list_skus(client: TestClient, keys: Keys, **params: Any) -> tuple[list[str], bool]:
    response = client.get("/v1/products", params=params, headers=keys.headers("analyst"))
    assert response.status_code == 200, response.text
    body = response.json()
    return [p["sku"] for p in body["data"]], body["has_more"]


# -- creation -----------------------------------------------------------------------------


def test_create_returns_201_with_product_fields(client: TestClient, keys: Keys) -> None:
    response = post_product(client, keys, "ops", "MUG-1", unit_amount=1999, stock=3)
    assert response.status_code == 201, response.text
    product = response.json()
    assert product.keys() >= PRODUCT_FIELDS
    assert product["id"].startswith("prod_") and len(product["id"]) > len("prod_")
    assert product["sku"] == "MUG-1"
    assert product["title"] == "Product MUG-1"
    assert product["unit_amount"] == 1999
    assert product["currency"] == "EUR"
    assert product["stock"] == 3
    assert product["unique"] is False
    assert product["status"] == "available"
    assert_utc_time(product["created_at"])


@pytest.mark.parametrize("given", ["eur", "Eur", "EUR", "eUr"])
def test_currency_accepted_in_any_case_and_answered_upper_case(
    client: TestClient, keys: Keys, given: str
) -> None:
    created = create_product(client, keys, "CASE", currency=given)
    assert created["currency"] == "EUR"
    assert get_product(client, keys, "CASE").json()["currency"] == "EUR"


def test_zero_decimal_currency_keeps_minor_units(client: TestClient, keys: Keys) -> None:
    created = create_product(client, keys, "JP-MUG", unit_amount=500, currency="jpy")
    assert (created["unit_amount"], created["currency"]) == (500, "JPY")


@pytest.mark.parametrize("stock_field", [{"stock": None}, {}], ids=["null", "omitted"])
def test_stock_null_means_unlimited(
    client: TestClient, keys: Keys, stock_field: dict[str, Any]
) -> None:
    body = product_body("UNLIMITED", **stock_field)
    response = client.post("/v1/products", json=body, headers=keys.headers("ops"))
    assert response.status_code == 201, response.text
    assert response.json()["stock"] is None
    assert get_product(client, keys, "UNLIMITED").json()["stock"] is None
    # unlimited stock accepts any order quantity
    order = client.post(
        "/v1/orders",
        json={
            "email": "big@example.com",
            "currency": "EUR",
            "lines": [{"sku": "UNLIMITED", "quantity": 5000}],
        },
        headers=keys.headers("storefront"),
    )
    assert order.status_code == 201, order.text
    assert order.json()["subtotal"] == 5000 * 1450


def test_unique_item_has_stock_one_and_is_available(client: TestClient, keys: Keys) -> None:
    created = create_product(client, keys, "VASE-1", unique=True)
    assert created["unique"] is True
    assert created["stock"] == 1
    assert created["status"] == "available"
    fetched = get_product(client, keys, "VASE-1").json()
    assert (fetched["unique"], fetched["stock"], fetched["status"]) == (True, 1, "available")


def test_unique_item_never_has_more_than_one_in_stock(client: TestClient, keys: Keys) -> None:
    """`unique: true` means stock is 1: a contradicting stock is refused, never stored."""
    response = post_product(client, keys, "ops", "VASE-5", unique=True, stock=5)
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert response.json()["stock"] == 1
    else:
        assert_field_error(assert_problem(response, 422), "stock")


def test_stock_of_a_unique_item_stays_one(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "VASE-1", unique=True)
    response = patch_product(client, keys, "VASE-1", {"stock": 4})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert_problem(response, 422)
    assert get_product(client, keys, "VASE-1").json()["stock"] == 1


def test_duplicate_sku_is_409_sku_exists(client: TestClient, keys: Keys) -> None:
    first = create_product(client, keys, "DUP", title="Original", unit_amount=100)
    second = post_product(client, keys, "admin", "DUP", title="Impostor", unit_amount=999)
    assert_problem(second, 409, "sku_exists")
    kept = get_product(client, keys, "DUP").json()
    assert kept["id"] == first["id"]
    assert (kept["title"], kept["unit_amount"]) == ("Original", 100)


@pytest.mark.parametrize("role", ["ops", "admin"])
def test_ops_and_admin_may_create(client: TestClient, keys: Keys, role: str) -> None:
    response = post_product(client, keys, role, f"BY-{role.upper()}")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("role", ["analyst", "storefront", "other_storefront"])
def test_lower_roles_may_not_create(client: TestClient, keys: Keys, role: str) -> None:
    assert_problem(post_product(client, keys, role, "NOPE"), 403)
    assert_problem(get_product(client, keys, "NOPE"), 404, "product_not_found")


def test_create_without_key_is_401(client: TestClient) -> None:
    assert_problem(client.post("/v1/products", json=product_body("ANON")), 401)


# -- money and field validation -----------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [19.99, 1999.0, "1999", "19.99", True, None, -1, [1999], {"amount": 1999}],
    ids=["float", "integral-float", "int-string", "decimal-string", "bool", "null", "negative",
         "list", "object"],
)  # fmt: skip
def test_unit_amount_must_be_a_non_negative_integer(
    client: TestClient, keys: Keys, amount: Any
) -> None:
    body = assert_problem(post_product(client, keys, "ops", "BAD-AMOUNT", unit_amount=amount), 422)
    assert_field_error(body, "unit_amount")
    assert_problem(get_product(client, keys, "BAD-AMOUNT"), 404, "product_not_found")


def test_huge_unit_amount_is_refused_without_5xx(client: TestClient, keys: Keys) -> None:
    response = post_product(client, keys, "ops", "HUGE", unit_amount=10**30)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


@pytest.mark.parametrize("currency", ["XYZ", "EURO", "EU", "", "€", "e1r"])
def test_unknown_currency_is_422(client: TestClient, keys: Keys, currency: str) -> None:
    assert_problem(post_product(client, keys, "ops", "BAD-CUR", currency=currency), 422)
    assert_problem(get_product(client, keys, "BAD-CUR"), 404, "product_not_found")


@pytest.mark.parametrize("currency", ["XYZ", "e1r", "EU"])
def test_unknown_currency_problem_lists_the_currency_field(
    client: TestClient, keys: Keys, currency: str
) -> None:
    """Conventions: `errors` lists field problems for 422, whichever layer found them."""
    body = assert_problem(post_product(client, keys, "ops", "BAD-CUR", currency=currency), 422)
    assert_field_error(body, "currency")


def test_currency_must_be_a_string(client: TestClient, keys: Keys) -> None:
    body = assert_problem(post_product(client, keys, "ops", "BAD-CUR", currency=978), 422)
    assert_field_error(body, "currency")


@pytest.mark.parametrize("stock", [1.5, "3", -1, True], ids=["float", "string", "negative", "bool"])
def test_stock_must_be_a_non_negative_integer_or_null(
    client: TestClient, keys: Keys, stock: Any
) -> None:
    body = assert_problem(post_product(client, keys, "ops", "BAD-STOCK", stock=stock), 422)
    assert_field_error(body, "stock")


def test_unique_must_be_a_boolean(client: TestClient, keys: Keys) -> None:
    body = assert_problem(post_product(client, keys, "ops", "BAD-UNIQ", unique="yes"), 422)
    assert_field_error(body, "unique")


@pytest.mark.parametrize("missing", ["sku", "title", "unit_amount", "currency"])
def test_required_fields_are_required(client: TestClient, keys: Keys, missing: str) -> None:
    body = product_body("REQ")
    del body[missing]
    response = client.post("/v1/products", json=body, headers=keys.headers("ops"))
    assert_field_error(assert_problem(response, 422), missing)


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ALL_ROLES)
def test_any_role_reads_products(client: TestClient, keys: Keys, role: str) -> None:
    created = create_product(client, keys, "READ-ME")
    one = get_product(client, keys, "READ-ME", role)
    assert one.status_code == 200, one.text
    assert one.json()["id"] == created["id"]
    listed = client.get("/v1/products", headers=keys.headers(role))
    assert listed.status_code == 200, listed.text
    assert [p["sku"] for p in listed.json()["data"]] == ["READ-ME"]


def test_get_by_sku_returns_the_product(client: TestClient, keys: Keys) -> None:
    created = create_product(client, keys, "GET-ME", unit_amount=250, stock=7)
    create_product(client, keys, "OTHER")
    response = get_product(client, keys, "GET-ME")
    assert response.status_code == 200, response.text
    assert response.json() == created


def test_get_unknown_sku_is_404_product_not_found(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "KNOWN")
    assert_problem(get_product(client, keys, "UNKNOWN"), 404, "product_not_found")


def test_read_without_key_is_401(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "SECRET")
    assert_problem(client.get("/v1/products"), 401)
    assert_problem(client.get("/v1/products/SECRET"), 401)


def test_empty_list(client: TestClient, keys: Keys) -> None:
    response = client.get("/v1/products", headers=keys.headers("analyst"))
    assert response.status_code == 200
    assert response.json() == {"object": "list", "data": [], "has_more": False}


def test_list_default_limit_is_20(client: TestClient, keys: Keys) -> None:
    for i in range(21):
        create_product(client, keys, f"SKU-{i:02d}")
    skus, has_more = list_skus(client, keys)
    assert len(skus) == 20
    assert has_more is True
    all_skus, has_more = list_skus(client, keys, limit=100)
    assert len(all_skus) == 21 and has_more is False


def test_list_cursor_pagination_visits_every_product_once(client: TestClient, keys: Keys) -> None:
    ids = {create_product(client, keys, f"P{i}")["id"] for i in range(5)}
    seen: list[str] = []
    flags: list[bool] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = client.get("/v1/products", params=params, headers=keys.headers("ops"))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 2
        seen.extend(p["id"] for p in page["data"])
        flags.append(page["has_more"])
        if not page["has_more"]:
            break
        params = {"limit": 2, "starting_after": page["data"][-1]["id"]}
        assert len(flags) < 10, "pagination does not terminate"
    assert flags == [True, True, False]
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == ids


@pytest.mark.parametrize("limit", ["1", "100"])
def test_list_limit_bounds_are_inclusive(client: TestClient, keys: Keys, limit: str) -> None:
    create_product(client, keys, "A")
    create_product(client, keys, "B")
    skus, has_more = list_skus(client, keys, limit=limit)
    assert len(skus) == min(int(limit), 2)
    assert has_more is (int(limit) < 2)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "2.5"])
def test_list_limit_out_of_range_is_422(client: TestClient, keys: Keys, limit: str) -> None:
    response = client.get("/v1/products", params={"limit": limit}, headers=keys.headers("ops"))
    assert_field_error(assert_problem(response, 422), "limit")


def test_list_unknown_cursor_is_a_4xx_problem(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "A")
    response = client.get(
        "/v1/products", params={"starting_after": "prod_doesnotexist"}, headers=keys.headers("ops")
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


# -- updating -----------------------------------------------------------------------------


def test_patch_title_unit_amount_and_stock(client: TestClient, keys: Keys) -> None:
    created = create_product(client, keys, "EDIT", title="Old", unit_amount=100, stock=2)
    response = patch_product(client, keys, "EDIT", {"title": "New"})
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["unit_amount"]) == ("New", 100)

    response = patch_product(client, keys, "EDIT", {"unit_amount": 2500})
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["unit_amount"]) == ("New", 2500)

    response = patch_product(client, keys, "EDIT", {"stock": 9})
    assert response.status_code == 200, response.text

    fetched = get_product(client, keys, "EDIT").json()
    assert fetched["id"] == created["id"]
    assert (fetched["title"], fetched["unit_amount"], fetched["stock"]) == ("New", 2500, 9)
    assert (fetched["sku"], fetched["currency"]) == ("EDIT", "EUR")


def test_patch_several_fields_at_once(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "MULTI", stock=1)
    response = patch_product(
        client, keys, "MULTI", {"title": "Both", "unit_amount": 7, "stock": 4}, role="admin"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["unit_amount"], body["stock"]) == ("Both", 7, 4)


def test_patch_stock_null_makes_stock_unlimited(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "LIMITED", stock=3)
    response = patch_product(client, keys, "LIMITED", {"stock": None})
    assert response.status_code == 200, response.text
    assert response.json()["stock"] is None
    assert get_product(client, keys, "LIMITED").json()["stock"] is None


def test_patch_without_stock_leaves_stock_alone(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "KEEP", stock=3)
    assert patch_product(client, keys, "KEEP", {"title": "Renamed"}).status_code == 200
    assert get_product(client, keys, "KEEP").json()["stock"] == 3


def test_patch_unknown_sku_is_404_product_not_found(client: TestClient, keys: Keys) -> None:
    assert_problem(patch_product(client, keys, "GHOST", {"title": "x"}), 404, "product_not_found")


@pytest.mark.parametrize(
    "body",
    [{"unit_amount": 12.5}, {"unit_amount": "1250"}, {"unit_amount": -5}, {"stock": 2.0},
     {"stock": "2"}, {"stock": -1}],
    ids=["float-amount", "string-amount", "negative-amount", "float-stock", "string-stock",
         "negative-stock"],
)  # fmt: skip
def test_patch_refuses_non_integer_money_and_stock(
    client: TestClient, keys: Keys, body: dict[str, Any]
) -> None:
    create_product(client, keys, "STRICT", unit_amount=100, stock=5)
    problem = assert_problem(patch_product(client, keys, "STRICT", body), 422)
    assert_field_error(problem, next(iter(body)))
    fetched = get_product(client, keys, "STRICT").json()
    assert (fetched["unit_amount"], fetched["stock"]) == (100, 5)


@pytest.mark.parametrize("body", [{"currency": "USD"}, {"sku": "RENAMED"}, {"price": 5}])
def test_patch_accepts_only_title_unit_amount_stock(
    client: TestClient, keys: Keys, body: dict[str, Any]
) -> None:
    create_product(client, keys, "FIXED")
    assert_problem(patch_product(client, keys, "FIXED", body), 422)
    fetched = get_product(client, keys, "FIXED").json()
    assert (fetched["sku"], fetched["currency"], fetched["unit_amount"]) == ("FIXED", "EUR", 1450)


@pytest.mark.parametrize("role", ["analyst", "storefront", "other_storefront"])
def test_lower_roles_may_not_patch(client: TestClient, keys: Keys, role: str) -> None:
    create_product(client, keys, "LOCKED", title="Before")
    assert_problem(patch_product(client, keys, "LOCKED", {"title": "After"}, role=role), 403)
    assert get_product(client, keys, "LOCKED").json()["title"] == "Before"


def test_patch_without_key_is_401(client: TestClient, keys: Keys) -> None:
    create_product(client, keys, "LOCKED")
    assert_problem(client.patch("/v1/products/LOCKED", json={"title": "x"}), 401)
