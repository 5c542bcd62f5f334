from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from kassa.api.auth import kassa_of, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import router
from kassa.api.schemas import CustomerCreate, CustomerOut
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.kassa import Kassa

customers = router("/v1/customers", "customers")
Core = Annotated[Kassa, Depends(kassa_of)]


@customers.post("", status_code=201, response_model=CustomerOut)
def create_customer(
    body: CustomerCreate,
    ctx: Annotated[RequestContext, Depends(require(Permission.CREATE_CUSTOMERS))],
    kassa: Core,
) -> object:
    return kassa.customers.create(ctx, str(body.email), body.name)


@customers.get(
    "/{customer_id}", response_model=CustomerOut, responses=problems(404, "customer_not_found")
)
def get_customer(
    customer_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_CUSTOMERS))],
    kassa: Core,
) -> object:
    return kassa.customers.get(customer_id)
