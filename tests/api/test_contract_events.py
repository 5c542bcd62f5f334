"""Contract tests for `GET /v1/events` and `GET /v1/events/{id}` (api-contract.md, v1.1
"Outgoing webhooks"): analyst and up, newest first, filtered by `type`, the usual cursor
pagination; each item `{id, object: "event", type, created_at, data: {object}}`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests import builders
from tests.conftest import Keys

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    assert response.json()["code"] == code


def listed(client: TestClient, keys: Keys, role: str = "analyst", **params: Any) -> Any:
    r = client.get("/v1/events", params=params, headers=keys.headers(role))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def history(client: TestClient, keys: Keys) -> list[str]:
    """Three orders, the last two paid: the ids of the orders, oldest first."""
    builders.make_product(client, keys)
    first = builders.order(client, keys)["id"]
    second = builders.paid_order(client, keys)["id"]
    third = builders.paid_order(client, keys)["id"]
    return [first, second, third]


def test_events_list_newest_first_filtered_by_type(
    client: TestClient, keys: Keys, history: list[str]
) -> None:
    everything = listed(client, keys, limit=100)
    assert everything["object"] == "list" and everything["has_more"] is False
    assert [e["type"] for e in everything["data"]] == [
        "invoice.issued",  # issued in the transaction that paid the order, after it
        "order.paid",
        "payment.succeeded",
        "order.created",
        "invoice.issued",
        "order.paid",
        "payment.succeeded",
        "order.created",
        "order.created",
    ]
    for item in everything["data"]:
        assert set(item) == {"id", "object", "type", "created_at", "data"}
        assert item["object"] == "event" and item["id"].startswith("evt_")
        assert set(item["data"]) == {"object"}

    created = listed(client, keys, type="order.created")["data"]
    assert [e["data"]["object"]["id"] for e in created] == history[::-1]
    paid = listed(client, keys, type="order.paid")["data"]
    assert [e["data"]["object"]["id"] for e in paid] == history[:0:-1]
    assert listed(client, keys, type="refund.succeeded")["data"] == []


def test_events_page_with_limit_and_starting_after(
    client: TestClient, keys: Keys, history: list[str]
) -> None:
    first = listed(client, keys, type="order.created", limit=2)
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = listed(
        client, keys, type="order.created", limit=2, starting_after=first["data"][-1]["id"]
    )
    assert rest["has_more"] is False
    assert [e["data"]["object"]["id"] for e in first["data"] + rest["data"]] == history[::-1]
    assert_problem(
        client.get(
            "/v1/events", params={"starting_after": "evt_nope"}, headers=keys.headers("analyst")
        ),
        422,
        "invalid_cursor",
    )


def test_one_event_by_id_as_listed(client: TestClient, keys: Keys, history: list[str]) -> None:
    (newest, *_) = listed(client, keys)["data"]
    r = client.get(f"/v1/events/{newest['id']}", headers=keys.headers("analyst"))
    assert r.status_code == 200 and r.json() == newest
    missing = client.get("/v1/events/evt_missing", headers=keys.headers("analyst"))
    assert_problem(missing, 404, "event_not_found")


def test_an_unknown_type_is_refused(client: TestClient, keys: Keys) -> None:
    r = client.get("/v1/events", params={"type": "order.payed"}, headers=keys.headers("analyst"))
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("role", ["analyst", "ops", "admin"])
def test_staff_read_events(client: TestClient, keys: Keys, role: str) -> None:
    assert client.get("/v1/events", headers=keys.headers(role)).status_code == 200


def test_a_storefront_key_reads_no_events(
    client: TestClient, keys: Keys, history: list[str]
) -> None:
    (newest, *_) = listed(client, keys)["data"]
    for path in ("/v1/events", f"/v1/events/{newest['id']}"):
        assert_problem(
            client.get(path, headers=keys.headers("storefront")), 403, "insufficient_role"
        )
    assert client.get("/v1/events").status_code == 401
