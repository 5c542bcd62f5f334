"""The error answers of every operation, declared in the OpenAPI document.

Every 4xx/503 an operation can answer is listed under its status as
`application/problem+json` with the `Problem` schema, its `code` restricted to the codes
that status can carry there (also listed in the response's `x-problem-codes` and its
description), so generated clients and schemathesis know them.

One mechanism: `DocumentedRoute` (the base of `KassaRoute`) adds the answers every route
shares from what the route is — 400 `invalid_characters` and 503 for all, 401/403 for
routes behind `require(...)`, 404 `route_not_found` where a path parameter could hold a
`/`, 422 `validation_error` where there are parameters or a body, 400 `malformed_json`
where there is a body — and a route names its own domain codes with
`responses=problems(404, "order_not_found", 409, "order_not_pending")`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from kassa.api.auth import authenticate, required_permission
from kassa.api.problems import PROBLEM_JSON

PROBLEM_CODES = "x-problem-codes"
PROBLEM_REF = "#/components/schemas/Problem"


class FieldError(BaseModel):
    field: str = Field(description="the field's dotted path, e.g. `lines.0.quantity`")
    loc: list[str | int] = Field(description="where the field is: `body`/`query`/`path`, keys")
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem: every error kassa answers with has this shape."""

    type: str = Field(description="`https://kassa.dev/problems/<code>`")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what went wrong, for humans")
    code: str = Field(description="what went wrong, for programs: stable")
    errors: list[FieldError] = Field(
        default_factory=list, description="the field problems of a 400/422, when there are any"
    )


def problems(*spec: int | str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route naming its own problem codes, each after its status:
    `problems(404, "order_not_found", 409, "order_not_pending", "nothing_to_pay")`."""
    declared: dict[int | str, dict[str, Any]] = {}
    codes: list[str] | None = None
    for item in spec:
        if isinstance(item, int):
            codes = declared.setdefault(item, {PROBLEM_CODES: []})[PROBLEM_CODES]
        elif codes is None:
            raise ValueError(f"problem code {item!r} before any status")
        else:
            codes.append(item)
    return declared


# The problems a dependency answers with (see `raises`), listed by every route using it.
_DEPENDENCY_PROBLEMS: dict[object, dict[int | str, dict[str, Any]]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def raises(*spec: int | str) -> Callable[[F], F]:
    """Declare, as for `problems`, what a dependency itself can answer with."""

    def mark(dependency: F) -> F:
        _DEPENDENCY_PROBLEMS[dependency] = problems(*spec)
        return dependency

    return mark


def _tree(dependant: Dependant) -> Iterable[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _tree(sub)


def common_problem_codes(route: APIRoute) -> dict[int, list[str]]:
    """The problems any route like this one can answer, whatever its endpoint does."""
    codes: dict[int, list[str]] = {
        400: ["invalid_characters"],
        503: ["database_unavailable", "database_not_migrated"],
    }
    tree = list(_tree(route.dependant))
    calls = [d.call for d in tree]
    if authenticate in calls:
        codes[401] = ["missing_api_key", "invalid_api_key"]
    if any(required_permission(call) is not None for call in calls):
        codes[403] = ["insufficient_role"]
    for call in calls:
        for status, declared in _DEPENDENCY_PROBLEMS.get(call, {}).items():
            codes.setdefault(int(status), []).extend(declared[PROBLEM_CODES])
    if route.param_convertors:  # a path parameter holding "/" names no route
        codes.setdefault(404, []).insert(0, "route_not_found")
    if route.body_field is not None:
        codes[400].append("malformed_json")
    if route.body_field is not None or any(
        d.path_params or d.query_params or d.header_params or d.cookie_params for d in tree
    ):
        codes.setdefault(422, []).insert(0, "validation_error")
    return codes


def _problem_response(status: int, codes: list[str]) -> dict[str, Any]:
    listed = ", ".join(f"`{code}`" for code in codes)
    return {
        "description": f"{HTTPStatus(status).phrase}: a problem with `code` {listed}",
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [{"$ref": PROBLEM_REF}],
                    "properties": {"status": {"const": status}, "code": {"enum": codes}},
                }
            }
        },
        PROBLEM_CODES: codes,
    }


def document_problems(
    responses: Mapping[int | str, dict[str, Any]], common: Mapping[int, list[str]]
) -> dict[int | str, dict[str, Any]]:
    """`responses` with every problem status in full: the route's own codes (from
    `problems(...)`) after the common ones. Idempotent: FastAPI builds a route again when
    a router is included, from the responses documented the first time."""
    statuses = {int(s) for s, r in responses.items() if PROBLEM_CODES in r} | set(common)
    documented = {s: r for s, r in responses.items() if int(s) not in statuses}
    for status in sorted(statuses):
        own = responses.get(status, {}).get(PROBLEM_CODES, [])
        codes = list(dict.fromkeys([*common.get(status, []), *own]))
        documented[status] = _problem_response(status, codes)
    return documented


def install_problem_schema(app: FastAPI) -> None:
    """Put `Problem` (which no route returns as its model) in the document's components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(schema.pop("$defs", {}))
            schemas["Problem"] = schema
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
