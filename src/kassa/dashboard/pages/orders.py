"""Orders: the list with search and filters, one order's page, and its actions (fulfil,
cancel, refund), each confirmed on a page of its own before anything happens.

Everything is read and changed through the services the API uses (`kassa.orders`,
`kassa.payments`, `kassa.refunds`, `kassa.invoices`, `kassa.emails`, `kassa.audit`), with
the signed-in user's context, so a dashboard action is checked, audited and reported
exactly as the same API call would be.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.formatting import AmountNotUnderstood, parse_amount
from kassa.dashboard.pages.common import listed, page_router, refused_status
from kassa.dashboard.web import redirect, render
from kassa.domain.errors import DomainError
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.events import EventView
from kassa.services.invoices import DocumentView
from kassa.services.orders import Orders, OrderView
from kassa.services.pagination import CreatedRange
from kassa.services.refunds import RefundView
from kassa.services.webhook_endpoints import OrderDelivery

router = page_router()
PAGE_SIZE = 50
STATUSES = ("pending", "paid", "fulfilled", "canceled")
_NUMBER = re.compile(r"^(?:k-?)?0*(\d{1,12})$", re.IGNORECASE)
NOTICES = {
    "fulfilled": "The order is fulfilled.",
    "canceled": "The order is canceled.",
    "refunded": "The refund was made.",
    "refund_pending": "The refund was sent to the provider; it is not settled yet.",
    "password_changed": "Your password is changed.",
}


def order_number_of(text: str) -> str | None:
    """A typed order number in any of its forms ("K-000042", "k42", "42") as stored."""
    match = _NUMBER.match(text.strip())
    return f"K-{int(match.group(1)):06d}" if match else None


def _day(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


@router.get("/orders")
def orders_list(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_ORDERS))],
    q: str = "",
    status: str = "",
    created_from: str = "",
    created_to: str = "",
    after: str = "",
) -> Response:
    """Search: an order id (ord_…) or number opens the order; an e-mail filters the list."""
    q = q.strip()
    kassa, ctx = staff.kassa, staff.ctx
    if q and (q.startswith("ord_") or order_number_of(q)):
        try:
            found = (
                kassa.orders.get(ctx, q)
                if q.startswith("ord_")
                else kassa.orders.by_number(ctx, order_number_of(q) or q)
            )
        except DomainError:
            found = None
        orders, has_more = ([found] if found else []), False
    else:
        zone = staff.viewer.zone
        start, end = _day(created_from), _day(created_to)
        created = CreatedRange(
            gte=datetime.combine(start.date(), time(), zone) if start else None,
            lt=datetime.combine(end.date(), time(), zone) + timedelta(days=1) if end else None,
        )
        orders, has_more = listed(
            lambda: kassa.orders.list(
                ctx,
                limit=PAGE_SIZE,
                starting_after=after or None,
                status=status if status in STATUSES else None,
                email=q if "@" in q else None,
                created=created,
            )
        )
    return render(
        request,
        staff.viewer,
        "orders.html.j2",
        {
            "orders": orders,
            "has_more": has_more,
            "q": q,
            "status": status,
            "statuses": STATUSES,
            "created_from": created_from,
            "created_to": created_to,
            "searched": bool(q),
        },
    )


@dataclass(frozen=True, slots=True)
class OrderDossier:
    """Everything the order page shows, each part from its own service."""

    order: OrderView
    payments: list[Any]
    refunds: list[RefundView]
    invoice: DocumentView | None
    credit_notes: list[DocumentView]
    emails: list[Any]
    events: list[EventView]
    deliveries: dict[str, list[OrderDelivery]]  # event id -> its deliveries to the shop's endpoints
    audit: list[Any]
    committed: int  # refunded or being refunded: what the refund form's guard compares

    @property
    def refundable(self) -> int:
        return max(0, self.order.amount_paid - self.committed)


def _documents(staff: Staff, order_id: str) -> tuple[DocumentView | None, list[DocumentView]]:
    """The order's invoice (none before it is paid) and its credit notes."""
    if not staff.viewer.can(Permission.READ_DOCUMENTS):
        return None, []
    invoices = staff.kassa.invoices.list("invoice", limit=1, order=order_id).data
    notes = staff.kassa.invoices.list("credit_note", limit=100, order=order_id).data
    return (invoices[0] if invoices else None), list(notes)


def _webhook_events(
    staff: Staff, order_id: str
) -> tuple[list[EventView], dict[str, list[OrderDelivery]]]:
    """The events about the order kassa still keeps, and (admin) where each was sent."""
    if not staff.viewer.can(Permission.READ_EVENTS):
        return [], {}
    events = list(staff.kassa.event_log.of_order(order_id))
    deliveries: dict[str, list[OrderDelivery]] = {}
    if staff.viewer.can(Permission.MANAGE_WEBHOOKS):
        for delivery in staff.kassa.webhook_endpoints.deliveries_of_order(order_id):
            deliveries.setdefault(delivery.event, []).append(delivery)
    return events, deliveries


def _order(staff: Staff, number: str) -> OrderView:
    """The order numbered `number`, or the 404 page: what an action needs, one read."""
    try:
        return staff.kassa.orders.by_number(staff.ctx, number)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no order {number}.") from exc


