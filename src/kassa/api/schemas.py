"""Request and response bodies of the HTTP API (the contract's shapes).

Amounts are strict integers: `19.99`, `"1999"` and `true` are refused, never coerced.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from kassa.api.text import is_storable_text
from kassa.domain.money import MAX_AMOUNT
from kassa.providers.base import ProviderError
from kassa.providers.mock.provider import parse_payment_method

T = TypeVar("T")

Sku = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
    ),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
CurrencyCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=3)]
Amount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
Quantity = Annotated[StrictInt, Field(ge=1, le=10_000)]
StockCount = Annotated[StrictInt, Field(ge=0, le=10**12)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]


def _storable(value: Any, path: str = "") -> None:
    """Refuse text no database can store: NUL characters and lone UTF-16 surrogates."""
    if isinstance(value, str):
        if not is_storable_text(value):
            raise ValueError(f"{path or 'value'} contains a NUL character or invalid Unicode")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, path)
            _storable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{path}[{index}]")


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _only_storable_text(cls, data: Any) -> Any:
        _storable(data)
        return data


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ListOf(Output, Generic[T]):
    """Every list: `{"object": "list", "data": [...], "has_more": bool}`."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool


# -- products ---------------------------------------------------------------------------


class ProductCreate(Input):
    sku: Sku
    title: Title
    unit_amount: Amount
    currency: CurrencyCode
    stock: StockCount | None = None
    unique: StrictBool = False


class ProductUpdate(Input):
    title: Title | None = None
    unit_amount: Amount | None = None
    stock: StockCount | None = None


class ProductOut(Output):
    id: str
    object: Literal["product"] = "product"
    sku: str
    title: str
    unit_amount: int
    currency: str
    stock: int | None
    unique: bool
    status: str
    reserved_until: datetime | None
    created_at: datetime
    updated_at: datetime


# -- customers --------------------------------------------------------------------------


class CustomerCreate(Input):
    email: EmailStr
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None


class CustomerOut(Output):
    id: str
    object: Literal["customer"] = "customer"
    email: str
    name: str | None
    created_at: datetime


# -- orders -----------------------------------------------------------------------------


class OrderLineIn(Input):
    sku: Sku
    quantity: Quantity


class OrderCreate(Input):
    customer: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    email: EmailStr | None = None
    currency: CurrencyCode
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=100)]
    shipping_address: dict[str, Any] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=50)] = Field(
        default_factory=dict
    )


class OrderLineOut(Output):
    sku: str
    title: str
    unit_amount: int
    quantity: int
    amount: int
    product_status: str


class OrderOut(Output):
    id: str
    object: Literal["order"] = "order"
    number: str
    status: str
    currency: str
    subtotal: int
    total: int
    amount_paid: int
    amount_refunded: int
    refund_status: str
    refunded_at: datetime | None
    stock_shortage: bool
    disputed: bool
    disputed_at: datetime | None
    customer: str | None
    email: str | None
    lines: list[OrderLineOut]
    shipping_address: dict[str, Any] | None
    metadata: dict[str, str]
    reservation_expires_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    paid_at: datetime | None
    fulfilled_at: datetime | None
    canceled_at: datetime | None


# -- audit ------------------------------------------------------------------------------


class AuditOut(Output):
    id: str
    object: Literal["audit_record"] = "audit_record"
    actor_key_id: str
    action: str
    subject_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    created_at: datetime
    actor_user: str | None = None  # the staff user (`usr_…`) acting in the dashboard


# -- payments ---------------------------------------------------------------------------

ProviderName = Annotated[str, StringConstraints(pattern=r"^[a-z]{1,20}$")]


def _valid_fault_script(value: str) -> str:
    """A sandbox fault script (after `|`) is checked here, before any payment is opened:
    an unknown fault, or `latency=<ms>` over 5,000 ms, is a 422 on `payment_method`."""
    try:
        parse_payment_method(value)
    except ProviderError as exc:
        raise ValueError(exc.failure.message) from None
    return value


PaymentMethod = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_valid_fault_script),
]


