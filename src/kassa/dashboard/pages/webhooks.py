"""Webhook endpoints (admin): where kassa sends its events, whether each is enabled (and
if not, why), since when it has been failing, and its delivery log with a retry for each
failed or pending delivery, through `kassa.webhook_endpoints` as `/v1/webhook-endpoints`
and `POST /v1/webhook-deliveries/{id}/retry` do.

Enabling an endpoint again (one kassa disabled after 5 days of failures) and disabling it
are the API's `PATCH … {"disabled": …}`; a new endpoint's signing secret is shown once, on
the page that answers the form, as the API answers it once; deleting one is confirmed on a
page of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.once import first_sending
from kassa.dashboard.pages.common import listed, page_router
from kassa.dashboard.web import redirect, render
from kassa.domain.errors import DomainError
from kassa.domain.roles import Permission
from kassa.services.events import EVENT_TYPES
from kassa.services.webhook_endpoints import (
    ALL_EVENTS,
    FAILED,
    PENDING,
    DeliveryRow,
    EndpointView,
)

router = page_router()
ENDPOINTS_PAGE = 100
DELIVERIES_PAGE = 25
MAX_URL, MAX_DESCRIPTION = 2048, 500  # as the API's WebhookEndpointCreate
EVENT_FIELD = "event:"  # one checkbox per event type: "event:order.paid" (a form's names)
NOTICES = {
    "deleted": "The endpoint is deleted, with its delivery log: nothing more is sent to it.",
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


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    """The new endpoint form as typed (shown again, with the error, if it is refused)."""

    url: str = ""
    description: str = ""
    events: tuple[str, ...] = (ALL_EVENTS,)


def _endpoints_page(
    request: Request,
    staff: Staff,
    *,
    after: str = "",
    notice: str = "",
    error: str = "",
    typed: NewEndpoint | None = None,
    status: int = 200,
) -> Response:
    endpoints, has_more = listed(
        lambda: staff.kassa.webhook_endpoints.list(
            limit=ENDPOINTS_PAGE, starting_after=after or None
        )
    )
    return render(
        request,
        staff.viewer,
        "webhooks.html.j2",
        {
            "endpoints": endpoints,
            "has_more": has_more,
            "notice": NOTICES.get(notice, ""),
            "error": error,
            "typed": typed or NewEndpoint(),
            "event_types": EVENT_TYPES,
            "all_events": ALL_EVENTS,
            "event_field": EVENT_FIELD,
            "max_url": MAX_URL,
            "max_description": MAX_DESCRIPTION,
        },
        status=status,
    )


@router.get("/webhooks")
def endpoints_list(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.MANAGE_WEBHOOKS))],
    after: str = "",
    notice: str = "",
) -> Response:
    return _endpoints_page(request, staff, after=after, notice=notice)


@router.post("/webhooks")
def create_endpoint(
    request: Request, posted: Annotated[Posted, Depends(posting(Permission.MANAGE_WEBHOOKS))]
) -> Response:
    """Create the endpoint and answer with its signing secret: the only time it shows."""
    staff = posted.staff
    typed = NewEndpoint(
        url=posted.text("url"),
        description=posted.text("description"),
        events=tuple(
            name[len(EVENT_FIELD) :] for name in posted.form if name.startswith(EVENT_FIELD)
        ),
    )
    error = ""
    if len(typed.url) > MAX_URL or len(typed.description) > MAX_DESCRIPTION:
        error = f"The URL may have {MAX_URL} characters, the description {MAX_DESCRIPTION}."
    elif not typed.events:
        error = "Choose the events to send, or all events."
    if error:
        return _endpoints_page(request, staff, error=error, typed=typed, status=422)
    sending = first_sending(
        request, posted, what="webhook endpoint", listing=("/webhooks", "webhook endpoints")
    )
    if isinstance(sending, Response):
        return sending
    try:
        created = staff.kassa.webhook_endpoints.create(
            staff.ctx, typed.url, list(typed.events), typed.description or None
        )
    except DomainError as exc:
        sending.refused()
        return _endpoints_page(request, staff, error=exc.detail, typed=typed, status=422)
    sending.made(created.id)
    return render(request, staff.viewer, "webhook_created.html.j2", {"e": created})


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
    # a stale cursor, or another endpoint's delivery id: `listed` lists nothing
    rows, has_more = listed(
        lambda: staff.kassa.webhook_endpoints.deliveries(
            endpoint_id, limit=DELIVERIES_PAGE, starting_after=after or None
        )
    )
    deliveries = group(rows)
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


@router.get("/webhooks/{endpoint_id}/delete")
def delete_page(
    request: Request,
    endpoint_id: str,
    staff: Annotated[Staff, Depends(allowed(Permission.MANAGE_WEBHOOKS))],
) -> Response:
    """The question "Delete the endpoint …?", where its Delete button leads."""
    endpoint = _endpoint(staff, endpoint_id)
    return render(request, staff.viewer, "webhook_delete.html.j2", {"e": endpoint})


@router.post("/webhooks/{endpoint_id}/{action}")
def change_endpoint(
    request: Request,
    endpoint_id: str,
    action: str,
    posted: Annotated[Posted, Depends(posting(Permission.MANAGE_WEBHOOKS))],
) -> Response:
    """Enable, disable or delete the endpoint."""
    staff = posted.staff
    if action not in ("enable", "disable", "delete"):
        raise staff.refuse(404, "There is no such page.")
    endpoints = staff.kassa.webhook_endpoints
    try:
        if action == "delete":
            endpoints.delete(staff.ctx, endpoint_id)
            return redirect("/webhooks", notice="deleted")
        endpoints.update(staff.ctx, endpoint_id, disabled=action == "disable")
    except DomainError as exc:
        raise staff.refuse(404, f"There is no webhook endpoint {endpoint_id}.") from exc
    return redirect(f"/webhooks/{endpoint_id}", notice=f"{action}d")
