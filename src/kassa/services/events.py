"""kassa's own events: each reported state change, written in the transaction of the change.

The contract (v1.1, "Outgoing webhooks") lists the types. A service that makes one of
these changes calls `record` inside its transaction with the resource's view, the same
view its API route returns; the event keeps that resource as JSON, as the API shows it
at that moment (`resource_json`), so a consumer reading the event later sees the order as
it was when it was paid, not as it is now.

The row is deferred (`storage.deferred`): it goes in at commit with the transaction's
audit records, in the same round trip, and never without its change. What happens to an
event afterwards (webhook deliveries, e-mails) is the dispatcher's (`services/dispatch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from kassa.domain.ids import new_id
from kassa.storage.deferred import defer
from kassa.storage.tables import Event

ORDER_CREATED: Final = "order.created"
ORDER_PAID: Final = "order.paid"
ORDER_CANCELED: Final = "order.canceled"
ORDER_FULFILLED: Final = "order.fulfilled"
PAYMENT_SUCCEEDED: Final = "payment.succeeded"
PAYMENT_FAILED: Final = "payment.failed"
PAYMENT_REQUIRES_ACTION: Final = "payment.requires_action"
REFUND_SUCCEEDED: Final = "refund.succeeded"
REFUND_FAILED: Final = "refund.failed"
INVOICE_ISSUED: Final = "invoice.issued"
CREDIT_NOTE_ISSUED: Final = "credit_note.issued"
DISPUTE_CREATED: Final = "dispute.created"
WALLET_ADJUSTED: Final = "wallet.adjusted"
CHECK_FINDING_OPENED: Final = "check.finding_opened"

# Every type the contract names, in its order: what an endpoint may subscribe to.
EVENT_TYPES: Final = (
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_CANCELED,
    ORDER_FULFILLED,
    PAYMENT_SUCCEEDED,
    PAYMENT_FAILED,
    PAYMENT_REQUIRES_ACTION,
    REFUND_SUCCEEDED,
    REFUND_FAILED,
    INVOICE_ISSUED,
    CREDIT_NOTE_ISSUED,
    DISPUTE_CREATED,
    WALLET_ADJUSTED,
    CHECK_FINDING_OPENED,
)


_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)  # a time as the API writes it


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}  # one per view class, built on first use


def _adapter(view_type: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(view_type)
    if adapter is None:
        adapter = _ADAPTERS[view_type] = TypeAdapter(view_type)
    return adapter


def resource_json(object_name: str, view: Any) -> dict[str, Any]:
    """`view` (a service's frozen dataclass, as its API route returns it) as the API's JSON
    shows it: `id`, then `object`, then its fields, times in ISO 8601. The API's response
    models mirror the views field for field; a test holds every event's resource to the
    API's answer for the same resource. A resource without an id of its own (a customer's
    wallet, named by its `customer`) starts with `object`."""
    fields: dict[str, Any] = _adapter(type(view)).dump_python(view, mode="json")
    identity = {"id": fields.pop("id")} if "id" in fields else {}
    return {**identity, "object": object_name, **fields}


def json_time(at: datetime) -> str:
    """A time as the API's JSON writes it (for a resource whose JSON a service builds)."""
    return str(_TIME.dump_python(at, mode="json"))


def record(session: Session, event_type: str, resource: dict[str, Any], at: datetime) -> str:
    """Write the event `event_type` about `resource` (from `resource_json`) when this
    session's transaction commits; returns the event's id."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event_id = new_id("evt")
    defer(
        session,
        Event,
        {
            "id": event_id,
            "type": event_type,
            "data": {"object": resource},
            "created_at": at,
            "order_id": order_of(resource),
        },
    )
    return event_id


def order_of(resource: dict[str, Any]) -> str | None:
    """The order an event's resource belongs to: the order itself, or the order its
    payment, refund, invoice or credit note names (a wallet's or a finding's: none)."""
    found = resource.get("id") if resource.get("object") == "order" else resource.get("order")
    return found if isinstance(found, str) else None


@dataclass(frozen=True, slots=True)
class EventView:
    """An event as `GET /v1/events` and a webhook delivery show it."""

    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, row: Event) -> EventView:
        return cls(id=row.id, type=row.type, created_at=row.created_at, data=row.data)

    def body(self) -> dict[str, Any]:
        """The JSON the contract gives an event: `{id, object, type, created_at, data}`."""
        return {
            "id": self.id,
            "object": "event",
            "type": self.type,
            "created_at": _TIME.dump_python(self.created_at, mode="json"),
            "data": self.data,
        }
