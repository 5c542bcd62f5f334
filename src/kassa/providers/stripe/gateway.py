"""The Stripe gateway, on the official `stripe` SDK.

The SDK's own network retries are off (`max_network_retries=0`): kassa's orchestrator
owns retries, so it can classify, record and bound them. Every mutating call sends an
idempotency key. `api_base` points the SDK at a local fake (localstripe) in tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import stripe

from kassa.domain.payments import ErrorType, ProviderFailure
from kassa.domain.refunds import RefundStatus
from kassa.providers.base import (
    LIST_PAGE_SIZE,
    IntentRequest,
    IntentStatus,
    ProviderError,
    ProviderIntent,
    ProviderRefund,
)

NAME = "stripe"
REFERENCE_KEY = "kassa_reference"


# The SDK's exception classes in kassa's vocabulary, most specific first; any other
# error is an API error if Stripe answered 5xx, else an invalid request.
_ERROR_TYPES: tuple[tuple[type[stripe.StripeError], ErrorType], ...] = (
    (stripe.CardError, ErrorType.CARD_ERROR),
    (stripe.RateLimitError, ErrorType.RATE_LIMIT),
    (stripe.APIConnectionError, ErrorType.CONNECTION),
    (stripe.AuthenticationError, ErrorType.AUTHENTICATION),
    (stripe.PermissionError, ErrorType.AUTHENTICATION),
    (stripe.IdempotencyError, ErrorType.IDEMPOTENCY),
    (stripe.InvalidRequestError, ErrorType.INVALID_REQUEST),
    (stripe.APIError, ErrorType.API_ERROR),
)


def _error_type(exc: stripe.StripeError) -> ErrorType:
    for kind, error_type in _ERROR_TYPES:
        if isinstance(exc, kind):
            return error_type
    status = exc.http_status
    return (
        ErrorType.API_ERROR if status is not None and status >= 500 else ErrorType.INVALID_REQUEST
    )


def failure_of(exc: stripe.StripeError) -> ProviderFailure:
    """Translate an SDK exception into kassa's vocabulary."""
    error_type = _error_type(exc)
    message = exc.user_message or str(exc) or type(exc).__name__
    if error_type is ErrorType.CONNECTION:
        # The SDK cannot tell "never sent" from "sent, answer lost": assume the worst,
        # so the orchestrator looks the payment up before it retries anything.
        return ProviderFailure(error_type, message, reached_provider=None)
    error = exc.error
    code = getattr(exc, "code", None) or (error.code if error else None)
    decline = error.decline_code if error and error_type is ErrorType.CARD_ERROR else None
    status = exc.http_status
    if error_type is ErrorType.RATE_LIMIT:
        status = status or 429
    return ProviderFailure(error_type, message, code, decline, status)


def _plain(obj: Any) -> dict[str, Any]:
    """SDK objects refuse dict methods; work on a plain (recursive) dict copy."""
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)


def _intent(sdk_obj: Any) -> ProviderIntent:
    obj = _plain(sdk_obj)
    error = obj.get("last_payment_error")
    last = (
        ProviderFailure(
            ErrorType.CARD_ERROR if error.get("type") == "card_error" else ErrorType.API_ERROR,
            error.get("message") or "payment failed",
            error.get("code"),
            error.get("decline_code"),
        )
        if error
        else None
    )
    next_action = obj.get("next_action")
    return ProviderIntent(
        id=obj["id"],
        status=IntentStatus(obj["status"]),
        amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        amount_received=int(obj.get("amount_received") or 0),
        client_secret=obj.get("client_secret"),
        next_action=next_action,
        last_error=last,
        reference=(obj.get("metadata") or {}).get(REFERENCE_KEY),
    )


def _refund(sdk_obj: Any) -> ProviderRefund:
    obj = _plain(sdk_obj)
    status = str(obj["status"])
    return ProviderRefund(
        id=obj["id"],
        intent_id=str(obj.get("payment_intent") or ""),
        amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        status=RefundStatus(status)
        if status in RefundStatus.__members__.values()
        else (RefundStatus.FAILED if status == "canceled" else RefundStatus.PENDING),
        reference=(obj.get("metadata") or {}).get(REFERENCE_KEY),
    )


