from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from kassa.api.auth import kassa_of
from kassa.api.problems import problem_response
from kassa.api.routing import DocumentedRoute

health = APIRouter(tags=["operations"], route_class=DocumentedRoute)


@health.get("/healthz", response_model=None)
async def healthz(request: Request) -> object:
    if await run_in_threadpool(kassa_of(request).db.ping):
        return {"status": "ok"}
    return problem_response(503, "database_unavailable", "the database does not answer")
