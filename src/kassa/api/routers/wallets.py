from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import router
from kassa.api.schemas import PaymentOut, TopUpCreate, WalletAdjust, WalletAdjustOut, WalletOut
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

wallets = router("/v1/customers/{customer_id}/wallet", "wallets")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@wallets.get("", response_model=WalletOut, responses=problems(404, "customer_not_found"))
def get_wallet(
    customer_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_WALLETS))],
    kassa: Core,
) -> object:
    return kassa.wallets.view(customer_id)


@wallets.post(
    "/top-ups",
    status_code=201,
    response_model=PaymentOut,
    responses=problems(
        404,
        "customer_not_found",
        422,
        "unknown_currency",
        "unknown_provider",
        "provider_not_enabled",
    ),
)
def top_up(
    customer_id: str,
    body: TopUpCreate,
    request: Request,
    ctx: Annotated[RequestContext, Depends(require(Permission.TOP_UP_WALLETS))],
    kassa: Core,
) -> object:
    return kassa.payments.top_up(
        ctx,
        customer_id,
        body.amount,
        body.currency,
        body.payment_method,
        provider=body.provider,
        request_key=request.headers.get("idempotency-key"),
    )


@wallets.post(
    "/adjust",
    response_model=WalletAdjustOut,
    responses=problems(
        404, "customer_not_found", 422, "unknown_currency", "insufficient_wallet_balance"
    ),
)
def adjust(
    customer_id: str,
    body: WalletAdjust,
    ctx: Annotated[RequestContext, Depends(require(Permission.ADJUST_WALLETS))],
    kassa: Core,
) -> object:
    result = kassa.wallets.adjust(ctx, customer_id, body.currency, body.balance, body.reason)
    return WalletAdjustOut(
        prev_balance=result.prev_balance, new_balance=result.new_balance, currency=result.currency
    )
