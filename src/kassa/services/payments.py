"""Paying orders: open a payment, let the orchestrator drive the provider, settle.

Three short transactions, none held across a network call:
1. open: lock the order, check it can be paid, insert the payment (`processing`) and its
   resume job;
2. the orchestrator calls the provider; each attempt is recorded as it ends;
3. settle: hand the outcome to `settlement`, the one writer of a payment's status.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from kassa.domain.errors import DomainError, ErrorKind, FieldProblem, conflict, invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.money import MAX_AMOUNT, normalize_currency
from kassa.domain.orders import OrderStatus
from kassa.domain.payments import (
    IN_FLIGHT_STATUSES,
    ErrorType,
    PaymentStatus,
    ProviderFailure,
    RetryPolicy,
    classify,
)
from kassa.domain.roles import sees_only_own_orders
from kassa.domain.wallet import EntryKind
from kassa.providers.base import (
    IntentRequest,
    IntentStatus,
    PaymentProvider,
    ProviderError,
    ProviderIntent,
)
from kassa.providers.registry import ProviderRegistry
from kassa.services import audit
from kassa.services.attempts import record_attempt, record_attempts_in
from kassa.services.context import Clock, RequestContext
from kassa.services.gateway_health import GatewayHealth
from kassa.services.idempotency import attach_resource, declare_resource
from kassa.services.invoices import Invoices
from kassa.services.jobs import RetryLater, enqueue
from kassa.services.orchestrator import Attempt, Orchestrator, Outcome
from kassa.services.pagination import ANY_TIME, CreatedRange, Page, paginate
from kassa.services.payment_views import (
    PaymentView as PaymentView,  # re-exported: the API names it from here
)
from kassa.services.payment_views import (
    attempt_view,
    current_view,
    known_attempts,
    payment_view,
)
from kassa.services.settlement import (
    RESUME_PAYMENT,
    apply_intent,
    lock_payment,
    lock_payment_of_intent,
    payment_failed,
    payment_succeeded,
    resume_guard_key,
)
from kassa.services.wallets import post_entry
from kassa.storage.database import Database, table_of
from kassa.storage.deferred import defer_new
from kassa.storage.tables import Customer, Order, Payment, PaymentAttempt

IN_FLIGHT = tuple(s.value for s in IN_FLIGHT_STATUSES)
_ORDERS = table_of(Order)
_PAYMENTS = table_of(Payment)
# A pay's reads of its order, built once: the order, locked; then (a statement of its
# own, so that it sees a payment committed while this one waited for the lock) the
# payment still open for it, if any.
_PAYABLE_ORDER = (
    select(
        _ORDERS.c.id,
        _ORDERS.c.number,
        _ORDERS.c.status,
        _ORDERS.c.currency,
        _ORDERS.c.total,
        _ORDERS.c.amount_paid,
        _ORDERS.c.customer_id,
        _ORDERS.c.created_by_key,
    )
    .where(_ORDERS.c.id == bindparam("order_id"))
    .with_for_update(key_share=True)
)
_OPEN_PAYMENT = select(_PAYMENTS.c.id).where(
    _PAYMENTS.c.order_id == bindparam("order_id"), _PAYMENTS.c.status.in_(IN_FLIGHT)
)
# What a payment cut off before its charge fails with: nothing was charged, the intent was
# canceled at the provider, and the shopper may simply pay again.
INTERRUPTED = ProviderFailure(
    ErrorType.API_ERROR,
    "the request was cut off before the charge; nothing was charged",
    code="payment_interrupted",
)


def _never_confirmed(intent: ProviderIntent) -> bool:
    """A server-side intent whose confirm never took effect (declined ones carry an error)."""
    return intent.status in (
        IntentStatus.REQUIRES_CONFIRMATION,
        IntentStatus.REQUIRES_PAYMENT_METHOD,
    ) and (intent.last_error is None)


# Backs off from ~2 s to an hour between tries: more than a day of asking in all.
RESUME_MAX_ATTEMPTS = 30
WALLET = "wallet"


def provider_idempotency_base(payment_id: str, actor_key_id: str, request_key: str | None) -> str:
    """The provider key prefix of one payment (or refund group).

    Always unique to `payment_id`: a retried request never opens a second payment (its
    Idempotency-Key replays or recovers the first), and a key the client reuses after
    kassa's retention window must not meet the provider's memory of an older payment (the
    provider would replay that payment's result for a new one). The client's key is
    folded in so the provider's logs can be matched with the client's request."""
    if request_key is None:
        return f"kassa:{payment_id}"
    digest = hashlib.sha256(f"{actor_key_id}\0{request_key}\0{payment_id}".encode()).hexdigest()[
        :40
    ]
    return f"kassa:req:{digest}"


def open_gateway_payment(
    session: Session,
    ctx: RequestContext,
    now: datetime,
    request_key: str | None,
    *,
    provider: str,
    amount: int,
    currency: str,
    payment_method: str | None,
    resume_after_s: int,
    order_id: str | None = None,
    top_up_customer_id: str | None = None,
    payment_id: str,
) -> Payment:
    """Insert a `processing` payment (for an order, or a wallet top-up) before the
    provider is called; its `idempotency_base` prefixes every provider key it uses.

    Its resume job is enqueued in the same transaction: if this process dies (or the
    database goes away) between the provider call and the settlement, the worker asks
    the provider later and settles the payment, so no order stays blocked by it."""
    enqueue(
        session,
        RESUME_PAYMENT,
        {"payment": payment_id},
        now,
        run_after=now + timedelta(seconds=resume_after_s),
        max_attempts=RESUME_MAX_ATTEMPTS,
        dedupe_key=resume_guard_key(payment_id),
    )
    base = provider_idempotency_base(payment_id, ctx.actor_key_id, request_key)
    payment = Payment(
        id=payment_id,
        order_id=order_id,
        top_up_customer_id=top_up_customer_id,
        provider=provider,
        idempotency_base=base,
        status=PaymentStatus.PROCESSING.value,
        amount=amount,
        currency=currency,
        # the card alone: a sandbox fault script after "|" is not the customer's data
        payment_method=payment_method.split("|", 1)[0] if payment_method else None,
        retry_count=0,
        recovered_by_retry=False,
        created_by_key=ctx.actor_key_id,
        created_at=now,
        updated_at=now,
    )
    # written at commit with the transaction's other deferred writes (its resume job, its
    # audit record, on PostgreSQL one statement): nothing in this transaction reads the
    # payment back (it settles in its own), and its object serves the caller's reads
    defer_new(session, payment)
    return payment


class _OrderRef(Protocol):
    """What a provider request names of an order (an ORM row or a `PayableOrder`)."""

    @property
    def id(self) -> str: ...

    @property
    def number(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class PayableOrder:
    """An order found payable, read under its row lock (Core: no unit of work for a row
    that paying never changes here)."""

    id: str
    number: str | None
    currency: str
    total: int
    amount_paid: int
    customer_id: str | None

    @property
    def due(self) -> int:
        return self.total - self.amount_paid


def intent_request(
    payment: Payment, payment_method: str | None, order: _OrderRef | None
) -> IntentRequest:
    """What kassa asks the provider for, for `payment` (the same on a resume, so the
    provider's idempotency key meets the same request)."""
    metadata = {"kassa_payment": payment.id}
    if order is not None:
        metadata |= {"kassa_order": order.id, "kassa_order_number": order.number or ""}
    if payment.top_up_customer_id is not None:
        metadata["kassa_top_up_customer"] = payment.top_up_customer_id
    return IntentRequest(
        amount=payment.amount,
        currency=payment.currency,
        reference=payment.id,
        payment_method=payment_method,
        metadata=metadata,
    )


class Payments:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        providers: ProviderRegistry,
        policy: RetryPolicy,
        health: GatewayHealth,
        invoices: Invoices,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        resume_after_s: int = 60,
    ) -> None:
        self._db = db
        self._clock = clock
        self._providers = providers
        self._policy = policy
        self._health = health
        self._invoices = invoices  # a paid order's invoice is issued as it is paid
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._resume_after_s = resume_after_s

    # -- paying -----------------------------------------------------------------------

    def pay(
        self,
        ctx: RequestContext,
        order_id: str,
        *,
        provider: str | None = None,
        payment_method: str | None = None,
        request_key: str | None = None,
    ) -> PaymentView:
        if self._providers.require_enabled(provider) == WALLET:
            return self._pay_from_wallet(ctx, order_id)
        gateway = self._providers.get(provider)
        payment_id, request, base = self._open(
            ctx, order_id, gateway.name, payment_method, request_key
        )
        attempts: list[Attempt] = []
        orchestrator = self._orchestrator(gateway, payment_id, record=attempts.append)
        outcome = (
            orchestrator.charge(request, base)
            if payment_method
            else orchestrator.create(request, base)
        )
        return self._settle(ctx, payment_id, outcome, (gateway.name, attempts))

    def _pay_from_wallet(self, ctx: RequestContext, order_id: str) -> PaymentView:
        """Pay an order from its customer's wallet: one transaction, no gateway."""
        now = self._clock()
        with self._db.transaction() as session:
            order = self._payable_order(session, ctx, order_id)
            if order.customer_id is None:
                raise invalid(
                    "wallet_needs_customer",
                    "a guest order has no wallet to pay from",
                    FieldProblem(("body", "provider"), "the order has no customer"),
                )
            amount = order.due
            payment_id = new_id("pay")
            post_entry(
                session,
                order.customer_id,
                order.currency,
                -amount,
                EntryKind.PAYMENT,
                now,
                reference=payment_id,
                actor=ctx.actor_key_id,
                actor_user=ctx.actor_user,
            )
            payment = Payment(
                id=payment_id,
                order_id=order.id,
                provider=WALLET,
                provider_payment_id=None,
                idempotency_base=f"kassa:{payment_id}",
                status=PaymentStatus.PROCESSING.value,
                amount=amount,
                currency=order.currency,
                retry_count=0,
                recovered_by_retry=False,
                orchestration_ms=0,
                created_by_key=ctx.actor_key_id,
                created_at=now,
                updated_at=now,
            )
            session.add(payment)
            session.flush()
            audit.record(
                session,
                ctx,
                at=now,
                action="payment.created",
                subject=payment_id,
                after={"order": order.id, "amount": amount, "provider": WALLET},
            )
            known_attempts(session, payment_id, ())  # no provider: no attempts to read
            payment_succeeded(session, ctx, payment, now, invoices=self._invoices)
            attach_resource(session, "payment", payment_id)
            session.flush()
            return current_view(session, payment)

    def top_up(
        self,
        ctx: RequestContext,
        customer_id: str,
        amount: int,
        currency: str,
        payment_method: str,
        *,
        provider: str | None = None,
        request_key: str | None = None,
    ) -> PaymentView:
        """Pay money into a customer's wallet through the orchestrator; credited on success."""
        code = normalize_currency(currency)
        if not 0 < amount <= MAX_AMOUNT:
            raise invalid(
                "validation_error",
                "amount must be positive",
                FieldProblem(("body", "amount"), f"must be 1..{MAX_AMOUNT}"),
            )
        if provider == WALLET:
            raise invalid(
                "unknown_provider",
                "a wallet cannot be topped up from itself",
                FieldProblem(("body", "provider"), "not allowed for top-ups"),
            )
        gateway = self._providers.get(provider)
        now = self._clock()
        payment_id = new_id("pay")
        declare_resource("payment", payment_id)  # the key's claim is inserted linked to it
        with self._db.transaction() as session:
            owner = session.execute(
                select(Customer.pk, Customer.created_by_key).where(Customer.id == customer_id)
            ).one_or_none()
            if owner is None or not ctx.may_see(owner.created_by_key):
                raise not_found("customer_not_found", f"no customer {customer_id!r}")
            payment = open_gateway_payment(
                session,
                ctx,
                now,
                request_key,
                provider=gateway.name,
                amount=amount,
                currency=code,
                payment_method=payment_method,
                resume_after_s=self._resume_after_s,
                top_up_customer_id=customer_id,
                payment_id=payment_id,
            )
            audit.record(
                session,
                ctx,
                at=now,
                action="wallet.top_up_started",
                subject=payment.id,
                after={"customer": customer_id, "amount": amount, "currency": code},
            )
            attach_resource(session, "payment", payment.id)
            payment_id, base = payment.id, payment.idempotency_base
            request = intent_request(payment, payment_method, None)
        attempts: list[Attempt] = []
        orchestrator = self._orchestrator(gateway, payment_id, record=attempts.append)
        outcome = orchestrator.charge(request, base)
        return self._settle(ctx, payment_id, outcome, (gateway.name, attempts))

    def _orchestrator(
        self,
        gateway: PaymentProvider,
        payment_id: str,
        first_attempt_number: int = 1,
        *,
        record: Callable[[Attempt], None] | None = None,
    ) -> Orchestrator:
        """An orchestrator for `payment_id`. Its attempts are recorded each in a
        transaction of its own as they end, or handed to `record` (the request path,
        which writes them with the settlement: one transaction fewer per attempt; a
        request that dies before settling loses them with its answer, and the resume
        job that settles the payment records its own)."""
        return Orchestrator(
            gateway,
            self._policy,
            is_degraded=self._health.is_degraded,
            record=record
            or (lambda attempt: self._record_attempt(payment_id, gateway.name, attempt)),
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
            first_attempt_number=first_attempt_number,
        )

    def _payable_order(self, session: Session, ctx: RequestContext, order_id: str) -> PayableOrder:
        row = session.execute(_PAYABLE_ORDER, {"order_id": order_id}).one_or_none()
        if row is None or not ctx.may_see(row.created_by_key):
            raise not_found("order_not_found", f"no order {order_id!r}")
        if row.status != OrderStatus.PENDING.value:
            raise conflict("order_not_pending", f"the order is {row.status}, not pending")
        in_flight = session.scalar(_OPEN_PAYMENT, {"order_id": order_id})
        if in_flight is not None:
            raise conflict(
                "payment_in_progress", f"payment {in_flight} for this order is still open"
            )
        order = PayableOrder(
            row.id, row.number, row.currency, row.total, row.amount_paid, row.customer_id
        )
        if order.due <= 0:
            raise conflict("nothing_to_pay", "the order's total is already covered")
        return order

    def _open(
        self,
        ctx: RequestContext,
        order_id: str,
        provider: str,
        payment_method: str | None,
        request_key: str | None,
    ) -> tuple[str, IntentRequest, str]:
        now = self._clock()
        payment_id = new_id("pay")
        declare_resource("payment", payment_id)
        with self._db.transaction() as session:
            order = self._payable_order(session, ctx, order_id)
            amount = order.due
            payment = open_gateway_payment(
                session,
                ctx,
                now,
                request_key,
                provider=provider,
                amount=amount,
                currency=order.currency,
                payment_method=payment_method,
                resume_after_s=self._resume_after_s,
                order_id=order.id,
                payment_id=payment_id,
            )
            audit.record(
                session,
                ctx,
                at=now,
                action="payment.created",
                subject=payment.id,
                after={"order": order.id, "amount": amount, "provider": provider},
            )
            attach_resource(session, "payment", payment.id)
            request = intent_request(payment, payment_method, order)
            return payment.id, request, payment.idempotency_base

    def _record_attempt(self, payment_id: str, provider: str, attempt: Attempt) -> None:
        record_attempt(
            self._db,
            PaymentAttempt,
            {"payment_id": payment_id},
            provider,
            attempt,
            lock=lambda session: lock_payment(session, payment_id),
        )

    def _settle(
        self,
        ctx: RequestContext,
        payment_id: str,
        outcome: Outcome,
        attempts: tuple[str, Sequence[Attempt]] = ("", ()),
    ) -> PaymentView:
        """Settle the payment with the orchestrator's outcome, writing the request's
        `attempts` (provider, attempts) first. Held for the request's answer (`hold`):
        with an Idempotency-Key, settlement and stored answer commit together."""
        now = self._clock()
        # No autoflush: the payment and its order are each written once, by the flush at
        # the end, instead of once per Core statement that settlement runs in between.
        with self._db.transaction(hold=True) as session, session.no_autoflush:
            payment = lock_payment(session, payment_id)
            assert payment is not None
            provider, made = attempts
            before = record_attempts_in(
                session, PaymentAttempt, {"payment_id": payment_id}, provider, made
            )
            payment.retry_count = outcome.retries
            payment.recovered_by_retry = outcome.recovered_by_retry
            payment.orchestration_ms = outcome.elapsed_ms
            payment.no_retry_reason = (
                outcome.no_retry_reason.value if outcome.no_retry_reason else None
            )
            payment.updated_at = now
            made_now = [attempt_view(n, a) for n, a in enumerate(made, 1)]
            if before == 0:  # the request's attempts are all the payment has
                known_attempts(session, payment_id, made_now)
            # settlement decides what may change: a success or failure reported meanwhile
            # (its webhook, the resume job) is never overwritten by a stale answer
            if outcome.intent is not None:
                apply_intent(session, ctx, payment, outcome.intent, now, invoices=self._invoices)
            elif outcome.failure is not None:
                payment_failed(session, ctx, payment, outcome.failure, now)
            session.flush()
            if before == 0:  # no reading back: the event's view had them too (known_attempts)
                return payment_view(payment, made_now)
            return current_view(session, payment)  # read once, whether here or for its event

    def for_intent(self, ctx: RequestContext, provider: str, intent_id: str) -> str:
        """The id of the payment behind `provider`'s intent, if this caller may see it;
        404 otherwise (another storefront key's payment does not exist for it)."""
        with self._db.transaction(read_only=True) as session:
            row = session.execute(
                select(Payment.id, Payment.created_by_key).where(
                    Payment.provider == provider, Payment.provider_payment_id == intent_id
                )
            ).one_or_none()
        if row is None or not ctx.may_see(row.created_by_key):
            raise not_found("payment_not_found", f"no payment for intent {intent_id!r}")
        return str(row.id)

    def sync_from_provider(
        self,
        ctx: RequestContext,
        provider: str,
        intent_id: str,
        *,
        answered: ProviderIntent | None = None,
    ) -> PaymentView:
        """Apply an intent to kassa's payment: `answered`, the intent as its provider has
        just returned it (the sandbox's browser confirm, whose caller checked `for_intent`
        before touching the provider), or else the intent read again from the provider,
        after that check. The check is repeated on the locked row (no extra statement)."""
        intent = answered
        if intent is None:
            self.for_intent(ctx, provider, intent_id)
            gateway = self._providers.existing(provider)
            try:
                intent = gateway.retrieve_intent(intent_id)
            except ProviderError as exc:
                raise DomainError(
                    "provider_error", exc.failure.message, ErrorKind.CONFLICT
                ) from exc
        now = self._clock()
        # No autoflush: the payment is written once, by the flush before its view.
        with self._db.transaction() as session, session.no_autoflush:
            payment = lock_payment_of_intent(session, provider, intent_id)
            if payment is None or not ctx.may_see(payment.created_by_key):
                raise not_found("payment_not_found", f"no payment for intent {intent_id!r}")
            payment.updated_at = now
            apply_intent(session, ctx, payment, intent, now, invoices=self._invoices)
            session.flush()
            return current_view(session, payment)  # the attempts its event read, if it had one

    # -- the worker's half: payments cut off mid-flight ------------------------------

    def resume(self, payload: dict[str, Any]) -> None:
        """Job handler: settle a payment still `processing` (see `open_gateway_payment`).

        The job asks; it never moves money. It replays the intent's creation with the
        payment's own idempotency key (which charges nothing: the provider answers with the
        intent it made, or makes an unconfirmed one), then:
        - an intent that charged, was declined, or waits for the shopper settles the
          payment as the orchestrator would have;
        - an intent still waiting for its server-side confirmation was never charged: the
          request died before its confirm arrived, or that confirm is still on its way. The
          intent is canceled at the provider first, so no late confirm can charge it, then
          the payment fails and the order is payable again (if the confirm won the race,
          the cancel is refused and the intent's real outcome is settled instead);
        - a transient failure, or an intent still processing, raises RetryLater.
        The request may settle the payment meanwhile; settlement's transitions keep the
        first definitive answer, and money received always wins."""
        payment_id = str(payload["payment"])
        with self._db.transaction(read_only=True) as session:
            payment = session.scalar(select(Payment).where(Payment.id == payment_id))
            if payment is None or payment.status != PaymentStatus.PROCESSING.value:
                return
            order = (
                session.scalar(select(Order).where(Order.id == payment.order_id))
                if payment.order_id
                else None
            )
            request = intent_request(payment, payment.payment_method, order)
            base, provider = payment.idempotency_base, payment.provider
            server_side = payment.payment_method is not None
        gateway = self._providers.existing(provider)
        outcome = self._orchestrator(gateway, payment_id).create(request, base)
        intent = outcome.intent
        if intent is None:
            if outcome.failure is None or classify(outcome.failure).retryable:
                raise RetryLater(f"payment {payment_id}: the provider's answer is still unknown")
        elif server_side and _never_confirmed(intent):
            intent = self._cancel_unconfirmed(gateway, intent, base)
            if intent.status is IntentStatus.CANCELED:
                self._settle_interrupted(payment_id, intent)
                return
            outcome = replace(outcome, intent=intent)
        view = self._settle(RequestContext.system("worker"), payment_id, outcome)
        if view.status == PaymentStatus.PROCESSING.value:
            raise RetryLater(f"payment {payment_id} is still processing at {provider}")

    @staticmethod
    def _cancel_unconfirmed(
        gateway: PaymentProvider, intent: ProviderIntent, base: str
    ) -> ProviderIntent:
        try:
            return gateway.cancel_intent(intent.id, idempotency_key=f"{base}:cancel")
        except ProviderError as exc:
            if classify(exc.failure).retryable:
                raise RetryLater(f"could not cancel {intent.id}: {exc}") from exc
            # refused: the late confirm arrived first; settle what it did
            try:
                return gateway.retrieve_intent(intent.id)
            except ProviderError as again:
                raise RetryLater(f"could not read {intent.id}: {again}") from again

    def _settle_interrupted(self, payment_id: str, intent: ProviderIntent) -> None:
        now = self._clock()
        with self._db.transaction() as session:
            payment = lock_payment(session, payment_id)
            assert payment is not None
            payment.provider_payment_id = intent.id
            payment_failed(session, RequestContext.system("worker"), payment, INTERRUPTED, now)

    # -- reading ----------------------------------------------------------------------

    def get(self, ctx: RequestContext, payment_id: str) -> PaymentView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Payment).where(Payment.id == payment_id))
            if row is None or not ctx.may_see(row.created_by_key):
                raise not_found("payment_not_found", f"no payment {payment_id!r}")
            return current_view(session, row)

    # -- lists ------------------------------------------------------------------------

    def list(
        self,
        ctx: RequestContext,
        *,
        limit: int,
        starting_after: str | None = None,
        order: str | None = None,
        status: str | None = None,
        provider: str | None = None,
        created: CreatedRange = ANY_TIME,
    ) -> Page[PaymentView]:
        """All payments (order payments and wallet top-ups), newest first; staff only."""
        stmt: Select[Any] = created.apply(select(Payment), Payment.created_at)
        if order:
            stmt = stmt.where(Payment.order_id == order)
        if status:
            stmt = stmt.where(Payment.status == status)
        if provider:
            stmt = stmt.where(Payment.provider == provider)
        with self._db.transaction(read_only=True) as session:
            return self._page(session, stmt, limit, starting_after)

    def list_for_order(
        self,
        ctx: RequestContext,
        order_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
    ) -> Page[PaymentView]:
        """The payments of one order; a storefront key sees only its own orders (404)."""
        with self._db.transaction(read_only=True) as session:
            order = session.scalar(select(Order).where(Order.id == order_id))
            if order is None or (
                sees_only_own_orders(ctx.role) and order.created_by_key != ctx.actor_key_id
            ):
                raise not_found("order_not_found", f"no order {order_id!r}")
            in_order = Payment.order_id == order_id
            stmt: Select[Any] = select(Payment).where(in_order)
            return self._page(session, stmt, limit, starting_after, in_order)

    @staticmethod
    def _page(
        session: Session,
        stmt: Select[Any],
        limit: int,
        starting_after: str | None,
        cursor_scope: Any = None,
    ) -> Page[PaymentView]:
        page = paginate(session, Payment, stmt, limit, starting_after, cursor_scope)
        ids = [row.id for row in page.data]
        attempts: dict[str, list[PaymentAttempt]] = {pid: [] for pid in ids}
        if ids:
            for attempt in session.scalars(
                select(PaymentAttempt)
                .where(PaymentAttempt.payment_id.in_(ids))
                .order_by(PaymentAttempt.payment_id, PaymentAttempt.number)
            ):
                attempts[attempt.payment_id].append(attempt)
        return page.map(
            lambda row: payment_view(row, [attempt_view(a.number, a) for a in attempts[row.id]])
        )
