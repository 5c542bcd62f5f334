from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from kassa.api.auth import kassa_of
from kassa.api.routing import DocumentedRoute

health = APIRouter(tags=["operations"], route_class=DocumentedRoute)


@health.get("/healthz", response_model=None)
async def healthz(request: Request) -> object:
    """200 when the database answers and holds this kassa's schema; else 503
    `database_unavailable` (with Retry-After) or `database_not_migrated`."""
    await run_in_threadpool(kassa_of(request).db.require_schema)
    return {"status": "ok"}
