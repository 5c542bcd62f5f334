from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.routing import local_effect
from kassa.api.schemas import CustomerCreate, CustomerOut, ListOf
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

customers = router("/v1/customers", "customers")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@customers.post("", status_code=201, response_model=CustomerOut)
@local_effect
def create_customer(
    body: CustomerCreate,
    ctx: Annotated[RequestContext, Depends(require(Permission.CREATE_CUSTOMERS))],
    kassa: Core,
) -> object:
    return kassa.customers.create(ctx, str(body.email), body.name)


@customers.get("", response_model=ListOf[CustomerOut])
def list_customers(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_CUSTOMERS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    email: Annotated[
        str | None, Query(max_length=320, description="matches whatever its case")
    ] = None,
) -> object:
    return kassa.customers.list(limit=page.limit, starting_after=page.starting_after, email=email)


@customers.get(
    "/{customer_id}", response_model=CustomerOut, responses=problems(404, "customer_not_found")
)
def get_customer(
    customer_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_CUSTOMERS))],
    kassa: Core,
) -> object:
    return kassa.customers.get(customer_id)
