"""Outgoing webhooks (admin): the endpoints kassa sends its events to, and their log."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.schemas import (
    ListOf,
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecretOut,
)
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

webhook_endpoints = router("/v1/webhook-endpoints", "webhooks")
webhook_deliveries = router("/v1/webhook-deliveries", "webhooks")

Admin = Annotated[RequestContext, Depends(require(Permission.MANAGE_WEBHOOKS))]
Core = Annotated[Kassa, Depends(kassa_dependency)]
NOT_FOUND = (404, "webhook_endpoint_not_found")


@webhook_endpoints.post(
    "",
    status_code=201,
    response_model=WebhookEndpointWithSecretOut,
    responses=problems(422, "webhook_url_not_allowed", "unknown_event_type"),
)
def create_endpoint(body: WebhookEndpointCreate, ctx: Admin, kassa: Core) -> object:
    """A new endpoint. Its `secret` is in this answer only (and in a rotation's): keep it
    to verify the signatures."""
    return kassa.webhook_endpoints.create(ctx, body.url, body.events, body.description)


@webhook_endpoints.get("", response_model=ListOf[WebhookEndpointOut])
def list_endpoints(
    ctx: Admin, kassa: Core, page: Annotated[ListParams, Depends(list_params)]
) -> object:
    return kassa.webhook_endpoints.list(limit=page.limit, starting_after=page.starting_after)


@webhook_endpoints.get(
    "/{endpoint_id}", response_model=WebhookEndpointOut, responses=problems(*NOT_FOUND)
)
def get_endpoint(endpoint_id: str, ctx: Admin, kassa: Core) -> object:
    return kassa.webhook_endpoints.get(endpoint_id)


@webhook_endpoints.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpointOut,
    responses=problems(*NOT_FOUND, 422, "webhook_url_not_allowed", "unknown_event_type"),
)
def update_endpoint(
    endpoint_id: str, body: WebhookEndpointUpdate, ctx: Admin, kassa: Core
) -> object:
    """Change the URL, the events, the description, or disable (`true`) or enable it."""
    return kassa.webhook_endpoints.update(
        ctx,
        endpoint_id,
        url=body.url,
        events=body.events,
        disabled=body.disabled,
        description=body.description,
        description_given="description" in body.model_fields_set,
    )


@webhook_endpoints.delete("/{endpoint_id}", status_code=204, responses=problems(*NOT_FOUND))
def delete_endpoint(endpoint_id: str, ctx: Admin, kassa: Core) -> Response:
    """Remove the endpoint and its delivery log; nothing more is sent to it."""
    kassa.webhook_endpoints.delete(ctx, endpoint_id)
    return Response(status_code=204)


@webhook_endpoints.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointWithSecretOut,
    responses=problems(*NOT_FOUND),
)
def rotate_secret(endpoint_id: str, ctx: Admin, kassa: Core) -> object:
    """A new secret (in this answer only); the old one keeps signing beside it for 24 h."""
    return kassa.webhook_endpoints.rotate_secret(ctx, endpoint_id)


@webhook_endpoints.get(
    "/{endpoint_id}/deliveries",
    response_model=ListOf[WebhookDeliveryOut],
    responses=problems(*NOT_FOUND),
)
def list_deliveries(
    endpoint_id: str,
    ctx: Admin,
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
) -> object:
    """The endpoint's deliveries, newest first: `limit` deliveries a page (the cursor is a
    delivery's id), each as one row per attempt made, latest first, after a `pending` row
    for the attempt still to come."""
    return kassa.webhook_endpoints.deliveries(
        endpoint_id, limit=page.limit, starting_after=page.starting_after
    )


@webhook_deliveries.post(
    "/{delivery_id}/retry",
    response_model=WebhookDeliveryOut,
    responses=problems(404, "webhook_delivery_not_found"),
)
def retry_delivery(delivery_id: str, ctx: Admin, kassa: Core) -> object:
    """Send the delivery again now (one more attempt after it failed)."""
    return kassa.webhook_endpoints.retry(ctx, delivery_id)
