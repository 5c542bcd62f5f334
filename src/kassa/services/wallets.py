"""Customer wallets: per-currency credit kept as an append-only ledger.

Every change is a `WalletEntry`; the `WalletBalance` row is updated in the same
transaction, so it always equals the sum of the entries. A debit is one conditional
UPDATE (`… WHERE balance >= amount`), so concurrent spends can never take a balance below
zero; only an operator's adjustment may. Crediting the same top-up or refund twice is
impossible: (kind, reference) is unique.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kassa.domain.errors import conflict, invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.money import normalize_currency
from kassa.domain.wallet import EntryKind, adjustment_delta, counts_as_paid
from kassa.services import audit, events
from kassa.services.context import Clock, RequestContext
from kassa.storage.database import Database
from kassa.storage.tables import Customer, WalletBalance, WalletEntry
from kassa.storage.upsert import insert_unless_exists


@dataclass(frozen=True, slots=True)
class EntryView:
    id: str
    currency: str
    amount: int
    balance_after: int
    kind: str
    reference: str | None
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WalletView:
    customer: str
    balances: dict[str, int]
    lifetime_paid: dict[str, int]
    entries: tuple[EntryView, ...]


@dataclass(frozen=True, slots=True)
class Adjustment:
    currency: str
    prev_balance: int
    new_balance: int


def post_entry(
    session: Session,
    customer_id: str,
    currency: str,
    amount: int,
    kind: EntryKind,
    now: datetime,
    *,
    reference: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    actor_user: str | None = None,
) -> WalletEntry:
    """Apply one entry inside the caller's transaction; raises for a debit the balance
    cannot cover (adjustments excepted)."""
    insert_unless_exists(
        session,
        WalletBalance,
        {
            "customer_id": customer_id,
            "currency": currency,
            "balance": 0,
            "lifetime_paid": 0,
            "updated_at": now,
        },
        ["customer_id", "currency"],
    )
    wallet = (WalletBalance.customer_id == customer_id) & (WalletBalance.currency == currency)
    values: dict[str, object] = {"balance": WalletBalance.balance + amount, "updated_at": now}
    if counts_as_paid(kind):
        values["lifetime_paid"] = WalletBalance.lifetime_paid + amount
    stmt = update(WalletBalance).where(wallet).values(**values)
    if amount < 0 and kind is not EntryKind.ADJUSTMENT:
        stmt = stmt.where(WalletBalance.balance >= -amount)
    if getattr(session.execute(stmt), "rowcount", 0) != 1:
        raise invalid(
            "insufficient_wallet_balance",
            f"the wallet's {currency} balance does not cover {-amount}",
        )
    balance = session.scalar(select(WalletBalance.balance).where(wallet))
    entry = WalletEntry(
        id=new_id("wle"),
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        balance_after=int(balance or 0),
        kind=kind.value,
        reference=reference,
        reason=reason,
        actor_key_id=actor,
        actor_user=actor_user,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    return entry


RECENT_ENTRIES = 50  # the entries a wallet's view shows, newest first


def wallet_view(session: Session, customer_id: str, entries: int = RECENT_ENTRIES) -> WalletView:
    """The customer's wallet as the API shows it (`GET /v1/customers/{id}/wallet`), as this
    transaction sees it (flushed)."""
    rows = session.scalars(  # fresh: a Core UPDATE may have moved a balance loaded before
        select(WalletBalance)
        .where(WalletBalance.customer_id == customer_id)
        .execution_options(populate_existing=True)
    ).all()
    recent = session.scalars(
        select(WalletEntry)
        .where(WalletEntry.customer_id == customer_id)
        .order_by(WalletEntry.pk.desc())
        .limit(entries)
    ).all()
    return WalletView(
        customer=customer_id,
        balances={r.currency: r.balance for r in rows},
        lifetime_paid={r.currency: r.lifetime_paid for r in rows},
        entries=tuple(
            EntryView(
                id=e.id,
                currency=e.currency,
                amount=e.amount,
                balance_after=e.balance_after,
                kind=e.kind,
                reference=e.reference,
                reason=e.reason,
                created_at=e.created_at,
            )
            for e in recent
        ),
    )


def wallet_resource(view: WalletView) -> dict[str, Any]:
    """The wallet as the API's JSON shows it: an object named by its customer, whose
    entries are objects of their own (`wallet_entry`)."""
    wallet = events.resource_json("wallet", view)
    wallet["entries"] = [
        {"id": entry.pop("id"), "object": "wallet_entry", **entry} for entry in wallet["entries"]
    ]
    return wallet


class Wallets:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @staticmethod
    def _customer(session: Session, customer_id: str) -> Customer:
        customer = session.scalar(select(Customer).where(Customer.id == customer_id))
        if customer is None:
            raise not_found("customer_not_found", f"no customer {customer_id!r}")
        return customer

    def view(self, customer_id: str, entries: int = RECENT_ENTRIES) -> WalletView:
        with self._db.transaction(read_only=True) as session:
            self._customer(session, customer_id)
            return wallet_view(session, customer_id, entries)

    def adjust(
        self,
        ctx: RequestContext,
        customer_id: str,
        currency: str,
        balance: int,
        reason: str,
        *,
        if_balance: int | None = None,
    ) -> Adjustment:
        """An operator sets a balance (negative allowed); lifetime_paid is untouched.

        `if_balance` is the balance the operator saw when they confirmed (the dashboard's
        confirmation page): if the wallet holds another one now, read under the row's lock,
        nothing changes (409 `wallet_balance_changed`), so a confirmation that went stale,
        or the same form posted twice, never overwrites a change it did not see.

        A balance that changes is reported (`wallet.adjusted`, with the wallet as the API
        shows it then); setting the balance it already has changes nothing and reports
        nothing. Top-ups, wallet payments and wallet refunds are reported by their own
        events (`payment.succeeded`, `refund.succeeded`)."""
        code = normalize_currency(currency)
        now = self._clock()
        with self._db.transaction() as session:
            self._customer(session, customer_id)
            insert_unless_exists(
                session,
                WalletBalance,
                {
                    "customer_id": customer_id,
                    "currency": code,
                    "balance": 0,
                    "lifetime_paid": 0,
                    "updated_at": now,
                },
                ["customer_id", "currency"],
            )
            row = session.scalar(
                select(WalletBalance)
                .where(WalletBalance.customer_id == customer_id, WalletBalance.currency == code)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            assert row is not None
            previous = row.balance
            if if_balance is not None and previous != if_balance:
                raise conflict(
                    "wallet_balance_changed",
                    f"the wallet's {code} balance changed since this adjustment was confirmed",
                )
            delta = adjustment_delta(previous, balance)
            if delta:
                post_entry(
                    session,
                    customer_id,
                    code,
                    delta,
                    EntryKind.ADJUSTMENT,
                    now,
                    reason=reason,
                    actor=ctx.actor_key_id,
                    actor_user=ctx.actor_user,
                )
                wallet = wallet_resource(wallet_view(session, customer_id))
                events.record(session, events.WALLET_ADJUSTED, wallet, now)
            audit.record(
                session,
                ctx,
                at=now,
                action="wallet.adjusted",
                subject=customer_id,
                before={"currency": code, "balance": previous},
                after={"currency": code, "balance": balance, "reason": reason},
            )
            return Adjustment(code, previous, balance)
