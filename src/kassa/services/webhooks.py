"""Provider webhooks: verify, store once, acknowledge; apply the effects once, later.

`receive` is the fast path: check the signature, decode the event with its provider's
decoder (a body it rejects is 400 `malformed_event`), store the event once per (provider,
event id) and enqueue its job in the same transaction, a single write. `apply` runs in
the worker, inside the job's transaction: it decodes the stored event again into a typed
provider event (`kassa.providers.events`) and hands it to the one handler for its type, so
every effect happens exactly once whatever the order and number of deliveries:

- intent succeeded -> settlement.payment_succeeded (order paid, goods taken);
- intent failed, intent requires action -> the payment follows, unless it already
  succeeded (success is final, so late or reordered events cannot undo it);
- refunds reported -> refunds made at the provider are recorded; the order's refund
  totals are recomputed from the refund rows, never incremented, so replays change nothing;
- dispute opened -> the order is flagged disputed and audited.

What an event type is called and where its fields sit is the provider package's business
(its decoder); nothing here reads a provider's wire format.

An event about a payment kassa does not know yet raises RetryLater: the job backs off and
runs again, and is never dropped.

An event only ever touches the payments and refunds of the provider it was received (and
verified) for, matched on that provider's own ids: kassa's ids in an event's metadata are
a hint, never a key to another provider's payment (the sandbox's signing secret is public,
so its events must not be able to settle a Stripe payment, and the other way round).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import bindparam, case, exists, literal, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from kassa.domain.errors import DomainError, ErrorKind, not_found
from kassa.domain.ids import new_id
from kassa.domain.payments import PaymentStatus
from kassa.domain.refunds import RefundDestination, RefundStatus
from kassa.providers.events import (
    DecodedEvent,
    DisputeOpened,
    EventDecodingError,
    Ignored,
    IntentFailed,
    IntentRequiresAction,
    IntentSucceeded,
    RefundsReported,
    SettledRefund,
    SignatureError,
    WebhookScheme,
)
from kassa.services import audit, events
from kassa.services.context import Clock, RequestContext
from kassa.services.invoices import Invoices
from kassa.services.jobs import RetryLater
from kassa.services.orders import OrderView, lock_order
from kassa.services.refunds import mark_refund_succeeded, recompute_order_refunds
from kassa.services.settlement import (
    lock_payment,
    lock_payment_of_intent,
    payment_failed,
    payment_requires_action,
    payment_succeeded,
)
from kassa.storage.database import Database, table_of
from kassa.storage.deferred import defer_update
from kassa.storage.outbox import insert_and_enqueue
from kassa.storage.prebuilt import binds, kept
from kassa.storage.tables import Payment, ProviderEvent, Refund
from kassa.storage.upsert import unless_exists_prebuilt

APPLY_EVENT = "provider_event.apply"
_EVENTS = table_of(ProviderEvent)
# The apply job's own reads and write of its event, Core statements built once: every
# event goes through them (the unit of work cost more than the two statements).
_LOCK_EVENT = (
    select(_EVENTS.c.provider, _EVENTS.c.event_id, _EVENTS.c.type, _EVENTS.c.payload)
    .where(_EVENTS.c.pk == bindparam("event_pk"), _EVENTS.c.applied_at.is_(None))
    .with_for_update()
)
_MARK_APPLIED = (
    update(_EVENTS)
    .where(_EVENTS.c.pk == bindparam("event_pk"))
    .values(
        applied_at=bindparam("applied_at", type_=_EVENTS.c.applied_at.type),
        outcome=bindparam("applied_outcome", type_=_EVENTS.c.outcome.type),
    )
)
_EVENT_COLUMNS = ("provider", "event_id", "type", "payload", "signed_at", "received_at")


def _store_event(session: Session) -> Insert:
    """The event's INSERT ... ON CONFLICT DO NOTHING RETURNING pk, built once per dialect
    with a bind parameter per column (the hottest write kassa has)."""
    return cast(
        Insert,
        unless_exists_prebuilt(
            session,
            ProviderEvent,
            _EVENT_COLUMNS,
            ("provider", "event_id"),
            (("deliveries", 1),),
        ),
    )


# What `_succeeded` answers for a payment that had succeeded already; the acknowledgement
# stores that outcome itself when the payment has (`_store_succeeded_event`).
ALREADY_SUCCEEDED = "already succeeded"
_PAYMENTS = table_of(Payment)


def _store_succeeded_event(session: Session) -> Insert:
    """`_store_event` for an intent's success, which also looks at the payment it is about:
    if that payment (this provider's, with this intent id) has succeeded already, the event
    is stored applied, with `_succeeded`'s answer, and gets no apply job.

    Why it is safe: succeeded is final (`PAYMENT_TRANSITIONS`), so what the job would find
    later is what the acknowledgement sees now; a payment not yet succeeded takes the usual
    way, whatever happens to it meanwhile. Why: on every payment the storefront settles
    itself (a card payment, a browser confirm) the provider's webhook arrives after the
    settlement; its apply job (claim, transaction, two locked reads, the mark) was issue 10's
    largest cost left in a sandbox payment. The look-up is a subquery of the one statement
    (the unique (provider, provider_payment_id) index), so the acknowledgement stays one
    round trip. Returns (pk, applied_at), for `insert_and_enqueue(settled_as_stored=True)`."""
    dialect = session.get_bind().dialect.name

    def build() -> Any:
        settled = exists().where(
            _PAYMENTS.c.provider == bindparam("settled_provider"),
            _PAYMENTS.c.provider_payment_id == bindparam("settled_intent"),
            _PAYMENTS.c.status == PaymentStatus.SUCCEEDED.value,
        )
        values = {
            **binds(_EVENTS, _EVENT_COLUMNS),
            "deliveries": 1,
            "applied_at": case(
                (settled, bindparam("settled_at", type_=_EVENTS.c.applied_at.type)), else_=null()
            ),
            "outcome": case((settled, literal(ALREADY_SUCCEEDED)), else_=null()),
        }
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        return (
            insert(_EVENTS)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(_EVENTS.c.pk, _EVENTS.c.applied_at)
        )

    return cast(Insert, kept(("succeeded_event", dialect), build))


MAX_EVENT_BYTES = 512 * 1024

# What became of an applied event, by how its stored outcome begins (the handlers below
# answer in these words): refused (it named another provider's payment), ignored (nothing
# to do: not an event kassa acts on, or what it reports is so already), else applied.
# `outcome_class` and the metrics' SQL (`services/metrics.py`) both read this table.
OUTCOME_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("refused", ("refused: ",)),
    ("ignored", ("ignored: ", "already ")),
)
APPLIED = "applied"
PENDING = "pending"  # stored, not applied yet (waiting, or retrying: RetryLater)


def outcome_class(applied: bool, outcome: str | None) -> str:
    """The class of an event's stored outcome: pending, refused, ignored or applied."""
    if not applied:
        return PENDING
    for name, prefixes in OUTCOME_PREFIXES:
        if (outcome or "").startswith(prefixes):
            return name
    return APPLIED


Decode = Callable[[Any], DecodedEvent]
"""A provider's decoder: a verified event's parsed JSON as a typed kassa event, or
EventDecodingError."""


def rejected(code: str, detail: str) -> DomainError:
    return DomainError(code, detail, ErrorKind.REJECTED)


@dataclass(frozen=True, slots=True)
class Receipt:
    duplicate: bool


class ForeignEvent(Exception):
    """An event that names a payment or refund of another provider (or of another intent):
    applied as a no-op and audited, never retried."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What every handler needs besides the event: the job's transaction, who acts (the
    provider), which provider sent (and signed) the event, and when it is applied."""

    session: Session
    ctx: RequestContext
    provider: str
    now: datetime


class Webhooks:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        schemes: Mapping[str, WebhookScheme],
        decoders: Mapping[str, Decode],
        invoices: Invoices,
    ) -> None:
        """`schemes`: how each provider whose webhooks are open signs its deliveries;
        `decoders`: each provider's event decoder (also for providers whose route is
        closed, so events already stored are still applied). Both come from the provider
        packages: this module knows no provider's wire format."""
        undecodable = set(schemes) - set(decoders)
        if undecodable:
            raise ValueError(f"no event decoder for {', '.join(sorted(undecodable))}")
        self._db = db
        self._clock = clock
        self._invoices = invoices  # an order a succeeded intent pays is invoiced then
        self._schemes = schemes
        self._decoders = decoders
        # One short handler per event type, each answering the event's outcome.
        self._handlers: dict[type, Callable[[Delivery, Any], str]] = {
            IntentSucceeded: self._succeeded,
            IntentFailed: self._failed,
            IntentRequiresAction: self._requires_action,
            RefundsReported: self._refunded,
            DisputeOpened: self._disputed,
            Ignored: lambda _d, _e: "ignored: not an event kassa acts on",
        }

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers whose webhook route is open."""
        return tuple(self._schemes)

    # -- the fast path ------------------------------------------------------------------

    def receive(self, provider: str, body: bytes, headers: Mapping[str, str]) -> Receipt:
        """Verify, store once and enqueue; `headers` are the delivery's (case-insensitive
        lookup, as HTTP headers are: pass Starlette's `request.headers`)."""
        scheme = self._schemes.get(provider)
        if scheme is None:
            raise not_found("unknown_provider", f"no webhooks for provider {provider!r}")
        now = self._clock()
        try:
            signed_at = scheme.verify(body, headers.get(scheme.header), int(now.timestamp()))
        except SignatureError as exc:
            raise rejected("invalid_signature", str(exc)) from exc
        payload, decoded = self._parse(body, self._decoders[provider])
        # Autocommit on PostgreSQL: storing a new event and enqueueing its apply is one
        # statement (see `insert_and_enqueue`), so it needs no transaction around it. A
        # duplicate's delivery count is a second statement that commits on its own: a
        # crash between the two loses one count, nothing else.
        with self._db.autocommit() as session:
            event = {
                "provider": provider,
                "event_id": decoded.event_id,
                "type": decoded.type,
                "payload": payload,
                "signed_at": datetime.fromtimestamp(signed_at, UTC),
                "received_at": now,
            }
            typed = decoded.event
            if isinstance(typed, IntentSucceeded) and typed.intent_id is not None:
                stored = _store_succeeded_event(session)
                event |= {
                    "settled_provider": provider,
                    "settled_intent": typed.intent_id,
                    "settled_at": now,
                }
                settled_as_stored = True
            else:
                stored, settled_as_stored = _store_event(session), False
            if insert_and_enqueue(
                session,
                stored,
                event,
                APPLY_EVENT,
                "event_pk",
                now,
                max_attempts=20,
                settled_as_stored=settled_as_stored,
            ):
                return Receipt(duplicate=False)
            session.execute(
                update(ProviderEvent)
                .where(
                    ProviderEvent.provider == provider,
                    ProviderEvent.event_id == decoded.event_id,
                )
                .values(deliveries=ProviderEvent.deliveries + 1)
            )
            return Receipt(duplicate=True)

    @staticmethod
    def _parse(body: bytes, decode: Decode) -> tuple[Any, DecodedEvent]:
        """The body's JSON, to store as it came, and what it means; 400 if either fails."""
        if len(body) > MAX_EVENT_BYTES:
            raise rejected("malformed_event", "event too large")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise rejected("malformed_event", "the body is not JSON") from exc
        try:
            decoded = decode(payload)
        except EventDecodingError as exc:
            raise rejected("malformed_event", str(exc)) from exc
        if "\x00" in body.decode("utf-8", "replace"):
            raise rejected("malformed_event", "an event needs id, type and data.object")
        return payload, decoded

    # -- the effects, in the worker -----------------------------------------------------

    def apply(self, session: Session, payload: dict[str, Any]) -> None:
        event = session.execute(_LOCK_EVENT, {"event_pk": payload["event_pk"]}).one_or_none()
        if event is None:  # gone, or applied already
            return
        now = self._clock()
        ctx = RequestContext.system(f"provider:{event.provider}")
        typed = self._decoders[event.provider](event.payload).event
        try:
            outcome = self._handlers[type(typed)](
                Delivery(session, ctx, event.provider, now), typed
            )
        except ForeignEvent as exc:
            outcome = f"refused: {exc}"
            audit.record(
                session,
                ctx,
                at=now,
                action="provider_event.refused",
                subject=event.event_id,
                after={"provider": event.provider, "type": event.type, "reason": str(exc)},
            )
        # at commit, with the effects' deferred writes (nothing reads the mark before)
        defer_update(
            session,
            _MARK_APPLIED,
            {"event_pk": payload["event_pk"], "applied_at": now, "applied_outcome": outcome},
        )

    # -- one handler per event type -----------------------------------------------------

    def _succeeded(self, d: Delivery, event: IntentSucceeded) -> str:
        payment = self._payment(d, event.intent_id, event.kassa_payment_id)
        applied = payment_succeeded(d.session, d.ctx, payment, d.now, invoices=self._invoices)
        return "payment succeeded" if applied else ALREADY_SUCCEEDED

    def _failed(self, d: Delivery, event: IntentFailed) -> str:
        payment = self._payment(d, event.intent_id, event.kassa_payment_id)
        changed = payment_failed(d.session, d.ctx, payment, event.failure, d.now)
        return self._followed(payment, changed)

    def _requires_action(self, d: Delivery, event: IntentRequiresAction) -> str:
        payment = self._payment(d, event.intent_id, event.kassa_payment_id)
        changed = payment_requires_action(d.session, d.ctx, payment, event.next_action, d.now)
        return self._followed(payment, changed)

    @staticmethod
    def _followed(payment: Payment, changed: bool) -> str:
        return f"payment {payment.status}" if changed else f"ignored: payment {payment.status}"

    def _refunded(self, d: Delivery, event: RefundsReported) -> str:
        payment = self._payment(d, event.intent_id, event.kassa_payment_id)
        if payment.status != PaymentStatus.SUCCEEDED.value:
            raise RetryLater("a refund arrived before its payment's success")
        if payment.order_id is None:
            return "ignored: a refund of a wallet top-up is settled by staff"
        order = lock_order(d.session, payment.order_id)
        assert order is not None
        settled = event.settled()
        if settled is not None:
            new = self._listed_refunds(d, payment, settled)
        else:
            new = self._refunded_total(d.session, payment, event)
        for refund_id, amount in new:
            self._record_external_refund(d, payment, refund_id, amount)
        d.session.flush()
        recompute_order_refunds(d.session, order, d.now)
        if new:
            audit.record(
                d.session,
                d.ctx,
                at=d.now,
                action="order.refunded_at_provider",
                subject=order.id,
                after={
                    "refunds": [rid for rid, _ in new],
                    "amount_refunded": order.amount_refunded,
                },
            )
        return f"{len(new)} refund(s) recorded"

    def _disputed(self, d: Delivery, event: DisputeOpened) -> str:
        payment = self._payment(d, event.intent_id, event.kassa_payment_id)
        if payment.order_id is None:
            return "ignored: a dispute of a wallet top-up is settled by staff"
        order = lock_order(d.session, payment.order_id)
        assert order is not None
        if order.disputed:
            return "already disputed"
        order.disputed = True
        order.disputed_at = d.now
        audit.record(
            d.session,
            d.ctx,
            at=d.now,
            action="order.disputed",
            subject=order.id,
            after={"dispute": event.dispute_id, "amount": event.amount, "reason": event.reason},
        )
        # kassa keeps no dispute of its own: the event carries the order it flags
        disputed = events.resource_json("order", OrderView.of(order))
        events.record(d.session, events.DISPUTE_CREATED, disputed, d.now)
        return "order flagged disputed"

    # -- what the handlers share --------------------------------------------------------

    @staticmethod
    def _payment(d: Delivery, intent_id: str | None, kassa_payment_id: str | None) -> Payment:
        """The payment `d.provider`'s event is about: the one of that provider's payments
        with that intent id. kassa's own id in the metadata is followed only to a payment
        of the same provider whose intent id kassa has not recorded yet (it died between
        the provider's answer and its own write); anything else is a ForeignEvent."""
        session, provider = d.session, d.provider
        row = None
        if intent_id is not None:
            row = lock_payment_of_intent(session, provider, intent_id)
        if row is None and kassa_payment_id is not None:
            row = lock_payment(session, kassa_payment_id)
            if row is not None and row.provider != provider:
                raise ForeignEvent(f"payment {row.id} was not made at {provider}")
            if row is not None and row.provider_payment_id not in (None, intent_id):
                raise ForeignEvent(f"payment {row.id} belongs to another intent")
        if row is None:
            raise RetryLater(f"no payment for intent {intent_id!r} yet")
        if row.provider_payment_id is None and intent_id is not None:
            row.provider_payment_id = intent_id
        return row

    @staticmethod
    def _card_refunds(session: Session, payment: Payment) -> list[Refund]:
        """What kassa knows went back to the card of `payment` (wallet refunds never did)."""
        return list(
            session.scalars(
                select(Refund).where(
                    Refund.payment_id == payment.id,
                    Refund.destination == RefundDestination.ORIGINAL,
                    Refund.status != RefundStatus.FAILED,
                )
            )
        )

    def _listed_refunds(
        self, d: Delivery, payment: Payment, settled: tuple[SettledRefund, ...]
    ) -> list[tuple[str, int]]:
        """The provider lists the charge's refunds: kassa's own pending ones among them
        succeed; the rest are recorded up to what the list adds to kassa's succeeded card
        refunds (so a refund first reported as a total is not recorded again by its id)."""
        others: list[tuple[str, int]] = []
        for item in settled:
            ours = self._kassa_refund(d.session, item.kassa_refund_id, payment)
            if ours is None:
                others.append((item.refund_id, item.amount))
            elif ours.status == RefundStatus.PENDING:  # kassa asked for it; now confirmed
                ours.provider_refund_id, ours.provider = item.refund_id, d.provider
                mark_refund_succeeded(d.session, d.ctx, ours, d.now)
        d.session.flush()
        card = self._card_refunds(d.session, payment)
        known = {r.provider_refund_id for r in card}
        recorded = sum(r.amount for r in card if r.status == RefundStatus.SUCCEEDED)
        missing = sum(item.amount for item in settled) - recorded
        new: list[tuple[str, int]] = []
        for refund_id, amount in others:
            if missing <= 0:
                break
            if refund_id not in known:
                new.append((refund_id, min(amount, missing)))
                missing -= amount
        return new

    def _refunded_total(
        self, session: Session, payment: Payment, event: RefundsReported
    ) -> list[tuple[str, int]]:
        """Only the charge's cumulative total refunded: record what it adds to every card
        refund kassa knows, kassa's own still pending included (under-recording until the
        next event is safe; counting one refund twice is not)."""
        total = event.total_refunded
        recorded = sum(r.amount for r in self._card_refunds(session, payment))
        if total is not None and total > recorded:
            return [(f"{event.charge_id}@{total}", total - recorded)]
        return []

    @staticmethod
    def _record_external_refund(d: Delivery, payment: Payment, refund_id: str, amount: int) -> None:
        assert payment.order_id is not None
        external = Refund(
            id=new_id("re"),
            order_id=payment.order_id,
            payment_id=payment.id,
            amount=amount,
            currency=payment.currency,
            status=RefundStatus.PENDING.value,
            destination=RefundDestination.ORIGINAL.value,
            provider=d.provider,
            provider_refund_id=refund_id,
            origin="provider",
            reason="refunded at the provider",
            created_at=d.now,
        )
        d.session.add(external)
        mark_refund_succeeded(d.session, d.ctx, external, d.now)

    @staticmethod
    def _kassa_refund(session: Session, ref: str | None, payment: Payment) -> Refund | None:
        """kassa's own refund a listed refund names (`ref`), if it is a refund of this very
        payment (so of this provider); another payment's refund is foreign."""
        if ref is None:
            return None
        refund = session.scalar(select(Refund).where(Refund.id == ref).with_for_update())
        if refund is not None and refund.payment_id != payment.id:
            raise ForeignEvent(f"refund {refund.id} is not a refund of payment {payment.id}")
        return refund