class PaymentCreate(Input):
    provider: ProviderName | None = None
    payment_method: PaymentMethod | None = None


class AttemptOut(Output):
    number: int
    operation: str
    started_at: datetime
    duration_ms: int
    outcome: str
    error_type: str | None
    code: str | None
    decline_code: str | None
    retry_delay_ms: int | None


class PaymentOut(Output):
    id: str
    object: Literal["payment"] = "payment"
    order: str | None
    top_up_customer: str | None
    provider: str
    provider_payment_id: str | None
    status: str
    amount: int
    currency: str
    client_secret: str | None
    next_action: dict[str, Any] | None
    failure: dict[str, Any] | None
    attempts: list[AttemptOut]
    retry_count: int
    recovered_by_retry: bool
    no_retry_reason: str | None
    orchestration_ms: int | None
    created_at: datetime
    succeeded_at: datetime | None


class GatewayHealthOut(BaseModel):
    object: Literal["gateway_health"] = "gateway_health"
    provider: str
    state: str
    window_s: int
    attempts: int
    success_rate: float
    failure_rate: float
    avg_latency_ms: float
    p95_latency_ms: int


class PaymentAnalyticsOut(Output):
    object: Literal["payment_analytics"] = "payment_analytics"
    window_s: int
    attempts: int
    payments: int
    succeeded: int
    needed_retry: int
    recovered_by_retry: int
    recovered_pct: float
    avg_retry_delay_ms: float
    failure_types: dict[str, int]
    avg_orchestration_ms: float


# -- revenue KPIs ------------------------------------------------------------------------


class KpiCurrencyOut(Output):
    currency: str
    orders_paid: int
    gross_sales: int
    refunds: int
    net_sales: int
    average_order_value: int
    refund_rate_bp: int | None
    wallet_liability: int


class KpiPaymentsOut(Output):
    finished: int
    succeeded: int
    success_rate_bp: int | None
    recovered_by_retry: int


class KpiDayOut(Output):
    date: date
    currency: str
    orders_paid: int
    gross_sales: int
    refunds: int
    net_sales: int


class KpiReportOut(Output):
    object: Literal["kpi_report"] = "kpi_report"
    from_: date = Field(
        validation_alias="first", serialization_alias="from", description="first day, included"
    )
    to: date = Field(validation_alias="last", description="last day, included")
    timezone: str
    currencies: list[KpiCurrencyOut]
    orders_created: int
    orders_canceled: int
    new_customers: int
    payments: KpiPaymentsOut
    series: list[KpiDayOut]


class BrowserConfirm(Input):
    payment_method: PaymentMethod


class MockChargeOut(Output):
    id: str
    object: Literal["mock_charge"] = "mock_charge"
    intent_id: str
    reference: str
    order_ref: str | None
    amount: int
    amount_refunded: int
    currency: str
    status: str
    created_at: datetime


class MockRefundOut(Output):
    id: str
    object: Literal["mock_refund"] = "mock_refund"
    charge_id: str
    intent_id: str
    reference: str
    order_ref: str | None
    amount: int
    currency: str
    status: str
    created_at: datetime


# -- refunds and wallets ------------------------------------------------------------------


class RefundCreate(Input):
    amount: Annotated[StrictInt, Field(le=MAX_AMOUNT, ge=-MAX_AMOUNT)] | None = None
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    destination: Literal["original", "wallet"] = "original"


class RefundPartOut(Output):
    payment: str | None
    amount: int
    status: str
    provider_refund_id: str | None


class RefundOut(Output):
    id: str
    object: Literal["refund"] = "refund"
    order: str
    payment: str | None
    amount: int
    currency: str
    status: str
    destination: str
    provider_refund_id: str | None
    reason: str | None
    origin: str
    failure: dict[str, Any] | None
    parts: list[RefundPartOut]
    created_at: datetime


class WalletEntryOut(Output):
    id: str
    object: Literal["wallet_entry"] = "wallet_entry"
    currency: str
    amount: int
    balance_after: int
    kind: str
    reference: str | None
    reason: str | None
    created_at: datetime


