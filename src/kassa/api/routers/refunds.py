from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kassa.api.auth import kassa_of, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import router
from kassa.api.schemas import RefundCreate, RefundOut
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.kassa import Kassa

refunds = router("", "refunds")
Core = Annotated[Kassa, Depends(kassa_of)]


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
    "/v1/refunds/{refund_id}", response_model=RefundOut, responses=problems(404, "refund_not_found")
)
def get_refund(
    refund_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_REFUNDS))],
    kassa: Core,
) -> object:
    return kassa.refunds.get(refund_id)
