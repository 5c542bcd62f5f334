"""Contract tests for the Conventions: auth, RFC 9457 problems, media types, idempotency.

Missing/unknown key 401, role too low 403; every error is `application/problem+json`
with `type, title, status, detail, code` (plus `errors` for 422 field problems); a
POST/PATCH body that is not JSON is 415; no 5xx for any bad input; `/healthz`,
`/openapi.json` and `/docs` are public.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kassa.bootstrap import Kassa
from kassa.services import idempotency
from kassa.services.context import RequestContext
from tests.builders import make_product
from tests.conftest import Keys

PROBLEM_JSON = "application/problem+json"

# (method, path, JSON body or None) for one call per protected route
PROTECTED: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/products", None),
    ("GET", "/v1/products/MUG", None),
    ("POST", "/v1/products", {"sku": "X", "title": "X", "unit_amount": 1, "currency": "EUR"}),
    ("PATCH", "/v1/products/MUG", {"title": "Y"}),
    ("POST", "/v1/customers", {"email": "a@example.com"}),
    ("GET", "/v1/customers/cus_x", None),
    ("GET", "/v1/orders", None),
    ("GET", "/v1/orders/ord_x", None),
    ("POST", "/v1/orders", {"email": "a@example.com", "currency": "EUR", "lines": []}),
    ("POST", "/v1/orders/ord_x/cancel", None),
    ("POST", "/v1/orders/ord_x/fulfill", None),
    ("GET", "/v1/audit", None),
]
PROTECTED_IDS = [f"{method} {path}" for method, path, _ in PROTECTED]


# -- helpers ------------------------------------------------------------------------------


def call(
    client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers or {})


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = response.json()
    for member in ("type", "title", "status", "detail", "code"):
        assert member in body, f"problem body lacks {member!r}: {body}"
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str)
    assert isinstance(body["code"], str) and body["code"]
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_client_error_problem(response: httpx.Response) -> dict[str, Any]:
    """Any 4xx (never a 5xx), as a problem document."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"
    return assert_problem(response, response.status_code)


def count_orders(client: TestClient, keys: Keys) -> int:
    response = client.get("/v1/orders", params={"limit": 100}, headers=keys.headers("admin"))
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=PROTECTED_IDS)
def test_missing_authorization_is_401(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    assert_problem(call(client, method, path, body), 401)


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=PROTECTED_IDS)
def test_unknown_key_is_401(
    client: TestClient, keys: Keys, method: str, path: str, body: dict[str, Any] | None
) -> None:
    headers = {"Authorization": "Bearer kassa_sk_this_key_does_not_exist"}
    assert_problem(call(client, method, path, body, headers), 401)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Token {secret}", "{secret}",
     "Bearer {secret}x", "Bearer x{secret}"],
)  # fmt: skip
def test_malformed_authorization_is_401(client: TestClient, keys: Keys, authorization: str) -> None:
    header = authorization.format(secret=keys.admin)
    response = client.get("/v1/products", headers={"Authorization": header})
    assert_problem(response, 401)


