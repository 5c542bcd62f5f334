"""The sandbox provider's own surface: what it recorded, and the browser's part."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.schemas import BrowserConfirm, ListOf, MockChargeOut, MockRefundOut, PaymentOut
from kassa.bootstrap import Kassa
from kassa.domain.errors import DomainError, ErrorKind, FieldProblem, invalid
from kassa.domain.roles import Permission
from kassa.providers.base import ProviderError
from kassa.services.context import RequestContext

Core = Annotated[Kassa, Depends(kassa_dependency)]


async def sandbox_enabled(kassa: Core) -> None:
    """The sandbox's routes exist only where it takes payments (KASSA_PROVIDERS)."""
    if not kassa.providers.is_enabled("mock"):
        raise DomainError(
            "route_not_found", "no such route: the sandbox is not enabled", ErrorKind.NOT_FOUND
        )


mock_provider = router("/v1/providers/mock", "mock provider")
mock_provider.dependencies.append(Depends(sandbox_enabled))
Inspector = Annotated[RequestContext, Depends(require(Permission.INSPECT_PROVIDER))]


@mock_provider.get("/charges", response_model=ListOf[MockChargeOut])
def list_charges(
    ctx: Inspector,
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    order: Annotated[str | None, Query(max_length=40)] = None,
) -> object:
    return kassa.mock.charges_page(order, page.limit, page.starting_after)


@mock_provider.get("/refunds", response_model=ListOf[MockRefundOut])
def list_refunds(
    ctx: Inspector,
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    order: Annotated[str | None, Query(max_length=40)] = None,
) -> object:
    return kassa.mock.refunds_page(order, page.limit, page.starting_after)


@mock_provider.post(
    "/intents/{intent_id}/confirm",
    response_model=PaymentOut,
    responses=problems(
        404,
        "payment_not_found",
        "resource_missing",
        409,
        "payment_intent_unexpected_state",
        "invalid_fault_script",
        "provider_error",
        422,
        "resource_missing",
    ),
)
def confirm_as_browser(
    intent_id: str,
    body: BrowserConfirm,
    ctx: Annotated[RequestContext, Depends(require(Permission.CONFIRM_AS_BROWSER))],
    kassa: Core,
) -> object:
    """Plays the shopper's browser confirming an intent with its payment method (or
    completing 3-D Secure), then brings kassa's payment up to date. Only the key that
    may see the payment may confirm it: another storefront's intent is 404, before the
    sandbox is touched."""
    kassa.payments.for_intent(ctx, "mock", intent_id)
    answered = None  # a decline: kassa reads the intent again below
    try:
        answered = kassa.mock.confirm_from_browser(intent_id, body.payment_method)
    except ProviderError as exc:
        if exc.failure.code in (
            "resource_missing",
            "payment_intent_unexpected_state",
            "invalid_fault_script",
        ):
            status = exc.failure.http_status
            if exc.failure.code == "resource_missing" and status != 404:  # the card, not the intent
                field = FieldProblem(("body", "payment_method"), "unknown payment method")
                raise invalid(exc.failure.code, exc.failure.message, field) from exc
            raise DomainError(
                exc.failure.code,
                exc.failure.message,
                ErrorKind.NOT_FOUND if status == 404 else ErrorKind.CONFLICT,
            ) from exc
        # a decline is recorded at the provider; kassa's payment follows below
    return kassa.payments.sync_from_provider(ctx, "mock", intent_id, answered=answered)


@mock_provider.post(
    "/charges/{charge_id}/dispute", status_code=201, responses=problems(404, "resource_missing")
)
def open_dispute(charge_id: str, ctx: Inspector, kassa: Core) -> dict[str, object]:
    """A sandbox control: the cardholder's bank disputes this charge."""
    try:
        return kassa.mock.open_dispute(charge_id)
    except ProviderError as exc:
        raise DomainError(
            exc.failure.code or "resource_missing", exc.failure.message, ErrorKind.NOT_FOUND
        ) from exc
