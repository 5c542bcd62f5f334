"""Contract tests for `/v1/customers` (api-contract.md: Conventions, Customers).

`POST {email, name?}` -> 201 `{id, email, name, created_at}`; `GET /{id}`. A storefront
key may create customers (and read nothing but its own orders).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeClock, Keys

PROBLEM_JSON = "application/problem+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")


# -- helpers ------------------------------------------------------------------------------


def post_customer(
    client: TestClient, keys: Keys, body: dict[str, Any], role: str = "storefront"
) -> httpx.Response:
    return client.post("/v1/customers", json=body, headers=keys.headers(role))


def create_customer(
    client: TestClient, keys: Keys, email: str = "ada@example.com", name: str | None = "Ada"
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email}
    if name is not None:
        body["name"] = name
    response = post_customer(client, keys, body)
    assert response.status_code == 201, response.text
    return response.json()


def get_customer(
    client: TestClient, keys: Keys, customer_id: str, role: str = "analyst"
) -> httpx.Response:
    return client.get(f"/v1/customers/{customer_id}", headers=keys.headers(role))


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


# -- creation -----------------------------------------------------------------------------


def test_create_returns_201_with_contract_fields(
    client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    response = post_customer(client, keys, {"email": "ada@example.com", "name": "Ada Lovelace"})
    assert response.status_code == 201, response.text
    customer = response.json()
    assert {"id", "email", "name", "created_at"} <= customer.keys()
    assert customer["id"].startswith("cus_") and len(customer["id"]) > len("cus_")
    assert customer["email"] == "ada@example.com"
    assert customer["name"] == "Ada Lovelace"
    created_at = parse_utc(customer["created_at"])
    assert abs(created_at - clock.now) < timedelta(seconds=1)  # the server's clock


def test_name_is_optional_and_null_when_absent(client: TestClient, keys: Keys) -> None:
    customer = create_customer(client, keys, "nameless@example.com", name=None)
    assert customer["name"] is None
    assert get_customer(client, keys, customer["id"]).json()["name"] is None


def test_name_may_be_null_explicitly(client: TestClient, keys: Keys) -> None:
    response = post_customer(client, keys, {"email": "n@example.com", "name": None})
    assert response.status_code == 201, response.text
    assert response.json()["name"] is None


def test_each_customer_gets_its_own_id(client: TestClient, keys: Keys) -> None:
    ids = {create_customer(client, keys, f"c{i}@example.com")["id"] for i in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("role", ["storefront", "other_storefront", "ops", "admin"])
def test_storefront_and_staff_may_create(client: TestClient, keys: Keys, role: str) -> None:
    response = post_customer(client, keys, {"email": f"{role}@example.com"}, role=role)
    assert response.status_code == 201, response.text
    assert response.json()["id"].startswith("cus_")


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "", "a@", "@example.com", "two@@example.com", "spaces in@example.com",
     123, None, ["a@example.com"]],
)  # fmt: skip
def test_invalid_email_is_422(client: TestClient, keys: Keys, email: Any) -> None:
    body = assert_problem(post_customer(client, keys, {"email": email, "name": "X"}), 422)
    assert_field_error(body, "email")


def test_missing_email_is_422(client: TestClient, keys: Keys) -> None:
    body = assert_problem(post_customer(client, keys, {"name": "No Mail"}), 422)
    assert_field_error(body, "email")


def test_non_string_name_is_422(client: TestClient, keys: Keys) -> None:
    body = assert_problem(post_customer(client, keys, {"email": "a@example.com", "name": 42}), 422)
    assert_field_error(body, "name")


def test_unknown_fields_are_refused(client: TestClient, keys: Keys) -> None:
    response = post_customer(client, keys, {"email": "a@example.com", "balance": 1000})
    assert_problem(response, 422)


def test_create_without_key_is_401(client: TestClient) -> None:
    assert_problem(client.post("/v1/customers", json={"email": "a@example.com"}), 401)


def test_create_with_unknown_key_is_401(client: TestClient) -> None:
    response = client.post(
        "/v1/customers",
        json={"email": "a@example.com"},
        headers={"Authorization": "Bearer kassa_sk_not_a_real_key"},
    )
    assert_problem(response, 401)


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["analyst", "ops", "admin"])
def test_get_returns_the_created_customer(client: TestClient, keys: Keys, role: str) -> None:
    created = create_customer(client, keys, "grace@example.com", "Grace")
    create_customer(client, keys, "other@example.com", "Other")
    response = get_customer(client, keys, created["id"], role)
    assert response.status_code == 200, response.text
    assert response.json() == created


@pytest.mark.parametrize("customer_id", ["cus_doesnotexist", "ord_123", "nonsense"])
def test_get_unknown_customer_is_404(client: TestClient, keys: Keys, customer_id: str) -> None:
    create_customer(client, keys)
    assert_problem(get_customer(client, keys, customer_id), 404, "customer_not_found")


def test_storefront_may_not_read_customers(client: TestClient, keys: Keys) -> None:
    """A storefront may create customers and read its own orders, nothing else."""
    created = create_customer(client, keys)
    assert_problem(get_customer(client, keys, created["id"], "storefront"), 403)


def test_get_without_key_is_401(client: TestClient, keys: Keys) -> None:
    created = create_customer(client, keys)
    assert_problem(client.get(f"/v1/customers/{created['id']}"), 401)
