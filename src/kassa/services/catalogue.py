"""Products: multi-quantity stock (or unlimited), or one-of-a-kind items."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kassa.domain.errors import FieldProblem, conflict, invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.money import Money, normalize_currency
from kassa.domain.orders import CatalogueEntry, ProductStatus
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.idempotency import attach_resource
from kassa.services.pagination import Page, paginate
from kassa.storage.database import Database
from kassa.storage.tables import Product


@dataclass(frozen=True, slots=True)
class ProductView:
    id: str
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

    @classmethod
    def of(cls, row: Product) -> ProductView:
        return cls(
            id=row.id,
            sku=row.sku,
            title=row.title,
            unit_amount=row.unit_amount,
            currency=row.currency,
            stock=row.stock,
            unique=row.unique,
            status=row.status,
            reserved_until=row.reserved_until,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def catalogue_entry(row: Product) -> CatalogueEntry:
    return CatalogueEntry(
        sku=row.sku,
        title=row.title,
        unit_price=Money(row.unit_amount, row.currency),
        stock=row.stock,
        unique=row.unique,
        status=ProductStatus(row.status),
    )


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    title: str
    unit_amount: int
    currency: str
    stock: int | None = None
    unique: bool = False


@dataclass(frozen=True, slots=True)
class ProductChanges:
    """Only the fields given are changed; `stock_given` tells "null" from "absent"."""

    title: str | None = None
    unit_amount: int | None = None
    stock: int | None = None
    stock_given: bool = False


def _summary(row: Product) -> dict[str, Any]:
    return {
        "sku": row.sku,
        "title": row.title,
        "unit_amount": row.unit_amount,
        "currency": row.currency,
        "stock": row.stock,
        "unique": row.unique,
        "status": row.status,
    }


class Catalogue:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(self, ctx: RequestContext, new: NewProduct) -> ProductView:
        currency = normalize_currency(new.currency)
        if new.unit_amount < 0:
            raise invalid(
                "validation_error",
                "unit_amount must not be negative",
                FieldProblem(("body", "unit_amount"), "must be >= 0"),
            )
        stock = new.stock
        if new.unique:
            if stock not in (None, 1):
                raise invalid(
                    "validation_error",
                    "a unique item has a stock of exactly 1",
                    FieldProblem(("body", "stock"), "must be 1 or omitted for a unique item"),
                )
            stock = 1
        elif stock is not None and stock < 0:
            raise invalid(
                "validation_error",
                "stock must not be negative",
                FieldProblem(("body", "stock"), "must be >= 0 or null"),
            )
        now = self._clock()
        row = Product(
            id=new_id("prod"),
            sku=new.sku,
            title=new.title,
            unit_amount=new.unit_amount,
            currency=currency,
            stock=stock,
            unique=new.unique,
            status=ProductStatus.AVAILABLE.value,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._db.transaction() as session:
                if session.scalar(select(Product.pk).where(Product.sku == new.sku)) is not None:
                    raise conflict("sku_exists", f"a product with SKU {new.sku!r} exists")
                session.add(row)
                session.flush()
                audit.record(
                    session,
                    ctx,
                    at=now,
                    action="product.created",
                    subject=row.id,
                    after=_summary(row),
                )
                attach_resource(session, "product", row.sku)
        except IntegrityError as exc:  # a concurrent create of the same SKU won
            raise conflict("sku_exists", f"a product with SKU {new.sku!r} exists") from exc
        return ProductView.of(row)

    def get(self, sku: str) -> ProductView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Product).where(Product.sku == sku))
            if row is None:
                raise not_found("product_not_found", f"no product with SKU {sku!r}")
            return ProductView.of(row)

    def list(
        self, *, limit: int, starting_after: str | None = None, status: str | None = None
    ) -> Page[ProductView]:
        stmt = select(Product)
        if status:
            stmt = stmt.where(Product.status == status)
        with self._db.transaction(read_only=True) as session:
            return paginate(session, Product, stmt, limit, starting_after).map(ProductView.of)

    def update(self, ctx: RequestContext, sku: str, changes: ProductChanges) -> ProductView:
        now = self._clock()
        with self._db.transaction() as session:
            row = session.scalar(
                select(Product)
                .where(Product.sku == sku)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            if row is None:
                raise not_found("product_not_found", f"no product with SKU {sku!r}")
            before = _summary(row)
            if changes.title is not None:
                row.title = changes.title
            if changes.unit_amount is not None:
                if changes.unit_amount < 0:
                    raise invalid(
                        "validation_error",
                        "unit_amount must not be negative",
                        FieldProblem(("body", "unit_amount"), "must be >= 0"),
                    )
                row.unit_amount = changes.unit_amount
            if changes.stock_given:
                if row.unique:
                    raise invalid(
                        "validation_error",
                        "the stock of a unique item cannot be changed",
                        FieldProblem(("body", "stock"), "not settable on a unique item"),
                    )
                if changes.stock is not None and changes.stock < 0:
                    raise invalid(
                        "validation_error",
                        "stock must not be negative",
                        FieldProblem(("body", "stock"), "must be >= 0 or null"),
                    )
                row.stock = changes.stock
            row.updated_at = now
            audit.record(
                session,
                ctx,
                at=now,
                action="product.updated",
                subject=row.id,
                before=before,
                after=_summary(row),
            )
            return ProductView.of(row)