def test_bearer_scheme_is_case_insensitive(client: TestClient, keys: Keys) -> None:
    response = client.get("/v1/products", headers={"Authorization": f"bearer {keys.admin}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("authorization", [None, "Bearer kassa_sk_unknown"], ids=["none", "bad"])
def test_401_challenges_with_www_authenticate_bearer(
    client: TestClient, authorization: str | None
) -> None:
    """RFC 9110 section 15.5.2: a 401 response MUST carry a WWW-Authenticate challenge."""
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/v1/products", headers=headers)
    assert_problem(response, 401)
    assert response.headers.get("WWW-Authenticate", "").lower().startswith("bearer")


def test_revoked_key_is_401(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    assert client.get("/v1/products", headers=keys.headers("ops")).status_code == 200
    kassa.api_keys.revoke(RequestContext.system("test"), keys.ids["ops"])
    assert_problem(client.get("/v1/products", headers=keys.headers("ops")), 401)
    body = {"sku": "AFTER", "title": "t", "unit_amount": 1, "currency": "EUR"}
    assert_problem(client.post("/v1/products", json=body, headers=keys.headers("ops")), 401)
    # other keys are unaffected
    assert client.get("/v1/products", headers=keys.headers("admin")).status_code == 200
    assert client.get("/v1/products/AFTER", headers=keys.headers("admin")).status_code == 404


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("analyst", "POST", "/v1/products",
         {"sku": "X", "title": "X", "unit_amount": 1, "currency": "EUR"}),
        ("storefront", "PATCH", "/v1/products/MUG", {"title": "Y"}),
        ("storefront", "GET", "/v1/audit", None),
        ("ops", "GET", "/v1/audit", None),
        ("analyst", "GET", "/v1/audit", None),
        ("storefront", "POST", "/v1/orders/ord_x/fulfill", None),
        ("analyst", "POST", "/v1/orders/ord_x/fulfill", None),
    ],
    ids=lambda v: v if isinstance(v, str) else "body",
)  # fmt: skip
def test_role_too_low_is_403(
    client: TestClient,
    keys: Keys,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    make_product(client, keys, "MUG")
    assert_problem(call(client, method, path, body, keys.headers(role)), 403)


# -- problem documents --------------------------------------------------------------------


def test_422_lists_field_problems(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/products",
        json={"sku": "X", "title": "X", "unit_amount": 19.99, "currency": "EUR", "stock": "3"},
        headers=keys.headers("ops"),
    )
    body = assert_problem(response, 422)
    errors = body.get("errors")
    assert isinstance(errors, list) and len(errors) >= 2, body
    assert all(isinstance(e, dict) for e in errors)
    text = json.dumps(errors)
    assert "unit_amount" in text and "stock" in text


def test_domain_problems_share_the_shape(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "MUG")
    body = assert_problem(
        client.post(
            "/v1/products",
            json={"sku": "MUG", "title": "t", "unit_amount": 1, "currency": "EUR"},
            headers=keys.headers("ops"),
        ),
        409,
        "sku_exists",
    )
    assert body["title"]


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/products/MUG/nope", "/v2/products"])
def test_unknown_route_is_404_problem(client: TestClient, keys: Keys, path: str) -> None:
    assert_problem(client.get(path, headers=keys.headers("admin")), 404)


def test_unknown_route_without_key_is_a_problem(client: TestClient) -> None:
    response = client.get("/v1/nope")
    assert response.status_code in (401, 404), response.text
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/v1/products/MUG"), ("PUT", "/v1/products/MUG"), ("DELETE", "/v1/orders"),
     ("GET", "/v1/orders/ord_x/cancel"), ("PATCH", "/v1/customers"), ("POST", "/healthz")],
)  # fmt: skip
def test_wrong_method_is_405_problem(
    client: TestClient, keys: Keys, method: str, path: str
) -> None:
    response = client.request(method, path, headers=keys.headers("admin"))
    assert_problem(response, 405)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/products"), ("PATCH", "/v1/products/MUG"), ("POST", "/v1/customers"),
     ("POST", "/v1/orders")],
)  # fmt: skip
@pytest.mark.parametrize(
    ("content_type", "content"),
    [("text/plain", b'{"email": "a@example.com"}'),
     ("application/x-www-form-urlencoded", b"email=a%40example.com"),
     ("application/xml", b"<product/>")],
    ids=["text", "form", "xml"],
)  # fmt: skip
def test_non_json_body_is_415(
    client: TestClient,
    keys: Keys,
    method: str,
    path: str,
    content_type: str,
    content: bytes,
) -> None:
    make_product(client, keys, "MUG")
    headers = keys.headers("admin", **{"Content-Type": content_type})
    response = client.request(method, path, content=content, headers=headers)
    assert_problem(response, 415)


def test_415_changes_nothing(client: TestClient, keys: Keys) -> None:
    body = json.dumps({"sku": "TXT", "title": "t", "unit_amount": 1, "currency": "EUR"})
    headers = keys.headers("admin", **{"Content-Type": "text/plain"})
    assert_problem(client.post("/v1/products", content=body, headers=headers), 415)
    assert client.get("/v1/products/TXT", headers=keys.headers("admin")).status_code == 404


def test_json_with_charset_is_accepted(client: TestClient, keys: Keys) -> None:
    headers = keys.headers("ops", **{"Content-Type": "application/json; charset=utf-8"})
    body = json.dumps({"sku": "UTF", "title": "t", "unit_amount": 1, "currency": "EUR"})
    assert client.post("/v1/products", content=body, headers=headers).status_code == 201


@pytest.mark.parametrize(
    "content",
    [b'{"sku": ', b"{'sku': 'x'}", b"not json", b'{"sku": "x",}', b"\xff\xfe\x00", b""],
    ids=["truncated", "single-quotes", "text", "trailing-comma", "binary", "empty"],
)
def test_malformed_json_is_a_4xx_problem(client: TestClient, keys: Keys, content: bytes) -> None:
    headers = keys.headers("ops", **{"Content-Type": "application/json"})
    assert_client_error_problem(client.post("/v1/products", content=content, headers=headers))


