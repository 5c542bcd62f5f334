"""`POST /v1/webhooks/{provider}`: public, checked by signature instead of an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from kassa.api.auth import kassa_of
from kassa.api.metrics import ApiMetrics
from kassa.api.problem_docs import problems
from kassa.api.routing import DocumentedRoute
from kassa.domain.errors import DomainError, ErrorKind

webhooks = APIRouter(tags=["webhooks"], route_class=DocumentedRoute)


class Acknowledgement(BaseModel):
    received: bool
    duplicate: bool


@webhooks.post(
    "/v1/webhooks/{provider}",
    response_model=Acknowledgement,
    responses=problems(400, "invalid_signature", "malformed_event", 404, "unknown_provider"),
)
async def receive_event(provider: str, request: Request) -> Acknowledgement:
    body = await request.body()
    metrics: ApiMetrics = request.app.state.metrics
    try:
        receipt = await run_in_threadpool(
            kassa_of(request).webhooks.receive,
            provider,
            body,
            request.headers,  # the provider's scheme knows which header carries its signature
        )
    except DomainError as exc:
        if exc.kind is ErrorKind.REJECTED:  # not for an unknown provider: 404, no series
            metrics.webhook_received(provider, "rejected")
        raise
    metrics.webhook_received(provider, "duplicate" if receipt.duplicate else "new")
    return Acknowledgement(received=True, duplicate=receipt.duplicate)
