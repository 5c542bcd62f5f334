"""`GET /metrics`: Prometheus's scrape (see `kassa.api.metrics` for what it holds)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kassa.api.auth import authenticate, check_permission, guards, kassa_of
from kassa.api.metrics import CONTENT_TYPE, ApiMetrics, exposition
from kassa.api.problem_docs import raises
from kassa.api.routing import DocumentedRoute
from kassa.domain.roles import Permission
from kassa.services.metrics import MetricsSnapshot

metrics = APIRouter(tags=["operations"], route_class=DocumentedRoute)


@raises(401, "missing_api_key", "invalid_api_key")
@guards(Permission.READ_METRICS)
async def metrics_access(request: Request) -> None:
    """An ops or admin key, unless KASSA_METRICS_PUBLIC=1 opens the route to anyone (a
    Prometheus on a private network that holds no key)."""
    if kassa_of(request).settings.metrics_public:
        return
    check_permission(request, await authenticate(request), Permission.READ_METRICS)


@metrics.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_access)],
    responses={
        200: {
            "description": "The Prometheus text exposition format (version 0.0.4)",
            "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
async def scrape(request: Request) -> Response:
    """Request counts and latencies by route template and status (every API process's),
    webhook deliveries received, and payments, provider events and jobs as the database
    holds them now. Needs an ops or admin key unless KASSA_METRICS_PUBLIC=1."""
    kassa = kassa_of(request)
    api_metrics: ApiMetrics = request.app.state.metrics

    def read() -> MetricsSnapshot:
        return kassa.metrics.read(
            payment_providers=sorted(kassa.providers.enabled),
            webhook_providers=kassa.webhooks.providers,
            job_kinds=sorted(kassa.job_handlers()),
        )

    body = await run_in_threadpool(exposition, api_metrics, read)
    return Response(body, media_type=CONTENT_TYPE)
