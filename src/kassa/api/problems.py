"""RFC 9457 problem+json for every error the API can answer with.

Every failure, from FastAPI's own (404 unknown route, 405, 422 validation) to kassa's
domain errors, leaves as `{"type", "title", "status", "detail", "code", "errors"?}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import singledispatch
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from kassa.domain.errors import DomainError, ErrorKind, FieldProblem
from kassa.storage.errors import SchemaMissing, StorageError, storage_error

log = logging.getLogger("kassa.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://kassa.dev/problems/"

_KIND_STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.REJECTED: 400,
}
_STATUS_CODE = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}
# How long a client should wait before retrying while the database is away.
DATABASE_RETRY_AFTER_S = 5


# What FastAPI says of a body it could not even decode.
_UNPARSABLE_BODY = "There was an error parsing the body"


class ApiProblem(Exception):
    """An HTTP-level problem raised by the adapter itself (auth, media type, headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers


def problem_response(
    status: int,
    code: str,
    detail: str,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = list(errors)
    return Response(
        content=json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field(loc: Sequence[str | int], message: str, kind: str) -> dict[str, Any]:
    path = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return {"field": ".".join(path), "loc": list(loc), "message": message, "type": kind}


def field_problems(errors: Sequence[FieldProblem]) -> list[dict[str, Any]]:
    return [_field(e.loc, e.message, e.type) for e in errors]


@singledispatch
def response_for(exc: Exception) -> Response | None:
    """The problem response for an exception we know how to answer, else None.

    One responder per exception type, registered below; the most specific one answers
    (a `SchemaMissing` is a `StorageError` with its own answer)."""
    return None


@response_for.register
def _domain_problem(exc: DomainError) -> Response:
    return problem_response(
        _KIND_STATUS[exc.kind], exc.code, exc.detail, field_problems(exc.errors) or None
    )


@response_for.register
def _api_problem(exc: ApiProblem) -> Response:
    return problem_response(
        exc.status, exc.code, exc.detail, exc.errors or None, headers=exc.headers
    )


@response_for.register
def _schema_missing(exc: SchemaMissing) -> Response:
    return problem_response(
        503, "database_not_migrated", "the database has no kassa schema: run `kassa migrate`"
    )


@response_for.register
def _storage_problem(exc: StorageError) -> Response:
    # the details (hosts, ports) stay in the log
    return problem_response(
        503,
        "database_unavailable",
        "the database is unavailable; retry later",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


@response_for.register
def _validation_problem(exc: RequestValidationError) -> Response:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return _malformed_json()
    fields = [
        _field(tuple(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", "")))
        for e in errors
    ]
    detail = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields)
    return problem_response(422, "validation_error", detail or "invalid request", fields)


@response_for.register
def _http_problem(exc: StarletteHTTPException) -> Response:
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 404:
        return problem_response(404, "route_not_found", "no such route", headers=headers)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:  # e.g. not UTF-8
        return _malformed_json()
    code = _STATUS_CODE.get(exc.status_code, "http_error")
    return problem_response(exc.status_code, code, str(exc.detail), headers=headers)


def _malformed_json() -> Response:
    return problem_response(400, "malformed_json", "the request body is not valid JSON")


def install_problem_handlers(app: FastAPI) -> None:
    async def handle_known(request: Request, exc: Exception) -> Response:
        response = response_for(exc)
        assert response is not None
        return response

    async def handle_storage(request: Request, exc: Exception) -> Response:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        response = response_for(exc)
        assert response is not None
        return response

    async def handle_unexpected(request: Request, exc: Exception) -> Response:
        translated = storage_error(exc)  # one that did not pass through `Database`
        if translated is not None:
            return await handle_storage(request, translated)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal_error", "an unexpected error occurred")

    for kind in (DomainError, ApiProblem, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, handle_known)
    app.add_exception_handler(StorageError, handle_storage)
    app.add_exception_handler(Exception, handle_unexpected)
