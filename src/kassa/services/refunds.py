"""Refunds: full or partial, to the card (through the provider) or to the wallet.

1. Open (one transaction, under the order's lock): decide the amount against what was paid
   minus everything already refunded *or being refunded*, so concurrent requests can never
   refund more than was paid together; split it across the order's payments (newest first);
   insert one `pending` part per payment.
2. Execute each part at its provider, outside any transaction, through the same engine as
   payments (services.orchestrator): a provider idempotency key per part; every call is
   recorded in `refund_attempts` (and counts towards the gateway's health); a lost answer
   is first looked up at the provider (`find_refund`, by the part's id), and a transient
   failure is retried with the same key (the provider refunds once) unless the gateway is
   degraded; a hard one fails that part. Wallet destinations need no provider.
3. Settle: mark parts succeeded/failed, recompute the order's refund totals from the rows.

Resuming (the `refunds.resume` job). A part whose outcome is still unknown when the engine
gives up stays `pending`, holding its amount, and the job asks the provider again later.
The job must also cover a crash: should the process die between opening the refund and
settling a part, nothing else would ever finish that part. So the job is enqueued in the
*opening* transaction, as a delayed guard (`RESUME_AFTER_S`, deduplicated per part), and
the part's settle transaction retires it whenever the part no longer needs it (succeeded,
failed, or pending at the provider, whose event settles it). Only a part whose outcome is
unknown (or that was cut off by a crash) keeps its job: the common refund leaves none.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from kassa.domain.errors import FieldProblem, conflict, invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.payments import (
    ErrorType,
    PaymentStatus,
    ProviderFailure,
    RetryPolicy,
    failure_json,
)
from kassa.domain.refunds import RefundDestination, RefundStatus, allocate_refund, refund_amount
from kassa.domain.wallet import EntryKind
from kassa.providers.base import PaymentProvider
from kassa.providers.registry import ProviderRegistry
from kassa.services import audit, events
from kassa.services.attempts import record_attempt
from kassa.services.context import Clock, RequestContext
from kassa.services.idempotency import attach_resource
from kassa.services.invoices import request_credit_note
from kassa.services.jobs import RetryLater, enqueue
from kassa.services.orchestrator import Attempt, Orchestrator
from kassa.services.orders import lock_order
from kassa.services.pagination import ANY_TIME, CreatedRange, Page, paginate
from kassa.services.payments import provider_idempotency_base
from kassa.services.wallets import post_entry
from kassa.storage.database import Database
from kassa.storage.outbox import retire
from kassa.storage.tables import Order, Payment, Refund, RefundAttempt

PENDING = RefundStatus.PENDING.value
SUCCEEDED = RefundStatus.SUCCEEDED.value
FAILED = RefundStatus.FAILED.value
RESUME_REFUND = "refunds.resume"
# Long enough that the request itself has given up on the provider (two calls and two
# look-ups of at most the provider timeout, plus the retry delay), so the job rarely races
# it (it may: the same idempotency key and the part's row lock keep that safe).
RESUME_AFTER_S = 300
RESUME_MAX_ATTEMPTS = 20
ORIGINAL = RefundDestination.ORIGINAL.value
WALLET = RefundDestination.WALLET.value


@dataclass(frozen=True, slots=True)
class RefundPart:
    payment: str | None
    amount: int
    status: str
    provider_refund_id: str | None


@dataclass(frozen=True, slots=True)
class RefundView:
    id: str
    order: str
    payment: str | None
    amount: int
    currency: str
    status: str
    destination: str
    provider_refund_id: str | None
    reason: str | None
    origin: str
    failure: dict[str, Any] | None
    parts: tuple[RefundPart, ...]
    created_at: datetime


def group_status(statuses: list[str]) -> str:
    if all(s == SUCCEEDED for s in statuses):
        return SUCCEEDED
    if all(s == FAILED for s in statuses):
        return FAILED
    return PENDING


def mark_refund_succeeded(
    session: Session, ctx: RequestContext, refund: Refund, now: datetime
) -> None:
    """The one way a refund row becomes `succeeded` (kassa's own refunds, wallet refunds,
    provider webhooks): the credit note is requested in the same transaction."""
    if refund.status == SUCCEEDED:
        return
    refund.status = SUCCEEDED
    refund.updated_at = refund.succeeded_at = now
    session.flush()
    audit.record(
        session,
        ctx,
        at=now,
        action="refund.succeeded",
        subject=refund.id,
        before={"status": "pending"},
        after={"status": SUCCEEDED, "amount": refund.amount, "provider": refund.provider},
    )
    request_credit_note(session, refund.id, now)
    report_if_settled(session, refund, now)


def report_if_settled(session: Session, part: Refund, now: datetime) -> None:
    """`part` has just left `pending`: if that settled its refund as the API shows it (a
    refund is one request's parts, succeeded once all succeeded and failed once all
    failed), report the refund, read as `GET /v1/refunds/{id}` answers it. Each part
    leaves `pending` once (its writers check under its lock), so each refund is reported
    once; a refund whose parts end mixed stays `pending` and is not reported."""
    session.flush()
    (view,) = _group_views(session, [part.group_id or part.id])
    if view.status == SUCCEEDED:
        events.record(session, events.REFUND_SUCCEEDED, events.resource_json("refund", view), now)
    elif view.status == FAILED:
        events.record(session, events.REFUND_FAILED, events.resource_json("refund", view), now)


def recompute_order_refunds(session: Session, order: Order, now: datetime) -> None:
    """The order's refund totals, from its succeeded refund rows (never incremented)."""
    total = int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0)).where(
                Refund.order_id == order.id, Refund.status == SUCCEEDED
            )
        )
        or 0
    )
    if total != order.amount_refunded:
        order.amount_refunded = total
        order.refunded_at = now if total else None


