"""`KassaRoute`: the route class every API route uses.

It enforces JSON bodies (415) and implements `Idempotency-Key` for POST: the first
request with a key runs and its answer is stored; the same key with the same request
replays that answer byte for byte (`Idempotent-Replayed: true`); with another request it
is 422 `idempotency_key_reused`; while the first still runs it is 409
`idempotency_key_in_use`. See `kassa.services.idempotency` for the storage side: the
claim rides in the request's first write transaction and the answer in its last, and an
endpoint marked `@local_effect` (no provider call) runs claim, effect and answer in ONE
transaction. Its routes document these answers, and the common ones of
`DocumentedRoute`, in OpenAPI.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from kassa.api.auth import authenticate, kassa_of
from kassa.api.problem_docs import common_problem_codes, document_problems
from kassa.api.problems import ApiProblem, problem_response, response_for
from kassa.bootstrap import Kassa
from kassa.domain.payments import PaymentStatus
from kassa.services import idempotency
from kassa.services.context import RequestContext
from kassa.services.payments import PaymentView

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
REPLAYED = "Idempotent-Replayed"
_KEPT_HEADERS = ("content-type", "location")
_LOCAL = "_kassa_local_effect"
E = TypeVar("E", bound=Callable[..., Any])


def _kept_headers(response: Response) -> dict[str, str]:
    """The headers a stored answer replays."""
    return {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}


def local_effect(endpoint: E) -> E:
    """Mark an endpoint whose effect is local (database only, no provider call): with an
    Idempotency-Key, its claim, effect and stored answer are one transaction."""
    setattr(endpoint, _LOCAL, True)
    return endpoint


# How to answer from a resource when a request died after its effect committed.
RESOURCE_LOADERS: dict[str, Callable[[Kassa, str], object]] = {
    "order": lambda k, rid: k.orders.get(RequestContext.system(), rid),
    "product": lambda k, rid: k.catalogue.get(rid),
    "customer": lambda k, rid: k.customers.get(rid),
    "payment": lambda k, rid: k.payments.get(RequestContext.system(), rid),
    "refund": lambda k, rid: k.refunds.get(rid),
}


def _status_of(resource: object, created: int) -> int:
    """A payment still processing at its provider is answered 202, as when it was made
    (kassa's worker settles it later); anything else with the route's own status."""
    if isinstance(resource, PaymentView) and resource.status == PaymentStatus.PROCESSING:
        return 202
    return created


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _enforce_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    body = await request.body()
    if (content_type is not None or body) and not _is_json(content_type or ""):
        raise ApiProblem(415, "unsupported_media_type", "send the request body as application/json")


class DocumentedRoute(APIRoute):
    """A route whose OpenAPI operation lists the problems it can answer with."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.responses = document_problems(self.responses, self.problem_codes())

    def problem_codes(self) -> dict[int, list[str]]:
        return common_problem_codes(self)


class KassaRoute(DocumentedRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # Wrapped before FastAPI builds the route (and the copies that included routers
        # make of it): the wrapper keeps the endpoint's signature (`__wrapped__`).
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = self._answering_in_thread(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def _answers_in_thread(self) -> bool:
        return (
            self.response_field is not None
            and isinstance(self.response_class, DefaultPlaceholder)
            and self.status_code != 204
        )

    def _answering_in_thread(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """The endpoint, answering with its finished response from its own thread hop.

        FastAPI would validate and serialize a sync endpoint's result in a second hop to
        the thread pool, and the stored answer of an Idempotency-Key took a third. A
        request that holds a transaction (a local effect: claim, effect and answer in
        one; a pay's settlement) held it across those hops, waiting for a free thread
        while other requests waited on its locks inside the pool. Here the result is
        validated and serialized as FastAPI would (the route's response field and
        `response_model_*` options, JSON bytes by Pydantic), and a claimed request's
        answer is stored and committed, all in the endpoint's own hop; FastAPI passes the
        Response through untouched. Routes without a response model, or with their own
        response class, are left to FastAPI."""
        route = self

        @functools.wraps(call)
        def answering(**values: Any) -> Any:
            result = call(**values)
            if isinstance(result, Response) or not route._answers_in_thread():
                return result
            response = route._finished(result, values)
            claim = idempotency.current_claim()
            if claim is not None and not claim.answered:
                earlier = claim.store.finish(
                    claim, response.status_code, _kept_headers(response), bytes(response.body)
                )
                if earlier is not None:
                    raise idempotency.Decided(earlier)
            return response

        return answering

    def _finished(self, result: Any, values: dict[str, Any]) -> Response:
        field = self.response_field
        assert field is not None
        value, errors = field.validate(result, {}, loc=("response",))
        if errors:
            raise ResponseValidationError(errors=errors, body=result)
        body = field.serialize_json(
            value,
            include=self.response_model_include,
            exclude=self.response_model_exclude,
            by_alias=self.response_model_by_alias,
            exclude_unset=self.response_model_exclude_unset,
            exclude_defaults=self.response_model_exclude_defaults,
            exclude_none=self.response_model_exclude_none,
        )
        # an endpoint may set its status and headers on an injected Response, as FastAPI
        # lets it (a pay still processing answers 202)
        sub = next((v for v in values.values() if isinstance(v, Response)), None)
        status = (sub.status_code if sub is not None else None) or self.status_code or 200
        response = Response(content=body, status_code=status, media_type="application/json")
        if sub is not None:
            response.headers.raw.extend(
                (name, value) for name, value in sub.headers.raw if name != b"content-length"
            )
        return response

    def problem_codes(self) -> dict[int, list[str]]:
        codes = super().problem_codes()
        methods = self.methods or set()
        if methods & {"POST", "PATCH", "PUT"}:
            codes[415] = ["unsupported_media_type"]
        if "POST" in methods:  # Idempotency-Key
            codes[400].append("invalid_idempotency_key")
            codes.setdefault(401, ["missing_api_key", "invalid_api_key"])
            codes.setdefault(409, []).append("idempotency_key_in_use")
            codes.setdefault(422, []).append("idempotency_key_reused")
        return codes

    def get_route_handler(self) -> Handler:
        inner = super().get_route_handler()
        route = self

        async def handler(request: Request) -> Response:
            if request.method in ("POST", "PATCH", "PUT"):
                await _enforce_json(request)
            key = request.headers.get("idempotency-key")
            if request.method != "POST" or key is None:
                return await inner(request)
            return await route._idempotent(request, inner, key)

        return handler

    async def _idempotent(self, request: Request, inner: Handler, key: str) -> Response:
        if not 1 <= len(key) <= idempotency.MAX_KEY_LENGTH or not key.isprintable():
            raise ApiProblem(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1..{idempotency.MAX_KEY_LENGTH} printable characters",
            )
        api_key = await authenticate(request)
        store = kassa_of(request).idempotency
        if store.has_pending_releases():
            await run_in_threadpool(store.release_pending)
        # the path as the server received it: building `request.url` (a URL parsed from the
        # scope) only for its path cost about 2 % of a pay's CPU (issue 10)
        fingerprint = idempotency.fingerprint(
            request.method, request.scope["path"], await request.body()
        )
        local = bool(getattr(self.endpoint, _LOCAL, False))
        claim = idempotency.Claim(store, api_key.id, key, fingerprint, local=local)
        earlier = await self._run_claimed(request, inner, store, claim)
        if isinstance(earlier, Response):
            return earlier
        # The claim found an earlier request with the key: answer as it did, outside the
        # claim (whose transactions are all closed by now).
        return await self._answer(request, store, earlier)

    @staticmethod
    async def _run_claimed(
        request: Request,
        inner: Handler,
        store: idempotency.IdempotencyStore,
        claim: idempotency.Claim,
    ) -> Response | idempotency.Decision:
        """Run the request under `claim` and store its answer; or the decision of an
        earlier request with the same key, found by the claim."""
        with store.running(claim):
            try:
                response = await inner(request)
            except idempotency.Decided as decided:
                await run_in_threadpool(store.release, claim)
                return decided.decision
            except Exception as exc:
                known = response_for(exc)
                if known is None or known.status_code >= 500:
                    # e.g. the database went away: free the key for the retry.
                    await run_in_threadpool(store.release, claim)
                    raise
                response = known
            if response.status_code >= 500:
                await run_in_threadpool(store.release, claim)
                return response
            if claim.answered:  # stored in the endpoint's own hop (`_answering_in_thread`)
                return response
            body = bytes(getattr(response, "body", b""))
            earlier = await run_in_threadpool(
                store.finish, claim, response.status_code, _kept_headers(response), body
            )
        return response if earlier is None else earlier

    async def _answer(
        self, request: Request, store: idempotency.IdempotencyStore, decision: object
    ) -> Response:
        """The answer for a request whose key an earlier request holds or held."""
        match decision:
            case idempotency.Replay(status, headers, body):
                return Response(
                    content=body, status_code=status, headers={**headers, REPLAYED: "true"}
                )
            case idempotency.Reused():
                return problem_response(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                )
            case idempotency.InUse():
                return problem_response(
                    409,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still being processed",
                )
            case idempotency.Recover(pk, resource_type, resource_id):
                try:
                    response = await self._answer_from_resource(request, resource_type, resource_id)
                except Exception:
                    await run_in_threadpool(store.abandon_soon, pk)
                    raise
                await self._store(store, pk, response)
                response.headers[REPLAYED] = "true"
                return response
        raise AssertionError(f"unhandled idempotency decision {decision!r}")

    async def _answer_from_resource(
        self, request: Request, resource_type: str, resource_id: str
    ) -> Response:
        loader = RESOURCE_LOADERS[resource_type]
        resource = await run_in_threadpool(loader, kassa_of(request), resource_id)
        model = self.response_model
        content = (
            jsonable_encoder(model.model_validate(resource, from_attributes=True))
            if model is not None and hasattr(model, "model_validate")
            else jsonable_encoder(resource)
        )
        return JSONResponse(content, status_code=_status_of(resource, self.status_code or 200))

    @staticmethod
    async def _store(store: idempotency.IdempotencyStore, pk: int, response: Response) -> None:
        body = bytes(getattr(response, "body", b""))
        await run_in_threadpool(
            store.complete_soon, pk, response.status_code, _kept_headers(response), body
        )
