from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from pydantic import EmailStr

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, created_range, list_params, router
from kassa.api.routing import local_effect
from kassa.api.schemas import ListOf, OrderCreate, OrderOut
from kassa.bootstrap import Kassa
from kassa.domain.orders import LineRequest
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.orders import NewOrder
from kassa.services.pagination import CreatedRange

orders = router("/v1/orders", "orders")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@orders.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses=problems(
        404,
        "customer_not_found",
        409,
        "item_unavailable",
        "insufficient_stock",
        422,
        "unknown_currency",
        "currency_mismatch",
        "unknown_sku",
        "amount_too_large",
    ),
)
@local_effect
def create_order(
    body: OrderCreate,
    ctx: Annotated[RequestContext, Depends(require(Permission.CREATE_ORDERS))],
    kassa: Core,
) -> object:
    return kassa.orders.create(
        ctx,
        NewOrder(
            currency=body.currency,
            lines=[LineRequest(sku=line.sku, quantity=line.quantity) for line in body.lines],
            customer=body.customer,
            email=str(body.email) if body.email is not None else None,
            shipping_address=body.shipping_address,
            metadata=dict(body.metadata),
        ),
    )


@orders.get("", response_model=ListOf[OrderOut])
def list_orders(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_ORDERS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    created: Annotated[CreatedRange, Depends(created_range)],
    customer: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|paid|fulfilled|canceled)$")] = None,
    email: Annotated[EmailStr | None, Query()] = None,
) -> object:
    return kassa.orders.list(
        ctx,
        limit=page.limit,
        starting_after=page.starting_after,
        customer=customer,
        status=status,
        email=str(email) if email is not None else None,
        created=created,
    )


@orders.get("/{order_id}", response_model=OrderOut, responses=problems(404, "order_not_found"))
def get_order(
    order_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_ORDERS))],
    kassa: Core,
) -> object:
    return kassa.orders.get(ctx, order_id)


@orders.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    responses=problems(
        404, "order_not_found", 409, "invalid_order_transition", "payment_in_progress"
    ),
)
@local_effect
def cancel_order(
    order_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.CANCEL_ORDERS))],
    kassa: Core,
) -> object:
    return kassa.orders.cancel(ctx, order_id)


@orders.post(
    "/{order_id}/fulfill",
    response_model=OrderOut,
    responses=problems(404, "order_not_found", 409, "invalid_order_transition"),
)
@local_effect
def fulfill_order(
    order_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.FULFILL_ORDERS))],
    kassa: Core,
) -> object:
    return kassa.orders.fulfill(ctx, order_id)
