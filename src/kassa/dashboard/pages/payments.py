"""Payments: each gateway's health, the recovery analytics of a window (1 hour, 24 hours,
7 days), and the latest payments with a status filter, each linked to its order by number.

The same services as the API's `GET /v1/gateways/health`, `GET /v1/analytics/payments`
and `GET /v1/payments`; the orders' numbers come in one query for the whole page
(`orders.numbers_of`), never one per payment.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Staff, allowed
from kassa.dashboard.formatting import percent
from kassa.dashboard.pages.common import listed, page_router
from kassa.dashboard.web import render
from kassa.domain.payments import PaymentStatus
from kassa.domain.roles import Permission
from kassa.services.payment_analytics import parse_window

router = page_router()
PAGE_SIZE = 50
WINDOWS = {"1h": "the last hour", "24h": "the last 24 hours", "7d": "the last 7 days"}
DEFAULT_WINDOW = "24h"
STATUSES = tuple(status.value for status in PaymentStatus)


@router.get("/payments")
def payments_page(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_GATEWAYS))],
    window: str = DEFAULT_WINDOW,
    status: str = "",
    after: str = "",
) -> Response:
    kassa, viewer = staff.kassa, staff.viewer
    window = window if window in WINDOWS else DEFAULT_WINDOW
    status = status if status in STATUSES else ""
    health = [kassa.gateway_health.report(name) for name in kassa.providers.names]
    analytics = (
        kassa.analytics.payments(parse_window(window))
        if viewer.can(Permission.READ_ANALYTICS)
        else None
    )
    payments: list[Any] = []
    has_more = False
    numbers: dict[str, str] = {}
    if viewer.can(Permission.LIST_PAYMENTS):
        payments, has_more = listed(
            lambda: kassa.payments.list(
                staff.ctx, limit=PAGE_SIZE, starting_after=after or None, status=status or None
            )
        )
        numbers = kassa.orders.numbers_of(staff.ctx, (p.order for p in payments if p.order))
    return render(
        request,
        viewer,
        "payments.html.j2",
        {
            "health": health,
            "analytics": analytics,
            "window": window,
            "windows": WINDOWS,
            "payments": payments,
            "has_more": has_more,
            "numbers": numbers,
            "status": status,
            "statuses": STATUSES,
            "percent": lambda fraction: percent(fraction, viewer.locale),
        },
    )
