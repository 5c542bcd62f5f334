from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.routing import local_effect
from kassa.api.schemas import ListOf, ProductCreate, ProductOut, ProductUpdate
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.catalogue import NewProduct, ProductChanges
from kassa.services.context import RequestContext

products = router("/v1/products", "products")

Reader = Annotated[RequestContext, Depends(require(Permission.READ_CATALOGUE))]
Writer = Annotated[RequestContext, Depends(require(Permission.WRITE_CATALOGUE))]
Core = Annotated[Kassa, Depends(kassa_dependency)]


@products.post(
    "",
    status_code=201,
    response_model=ProductOut,
    responses=problems(409, "sku_exists", 422, "unknown_currency"),
)
@local_effect
def create_product(body: ProductCreate, ctx: Writer, kassa: Core) -> object:
    return kassa.catalogue.create(ctx, NewProduct(**body.model_dump()))


@products.get("", response_model=ListOf[ProductOut])
def list_products(
    ctx: Reader,
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    status: Annotated[str | None, Query(pattern="^(available|reserved|sold)$")] = None,
) -> object:
    return kassa.catalogue.list(limit=page.limit, starting_after=page.starting_after, status=status)


@products.get("/{sku}", response_model=ProductOut, responses=problems(404, "product_not_found"))
def get_product(sku: str, ctx: Reader, kassa: Core) -> object:
    return kassa.catalogue.get(sku)


@products.patch("/{sku}", response_model=ProductOut, responses=problems(404, "product_not_found"))
def update_product(sku: str, body: ProductUpdate, ctx: Writer, kassa: Core) -> object:
    given = body.model_fields_set
    changes = ProductChanges(
        title=body.title,
        unit_amount=body.unit_amount,
        stock=body.stock,
        stock_given="stock" in given,
    )
    return kassa.catalogue.update(ctx, sku, changes)