def _dossier(staff: Staff, number: str) -> OrderDossier:
    kassa, ctx = staff.kassa, staff.ctx
    order = _order(staff, number)
    viewer = staff.viewer
    payments = (
        list(kassa.payments.list_for_order(ctx, order.id, limit=100).data)
        if viewer.can(Permission.READ_PAYMENTS)
        else []
    )
    refunds = (
        list(kassa.refunds.list_for_order(order.id, limit=100).data)
        if viewer.can(Permission.READ_REFUNDS)
        else []
    )
    invoice, credit_notes = _documents(staff, order.id)
    emails = (
        list(kassa.emails.list(limit=50, order=order.id).data)
        if viewer.can(Permission.READ_EMAILS)
        else []
    )
    events, deliveries = _webhook_events(staff, order.id)
    subjects = [order.id, *(p.id for p in payments), *(r.id for r in refunds)]
    audit = kassa.audit.of_subjects(subjects) if viewer.can(Permission.READ_AUDIT) else []
    committed = sum(
        part.amount
        for refund in refunds
        for part in refund.parts
        if part.status in ("pending", "succeeded")
    )
    return OrderDossier(
        order,
        payments,
        refunds,
        invoice,
        credit_notes,
        emails,
        events,
        deliveries,
        audit,
        committed,
    )


@router.get("/orders/{number}")
def order_page(
    request: Request,
    number: str,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_ORDERS))],
    notice: str = "",
) -> Response:
    dossier = _dossier(staff, number)
    return render(
        request,
        staff.viewer,
        "order.html.j2",
        {"d": dossier, "o": dossier.order, "notice": NOTICES.get(notice, "")},
    )


# -- actions ------------------------------------------------------------------------------


def _failed(request: Request, staff: Staff, number: str, exc: DomainError) -> Response:
    """The order page again, saying why the action did not happen (4xx, nothing changed)."""
    dossier = _dossier(staff, number)
    status = refused_status(exc)
    return render(
        request,
        staff.viewer,
        "order.html.j2",
        {"d": dossier, "o": dossier.order, "notice": "", "error": exc.detail},
        status=status,
    )


@router.get("/orders/{number}/{action}")
def confirm_page(
    request: Request,
    number: str,
    action: str,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_ORDERS))],
    amount: str = "",
) -> Response:
    """ "Fulfil order K-000042?" and the like: the page the action's button leads to."""
    needs = {
        "fulfil": Permission.FULFILL_ORDERS,
        "cancel": Permission.CANCEL_ORDERS,
        "refund": Permission.REFUND_ORDERS,
    }
    if action not in needs:
        raise staff.refuse(404, "There is no such page.")
    if not staff.viewer.can(needs[action]):
        raise staff.refuse(403, f"Your role ({staff.viewer.role}) may not {action} orders.")
    dossier = _dossier(staff, number)
    return render(
        request,
        staff.viewer,
        "order_confirm.html.j2",
        {"d": dossier, "o": dossier.order, "action": action, "amount": amount, "error": ""},
    )


Transition = Callable[[Orders], Callable[[RequestContext, str], OrderView]]


def _transition(
    request: Request, number: str, posted: Posted, change: Transition, notice: str
) -> Response:
    """Fulfil or cancel: the service's own transition, with the user's context."""
    staff = posted.staff
    order = _order(staff, number)
    try:
        change(staff.kassa.orders)(staff.ctx, order.id)
    except DomainError as exc:
        return _failed(request, staff, number, exc)
    return redirect(f"/orders/{number}", notice=notice)


@router.post("/orders/{number}/fulfil")
def fulfil(
    request: Request,
    number: str,
    posted: Annotated[Posted, Depends(posting(Permission.FULFILL_ORDERS))],
) -> Response:
    return _transition(request, number, posted, lambda orders: orders.fulfill, "fulfilled")


@router.post("/orders/{number}/cancel")
def cancel(
    request: Request,
    number: str,
    posted: Annotated[Posted, Depends(posting(Permission.CANCEL_ORDERS))],
) -> Response:
    return _transition(request, number, posted, lambda orders: orders.cancel, "canceled")


@router.post("/orders/{number}/refund")
def refund(
    request: Request,
    number: str,
    posted: Annotated[Posted, Depends(posting(Permission.REFUND_ORDERS))],
) -> Response:
    """Refund the typed amount (major units, the reader's locale), guarded by the refunded
    total the confirmation page showed: a second post of the same form changes nothing."""
    staff = posted.staff
    order = _order(staff, number)
    typed = posted.text("amount")
    try:
        amount = parse_amount(typed, order.currency, staff.viewer.locale)
        seen = int(posted.text("committed", "-1"))
    except (AmountNotUnderstood, ValueError) as exc:
        dossier = _dossier(staff, number)  # the form again, with what it shows
        return render(
            request,
            staff.viewer,
            "order_confirm.html.j2",
            {
                "d": dossier,
                "o": dossier.order,
                "action": "refund",
                "amount": typed,
                "error": str(exc),
            },
            status=422,
        )
    try:
        made = staff.kassa.refunds.create(
            staff.ctx,
            order.id,
            amount=amount,
            reason=posted.text("reason") or None,
            if_committed=seen,
        )
    except DomainError as exc:
        return _failed(request, staff, number, exc)
    return redirect(
        f"/orders/{number}", notice="refunded" if made.status == "succeeded" else "refund_pending"
    )
