"""Customers: an e-mail address and an optional name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from kassa.domain.errors import not_found
from kassa.domain.ids import new_id
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.idempotency import attach_resource
from kassa.services.pagination import Page, paginate
from kassa.storage.database import Database
from kassa.storage.tables import Customer


@dataclass(frozen=True, slots=True)
class CustomerView:
    id: str
    email: str
    name: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Customer) -> CustomerView:
        return cls(id=row.id, email=row.email, name=row.name, created_at=row.created_at)


class Customers:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(self, ctx: RequestContext, email: str, name: str | None) -> CustomerView:
        now = self._clock()
        row = Customer(
            id=new_id("cus"),
            email=email,
            name=name,
            created_by_key=ctx.actor_key_id,
            created_at=now,
        )
        with self._db.transaction() as session:
            session.add(row)
            audit.record(
                session,
                ctx,
                at=now,
                action="customer.created",
                subject=row.id,
                after={"email": email, "name": name},
            )
            attach_resource(session, "customer", row.id)
        return CustomerView.of(row)

    def get(self, customer_id: str) -> CustomerView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Customer).where(Customer.id == customer_id))
            if row is None:
                raise not_found("customer_not_found", f"no customer {customer_id!r}")
            return CustomerView.of(row)

    def list(
        self, *, limit: int, starting_after: str | None = None, email: str | None = None
    ) -> Page[CustomerView]:
        """Newest first; `email` matches whatever its case (index `ix_customers_email_lower`)."""
        stmt: Select[Any] = select(Customer)
        if email:
            stmt = stmt.where(func.lower(Customer.email) == email.lower())
        with self._db.transaction(read_only=True) as session:
            return paginate(session, Customer, stmt, limit, starting_after).map(CustomerView.of)
