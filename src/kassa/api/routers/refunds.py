from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, created_range, list_params, router
from kassa.api.schemas import ListOf, RefundCreate, RefundOut
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.pagination import CreatedRange

refunds = router("", "refunds")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@refunds.post(
    "/v1/orders/{order_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    responses=problems(
        404,
        "order_not_found",
        409,
        "order_not_paid",
        "order_already_refunded",
        422,
        "amount_exceeds_refundable",
        "wallet_needs_customer",
    ),
)
def refund_order(
    order_id: str,
    body: RefundCreate,
    request: Request,
    ctx: Annotated[RequestContext, Depends(require(Permission.REFUND_ORDERS))],
    kassa: Core,
) -> object:
    return kassa.refunds.create(
        ctx,
        order_id,
        amount=body.amount,
        reason=body.reason,
        destination=body.destination,
        request_key=request.headers.get("idempotency-key"),
    )


@refunds.get(
    "/v1/orders/{order_id}/refunds",
    response_model=ListOf[RefundOut],
    responses=problems(404, "order_not_found"),
)
def list_order_refunds(
    order_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_REFUNDS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
) -> object:
    return kassa.refunds.list_for_order(
        order_id, limit=page.limit, starting_after=page.starting_after
    )


@refunds.get("/v1/refunds", response_model=ListOf[RefundOut])
def list_refunds(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_REFUNDS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    created: Annotated[CreatedRange, Depends(created_range)],
    order: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|succeeded|failed)$")] = None,
) -> object:
    return kassa.refunds.list(
        limit=page.limit,
        starting_after=page.starting_after,
        order=order,
        status=status,
        created=created,
    )


@refunds.get(
    "/v1/refunds/{refund_id}", response_model=RefundOut, responses=problems(404, "refund_not_found")
)
def get_refund(
    refund_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_REFUNDS))],
    kassa: Core,
) -> object:
    return kassa.refunds.get(refund_id)
