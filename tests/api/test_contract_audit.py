"""Contract tests for `GET /v1/audit` (api-contract.md: Audit).

Every state-changing call appends a record: actor key id, action, subject id,
before/after summary, time, request id (the one the response carried in `X-Request-Id`).
Admin only. The log is append-only down to the database: UPDATE and DELETE fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kassa.bootstrap import Kassa
from kassa.services.context import RequestContext
from tests.builders import make_product
from tests.conftest import FakeClock, Keys
from tests.support import force_paid

PROBLEM_JSON = "application/problem+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")
RECORD_FIELDS = {"actor_key_id", "action", "subject_id", "before", "after", "request_id"}


# -- helpers ------------------------------------------------------------------------------


def audit_records(client: TestClient, keys: Keys) -> list[dict[str, Any]]:
    """Every audit record, following the cursor to the end."""
    records: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    for _ in range(100):
        response = client.get("/v1/audit", params=params, headers=keys.headers("admin"))
        assert response.status_code == 200, response.text
        page = response.json()
        records.extend(page["data"])
        if not page["has_more"]:
            return records
        params = {"limit": 100, "starting_after": page["data"][-1]["id"]}
    raise AssertionError("audit pagination does not terminate")


def records_for(client: TestClient, keys: Keys, response: httpx.Response) -> list[dict[str, Any]]:
    """The audit records written by the request that produced `response`."""
    request_id = response.headers.get("X-Request-Id")
    assert request_id, f"no X-Request-Id on {response.request.method} {response.request.url}"
    return [r for r in audit_records(client, keys) if r["request_id"] == request_id]


def parse_utc(value: Any) -> datetime:
    assert isinstance(value, str) and RFC3339_UTC.match(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def assert_one_record(
    client: TestClient,
    keys: Keys,
    response: httpx.Response,
    *,
    actor: str,
    subject_id: str,
    clock: FakeClock,
) -> dict[str, Any]:
    """The request appended a record about `subject_id` by `actor`, stamped now."""
    assert 200 <= response.status_code < 300, response.text
    records = records_for(client, keys, response)
    about = [r for r in records if r["subject_id"] == subject_id]
    assert len(about) == 1, f"expected one record about {subject_id}: {records}"
    record = about[0]
    assert record.keys() >= RECORD_FIELDS, record
    assert record["actor_key_id"] == keys.ids[actor]
    assert isinstance(record["action"], str) and record["action"]
    assert abs(parse_utc(record["created_at"]) - clock.now) < timedelta(seconds=1)
    assert all(r["actor_key_id"] == keys.ids[actor] for r in records)
    return record


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    assert {"type", "title", "status", "detail", "code"} <= response.json().keys()


def order_body(sku: str) -> dict[str, Any]:
    return {"email": "a@example.com", "currency": "EUR", "lines": [{"sku": sku, "quantity": 1}]}


def make_order(client: TestClient, keys: Keys, sku: str = "MUG") -> dict[str, Any]:
    response = client.post("/v1/orders", json=order_body(sku), headers=keys.headers("storefront"))
    assert response.status_code == 201, response.text
    return response.json()


# -- every state change is recorded -------------------------------------------------------


def test_product_create_is_audited(client: TestClient, keys: Keys, clock: FakeClock) -> None:
    clock.advance(3600)  # the record carries the server's time, not the wall clock
    response = client.post(
        "/v1/products",
        json={"sku": "MUG", "title": "Mug", "unit_amount": 1450, "currency": "eur"},
        headers=keys.headers("ops"),
    )
    record = assert_one_record(
        client, keys, response, actor="ops", subject_id=response.json()["id"], clock=clock
    )
    assert record["after"] is not None


def test_product_patch_is_audited_with_before_and_after(
    client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    product = make_product(client, keys, "MUG")
    clock.advance(60)
    response = client.patch(
        "/v1/products/MUG", json={"title": "Renamed", "unit_amount": 2000},
        headers=keys.headers("admin"),
    )  # fmt: skip
    record = assert_one_record(
        client, keys, response, actor="admin", subject_id=product["id"], clock=clock
    )
    assert record["before"] is not None and record["after"] is not None
    assert record["before"] != record["after"]
    assert "Renamed" in str(record["after"]) and "Renamed" not in str(record["before"])


def test_customer_create_is_audited(client: TestClient, keys: Keys, clock: FakeClock) -> None:
    response = client.post(
        "/v1/customers", json={"email": "ada@example.com"}, headers=keys.headers("storefront")
    )
    assert_one_record(
        client, keys, response, actor="storefront", subject_id=response.json()["id"], clock=clock
    )


def test_order_create_is_audited(client: TestClient, keys: Keys, clock: FakeClock) -> None:
    make_product(client, keys, "VASE", unique=True)
    response = client.post(
        "/v1/orders",
        json=order_body("VASE"),
        headers=keys.headers("other_storefront"),
    )
    assert_one_record(
        client, keys, response, actor="other_storefront", subject_id=response.json()["id"],
        clock=clock,
    )  # fmt: skip


def test_order_cancel_is_audited(client: TestClient, keys: Keys, clock: FakeClock) -> None:
    make_product(client, keys)
    order = make_order(client, keys)
    clock.advance(5)
    response = client.post(f"/v1/orders/{order['id']}/cancel", headers=keys.headers("ops"))
    record = assert_one_record(
        client, keys, response, actor="ops", subject_id=order["id"], clock=clock
    )
    assert "canceled" in str(record["after"])


def test_order_fulfill_is_audited(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    make_product(client, keys)
    order = make_order(client, keys)
    force_paid(kassa, order["id"], clock.now)
    clock.advance(5)
    response = client.post(f"/v1/orders/{order['id']}/fulfill", headers=keys.headers("admin"))
    record = assert_one_record(
        client, keys, response, actor="admin", subject_id=order["id"], clock=clock
    )
    assert "fulfilled" in str(record["after"])


def test_each_kind_of_change_has_its_own_action(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    ops = keys.headers("ops")
    calls = [
        client.post(
            "/v1/products",
            json={"sku": "MUG", "title": "Mug", "unit_amount": 1, "currency": "EUR"},
            headers=ops,
        ),
        client.patch("/v1/products/MUG", json={"title": "x"}, headers=ops),
        client.post("/v1/customers", json={"email": "a@example.com"}, headers=ops),
        client.post("/v1/orders", json=order_body("MUG"), headers=ops),
    ]
    to_cancel = calls[-1].json()["id"]
    to_fulfill = make_order(client, keys)["id"]
    force_paid(kassa, to_fulfill, clock.now)
    calls.append(client.post(f"/v1/orders/{to_cancel}/cancel", headers=ops))
    calls.append(client.post(f"/v1/orders/{to_fulfill}/fulfill", headers=ops))
    actions = []
    for response in calls:
        assert response.is_success, response.text
        [record] = records_for(client, keys, response)
        actions.append(record["action"])
    assert len(set(actions)) == 6, actions


def test_request_ids_differ_per_request(client: TestClient, keys: Keys) -> None:
    first = client.get("/v1/products", headers=keys.headers("ops"))
    second = client.get("/v1/products", headers=keys.headers("ops"))
    assert first.headers.get("X-Request-Id") and second.headers.get("X-Request-Id")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_expired_reservation_release_is_audited(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    make_product(client, keys, "VASE", unique=True)
    order = make_order(client, keys, "VASE")
    before = {r["id"] for r in audit_records(client, keys)}
    clock.advance(1801)
    kassa.orders.release_expired_reservations(RequestContext.system("test"))
    new = [r for r in audit_records(client, keys) if r["id"] not in before]
    about = [r for r in new if r["subject_id"] == order["id"]]
    assert len(about) == 1, new
    assert about[0]["actor_key_id"] == "test"
    assert abs(parse_utc(about[0]["created_at"]) - clock.now) < timedelta(seconds=1)


# -- what is not recorded -----------------------------------------------------------------


Call = Callable[[TestClient, Keys], httpx.Response]
REFUSED: dict[str, Call] = {
    "duplicate-sku": lambda c, k: c.post(
        "/v1/products",
        json={"sku": "MUG", "title": "again", "unit_amount": 1, "currency": "EUR"},
        headers=k.headers("ops"),
    ),
    "float-amount": lambda c, k: c.post(
        "/v1/products",
        json={"sku": "NEW", "title": "t", "unit_amount": 1.5, "currency": "EUR"},
        headers=k.headers("ops"),
    ),
    "forbidden-create": lambda c, k: c.post(
        "/v1/products",
        json={"sku": "NEW", "title": "t", "unit_amount": 1, "currency": "EUR"},
        headers=k.headers("analyst"),
    ),
    "forbidden-patch": lambda c, k: c.patch(
        "/v1/products/MUG", json={"title": "x"}, headers=k.headers("storefront")
    ),
    "unknown-patch": lambda c, k: c.patch(
        "/v1/products/NOPE", json={"title": "x"}, headers=k.headers("ops")
    ),
    "bad-customer": lambda c, k: c.post(
        "/v1/customers", json={"email": "nope"}, headers=k.headers("ops")
    ),
    "currency-mismatch": lambda c, k: c.post(
        "/v1/orders",
        json={**order_body("MUG"), "currency": "USD"},
        headers=k.headers("storefront"),
    ),
    "unknown-cancel": lambda c, k: c.post("/v1/orders/ord_nope/cancel", headers=k.headers("ops")),
    "reads": lambda c, k: c.get("/v1/products/MUG", headers=k.headers("ops")),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_calls_and_reads_append_nothing(client: TestClient, keys: Keys, name: str) -> None:
    make_product(client, keys, "MUG")
    before = audit_records(client, keys)
    response = REFUSED[name](client, keys)
    if name == "reads":
        assert response.status_code == 200, response.text
    else:
        assert 400 <= response.status_code < 500, response.text
    assert audit_records(client, keys) == before


# -- access -------------------------------------------------------------------------------


def test_admin_lists_the_audit_log(client: TestClient, keys: Keys) -> None:
    make_product(client, keys)
    response = client.get("/v1/audit", headers=keys.headers("admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["data"], list) and isinstance(body["has_more"], bool)
    assert body["data"], "the product creation is missing"
    for record in body["data"]:
        assert record.keys() >= RECORD_FIELDS
        parse_utc(record["created_at"])


def test_audit_log_paginates(client: TestClient, keys: Keys) -> None:
    for i in range(4):
        make_product(client, keys, f"P{i}")
    everything = audit_records(client, keys)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(50):
        response = client.get("/v1/audit", params=params, headers=keys.headers("admin"))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 2
        seen.extend(r["id"] for r in page["data"])
        if not page["has_more"]:
            break
        params = {"limit": 2, "starting_after": page["data"][-1]["id"]}
    assert len(seen) == len(set(seen))
    assert set(seen) == {r["id"] for r in everything}


@pytest.mark.parametrize("role", ["ops", "analyst", "storefront", "other_storefront"])
def test_audit_log_is_admin_only(client: TestClient, keys: Keys, role: str) -> None:
    assert_problem(client.get("/v1/audit", headers=keys.headers(role)), 403)


def test_audit_log_needs_a_key(client: TestClient) -> None:
    assert_problem(client.get("/v1/audit"), 401)


# -- append-only in the database ----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log",
     "UPDATE audit_log SET subject_id = 'prod_forged' WHERE action IS NOT NULL"],
    ids=["update", "delete", "update-where"],
)  # fmt: skip
def test_database_refuses_to_change_the_audit_log(
    client: TestClient, keys: Keys, kassa: Kassa, statement: str
) -> None:
    make_product(client, keys)
    before = audit_records(client, keys)
    assert before
    with pytest.raises(DBAPIError), kassa.db.transaction() as session:
        session.execute(text(statement))
    assert audit_records(client, keys) == before


def test_database_still_accepts_appends(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    before = len(audit_records(client, keys))
    make_product(client, keys)
    assert len(audit_records(client, keys)) == before + 1