@pytest.mark.parametrize(
    "content", [b"[]", b"null", b"42", b'"text"', b"[{}]"], ids=["list", "null", "int", "str", "l"]
)
def test_json_that_is_not_an_object_is_422(client: TestClient, keys: Keys, content: bytes) -> None:
    headers = keys.headers("ops", **{"Content-Type": "application/json"})
    assert_problem(client.post("/v1/orders", content=content, headers=headers), 422)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/products/a%00b", None),
        ("GET", "/v1/orders/ord_%00", None),
        ("GET", "/v1/customers/cus_%00", None),
        ("GET", "/v1/orders?customer=cus_%00", None),
        ("GET", "/v1/products?starting_after=prod_%00", None),
        ("GET", "/v1/orders?starting_after=" + "x" * 5000, None),
        ("GET", "/v1/products/" + "S" * 5000, None),
        ("PATCH", "/v1/products/MUG", {"title": "nul\u0000byte"}),
        ("POST", "/v1/products",
         {"sku": "NUL", "title": "nul\u0000byte", "unit_amount": 1, "currency": "EUR"}),
        ("POST", "/v1/products",
         {"sku": "BIG", "title": "t", "unit_amount": 10**40, "currency": "EUR"}),
        ("POST", "/v1/products", {"sku": "X" * 10_000, "title": "t", "unit_amount": 1,
                                  "currency": "EUR"}),
        ("POST", "/v1/customers", {"email": "a@example.com", "name": "nul\u0000byte"}),
        ("POST", "/v1/customers", {"email": "a@example.com", "name": "n" * 100_000}),
        ("POST", "/v1/orders",
         {"email": "a@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}],
          "metadata": {"k": "nul\u0000byte"}}),
        ("POST", "/v1/orders",
         {"email": "a@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}],
          "shipping_address": {"line1": "nul\u0000byte"}}),
        ("POST", "/v1/orders",
         {"email": "a@example.com", "currency": "EUR",
          "lines": [{"sku": "MUG", "quantity": 10**40}]}),
        ("POST", "/v1/orders",
         {"customer": "cus_\u0000", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]}),
        ("POST", "/v1/orders",
         {"email": "a@example.com", "currency": "EUR",
          "lines": [{"sku": "MUG", "quantity": 1}] * 1000}),
    ],
    ids=["get-product-nul", "get-order-nul", "get-customer-nul", "filter-nul", "cursor-nul",
         "long-cursor", "long-sku-path", "patch-title-nul", "title-nul", "huge-amount",
         "long-sku", "name-nul", "long-name", "metadata-nul", "address-nul", "huge-quantity",
         "customer-nul", "many-lines"],
)  # fmt: skip
def test_bad_input_never_causes_a_5xx(
    client: TestClient, keys: Keys, method: str, path: str, body: dict[str, Any] | None
) -> None:
    make_product(client, keys, "MUG")
    response = call(client, method, path, body, keys.headers("admin"))
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


# -- public routes ------------------------------------------------------------------------


def test_healthz_is_public(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.text


def test_openapi_is_public(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    spec = response.json()
    assert "openapi" in spec and "/v1/orders" in spec["paths"]


def test_docs_are_public(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200, response.text
    assert "text/html" in response.headers["content-type"]


# -- idempotency (Conventions) ------------------------------------------------------------


def test_same_key_same_body_replays_the_stored_response(client: TestClient, keys: Keys) -> None:
    make_product(client, keys, "VASE", unique=True)
    body = {"email": "a@example.com", "currency": "EUR", "lines": [{"sku": "VASE", "quantity": 1}]}
    headers = keys.headers("storefront", **{"Idempotency-Key": "order-attempt-1"})
    first = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert first.headers.get("Idempotent-Replayed") in (None, "false")
    second = client.post("/v1/orders", json=body, headers=headers)
    assert second.status_code == 201, second.text
    assert second.content == first.content
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert count_orders(client, keys) == 1


def test_same_key_different_body_is_422_idempotency_key_reused(
    client: TestClient, keys: Keys
) -> None:
    headers = keys.headers("storefront", **{"Idempotency-Key": "cust-1"})
    first = client.post("/v1/customers", json={"email": "a@example.com"}, headers=headers)
    assert first.status_code == 201, first.text
    second = client.post("/v1/customers", json={"email": "b@example.com"}, headers=headers)
    assert_problem(second, 422, "idempotency_key_reused")


def test_idempotency_keys_are_scoped_to_the_api_key(client: TestClient, keys: Keys) -> None:
    body = {"email": "a@example.com"}
    mine = client.post(
        "/v1/customers",
        json=body,
        headers=keys.headers("storefront", **{"Idempotency-Key": "shared"}),
    )
    theirs = client.post(
        "/v1/customers",
        json=body,
        headers=keys.headers("other_storefront", **{"Idempotency-Key": "shared"}),
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.headers.get("Idempotent-Replayed") in (None, "false")


def test_key_in_use_is_409_idempotency_key_in_use(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    body = {"email": "a@example.com"}
    fingerprint = idempotency.fingerprint("POST", "/v1/customers", json.dumps(body).encode())
    # another process holds the key right now (its request is still running)
    decision = kassa.idempotency.begin(keys.ids["storefront"], "busy", fingerprint)
    assert isinstance(decision, idempotency.Proceed)
    response = client.post(
        "/v1/customers",
        json=body,
        headers=keys.headers("storefront", **{"Idempotency-Key": "busy"}),
    )
    assert_problem(response, 409, "idempotency_key_in_use")


def test_idempotency_key_of_255_chars_is_accepted(client: TestClient, keys: Keys) -> None:
    headers = keys.headers("storefront", **{"Idempotency-Key": "k" * 255})
    response = client.post("/v1/customers", json={"email": "a@example.com"}, headers=headers)
    assert response.status_code == 201, response.text


def test_idempotency_key_over_255_chars_is_refused(client: TestClient, keys: Keys) -> None:
    headers = keys.headers("storefront", **{"Idempotency-Key": "k" * 256})
    response = client.post("/v1/customers", json={"email": "a@example.com"}, headers=headers)
    assert_client_error_problem(response)
