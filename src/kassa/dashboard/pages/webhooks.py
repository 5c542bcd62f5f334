"""Webhook endpoints (admin): where kassa sends its events, whether each is enabled (and
if not, why), since when it has been failing, and its delivery log with a retry for each
failed or pending delivery, through `kassa.webhook_endpoints` as `/v1/webhook-endpoints`
and `POST /v1/webhook-deliveries/{id}/retry` do.

Enabling an endpoint again (one kassa disabled after 5 days of failures) and disabling it
are the API's `PATCH … {"disabled": …}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.web import redirect, render
from kassa.domain.errors import DomainError
from kassa.domain.roles import Permission
from kassa.services.webhook_endpoints import FAILED, PENDING, DeliveryRow, EndpointView

router = APIRouter()
ENDPOINTS_PAGE = 100
DELIVERIES_PAGE = 25
NOTICES = {
    "retried": "The delivery is due now: the worker sends it at its next pass.",
    "enabled": "The endpoint is enabled; its failures count again from the next one.",
    "disabled": "The endpoint is disabled: nothing is sent to it until it is enabled.",
}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of an event: its attempts, latest first (a `pending` row for the
    attempt still to come heads them)."""

    id: str
    event: str
    type: str
    rows: list[DeliveryRow]

    @property
    def status(self) -> str:
        return self.rows[0].status

    @property
    def retryable(self) -> bool:
        return self.status in (FAILED, PENDING)


def group(rows: list[DeliveryRow]) -> list[Delivery]:
    """The service's log rows (each delivery's rows together, newest delivery first) as
    one `Delivery` each, in the same order."""
    deliveries: list[Delivery] = []
    for row in rows:
        if not deliveries or deliveries[-1].id != row.id:
            deliveries.append(Delivery(row.id, row.event, row.type, []))
        deliveries[-1].rows.append(row)
    return deliveries


@router.get("/webhooks")
def endpoints_list(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.MANAGE_WEBHOOKS))],
    after: str = "",
) -> Response:
    try:
        page = staff.kassa.webhook_endpoints.list(
            limit=ENDPOINTS_PAGE, starting_after=after or None
        )
        endpoints, has_more = list(page.data), page.has_more
    except DomainError:  # a stale cursor: start again from the newest
        endpoints, has_more = [], False
    return render(
        request,
        staff.viewer,
        "webhooks.html.j2",
        {"endpoints": endpoints, "has_more": has_more},
    )


def _endpoint(staff: Staff, endpoint_id: str) -> EndpointView:
    try:
        return staff.kassa.webhook_endpoints.get(endpoint_id)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no webhook endpoint {endpoint_id}.") from exc


def _endpoint_page(
    request: Request,
    staff: Staff,
    endpoint_id: str,
    *,
    after: str = "",
    notice: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    endpoint = _endpoint(staff, endpoint_id)
    try:
        page = staff.kassa.webhook_endpoints.deliveries(
            endpoint_id, limit=DELIVERIES_PAGE, starting_after=after or None
        )
        deliveries, has_more = group(list(page.data)), page.has_more
    except DomainError:  # a stale cursor, or another endpoint's delivery id
        deliveries, has_more = [], False
    return render(
        request,
        staff.viewer,
        "webhook_endpoint.html.j2",
        {
            "e": endpoint,
            "deliveries": deliveries,
            "has_more": has_more,
            "notice": NOTICES.get(notice, ""),
            "error": error,
        },
        status=status,
    )


@router.get("/webhooks/{endpoint_id}")
def endpoint_page(
    request: Request,
    endpoint_id: str,
    staff: Annotated[Staff, Depends(allowed(Permission.MANAGE_WEBHOOKS))],
    after: str = "",
    notice: str = "",
) -> Response:
    return _endpoint_page(request, staff, endpoint_id, after=after, notice=notice)


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry")
def retry(
    request: Request,
    endpoint_id: str,
    delivery_id: str,
    posted: Annotated[Posted, Depends(posting(Permission.MANAGE_WEBHOOKS))],
) -> Response:
    """Make the delivery due now (one more attempt after it failed)."""
    staff = posted.staff
    try:
        staff.kassa.webhook_endpoints.retry(staff.ctx, delivery_id)
    except DomainError as exc:
        return _endpoint_page(request, staff, endpoint_id, error=exc.detail, status=404)
    return redirect(f"/webhooks/{endpoint_id}", notice="retried")


@router.post("/webhooks/{endpoint_id}/{action}")
def enable_or_disable(
    request: Request,
    endpoint_id: str,
    action: str,
    posted: Annotated[Posted, Depends(posting(Permission.MANAGE_WEBHOOKS))],
) -> Response:
    staff = posted.staff
    if action not in ("enable", "disable"):
        raise staff.refuse(404, "There is no such page.")
    try:
        staff.kassa.webhook_endpoints.update(staff.ctx, endpoint_id, disabled=action == "disable")
    except DomainError as exc:
        raise staff.refuse(404, f"There is no webhook endpoint {endpoint_id}.") from exc
    return redirect(f"/webhooks/{endpoint_id}", notice=f"{action}d")
