"""No input may produce a 5xx: arbitrary bodies, ids and query strings against every route.

Runs on both databases, because the failures this guards against (NUL characters,
integer overflow, invalid Unicode) are driver- and database-specific.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from tests.conftest import Keys

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

tricky_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "😀", "' OR 1=1 --", "%00", "../..", " ", ""]),
)
tricky_int = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 10**15, 10**15 + 1, 10**19, -(2**63) - 1]),
)
scalars = st.one_of(st.none(), st.booleans(), tricky_int, st.floats(allow_nan=True), tricky_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=12,
)


def line() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries(
            {"sku": st.sampled_from(["MUG", "VASE"]) | tricky_text, "quantity": tricky_int}
        ),
        json_values,
    )


order_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "email": st.sampled_from(["a@example.com"]) | tricky_text,
            "currency": st.sampled_from(["EUR", "eur", "JPY", "XXX"]) | tricky_text,
            "lines": st.lists(line(), max_size=3) | json_values,
        },
        optional={
            "customer": tricky_text,
            "metadata": json_values,
            "shipping_address": json_values,
            "unit_amount": tricky_int,
        },
    ),
)
product_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "sku": tricky_text,
            "title": tricky_text,
            "unit_amount": tricky_int | json_values,
            "currency": st.sampled_from(["EUR", "JPY"]) | tricky_text,
        },
        optional={"stock": tricky_int | json_values, "unique": json_values},
    ),
)


@pytest.fixture
def lenient(kassa: Kassa, keys: Keys) -> Iterator[TestClient]:
    with TestClient(create_app(kassa), raise_server_exceptions=False) as client:
        for sku, unique in (("MUG", False), ("VASE", True)):
            client.post(
                "/v1/products",
                json={
                    "sku": sku,
                    "title": sku,
                    "unit_amount": 100,
                    "currency": "EUR",
                    "unique": unique,
                },
                headers=keys.headers("admin"),
            )
        yield client


def _send(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    """Send `body` as JSON text the way any client could (escapes, NaN and all)."""
    return client.request(
        method,
        path,
        content=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


def _escape(text: str) -> str:
    """Percent-encode any text, even invalid Unicode, as a hostile client could."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _check(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert isinstance(response.json()["code"], str)


@FUZZ
@given(body=order_bodies)
def test_order_bodies(lenient: TestClient, keys: Keys, body: Any) -> None:
    _check(_send(lenient, "POST", "/v1/orders", body, keys.headers("storefront")))


@FUZZ
@given(body=product_bodies, patch=json_values)
def test_product_bodies(lenient: TestClient, keys: Keys, body: Any, patch: Any) -> None:
    _check(_send(lenient, "POST", "/v1/products", body, keys.headers("ops")))
    _check(_send(lenient, "PATCH", "/v1/products/MUG", patch, keys.headers("ops")))


@FUZZ
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "payment_method": st.sampled_from(
                    [
                        "pm_card_visa",
                        "pm_card_visa|",
                        "pm_card_visa|latency=99999999",
                        "pm_card_visa|api_error,,nope",
                        "|",
                        "4000002500003155",
                    ]
                )
                | tricky_text,
                "provider": st.sampled_from(["mock", "stripe", "wallet"]) | tricky_text,
            },
        ),
    )
)
def test_payment_bodies(lenient: TestClient, keys: Keys, body: Any) -> None:
    order = lenient.post(
        "/v1/orders",
        json={
            "email": "f@example.com",
            "currency": "EUR",
            "lines": [{"sku": "MUG", "quantity": 1}],
        },
        headers=keys.headers("storefront"),
    ).json()
    _check(
        _send(
            lenient, "POST", f"/v1/orders/{order['id']}/payments", body, keys.headers("storefront")
        )
    )


@FUZZ
@given(body=json_values)
def test_customer_bodies(lenient: TestClient, keys: Keys, body: Any) -> None:
    _check(_send(lenient, "POST", "/v1/customers", body, keys.headers("storefront")))


@FUZZ
@given(
    ident=tricky_text,
    query=st.dictionaries(
        st.sampled_from(["limit", "starting_after", "status", "customer", "email", "subject"])
        | tricky_text,
        tricky_text | tricky_int.map(str),
        max_size=3,
    ),
    key=st.one_of(st.none(), tricky_text),
)
def test_paths_queries_and_headers(
    lenient: TestClient, keys: Keys, ident: str, query: dict[str, str], key: str | None
) -> None:
    safe_ident = _escape(ident)
    query_string = "&".join(f"{_escape(k)}={_escape(v)}" for k, v in query.items())
    headers = keys.headers("admin")
    if key is not None and key.isascii() and key.isprintable():
        headers["Idempotency-Key"] = key
    for path in (
        f"/v1/orders/{safe_ident}",
        f"/v1/products/{safe_ident}",
        f"/v1/customers/{safe_ident}",
    ):
        _check(lenient.get(path, headers=headers))
    _check(lenient.post(f"/v1/orders/{safe_ident}/cancel", headers=headers))
    for path in ("/v1/orders", "/v1/products", "/v1/audit"):
        _check(lenient.get(f"{path}?{query_string}", headers=headers))


def test_raw_bodies_that_are_not_json(lenient: TestClient, keys: Keys) -> None:
    for raw in (b"", b"{", b"null", b"[]", b'"x"', b"\xff\xfe", b'{"a": NaN}', b"{}" * 1000):
        _check(
            lenient.post(
                "/v1/orders",
                content=raw,
                headers=keys.headers("storefront", **{"Content-Type": "application/json"}),
            )
        )


def test_regressions_found_by_fuzzing(lenient: TestClient, keys: Keys) -> None:
    admin = keys.headers("admin")
    for path in (
        "/v1/orders/%00",
        "/v1/orders?starting_after=%00",
        "/v1/products/a%00b",
        "/v1/orders?%ED%A0%80=",
        "/v1/orders?email=%FF",
    ):
        r = lenient.get(path, headers=admin)
        assert r.status_code == 400, path
        assert r.json()["code"] == "invalid_characters"
    nul_title = {"sku": "NUL", "title": "a\x00b", "unit_amount": 1, "currency": "EUR"}
    r = _send(lenient, "POST", "/v1/products", nul_title, admin)
    assert r.status_code == 422
    assert r.json()["errors"][0]["message"].endswith("contains a NUL character or invalid Unicode")
    pricey = {"sku": "PRICEY", "title": "Pricey", "unit_amount": 10**15, "currency": "EUR"}
    assert _send(lenient, "POST", "/v1/products", pricey, admin).status_code == 201
    too_much = {
        "email": "a@example.com",
        "currency": "EUR",
        "lines": [{"sku": "PRICEY", "quantity": 10_000}],
    }
    r = _send(lenient, "POST", "/v1/orders", too_much, admin)
    assert r.status_code == 422
    assert r.json()["code"] == "amount_too_large"
