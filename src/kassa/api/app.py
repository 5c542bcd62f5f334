"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from kassa.api.admission import Admission
from kassa.api.docs import install_docs
from kassa.api.metrics import ApiMetrics, RequestMetrics
from kassa.api.problem_docs import install_problem_schema
from kassa.api.problems import install_problem_handlers
from kassa.api.request_id import RequestId
from kassa.api.routers.audit import audit
from kassa.api.routers.checks import checks
from kassa.api.routers.customers import customers
from kassa.api.routers.documents import documents
from kassa.api.routers.emails import emails
from kassa.api.routers.events import events
from kassa.api.routers.exports import exports
from kassa.api.routers.health import health
from kassa.api.routers.kpis import kpis
from kassa.api.routers.metrics import metrics
from kassa.api.routers.mock_provider import mock_provider
from kassa.api.routers.orders import orders
from kassa.api.routers.payments import payments
from kassa.api.routers.products import products
from kassa.api.routers.refunds import refunds
from kassa.api.routers.wallets import wallets
from kassa.api.routers.webhook_endpoints import webhook_deliveries, webhook_endpoints
from kassa.api.routers.webhooks import webhooks
from kassa.api.text import RejectUnstorableText
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.dashboard.app import install_dashboard


def create_app(kassa: Kassa | None = None) -> FastAPI:
    core = kassa or Kassa(Settings.from_env())
    app = FastAPI(
        title="kassa",
        version="1",
        description="Order, payment and refund engine for Stripe-first shops.",
        docs_url=None,  # served from the package's own assets by install_docs
        redoc_url=None,
    )
    app.state.kassa = core

    app.add_middleware(Admission)  # innermost: see api/admission.py
    app.add_middleware(RejectUnstorableText)
    app.add_middleware(RequestId)  # outermost: even a 400 for bad text carries the id
    # GET /metrics (api/metrics.py): every request counted and timed, outermost of all
    app.state.metrics = ApiMetrics(core.webhooks.providers)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.include_router(metrics)
    install_problem_handlers(app)
    install_problem_schema(app)
    install_docs(app)
    for router in (
        health,
        products,
        customers,
        orders,
        payments,
        mock_provider,
        refunds,
        documents,
        wallets,
        webhooks,
        audit,
        exports,
        checks,
        kpis,
        events,
        webhook_endpoints,
        webhook_deliveries,
        emails,
    ):
        app.include_router(router)
    install_dashboard(app)  # /dashboard: pages for staff, on the same services
    return app