class Refunds:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        providers: ProviderRegistry,
        policy: RetryPolicy,
        *,
        is_degraded: Callable[[str], bool],
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._providers = providers
        self._policy = policy
        self._is_degraded = is_degraded
        self._sleep = sleep
        self._rng = rng or random.Random()

    def create(
        self,
        ctx: RequestContext,
        order_id: str,
        *,
        amount: int | None = None,
        reason: str | None = None,
        destination: str = ORIGINAL,
        request_key: str | None = None,
        if_committed: int | None = None,
    ) -> RefundView:
        """Refund `amount` of the order (all that is left if None). `if_committed`: the
        amount already refunded or being refunded that the caller saw when it decided
        (the dashboard's confirmation form); if the order's differs by the time its lock
        is held, nothing is refunded (409 `order_changed`), so a form posted twice refunds
        once."""
        group_id, parts = self._open(
            ctx, order_id, amount, reason, destination, request_key, if_committed
        )
        for part_id, payment_id in parts:
            if destination == ORIGINAL:
                self._execute(ctx, part_id, payment_id)
        return self.get(group_id)

    # -- 1. open ----------------------------------------------------------------------

    def _open(
        self,
        ctx: RequestContext,
        order_id: str,
        requested: int | None,
        reason: str | None,
        destination: str,
        request_key: str | None,
        if_committed: int | None = None,
    ) -> tuple[str, list[tuple[str, str | None]]]:
        now = self._clock()
        with self._db.transaction() as session:
            order = lock_order(session, order_id)
            if order is None:
                raise not_found("order_not_found", f"no order {order_id!r}")
            committed = int(
                session.scalar(
                    select(func.coalesce(func.sum(Refund.amount), 0)).where(
                        Refund.order_id == order.id, Refund.status.in_([PENDING, SUCCEEDED])
                    )
                )
                or 0
            )
            if if_committed is not None and committed != if_committed:
                raise conflict(
                    "order_changed",
                    "the order was refunded since this was confirmed: review it and try again",
                )
            amount = refund_amount(order.amount_paid, committed, requested)
            if destination == WALLET and order.customer_id is None:
                raise invalid(
                    "wallet_needs_customer",
                    "a guest order has no wallet to refund to",
                    FieldProblem(("body", "destination"), "the order has no customer"),
                )
            split = allocate_refund(amount, self._refundable_payments(session, order.id))
            group_id = new_id("re")
            base = provider_idempotency_base(group_id, ctx.actor_key_id, request_key)
            parts: list[tuple[str, str | None]] = []
            for index, (payment_id, part_amount) in enumerate(split):
                part_id = group_id if index == 0 else new_id("re")
                session.add(
                    Refund(
                        id=part_id,
                        order_id=order.id,
                        payment_id=payment_id,
                        amount=part_amount,
                        currency=order.currency,
                        status=PENDING,
                        destination=destination,
                        provider=None,
                        provider_refund_id=None,
                        origin="kassa",
                        reason=reason,
                        group_id=group_id,
                        idempotency_base=f"{base}:{index}",
                        created_by_key=ctx.actor_key_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                parts.append((part_id, payment_id))
                if destination == ORIGINAL:
                    # The crash guard (see the module's docstring): should this process
                    # die before the part is settled, the worker finishes it. Settling
                    # the part retires it unless the outcome is still unknown.
                    enqueue(
                        session,
                        RESUME_REFUND,
                        {"refund": part_id},
                        now,
                        run_after=now + timedelta(seconds=RESUME_AFTER_S),
                        max_attempts=RESUME_MAX_ATTEMPTS,
                        dedupe_key=_resume_key(part_id),
                    )
            session.flush()
            if destination == WALLET:
                for part_id, _ in parts:
                    part = session.scalar(select(Refund).where(Refund.id == part_id))
                    assert part is not None
                    self._credit_wallet(session, ctx, order, part, now)
                recompute_order_refunds(session, order, now)
            audit.record(
                session,
                ctx,
                at=now,
                action="refund.created",
                subject=group_id,
                after={
                    "order": order.id,
                    "amount": amount,
                    "destination": destination,
                    "parts": len(parts),
                },
            )
            attach_resource(session, "refund", group_id)
            return group_id, parts

    @staticmethod
    def _refundable_payments(session: Session, order_id: str) -> list[tuple[str, int]]:
        """Succeeded payments with what each can still give back, newest first."""
        payments = session.scalars(
            select(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED.value)
            .order_by(Payment.pk.desc())
        ).all()
        out = []
        for payment in payments:
            used = int(
                session.scalar(
                    select(func.coalesce(func.sum(Refund.amount), 0)).where(
                        Refund.payment_id == payment.id, Refund.status.in_([PENDING, SUCCEEDED])
                    )
                )
                or 0
            )
            out.append((payment.id, payment.amount - used))
        return out

    # -- 2. execute -------------------------------------------------------------------

    def _execute(self, ctx: RequestContext, part_id: str, payment_id: str | None) -> str:
        """Refund one part at its provider; returns the part's status afterwards.

        Only a definitive refusal fails a part. When the outcome stays unknown (the
        request may have reached the provider and the look-up did not find the refund)
        or the provider stays unavailable, the part remains `pending` (its amount stays
        reserved) and the `refunds.resume` job asks again later with the same
        idempotency key, which the provider answers with the refund it made, if any."""
        with self._db.transaction(read_only=True) as session:
            part = session.scalar(select(Refund).where(Refund.id == part_id))
            payment = session.scalar(select(Payment).where(Payment.id == payment_id))
            assert part is not None and payment is not None
            if part.status != PENDING:
                return part.status
            amount, key = part.amount, f"{part.idempotency_base}"
            provider_name, intent = payment.provider, payment.provider_payment_id
        if provider_name == "wallet":  # paid from the wallet: give it back there
            return self._back_to_wallet(ctx, part_id)
        provider = self._providers.existing(provider_name)
        outcome = self._orchestrator(provider, part_id).refund(intent or "", amount, key, part_id)
        result, failure = outcome.refund, outcome.failure
        now = self._clock()
        with self._db.transaction() as session:
            order, part = self._lock_part(session, part_id)
            if part.status != PENDING:
                return part.status  # a provider event or the resume job settled it meanwhile
            part.provider = provider_name
            part.updated_at = now
            if result is not None and result.status is not RefundStatus.FAILED:
                part.provider_refund_id = result.id
                if result.status is RefundStatus.SUCCEEDED:
                    self._succeeded(session, ctx, part_id, now)
                # else pending at the provider (slow payment methods): its webhook settles it
            elif result is not None:
                part.provider_refund_id = result.id
                part.status = FAILED
                part.failure = failure_json(
                    ProviderFailure(
                        ErrorType.INVALID_REQUEST, "the provider failed the refund", "refund_failed"
                    )
                )
                audit.record(
                    session,
                    ctx,
                    at=now,
                    action="refund.failed",
                    subject=part_id,
                    after={"failure": part.failure},
                )
                report_if_settled(session, part, now)
            else:
                assert failure is not None
                part.failure = failure_json(failure)  # the last error, for staff
                if outcome.outcome_unknown:
                    audit.record(
                        session,
                        ctx,
                        at=now,
                        action="refund.outcome_unknown",
                        subject=part_id,
                        after={"failure": part.failure, "resumed_by": RESUME_REFUND},
                    )
                else:
                    part.status = FAILED
                    audit.record(
                        session,
                        ctx,
                        at=now,
                        action="refund.failed",
                        subject=part_id,
                        after={"failure": part.failure},
                    )
                    report_if_settled(session, part, now)
            if not outcome.outcome_unknown:
                _retire_resume_job(session, part_id)
            recompute_order_refunds(session, order, now)
            return part.status

    def _orchestrator(self, provider: PaymentProvider, part_id: str) -> Orchestrator:
        return Orchestrator(
            provider,
            self._policy,
            is_degraded=self._is_degraded,
            record=lambda attempt: self._record_attempt(part_id, provider.name, attempt),
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
        )

    def _record_attempt(self, part_id: str, provider: str, attempt: Attempt) -> None:
        record_attempt(self._db, RefundAttempt, {"refund_id": part_id}, provider, attempt)

    def resume(self, payload: dict[str, Any]) -> None:
        """Job handler: finish a part still `pending` (see `_execute`). Raises while the
        provider's answer stays unknown, so the job queue retries with backoff."""
        part_id = str(payload["refund"])
        with self._db.transaction(read_only=True) as session:
            part = session.scalar(select(Refund).where(Refund.id == part_id))
            if part is None or part.status != PENDING:
                return
            payment_id = part.payment_id
        if self._execute(RequestContext.system("worker"), part_id, payment_id) == PENDING:
            with self._db.transaction(read_only=True) as session:
                waiting_for_provider = session.scalar(
                    select(Refund.provider_refund_id).where(Refund.id == part_id)
                )
            if waiting_for_provider is None:  # still no answer at all: ask again later
                raise RetryLater(f"refund {part_id}: the provider's answer is still unknown")
            # pending at the provider itself: its event settles it

    @staticmethod
    def _lock_part(session: Session, part_id: str) -> tuple[Order, Refund]:
        """Lock a refund part's order, then the part: the lock order every refund path
        follows (payment, then order, then refund rows), so none can deadlock another."""
        order_id = session.scalar(select(Refund.order_id).where(Refund.id == part_id))
        assert order_id is not None
        order = lock_order(session, order_id)
        part = session.scalar(
            select(Refund)
            .where(Refund.id == part_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert order is not None and part is not None
        return order, part

    def _back_to_wallet(self, ctx: RequestContext, part_id: str) -> str:
        now = self._clock()
        with self._db.transaction() as session:
            order, part = self._lock_part(session, part_id)
            if part.status != PENDING:
                return part.status
            part.provider = "wallet"
            self._credit_wallet(session, ctx, order, part, now)
            recompute_order_refunds(session, order, now)
            return SUCCEEDED

    @classmethod
    def _credit_wallet(
        cls, session: Session, ctx: RequestContext, order: Order, part: Refund, now: datetime
    ) -> None:
        """Settle a part by crediting the customer's wallet: a refund to the wallet, or of a
        payment that came from it."""
        assert order.customer_id is not None
        post_entry(
            session,
            order.customer_id,
            part.currency,
            part.amount,
            EntryKind.REFUND,
            now,
            reference=part.id,
            reason=part.reason,
            actor=ctx.actor_key_id,
            actor_user=ctx.actor_user,
        )
        cls._succeeded(session, ctx, part.id, now)

    @staticmethod
    def _succeeded(session: Session, ctx: RequestContext, part_id: str, now: datetime) -> None:
        part = session.scalar(select(Refund).where(Refund.id == part_id))
        assert part is not None
        mark_refund_succeeded(session, ctx, part, now)

    # -- reading ----------------------------------------------------------------------

    def get(self, refund_id: str) -> RefundView:
        with self._db.transaction(read_only=True) as session:
            first = session.scalar(select(Refund).where(Refund.id == refund_id))
            if first is None:
                raise not_found("refund_not_found", f"no refund {refund_id!r}")
            return _group_views(session, [first.group_id or first.id])[0]

    # -- lists ------------------------------------------------------------------------

    def list(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        order: str | None = None,
        status: str | None = None,
        created: CreatedRange = ANY_TIME,
    ) -> Page[RefundView]:
        """Refunds (one per request, however many parts), newest first. `status` is the
        refund's own, derived from its parts as `get` derives it."""
        stmt: Select[Any] = created.apply(select(Refund).where(_IS_HEAD), Refund.created_at)
        if order:
            stmt = stmt.where(Refund.order_id == order)
        if status:
            stmt = stmt.where(_group_status_is(status))
        with self._db.transaction(read_only=True) as session:
            return self._page(session, stmt, limit, starting_after, _IS_HEAD)

    def list_for_order(
        self, order_id: str, *, limit: int, starting_after: str | None = None
    ) -> Page[RefundView]:
        with self._db.transaction(read_only=True) as session:
            if session.scalar(select(Order.pk).where(Order.id == order_id)) is None:
                raise not_found("order_not_found", f"no order {order_id!r}")
            scope = _IS_HEAD & (Refund.order_id == order_id)
            return self._page(session, select(Refund).where(scope), limit, starting_after, scope)

    @staticmethod
    def _page(
        session: Session,
        stmt: Select[Any],
        limit: int,
        starting_after: str | None,
        scope: ColumnElement[bool],
    ) -> Page[RefundView]:
        page = paginate(session, Refund, stmt, limit, starting_after, scope)
        return Page(_group_views(session, [row.id for row in page.data]), page.has_more)


def _resume_key(part_id: str) -> str:
    return f"{RESUME_REFUND}:{part_id}"


def _retire_resume_job(session: Session, part_id: str) -> None:
    """The part no longer needs its resume job (see the module's docstring): drop it if
    no worker has claimed it yet (a claimed one finds the part settled and ends)."""
    retire(session, _resume_key(part_id))


# A refund as the API shows it is its group's first part (a lone refund has no group).
_IS_HEAD: ColumnElement[bool] = or_(Refund.group_id.is_(None), Refund.group_id == Refund.id)


def _group_status_is(status: str) -> ColumnElement[bool]:
    """SQL for `group_status(parts) == status` of the head row in the outer query."""
    part = aliased(Refund)
    in_group = or_(part.group_id == Refund.id, part.id == Refund.id)

    def some_part_not(value: str) -> ColumnElement[bool]:
        return exists().where(in_group, part.status != value)

    if status == SUCCEEDED:
        return ~some_part_not(SUCCEEDED)
    if status == FAILED:
        return ~some_part_not(FAILED)
    return some_part_not(SUCCEEDED) & some_part_not(FAILED)


def _group_views(session: Session, group_ids: list[str]) -> list[RefundView]:
    """The views of these refund groups (by their heads' ids), in the order given."""
    rows = session.scalars(
        select(Refund)
        .where(or_(Refund.group_id.in_(group_ids), Refund.id.in_(group_ids)))
        .order_by(Refund.pk)
    ).all()
    views = []
    for group in group_ids:
        parts = [r for r in rows if r.id == group or r.group_id == group]
        head = next(r for r in parts if r.id == group)
        views.append(
            RefundView(
                id=head.id,
                order=head.order_id,
                payment=head.payment_id,
                amount=sum(r.amount for r in parts),
                currency=head.currency,
                status=group_status([r.status for r in parts]),
                destination=head.destination,
                provider_refund_id=head.provider_refund_id,
                reason=head.reason,
                origin=head.origin,
                failure=head.failure,
                parts=tuple(
                    RefundPart(r.payment_id, r.amount, r.status, r.provider_refund_id)
                    for r in parts
                ),
                created_at=head.created_at,
            )
        )
    return views