class StripeGateway:
    name = NAME

    def __init__(
        self, secret_key: str, *, api_base: str | None = None, timeout_s: float = 30
    ) -> None:
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_s),
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise ProviderError(failure_of(exc)) from exc

    def create_intent(self, request: IntentRequest, *, idempotency_key: str) -> ProviderIntent:
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method_types": ["card"],
            "metadata": {**request.metadata, REFERENCE_KEY: request.reference},
        }
        if request.payment_method:
            params["payment_method"] = request.payment_method
        obj = self._call(
            self._client.v1.payment_intents.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return _intent(obj)

    def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        obj = self._call(
            self._client.v1.payment_intents.confirm,
            intent_id,
            options={"idempotency_key": idempotency_key},
        )
        return _intent(obj)

    def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        obj = self._call(
            self._client.v1.payment_intents.cancel,
            intent_id,
            options={"idempotency_key": idempotency_key},
        )
        return _intent(obj)

    def retrieve_intent(self, intent_id: str) -> ProviderIntent:
        return _intent(self._call(self._client.v1.payment_intents.retrieve, intent_id))

    def find_intent(self, reference: str) -> ProviderIntent | None:
        """Stripe's search (eventually consistent, so None is not proof of absence; the
        caller's retry reuses the same idempotency key, which Stripe deduplicates)."""
        try:
            result = self._client.v1.payment_intents.search(
                params={"query": f"metadata['{REFERENCE_KEY}']:'{reference}'", "limit": 1}
            )
        except stripe.StripeError:
            return None
        data = list(result.data or [])
        return _intent(data[0]) if data else None

    def refund(
        self, intent_id: str, amount: int, *, idempotency_key: str, reference: str
    ) -> ProviderRefund:
        obj = self._call(
            self._client.v1.refunds.create,
            params={
                "payment_intent": intent_id,
                "amount": amount,
                "metadata": {REFERENCE_KEY: reference},
            },
            options={"idempotency_key": idempotency_key},
        )
        return _refund(obj)

    def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return _refund(self._call(self._client.v1.refunds.retrieve, refund_id))

    def find_refund(self, intent_id: str, reference: str) -> ProviderRefund | None:
        """The intent's refunds (a list, so strongly consistent, unlike search), matched
        on the reference kassa stores in each refund's metadata. A failed look-up raises,
        and the caller treats the outcome as still unknown."""
        try:
            page = self._client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100})
            for obj in page.auto_paging_iter():  # later pages are fetched as it goes
                found = _refund(obj)
                if found.reference == reference:
                    return found
        except stripe.StripeError as exc:
            raise ProviderError(failure_of(exc)) from exc
        return None

    def list_intents(
        self, since: datetime, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[ProviderIntent]:
        for obj in self._newest_first(self._client.v1.payment_intents.list, since, page_size):
            yield _intent(obj)

    def list_refunds(
        self, since: datetime, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[ProviderRefund]:
        for obj in self._newest_first(self._client.v1.refunds.list, since, page_size):
            yield _refund(obj)

    def _newest_first(self, list_fn: Any, since: datetime, page_size: int) -> Iterator[Any]:
        """Page through a Stripe list (newest first) until objects get older than `since`.

        The SDK's auto-pagination fetches the next page (`starting_after` the last object)
        only when the one before is used up, so at most one page is held. A failure on any
        page, not only the first, is a ProviderError.

        No `created[gte]` filter is sent: Stripe lists newest first, so stopping at the
        first older object is equivalent, and localstripe refuses the filter (400)."""
        floor = int(since.timestamp())
        page = self._call(list_fn, params={"limit": max(1, min(page_size, LIST_PAGE_SIZE))})
        objects = page.auto_paging_iter()
        while True:
            try:
                obj = next(objects)
            except StopIteration:
                return
            except stripe.StripeError as exc:
                raise ProviderError(failure_of(exc)) from exc
            created = getattr(obj, "created", None)
            if isinstance(created, int) and created < floor:
                return
            yield obj
