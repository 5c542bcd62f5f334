"""The `PaymentProvider` protocol every gateway implements, and what it answers.

Every call that can move money carries a provider idempotency key: the same key with the
same request never acts twice at the provider. Failures are raised as `ProviderError`
carrying a domain `ProviderFailure`, so the orchestrator classifies every gateway the
same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from kassa.domain.payments import ProviderFailure
from kassa.domain.refunds import RefundStatus

# Records per page when a provider's list is read (Stripe's largest page).
LIST_PAGE_SIZE = 100


class IntentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class IntentRequest:
    amount: int
    currency: str
    reference: str  # kassa's payment id, stored at the provider for look-ups
    payment_method: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderIntent:
    id: str
    status: IntentStatus
    amount: int
    currency: str
    amount_received: int = 0
    client_secret: str | None = None
    next_action: dict[str, Any] | None = None
    last_error: ProviderFailure | None = None
    reference: str | None = None  # kassa's payment id, as stored at the provider


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    id: str
    intent_id: str
    amount: int
    currency: str
    status: RefundStatus
    reference: str | None = None  # kassa's refund id, as stored at the provider


class ProviderError(Exception):
    def __init__(self, failure: ProviderFailure) -> None:
        super().__init__(f"{failure.type.value}: {failure.message}")
        self.failure = failure


class PaymentProvider(Protocol):
    name: str

    def create_intent(self, request: IntentRequest, *, idempotency_key: str) -> ProviderIntent:
        """Create an intent for the amount; with a payment method it is ready to confirm.
        Moves no money."""
        ...

    def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        """Charge the intent's payment method (or ask for 3-D Secure)."""
        ...

    def retrieve_intent(self, intent_id: str) -> ProviderIntent: ...

    def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        """Cancel an intent that has not charged, so no later confirm can charge it; an
        intent that already succeeded cannot be canceled (ProviderError)."""
        ...

    def find_intent(self, reference: str) -> ProviderIntent | None:
        """The intent created for kassa's `reference`, if the provider has one."""
        ...

    def refund(
        self, intent_id: str, amount: int, *, idempotency_key: str, reference: str
    ) -> ProviderRefund: ...

    def retrieve_refund(self, refund_id: str) -> ProviderRefund: ...

    def find_refund(self, intent_id: str, reference: str) -> ProviderRefund | None:
        """The refund of `intent_id` made for kassa's `reference` (a refund part's id), if
        the provider has one: how a refund whose answer was lost is found again."""
        ...

    def list_intents(
        self, since: datetime, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[ProviderIntent]:
        """Every intent created at or after `since` (for reconciliation), fetched lazily
        `page_size` at a time, so a caller that consumes it as it goes holds one page, not
        the window. A failure on any page raises ProviderError."""
        ...

    def list_refunds(
        self, since: datetime, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[ProviderRefund]:
        """Every refund created at or after `since` (for reconciliation), as
        `list_intents`."""
        ...
