"""Provider webhooks: verify, store once, acknowledge; apply the effects once, later.

`receive` is the fast path: check the signature, store the event once per (provider,
event id) and enqueue its job in the same transaction, a single write. `apply` runs in
the worker, inside the job's transaction, so every effect happens exactly once whatever
the order and number of deliveries:

- `payment_intent.succeeded` -> settlement.payment_succeeded (order paid, goods taken);
- `payment_intent.payment_failed`, `payment_intent.requires_action` -> the payment follows,
  unless it already succeeded (success is final, so late or reordered events cannot undo it);
- `charge.refunded` -> refunds made at the provider are recorded; the order's refund totals
  are recomputed from the refund rows, never incremented, so replays change nothing;
- `charge.dispute.created` -> the order is flagged disputed and audited.

An event about a payment kassa does not know yet raises RetryLater: the job backs off and
runs again, and is never dropped.

An event only ever touches the payments and refunds of the provider it was received (and
verified) for, matched on that provider's own ids: kassa's ids in an event's metadata are
a hint, never a key to another provider's payment (the sandbox's signing secret is public,
so its events must not be able to settle a Stripe payment, and the other way round).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kassa.domain.errors import DomainError, ErrorKind, not_found
from kassa.domain.ids import new_id
from kassa.domain.payments import ErrorType, PaymentStatus, ProviderFailure
from kassa.providers.events import EventDecodingError
from kassa.providers.stripe import events as stripe_events
from kassa.providers.stripe import signatures
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.jobs import RetryLater, enqueue
from kassa.services.orders import lock_order
from kassa.services.refunds import mark_refund_succeeded, recompute_order_refunds
from kassa.services.settlement import (
    lock_payment,
    payment_failed,
    payment_requires_action,
    payment_succeeded,
)
from kassa.storage.database import Database
from kassa.storage.tables import Payment, ProviderEvent, Refund
from kassa.storage.upsert import insert_unless_exists

APPLY_EVENT = "provider_event.apply"
MAX_EVENT_BYTES = 512 * 1024


def rejected(code: str, detail: str) -> DomainError:
    return DomainError(code, detail, ErrorKind.REJECTED)


@dataclass(frozen=True, slots=True)
class Receipt:
    duplicate: bool


class ForeignEvent(Exception):
    """An event that names a payment or refund of another provider (or of another intent):
    applied as a no-op and audited, never retried."""


class Webhooks:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        secrets: dict[str, tuple[str, ...]],
        tolerance_s: int = signatures.DEFAULT_TOLERANCE_S,
    ) -> None:
        self._db = db
        self._clock = clock
        self._secrets = secrets
        self._tolerance = tolerance_s

    # -- the fast path ------------------------------------------------------------------

    def receive(self, provider: str, body: bytes, signature: str | None) -> Receipt:
        if provider not in self._secrets:
            raise not_found("unknown_provider", f"no webhooks for provider {provider!r}")
        now = self._clock()
        try:
            signed_at = signatures.verify(
                body, signature, self._secrets[provider], int(now.timestamp()), self._tolerance
            )
        except signatures.SignatureError as exc:
            raise rejected("invalid_signature", str(exc)) from exc
        event = self._parse(body)
        with self._db.transaction() as session:
            pk = insert_unless_exists(
                session,
                ProviderEvent,
                {
                    "provider": provider,
                    "event_id": event["id"],
                    "type": event["type"],
                    "payload": event,
                    "signed_at": datetime.fromtimestamp(signed_at, UTC),
                    "received_at": now,
                    "deliveries": 1,
                },
                ["provider", "event_id"],
            )
            if pk is None:
                session.execute(
                    update(ProviderEvent)
                    .where(
                        ProviderEvent.provider == provider,
                        ProviderEvent.event_id == event["id"],
                    )
                    .values(deliveries=ProviderEvent.deliveries + 1)
                )
                return Receipt(duplicate=True)
            enqueue(session, APPLY_EVENT, {"event_pk": pk}, now, max_attempts=20)
            return Receipt(duplicate=False)

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if len(body) > MAX_EVENT_BYTES:
            raise rejected("malformed_event", "event too large")
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise rejected("malformed_event", "the body is not JSON") from exc
        try:
            stripe_events.decode(event)  # the sandbox's events are Stripe-shaped too
        except EventDecodingError as exc:
            raise rejected("malformed_event", str(exc)) from exc
        if not isinstance(event, dict) or "\x00" in body.decode("utf-8", "replace"):
            raise rejected("malformed_event", "an event needs id, type and data.object")
        return event

    # -- the effects, in the worker -----------------------------------------------------

    def apply(self, session: Session, payload: dict[str, Any]) -> None:
        event = session.scalar(
            select(ProviderEvent).where(ProviderEvent.pk == payload["event_pk"]).with_for_update()
        )
        if event is None or event.applied_at is not None:
            return
        now = self._clock()
        ctx = RequestContext.system(f"provider:{event.provider}")
        obj: dict[str, Any] = event.payload["data"]["object"]
        kind = event.type
        try:
            if kind == "payment_intent.succeeded":
                outcome = self._succeeded(session, ctx, event.provider, obj, now)
            elif kind in ("payment_intent.payment_failed", "payment_intent.requires_action"):
                outcome = self._intent_update(session, ctx, event.provider, kind, obj, now)
            elif kind == "charge.refunded":
                outcome = self._refunded(session, ctx, event.provider, obj, now)
            elif kind == "charge.dispute.created":
                outcome = self._disputed(session, ctx, event.provider, obj, now)
            else:
                outcome = "ignored: not an event kassa acts on"
        except ForeignEvent as exc:
            outcome = f"refused: {exc}"
            audit.record(
                session,
                ctx,
                now,
                "provider_event.refused",
                event.event_id,
                None,
                {"provider": event.provider, "type": kind, "reason": str(exc)},
            )
        event.applied_at = now
        event.outcome = outcome

    def _payment(self, session: Session, provider: str, intent_id: Any, metadata: Any) -> Payment:
        """The payment `provider`'s event is about: the one of that provider's payments
        with that intent id. kassa's own id in the metadata is followed only to a payment
        of the same provider whose intent id kassa has not recorded yet (it died between
        the provider's answer and its own write); anything else is a ForeignEvent."""
        row = None
        if isinstance(intent_id, str):
            found = session.scalar(
                select(Payment.id).where(
                    Payment.provider == provider, Payment.provider_payment_id == intent_id
                )
            )
            row = lock_payment(session, found) if found else None
        payment_id = metadata.get("kassa_payment") if isinstance(metadata, dict) else None
        if row is None and isinstance(payment_id, str):
            row = lock_payment(session, payment_id)
            if row is not None and row.provider != provider:
                raise ForeignEvent(f"payment {row.id} was not made at {provider}")
            if row is not None and row.provider_payment_id not in (None, intent_id):
                raise ForeignEvent(f"payment {row.id} belongs to another intent")
        if row is None:
            raise RetryLater(f"no payment for intent {intent_id!r} yet")
        if row.provider_payment_id is None and isinstance(intent_id, str):
            row.provider_payment_id = intent_id
        return row

    def _succeeded(
        self,
        session: Session,
        ctx: RequestContext,
        provider: str,
        obj: dict[str, Any],
        now: datetime,
    ) -> str:
        payment = self._payment(session, provider, obj.get("id"), obj.get("metadata"))
        applied = payment_succeeded(session, ctx, payment, now)
        return "payment succeeded" if applied else "already succeeded"

    def _intent_update(
        self,
        session: Session,
        ctx: RequestContext,
        provider: str,
        kind: str,
        obj: dict[str, Any],
        now: datetime,
    ) -> str:
        payment = self._payment(session, provider, obj.get("id"), obj.get("metadata"))
        if kind == "payment_intent.requires_action":
            next_action = obj.get("next_action")
            changed = payment_requires_action(
                session, ctx, payment, next_action if isinstance(next_action, dict) else None, now
            )
        else:
            error = obj.get("last_payment_error") or {}
            failure = ProviderFailure(
                ErrorType.CARD_ERROR if error.get("type") == "card_error" else ErrorType.API_ERROR,
                str(error.get("message") or "payment failed"),
                error.get("code"),
                error.get("decline_code"),
            )
            changed = payment_failed(session, ctx, payment, failure, now)
        return f"payment {payment.status}" if changed else f"ignored: payment {payment.status}"

    def _refunded(
        self,
        session: Session,
        ctx: RequestContext,
        provider: str,
        obj: dict[str, Any],
        now: datetime,
    ) -> str:
        payment = self._payment(session, provider, obj.get("payment_intent"), obj.get("metadata"))
        if payment.status != PaymentStatus.SUCCEEDED.value:
            raise RetryLater("a refund arrived before its payment's success")
        if payment.order_id is None:
            return "ignored: a refund of a wallet top-up is settled by staff"
        order = lock_order(session, payment.order_id)
        assert order is not None
        refunds = obj.get("refunds")
        listed = refunds.get("data") if isinstance(refunds, dict) else None
        if isinstance(listed, list):
            new = self._listed_refunds(session, ctx, provider, payment, listed, now)
        else:
            new = self._refunded_total(session, payment, obj)
        for refund_id, amount in new:
            self._record_external_refund(session, ctx, provider, payment, refund_id, amount, now)
        session.flush()
        recompute_order_refunds(session, order, now)
        if new:
            audit.record(
                session,
                ctx,
                now,
                "order.refunded_at_provider",
                order.id,
                None,
                {"refunds": [rid for rid, _ in new], "amount_refunded": order.amount_refunded},
            )
        return f"{len(new)} refund(s) recorded"

    @staticmethod
    def _card_refunds(session: Session, payment: Payment) -> list[Refund]:
        """What kassa knows went back to the card of `payment` (wallet refunds never did)."""
        return list(
            session.scalars(
                select(Refund).where(
                    Refund.payment_id == payment.id,
                    Refund.destination == "original",
                    Refund.status != "failed",
                )
            )
        )

    def _listed_refunds(
        self,
        session: Session,
        ctx: RequestContext,
        provider: str,
        payment: Payment,
        listed: list[Any],
        now: datetime,
    ) -> list[tuple[str, int]]:
        """The provider lists the charge's refunds: kassa's own pending ones among them
        succeed; the rest are recorded up to what the list adds to kassa's succeeded card
        refunds (so a refund first reported as a total is not recorded again by its id)."""
        done = [
            item
            for item in listed
            if isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and isinstance(item.get("amount"), int)
            and item.get("status") in (None, "succeeded")
        ]
        others: list[tuple[str, int]] = []
        for item in done:
            ours = self._kassa_refund(session, item, payment)
            if ours is None:
                others.append((item["id"], item["amount"]))
            elif ours.status == "pending":  # a refund kassa asked for, now confirmed
                ours.provider_refund_id, ours.provider = item["id"], provider
                mark_refund_succeeded(session, ctx, ours, now)
        session.flush()
        card = self._card_refunds(session, payment)
        known = {r.provider_refund_id for r in card}
        recorded = sum(r.amount for r in card if r.status == "succeeded")
        missing = sum(item["amount"] for item in done) - recorded
        new: list[tuple[str, int]] = []
        for refund_id, amount in others:
            if missing <= 0:
                break
            if refund_id not in known:
                new.append((refund_id, min(amount, missing)))
                missing -= amount
        return new

    def _refunded_total(
        self, session: Session, payment: Payment, obj: dict[str, Any]
    ) -> list[tuple[str, int]]:
        """Only the charge's cumulative `amount_refunded`: record what it adds to every card
        refund kassa knows, kassa's own still pending included (under-recording until the
        next event is safe; counting one refund twice is not)."""
        total = obj.get("amount_refunded")
        recorded = sum(r.amount for r in self._card_refunds(session, payment))
        if isinstance(total, int) and total > recorded:
            return [(f"{obj.get('id')}@{total}", total - recorded)]
        return []

    @staticmethod
    def _record_external_refund(
        session: Session,
        ctx: RequestContext,
        provider: str,
        payment: Payment,
        refund_id: str,
        amount: int,
        now: datetime,
    ) -> None:
        assert payment.order_id is not None
        external = Refund(
            id=new_id("re"),
            order_id=payment.order_id,
            payment_id=payment.id,
            amount=amount,
            currency=payment.currency,
            status="pending",
            destination="original",
            provider=provider,
            provider_refund_id=refund_id,
            origin="provider",
            reason="refunded at the provider",
            created_at=now,
        )
        session.add(external)
        mark_refund_succeeded(session, ctx, external, now)

    @staticmethod
    def _kassa_refund(session: Session, item: Any, payment: Payment) -> Refund | None:
        """kassa's own refund named by a listed refund's metadata, if it is a refund of
        this very payment (so of this provider); another payment's refund is foreign."""
        if not isinstance(item, dict):
            return None
        meta = item.get("metadata")
        if not isinstance(meta, dict):
            return None
        ref = meta.get("kassa_refund") or meta.get("kassa_reference")
        if not isinstance(ref, str):
            return None
        refund = session.scalar(select(Refund).where(Refund.id == ref).with_for_update())
        if refund is not None and refund.payment_id != payment.id:
            raise ForeignEvent(f"refund {refund.id} is not a refund of payment {payment.id}")
        return refund

    def _disputed(
        self,
        session: Session,
        ctx: RequestContext,
        provider: str,
        obj: dict[str, Any],
        now: datetime,
    ) -> str:
        payment = self._payment(session, provider, obj.get("payment_intent"), obj.get("metadata"))
        if payment.order_id is None:
            return "ignored: a dispute of a wallet top-up is settled by staff"
        order = lock_order(session, payment.order_id)
        assert order is not None
        if order.disputed:
            return "already disputed"
        order.disputed = True
        order.disputed_at = now
        audit.record(
            session,
            ctx,
            now,
            "order.disputed",
            order.id,
            None,
            {"dispute": obj.get("id"), "amount": obj.get("amount"), "reason": obj.get("reason")},
        )
        return "order flagged disputed"