class WalletOut(Output):
    object: Literal["wallet"] = "wallet"
    customer: str
    balances: dict[str, int]
    lifetime_paid: dict[str, int]
    entries: list[WalletEntryOut]


class TopUpCreate(Input):
    amount: Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT)]
    currency: CurrencyCode
    payment_method: PaymentMethod
    provider: ProviderName | None = None


class WalletAdjust(Input):
    currency: CurrencyCode
    balance: Annotated[StrictInt, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class WalletAdjustOut(BaseModel):
    prev_balance: int
    new_balance: int
    currency: str


class PartyOut(Output):
    name: str
    lines: list[str]
    tax_id: str | None
    email: str | None


class DocumentLineOut(Output):
    description: str
    quantity: int
    unit_amount: int
    amount: int


class TaxLineOut(Output):
    label: str
    rate_bp: int
    amount: int


class DocumentOut(Output):
    """An issued invoice or credit note, as frozen when it was issued."""

    id: str
    object: Literal["invoice", "credit_note"]
    number: str
    order: str
    refund: str | None
    currency: str
    total: int
    tax: int
    issued_at: datetime
    seller: PartyOut
    buyer: PartyOut
    lines: list[DocumentLineOut]
    taxes: list[TaxLineOut]
    reference: str | None
    notes: str | None
    locale: str
    pdf_url: str
    html_url: str


# -- monitoring: check findings ---------------------------------------------------------


class CheckFindingOut(Output):
    """A problem a reconciliation check found: open until a complete run of its check no
    longer finds it."""

    id: str
    object: Literal["check_finding"] = "check_finding"
    check: str
    subject: str
    status: Literal["open", "resolved"]
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None


class CheckRunOut(Output):
    """What a run left behind: every finding still open (those it found, and those of
    checks it could not run to the end), how many of them it opened, how many it resolved."""

    open: int
    new: int
    resolved: int
    findings: list[CheckFindingOut]


class FindingAcknowledge(Input):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


# -- kassa's own events (issue 12) -------------------------------------------------------


class EventOut(Output):
    """A state change kassa reports: `data.object` is the resource as the API returned it
    when the change was made (an order, a payment, a refund, a document, a wallet, a
    check finding)."""

    id: str
    object: Literal["event"] = "event"
    type: str
    created_at: datetime
    data: dict[str, Any]


# -- outgoing webhooks (issue 12) -------------------------------------------------------

WebhookUrl = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=40)]
WebhookDescription = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class WebhookEndpointCreate(Input):
    url: WebhookUrl
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=50)]
    description: WebhookDescription | None = None


class WebhookEndpointUpdate(Input):
    url: WebhookUrl | None = None
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=50)] | None = None
    disabled: StrictBool | None = None
    description: WebhookDescription | None = None


class WebhookEndpointOut(Output):
    """Where kassa sends its events. `disabled_reason` says who disabled it (an admin, or
    kassa after 5 days of failed deliveries); `previous_secret_expires_at` is when the
    secret a rotation replaced stops signing."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    description: str | None
    events: list[str]
    disabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecretOut(WebhookEndpointOut):
    """An endpoint with its signing secret: only when it is created and rotated."""

    secret: str


class WebhookDeliveryOut(Output):
    """One attempt at delivering an event to an endpoint, or (`pending`) the next one."""

    id: str
    object: Literal["webhook_delivery_attempt"] = "webhook_delivery_attempt"
    event: str
    type: str
    attempt: int
    status: Literal["succeeded", "failed", "pending"]
    response_status: int | None
    duration_ms: int | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


# -- e-mail to the buyer ------------------------------------------------------------------


class EmailOut(Output):
    """A message to the buyer: an order confirmation, an invoice or a refund notice, sent
    once (`queued` until it is, `failed` if the server refused it or its outcome is
    unknown)."""

    id: str
    object: Literal["email"] = "email"
    kind: Literal["order_confirmation", "invoice", "refund_notice"]
    to: str
    subject: str
    status: Literal["queued", "sent", "failed"]
    attempts: int
    sent_at: datetime | None
    order: str
