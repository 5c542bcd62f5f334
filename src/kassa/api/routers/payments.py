from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, created_range, list_params, router
from kassa.api.schemas import (
    GatewayHealthOut,
    ListOf,
    PaymentAnalyticsOut,
    PaymentCreate,
    PaymentOut,
)
from kassa.bootstrap import Kassa
from kassa.domain.payments import PaymentStatus
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.pagination import CreatedRange
from kassa.services.payment_analytics import parse_window

payments = router("", "payments")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@payments.post(
    "/v1/orders/{order_id}/payments",
    status_code=201,
    response_model=PaymentOut,
    responses={
        202: {"model": PaymentOut, "description": "still processing at the provider"},
        **problems(
            404,
            "order_not_found",
            409,
            "order_not_pending",
            "payment_in_progress",
            "nothing_to_pay",
            422,
            "unknown_provider",
            "provider_not_enabled",
            "wallet_needs_customer",
            "insufficient_wallet_balance",
        ),
    },
)
def pay_order(
    order_id: str,
    body: PaymentCreate,
    request: Request,
    response: Response,
    ctx: Annotated[RequestContext, Depends(require(Permission.PAY_ORDERS))],
    kassa: Core,
) -> object:
    payment = kassa.payments.pay(
        ctx,
        order_id,
        provider=body.provider,
        payment_method=body.payment_method,
        request_key=request.headers.get("idempotency-key"),
    )
    if payment.status == PaymentStatus.PROCESSING.value:
        response.status_code = 202
    return payment


@payments.get(
    "/v1/orders/{order_id}/payments",
    response_model=ListOf[PaymentOut],
    responses=problems(404, "order_not_found"),
)
def list_order_payments(
    order_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_PAYMENTS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
) -> object:
    return kassa.payments.list_for_order(
        ctx, order_id, limit=page.limit, starting_after=page.starting_after
    )


@payments.get("/v1/payments", response_model=ListOf[PaymentOut])
def list_payments(
    ctx: Annotated[RequestContext, Depends(require(Permission.LIST_PAYMENTS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    created: Annotated[CreatedRange, Depends(created_range)],
    order: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[
        str | None, Query(pattern="^(processing|requires_action|succeeded|failed|canceled)$")
    ] = None,
    provider: Annotated[str | None, Query(pattern="^[a-z]{1,20}$")] = None,
) -> object:
    return kassa.payments.list(
        ctx,
        limit=page.limit,
        starting_after=page.starting_after,
        order=order,
        status=status,
        provider=provider,
        created=created,
    )


@payments.get(
    "/v1/payments/{payment_id}",
    response_model=PaymentOut,
    responses=problems(404, "payment_not_found"),
)
def get_payment(
    payment_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_PAYMENTS))],
    kassa: Core,
) -> object:
    return kassa.payments.get(ctx, payment_id)


@payments.get("/v1/gateways/health", response_model=ListOf[GatewayHealthOut])
def gateway_health(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_GATEWAYS))],
    kassa: Core,
) -> object:
    reports = [kassa.gateway_health.report(name) for name in kassa.providers.names]
    health = [
        GatewayHealthOut(
            provider=r.provider,
            state=r.state.value,
            window_s=r.window_s,
            attempts=r.stats.attempts,
            success_rate=round(r.stats.success_rate, 4),
            failure_rate=round(r.stats.failure_rate, 4),
            avg_latency_ms=round(r.stats.avg_latency_ms, 1),
            p95_latency_ms=r.stats.p95_latency_ms,
        )
        for r in reports
    ]
    return ListOf[GatewayHealthOut](data=health, has_more=False)


@payments.get("/v1/analytics/payments", response_model=PaymentAnalyticsOut)
def payment_analytics(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_ANALYTICS))],
    kassa: Core,
    window: Annotated[str | None, Query(max_length=12)] = None,
) -> object:
    return kassa.analytics.payments(parse_window(window))
