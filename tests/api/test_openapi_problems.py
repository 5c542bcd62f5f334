"""The OpenAPI document declares every operation's problem answers (issue 8, finding 10).

Each 4xx/503 an operation can answer is listed with `application/problem+json` content
referencing the `Problem` schema, its `code` restricted to the codes that status carries
there; the common ones come from the route class, the domain ones from `problems(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.api.problem_docs import PROBLEM_CODES, PROBLEM_REF, problems
from kassa.bootstrap import Kassa
from kassa.config import Settings

PROBLEM_JSON = "application/problem+json"
PUBLIC = {("get", "/healthz"), ("post", "/v1/webhooks/{provider}")}
Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def document() -> Iterator[dict[str, Any]]:
    core = Kassa(Settings(database_url="sqlite:///:memory:"))
    try:
        response = TestClient(create_app(core)).get("/openapi.json")
        assert response.status_code == 200
        yield response.json()
    finally:
        core.close()


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def codes(operation: dict[str, Any], status: int) -> list[str]:
    response = operation["responses"].get(str(status))
    assert response is not None, f"{operation['operationId']} does not list {status}"
    listed: list[str] = response[PROBLEM_CODES]
    return listed


def test_the_problem_schema_is_a_component(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "code", "errors"}
    field_error = document["components"]["schemas"]["FieldError"]
    assert set(field_error["required"]) == {"field", "loc", "message", "type"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_error_response_is_a_problem_with_its_codes(document: dict[str, Any]) -> None:
    seen = 0
    for method, path, operation in operations(document):
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        assert errors, f"{method} {path} lists no error responses"
        for status, response in errors.items():
            where = f"{method.upper()} {path} {status}"
            assert set(response["content"]) == {PROBLEM_JSON}, where
            schema = response["content"][PROBLEM_JSON]["schema"]
            assert schema["allOf"] == [{"$ref": PROBLEM_REF}], where
            listed = response[PROBLEM_CODES]
            assert listed and len(set(listed)) == len(listed), where
            assert schema["properties"]["code"]["enum"] == listed, where
            assert schema["properties"]["status"]["const"] == int(status), where
            assert all(f"`{code}`" in response["description"] for code in listed), where
            seen += 1
    assert seen > 100


def test_the_common_problems_follow_from_what_a_route_is(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert "invalid_characters" in codes(operation, 400), where
        assert codes(operation, 503) == ["database_unavailable", "database_not_migrated"], where
        if (method, path) not in PUBLIC:
            assert codes(operation, 401) == ["missing_api_key", "invalid_api_key"], where
            assert codes(operation, 403) == ["insufficient_role"], where
        else:
            assert "401" not in operation["responses"], where
        if "{" in path:
            assert codes(operation, 404)[0] == "route_not_found", where
            assert len(codes(operation, 404)) > 1, f"{where} names no domain 404"
        if "requestBody" in operation:
            assert "malformed_json" in codes(operation, 400), where
            assert "validation_error" in codes(operation, 422), where
        if method == "post" and (method, path) not in PUBLIC:
            assert codes(operation, 415) == ["unsupported_media_type"], where
            assert "invalid_idempotency_key" in codes(operation, 400), where
            assert "idempotency_key_in_use" in codes(operation, 409), where
            assert "idempotency_key_reused" in codes(operation, 422), where
        if any(p["name"] == "starting_after" for p in operation.get("parameters", [])):
            assert "invalid_cursor" in codes(operation, 422), where


def test_refunds_list_their_domain_codes(document: dict[str, Any]) -> None:
    refund = document["paths"]["/v1/orders/{order_id}/refunds"]["post"]
    assert "order_not_found" in codes(refund, 404)
    assert {"order_not_paid", "order_already_refunded"} <= set(codes(refund, 409))
    assert {"amount_exceeds_refundable", "wallet_needs_customer"} <= set(codes(refund, 422))


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("post", "/v1/orders", 409, "item_unavailable"),
        ("post", "/v1/orders", 422, "unknown_sku"),
        ("post", "/v1/orders/{order_id}/payments", 409, "nothing_to_pay"),
        ("post", "/v1/orders/{order_id}/payments", 422, "unknown_provider"),
        ("post", "/v1/orders/{order_id}/cancel", 409, "invalid_order_transition"),
        ("post", "/v1/products", 409, "sku_exists"),
        ("get", "/v1/products/{sku}", 404, "product_not_found"),
        ("get", "/v1/invoices/{document_id}.pdf", 404, "invoice_not_found"),
        ("get", "/v1/credit-notes/{document_id}", 404, "credit_note_not_found"),
        ("post", "/v1/customers/{customer_id}/wallet/top-ups", 422, "unknown_currency"),
        ("post", "/v1/webhooks/{provider}", 400, "invalid_signature"),
        ("post", "/v1/webhooks/{provider}", 404, "unknown_provider"),
    ],
)
def test_operations_name_their_domain_codes(
    document: dict[str, Any], method: str, path: str, status: int, code: str
) -> None:
    assert code in codes(document["paths"][path][method], status)


def test_the_problems_helper_pairs_codes_with_statuses() -> None:
    assert problems(404, "a", 409, "b", "c") == {
        404: {PROBLEM_CODES: ["a"]},
        409: {PROBLEM_CODES: ["b", "c"]},
    }
    with pytest.raises(ValueError, match="before any status"):
        problems("a", 404)
