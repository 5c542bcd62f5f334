"""The mock gateway: a sandbox payment company with its own records.

It honours Stripe's test payment methods and card numbers, keeps intents, charges and
refunds in its own tables (`mock_*`), honours idempotency keys the way Stripe does, and
can be told to misbehave: a payment method may carry a fault script after a `|`, e.g.
`pm_card_visa|timeout_after_send,rate_limit`, one fault per provider call for that
payment, in order; later calls behave normally. An empty entry or `ok` lets one call
through untouched, so `pm_card_visa|ok,api_error` strikes the second call (the confirm).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from kassa.domain.payments import ErrorType, ProviderFailure
from kassa.domain.refunds import RefundStatus
from kassa.providers.base import (
    LIST_PAGE_SIZE,
    IntentRequest,
    IntentStatus,
    ProviderError,
    ProviderIntent,
    ProviderRefund,
)
from kassa.providers.mock.events import emit
from kassa.providers.mock.tables import (
    MockCharge,
    MockFaultScript,
    MockIdempotency,
    MockIntent,
    MockRefund,
    MockRequest,
)
from kassa.storage.database import Database, insert_new, table_of, write_only_insert
from kassa.storage.deferred import defer_new, defer_update
from kassa.storage.pagination import Page, paginate
from kassa.storage.prebuilt import binds, kept
from kassa.storage.upsert import unless_exists_prebuilt

NAME = "mock"


class Card:
    SUCCEEDS = "succeeds"
    DECLINED = "generic_decline"
    INSUFFICIENT = "insufficient_funds"
    AUTHENTICATE = "authentication_required"


TEST_PAYMENT_METHODS: dict[str, str] = {
    "pm_card_visa": Card.SUCCEEDS,
    "4242424242424242": Card.SUCCEEDS,
    "pm_card_mastercard": Card.SUCCEEDS,
    "5555555555554444": Card.SUCCEEDS,
    "pm_card_chargeDeclined": Card.DECLINED,
    "4000000000000002": Card.DECLINED,
    "pm_card_visa_chargeDeclinedInsufficientFunds": Card.INSUFFICIENT,
    "4000000000009995": Card.INSUFFICIENT,
    "pm_card_authenticationRequired": Card.AUTHENTICATE,
    "4000002500003155": Card.AUTHENTICATE,
}

# The faults a payment-method script may inject (besides `ok` and `latency=<ms>`).
FAULT_KINDS = (
    "api_error",
    "rate_limit",
    "server_error",
    "timeout_before_send",
    "timeout_after_send",
    "connection_error",
)


NO_FAULT = frozenset({"", "ok"})
_LOCKED_INTENT = "kassa.mock.locked_intent"  # Session.info key: see `_locked_intent`
_AFTER_SEND = "timeout_after_send"  # the one fault that strikes after the sandbox acted
T = TypeVar("T")
_Listed = TypeVar("_Listed", MockIntent, MockRefund)  # what the sandbox lists for checks


@dataclass(frozen=True, slots=True)
class _Declined:
    """A confirm the sandbox declined: recorded (and committed) first, raised after."""

    intent: ProviderIntent
    failure: ProviderFailure


@dataclass(frozen=True, slots=True)
class _Effect(Generic[T]):
    """What a sandbox call's effect did: its result, or the refusal it raised. Caught
    inside the call's transaction, so that the transaction commits either way (the call
    is logged; a refusal's error stays on its idempotency key), and raised after."""

    value: T | None
    refused: ProviderError | None

    @classmethod
    def of(cls, effect: Callable[[Session], T], session: Session) -> _Effect[T]:
        try:
            return cls(effect(session), None)
        except ProviderError as exc:
            return cls(None, exc)

    def result(self) -> T:
        if self.refused is not None:
            raise self.refused
        return cast(T, self.value)


@dataclass(slots=True)
class _RequestLine:
    """One call's line in the sandbox's request log (`mock_requests`), written once: by
    the idempotency key's claim where the call gets that far, else on its own."""

    row: dict[str, Any]
    written: bool = False

    def write(self, session: Session) -> None:
        if not self.written:
            session.execute(write_only_insert(MockRequest), self.row)
            self.written = True

    def prefixed(self) -> dict[str, Any]:
        """The row as `_log_and_claim`'s parameters."""
        return {f"log_{name}": value for name, value in self.row.items()}


_CLAIM_COLUMNS = ("key", "operation", "object_id", "created_at")
_LOG_COLUMNS = ("reference", "operation", "idempotency_key", "fault", "created_at")


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _log_and_claim() -> Any:
    """PostgreSQL: the request log's line and the key's claim in one statement, the line
    as a data-modifying CTE (run once, whether or not the claim inserts): `WITH logged AS
    (INSERT INTO mock_requests ...) INSERT INTO mock_idempotency ... ON CONFLICT (key) DO
    NOTHING RETURNING key`. Parameters: the claim's columns, and the line's prefixed
    `log_`. A round trip less on every keyed sandbox call (two on a card payment)."""
    log = table_of(MockRequest)
    claims = table_of(MockIdempotency)
    logged = (
        pg_insert(log)
        .values({name: bindparam(f"log_{name}", type_=log.c[name].type) for name in _LOG_COLUMNS})
        .cte("logged")
    )
    return (
        pg_insert(claims)
        .values(binds(claims, _CLAIM_COLUMNS))
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(claims.c.key)
        .add_cte(logged)
    )


# The longest `latency=<ms>` a script may ask for: a sandbox request holds a server thread.
MAX_LATENCY_MS = 5_000


@dataclass(frozen=True, slots=True)
class ParsedMethod:
    method: str
    faults: tuple[str, ...]


def parse_payment_method(value: str) -> ParsedMethod:
    """`pm_card_visa|api_error,latency=200` -> method and fault script."""
    method, _, script = value.partition("|")
    faults = tuple(f.strip() for f in script.split(",")) if script else ()
    for fault in faults:
        if fault in FAULT_KINDS or fault in NO_FAULT:
            continue
        name, _, ms = fault.partition("=")
        latency = name == "latency" and ms.isascii() and ms.isdigit()
        if latency and int(ms) <= MAX_LATENCY_MS:
            continue
        raise ProviderError(
            ProviderFailure(
                ErrorType.INVALID_REQUEST,
                f"{fault!r}: latency is at most {MAX_LATENCY_MS} ms"
                if latency
                else f"unknown fault {fault!r} in the payment method's script",
                code="invalid_fault_script",
            )
        )
    return ParsedMethod(method.strip(), faults)


def _failure_for(fault: str) -> ProviderFailure:
    return {
        "api_error": ProviderFailure(ErrorType.API_ERROR, "mock: internal error", http_status=500),
        "rate_limit": ProviderFailure(
            ErrorType.RATE_LIMIT, "mock: too many requests", code="rate_limit", http_status=429
        ),
        "server_error": ProviderFailure(ErrorType.API_ERROR, "mock: bad gateway", http_status=502),
        "timeout_before_send": ProviderFailure(
            ErrorType.TIMEOUT,
            "mock: timed out before the request was sent",
            reached_provider=False,
        ),
        "connection_error": ProviderFailure(
            ErrorType.CONNECTION, "mock: connection refused", reached_provider=False
        ),
        "timeout_after_send": ProviderFailure(
            ErrorType.TIMEOUT, "mock: timed out waiting for the answer", reached_provider=None
        ),
    }[fault]


_INTENTS = table_of(MockIntent)
# every call about an intent starts with it: built once
_LOCK_INTENT = (
    select(MockIntent)
    .where(MockIntent.id == bindparam("intent_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


# What a call changes of an intent: always all three, from the loaded copy (`_set_intent`).
_CHANGEABLE = ("payment_method", "status", "last_error")
_SET_INTENT = (
    update(_INTENTS)
    .where(_INTENTS.c.pk == bindparam("intent_pk"))
    .values(
        {name: bindparam(f"intent_{name}", type_=_INTENTS.c[name].type) for name in _CHANGEABLE}
    )
)


def _set_intent(session: Session, intent: MockIntent, **values: Any) -> None:
    """Change a loaded intent: the loaded copy at once, without marking it changed (no
    flush writes it), and its row at commit, with the call's other deferred writes (the
    charge, the event's delivery job: on PostgreSQL one statement). The sandbox is on
    every demo and benchmark path: the unit of work, and then a statement of its own, cost
    more than this. Every change is the one statement of all three columns, so a second
    change in the same call (a payment method, then the confirmation's status) runs the
    first at once and they keep their order (`defer_update`): two different deferred
    updates of one row would run on one snapshot, and only one would take effect."""
    unknown = set(values) - set(_CHANGEABLE)
    if unknown:
        raise ValueError(f"an intent's {sorted(unknown)} never change")
    for name, value in values.items():
        set_committed_value(intent, name, value)
    defer_update(
        session,
        _SET_INTENT,
        {"intent_pk": intent.pk, **{f"intent_{n}": getattr(intent, n) for n in _CHANGEABLE}},
    )


def _missing(what: str, ident: str) -> ProviderError:
    return ProviderError(
        ProviderFailure(
            ErrorType.INVALID_REQUEST,
            f"mock: no {what} {ident}",
            code="resource_missing",
            http_status=404,
        )
    )


def _card_failure(kind: str) -> ProviderFailure:
    return ProviderFailure(
        ErrorType.CARD_ERROR,
        "Your card has insufficient funds."
        if kind == Card.INSUFFICIENT
        else "Your card was declined.",
        code="card_declined",
        decline_code=kind,
        http_status=402,
    )


def _failure_json(failure: ProviderFailure) -> dict[str, Any]:
    return {
        "type": failure.type.value,
        "message": failure.message,
        "code": failure.code,
        "decline_code": failure.decline_code,
        "http_status": failure.http_status,
    }


def _failure_from(data: dict[str, Any]) -> ProviderFailure:
    return ProviderFailure(
        ErrorType(data["type"]),
        data["message"],
        code=data.get("code"),
        decline_code=data.get("decline_code"),
        http_status=data.get("http_status"),
    )


class MockProvider:
    """A `PaymentProvider` whose "remote side" is its own tables in kassa's database.

    Each call runs in its own transaction, as a remote service would, never inside
    kassa's. `sleep` is injectable so latency faults cost nothing in tests."""

    name = NAME

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sleep = sleep

    # -- faults -----------------------------------------------------------------------

    def _consume_fault(self, session: Session, reference: str, *, scripted: bool) -> str | None:
        """Consume the next scripted fault for this payment; a payment made without a
        script (`scripted` false) has none to read."""
        script = (
            session.scalar(
                select(MockFaultScript)
                .where(MockFaultScript.reference == reference)
                .with_for_update()
            )
            if scripted
            else None
        )
        fault = None
        if script is not None:
            index = script.calls_made
            script.calls_made = index + 1
            fault = script.faults[index] if index < len(script.faults) else None
        return fault

    def _call(
        self,
        operation: str,
        key: str | None,
        effect: Callable[[Session, _RequestLine | None], T],
        *,
        reference: str | None = None,
        intent_id: str | None = None,
        script: tuple[str, ...] = (),
    ) -> T:
        """One call to the sandbox, as one transaction of its own, as a remote service
        would run it: the call is logged, its scripted fault (if any) consumed, and its
        `effect` applied together. A fault that strikes before the sandbox acts commits
        the log alone and raises (or, for `latency=`, waits outside any transaction, then
        acts); `timeout_after_send` acts, then raises. The payment's script is named by
        `reference`, or found from `intent_id`; `script` starts one for a new payment.

        A ProviderError that `effect` raises (a refusal) is raised after the transaction
        commits: the remote service still logged the call, and what the refusal wrote (its
        error kept on the idempotency key, for a retry to replay) stays.

        The call's line in the request log is handed to `effect`, which writes it with its
        idempotency key's claim (`_first_with`: one statement on PostgreSQL); a line the
        effect did not write (it refused before claiming) is written after it. A fault that
        strikes first writes the line alone, and the effect that may follow (`latency=`)
        gets none."""
        with self._db.transaction() as session:
            scripted = bool(script)
            if reference is None:
                # Locked now (and kept for `_locked_intent`): the effect works on it anyway,
                # and its reference names the payment's script, if it was made with one.
                found = self._lock_intent_row(session, str(intent_id))
                reference = found.reference if found is not None else str(intent_id)
                scripted = found is not None and found.scripted
            if script and session.get(MockFaultScript, reference) is None:
                session.add(MockFaultScript(reference=reference, faults=list(script), calls_made=0))
                session.flush()
            fault = self._consume_fault(session, reference, scripted=scripted)
            line = _RequestLine(
                {
                    "reference": reference,
                    "operation": operation,
                    "idempotency_key": key,
                    "fault": fault or None,
                    "created_at": self._clock(),
                }
            )
            strikes_first = fault is not None and fault not in NO_FAULT and fault != _AFTER_SEND
            if not strikes_first:
                outcome = _Effect.of(lambda s: effect(s, line), session)
            line.write(session)  # if the effect did not
        if strikes_first:
            assert fault is not None
            if not fault.startswith("latency="):
                raise ProviderError(_failure_for(fault))
            self._sleep(int(fault.split("=", 1)[1]) / 1000)
            with self._db.transaction() as session:
                outcome = _Effect.of(lambda s: effect(s, None), session)
        result = outcome.result()  # a refusal is raised now, its transaction committed
        if fault == _AFTER_SEND:
            raise ProviderError(_failure_for(fault))
        return result

    # -- idempotency ------------------------------------------------------------------

    @staticmethod
    def _store_error(session: Session, key: str, failure: ProviderFailure) -> None:
        """Keep a refusal on the key this request claimed (`_first_with`): a retry with
        the key gets the same answer, as Stripe replays an error."""
        session.execute(
            update(MockIdempotency)
            .where(MockIdempotency.key == key)
            .values(error=_failure_json(failure))
        )

    def _first_with(
        self,
        session: Session,
        key: str,
        operation: str,
        object_id: str,
        line: _RequestLine | None,
    ) -> MockIdempotency | None:
        """Claim `key` for this request, naming the object it will act on; None when the
        claim is ours, or the first request's record (to replay) when the key was used.
        One statement in the usual case (the key is new) instead of a read and a write; a
        concurrent request with the same key waits on the first's claim, then replays.

        The call's `line` in the request log, if not yet written, goes with the claim: on
        PostgreSQL in the same statement (a data-modifying CTE), elsewhere just before."""
        params = {
            "key": key,
            "operation": operation,
            "object_id": object_id,
            "created_at": self._clock(),
        }
        if line is not None and not line.written and _dialect(session) == "postgresql":
            statement = kept(("mock_log_and_claim",), _log_and_claim)
            claimed = session.execute(statement, {**params, **line.prefixed()}).scalar()
            line.written = True
        else:
            if line is not None:
                line.write(session)
            claim = unless_exists_prebuilt(session, MockIdempotency, _CLAIM_COLUMNS, ("key",))
            claimed = session.execute(claim, params).scalar()
        return None if claimed is not None else self._replay(session, key, operation)

    @staticmethod
    def _replay(session: Session, key: str, operation: str) -> MockIdempotency | None:
        row = session.get(MockIdempotency, key)
        if row is not None and row.operation != operation:
            raise ProviderError(
                ProviderFailure(
                    ErrorType.IDEMPOTENCY,
                    "mock: idempotency key reused for another operation",
                    code="idempotency_key_in_use",
                    http_status=400,
                )
            )
        return row

    # -- PaymentProvider --------------------------------------------------------------

    def create_intent(self, request: IntentRequest, *, idempotency_key: str) -> ProviderIntent:
        parsed = parse_payment_method(request.payment_method) if request.payment_method else None

        def create(session: Session, line: _RequestLine | None) -> ProviderIntent:
            intent_id = "pi_mock_" + secrets.token_hex(10)
            stored = self._first_with(session, idempotency_key, "create_intent", intent_id, line)
            if stored is not None and stored.object_id is not None:
                intent = session.scalar(select(MockIntent).where(MockIntent.id == stored.object_id))
                assert intent is not None
                return self._view(intent)
            intent = MockIntent(
                id=intent_id,
                reference=request.reference,
                amount=request.amount,
                currency=request.currency,
                status=(
                    IntentStatus.REQUIRES_CONFIRMATION
                    if parsed
                    else IntentStatus.REQUIRES_PAYMENT_METHOD
                ).value,
                payment_method=parsed.method if parsed else None,
                client_secret="",
                metadata_=dict(request.metadata),
                scripted=bool(parsed and parsed.faults),
                created_at=self._clock(),
            )
            intent.client_secret = f"{intent.id}_secret_{secrets.token_hex(8)}"
            insert_new(session, intent)  # a Core insert; the object serves the view
            return self._view(intent)

        return self._call(
            "create_intent",
            idempotency_key,
            create,
            reference=request.reference,
            script=tuple(parsed.faults) if parsed else (),
        )

    def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        def confirm(session: Session, line: _RequestLine | None) -> ProviderIntent | _Declined:
            intent = self._locked_intent(session, intent_id)
            stored = self._first_with(session, idempotency_key, "confirm_intent", intent.id, line)
            if stored is not None:
                if stored.error is not None:
                    raise ProviderError(_failure_from(stored.error))
                return self._view(intent)
            failure = self._confirm(session, intent)
            if failure is not None:  # the key replays the decline
                self._store_error(session, idempotency_key, failure)
                return _Declined(self._view(intent), failure)  # committed, then raised
            return self._view(intent)

        result = self._call("confirm_intent", idempotency_key, confirm, intent_id=intent_id)
        if isinstance(result, _Declined):
            raise ProviderError(result.failure)
        return result

    def confirm_from_browser(self, intent_id: str, payment_method: str) -> ProviderIntent:
        """What the browser does with the client secret: attach a method and confirm
        (or complete 3-D Secure for an intent that asked for it)."""
        parsed = parse_payment_method(payment_method)
        failure: ProviderFailure | None = None
        with self._db.transaction() as session:
            intent = self._locked_intent(session, intent_id)
            if intent.status == IntentStatus.REQUIRES_ACTION.value:
                self._charge(session, intent)  # the cardholder authenticated
            elif intent.status in (
                IntentStatus.REQUIRES_PAYMENT_METHOD.value,
                IntentStatus.REQUIRES_CONFIRMATION.value,
            ):
                _set_intent(session, intent, payment_method=parsed.method)
                failure = self._confirm(session, intent)
            else:
                failure = ProviderFailure(
                    ErrorType.INVALID_REQUEST,
                    f"mock: an intent that is {intent.status} cannot be confirmed",
                    code="payment_intent_unexpected_state",
                    http_status=400,
                )
            result = self._view(intent)
        if failure is not None:  # raised after the decline itself was recorded
            raise ProviderError(failure)
        return result

    def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        """Like Stripe: an intent not yet charged is canceled (a later confirm fails);
        a succeeded one cannot be. Fault scripts do not apply (a cleanup call)."""
        with self._db.transaction() as session:
            intent = self._locked_intent(session, intent_id)
            if intent.status in (
                IntentStatus.REQUIRES_PAYMENT_METHOD.value,
                IntentStatus.REQUIRES_CONFIRMATION.value,
                IntentStatus.REQUIRES_ACTION.value,
            ):
                _set_intent(session, intent, status=IntentStatus.CANCELED.value)
                self._emit_intent(session, "payment_intent.canceled", intent)
            elif intent.status != IntentStatus.CANCELED.value:
                raise ProviderError(
                    ProviderFailure(
                        ErrorType.INVALID_REQUEST,
                        f"mock: an intent that is {intent.status} cannot be canceled",
                        code="payment_intent_unexpected_state",
                        http_status=400,
                    )
                )
            return self._view(intent)

    def retrieve_intent(self, intent_id: str) -> ProviderIntent:
        with self._db.transaction(read_only=True) as session:
            intent = session.scalar(select(MockIntent).where(MockIntent.id == intent_id))
            if intent is None:
                raise _missing("intent", intent_id)
            return self._view(intent)

    def find_intent(self, reference: str) -> ProviderIntent | None:
        with self._db.transaction(read_only=True) as session:
            intent = session.scalar(
                select(MockIntent).where(MockIntent.reference == reference).order_by(MockIntent.pk)
            )
            return self._view(intent) if intent is not None else None

    def refund(
        self, intent_id: str, amount: int, *, idempotency_key: str, reference: str
    ) -> ProviderRefund:
        # the payment's fault script covers every call about it, its refunds included
        def refund(session: Session, line: _RequestLine | None) -> ProviderRefund:
            refund_id = "re_mock_" + secrets.token_hex(10)
            stored = self._first_with(session, idempotency_key, "refund", refund_id, line)
            if stored is not None:  # the key's first request: its refusal, or its refund
                if stored.error is not None:
                    raise ProviderError(_failure_from(stored.error))
                row = session.scalar(select(MockRefund).where(MockRefund.id == stored.object_id))
                assert row is not None
                return self._refund_view(row)
            charge = session.scalar(
                select(MockCharge)
                .where(MockCharge.intent_id == intent_id, MockCharge.status == "succeeded")
                .with_for_update()
            )
            if charge is None or amount <= 0 or charge.amount_refunded + amount > charge.amount:
                failure = ProviderFailure(
                    ErrorType.INVALID_REQUEST,
                    "mock: nothing (or not that much) left to refund on this payment",
                    code="charge_already_refunded",
                    http_status=400,
                )
                # kept on the claimed key, which replays it (committed, then raised)
                self._store_error(session, idempotency_key, failure)
                raise ProviderError(failure)
            session.execute(
                update(MockCharge)
                .where(MockCharge.pk == charge.pk)
                .values(amount_refunded=MockCharge.amount_refunded + amount)
            )
            row = MockRefund(
                id=refund_id,
                charge_id=charge.id,
                intent_id=intent_id,
                order_ref=charge.order_ref,
                reference=reference,
                amount=amount,
                currency=charge.currency,
                status="succeeded",
                created_at=self._clock(),
            )
            session.add(row)
            session.flush()
            self._emit_charge(session, "charge.refunded", charge)  # as Stripe reports it
            return self._refund_view(row)

        return self._call("refund", idempotency_key, refund, intent_id=intent_id)

    def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(MockRefund).where(MockRefund.id == refund_id))
            if row is None:
                raise _missing("refund", refund_id)
            return self._refund_view(row)

    def find_refund(self, intent_id: str, reference: str) -> ProviderRefund | None:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(
                select(MockRefund)
                .where(MockRefund.intent_id == intent_id, MockRefund.reference == reference)
                .order_by(MockRefund.pk)
            )
            return self._refund_view(row) if row is not None else None

    # -- the provider's own rules -------------------------------------------------------

    def _confirm(self, session: Session, intent: MockIntent) -> ProviderFailure | None:
        if intent.status == IntentStatus.SUCCEEDED.value:
            return None  # confirming twice charges once
        if (
            intent.status
            not in (
                IntentStatus.REQUIRES_CONFIRMATION.value,
                IntentStatus.REQUIRES_PAYMENT_METHOD.value,
            )
            or intent.payment_method is None
        ):
            return ProviderFailure(
                ErrorType.INVALID_REQUEST,
                f"mock: an intent that is {intent.status} cannot be confirmed",
                code="payment_intent_unexpected_state",
                http_status=400,
            )
        kind = TEST_PAYMENT_METHODS.get(intent.payment_method)
        if kind is None:
            return ProviderFailure(
                ErrorType.INVALID_REQUEST,
                f"mock: unknown payment method {intent.payment_method!r}; use a Stripe test one",
                code="resource_missing",
                http_status=400,
            )
        if kind in (Card.DECLINED, Card.INSUFFICIENT):
            failure = _card_failure(kind)
            _set_intent(
                session,
                intent,
                status=IntentStatus.REQUIRES_PAYMENT_METHOD.value,
                last_error=_failure_json(failure),
            )
            self._emit_intent(session, "payment_intent.payment_failed", intent)
            return failure
        if kind == Card.AUTHENTICATE:
            _set_intent(session, intent, status=IntentStatus.REQUIRES_ACTION.value)
            self._emit_intent(session, "payment_intent.requires_action", intent)
            return None
        self._charge(session, intent)
        return None

    def _charge(self, session: Session, intent: MockIntent) -> None:
        charge = MockCharge(
            id="ch_mock_" + secrets.token_hex(10),
            intent_id=intent.id,
            reference=intent.reference,
            order_ref=(intent.metadata_ or {}).get("kassa_order"),
            amount=intent.amount,
            amount_refunded=0,
            currency=intent.currency,
            status="succeeded",
            created_at=self._clock(),
        )
        # at commit, with the event's delivery job (`storage.deferred`; on PostgreSQL one
        # statement): nothing in this transaction reads the charge back
        defer_new(session, charge)
        _set_intent(session, intent, status=IntentStatus.SUCCEEDED.value, last_error=None)
        self._emit_intent(session, "payment_intent.succeeded", intent)

    def open_dispute(self, charge_id: str, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder's bank disputes a charge (a sandbox control, as in Stripe's
        test mode); reported as `charge.dispute.created`."""
        with self._db.transaction() as session:
            charge = session.scalar(select(MockCharge).where(MockCharge.id == charge_id))
            if charge is None:
                raise _missing("charge", charge_id)
            intent = session.scalar(select(MockIntent).where(MockIntent.id == charge.intent_id))
            dispute = {
                "id": "dp_mock_" + secrets.token_hex(10),
                "object": "dispute",
                "charge": charge.id,
                "payment_intent": charge.intent_id,
                "amount": charge.amount,
                "currency": charge.currency.lower(),
                "reason": reason,
                "metadata": dict(intent.metadata_ or {}) if intent else {},
            }
            emit(session, "charge.dispute.created", dispute, self._clock())
            return dispute

    def _emit_intent(self, session: Session, kind: str, intent: MockIntent) -> None:
        view = self._view(intent)
        emit(
            session,
            kind,
            {
                "id": intent.id,
                "object": "payment_intent",
                "amount": intent.amount,
                "amount_received": view.amount_received,
                "currency": intent.currency.lower(),
                "status": intent.status,
                "metadata": dict(intent.metadata_ or {}),
                "next_action": view.next_action,
                "last_payment_error": (
                    {
                        "type": "card_error",
                        **{
                            k: v
                            for k, v in intent.last_error.items()
                            if k in ("code", "decline_code", "message")
                        },
                    }
                    if intent.last_error
                    else None
                ),
            },
            self._clock(),
        )

    def _emit_charge(self, session: Session, kind: str, charge: MockCharge) -> None:
        refunds = session.scalars(
            select(MockRefund).where(MockRefund.charge_id == charge.id).order_by(MockRefund.pk)
        ).all()
        intent = session.scalar(select(MockIntent).where(MockIntent.id == charge.intent_id))
        refunded = sum(r.amount for r in refunds if r.status != "failed")
        emit(
            session,
            kind,
            {
                "id": charge.id,
                "object": "charge",
                "payment_intent": charge.intent_id,
                "amount": charge.amount,
                "amount_refunded": refunded,
                "refunded": refunded >= charge.amount,
                "status": charge.status,
                "currency": charge.currency.lower(),
                "metadata": dict(intent.metadata_ or {}) if intent else {},
                "refunds": {
                    "object": "list",
                    "data": [
                        {
                            "id": r.id,
                            "object": "refund",
                            "amount": r.amount,
                            "currency": r.currency.lower(),
                            "charge": charge.id,
                            "payment_intent": charge.intent_id,
                            "status": r.status,
                            "metadata": {"kassa_refund": r.reference},
                        }
                        for r in refunds
                    ],
                    "has_more": False,
                },
            },
            self._clock(),
        )

    def list_intents(
        self, since: datetime, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[ProviderIntent]:
        for rows in self._pages(MockIntent, since, page_size):
            yield from (self._view(row) for row in rows)

    def list_refunds(
        self, since: datetime, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[ProviderRefund]:
        for rows in self._pages(MockRefund, since, page_size):
            yield from (self._refund_view(row) for row in rows)

    def _pages(
        self, model: type[_Listed], since: datetime, page_size: int
    ) -> Iterator[list[_Listed]]:
        """The sandbox's records created at or after `since`, oldest first, one page (a
        short read of its own, after the last key of the page before) at a time, fetched
        only when the caller is done with the one before: as Stripe's list endpoints."""
        after = 0
        while True:
            with self._db.transaction(read_only=True) as session:
                rows = list(
                    session.scalars(
                        select(model)
                        .where(model.pk > after, model.created_at >= since)
                        .order_by(model.pk)
                        .limit(page_size)
                    )
                )
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            after = int(rows[-1].pk)

    # -- what the sandbox recorded, page by page (its own API's lists) -------------------

    def charges_page(
        self, order: str | None, limit: int, starting_after: str | None
    ) -> Page[MockCharge]:
        """The sandbox's charges, newest first, optionally of one kassa order."""
        stmt = select(MockCharge)
        if order:
            stmt = stmt.where(MockCharge.order_ref == order)
        with self._db.transaction(read_only=True) as session:
            return paginate(session, MockCharge, stmt, limit, starting_after)

    def refunds_page(
        self, order: str | None, limit: int, starting_after: str | None
    ) -> Page[MockRefund]:
        """The sandbox's refunds, newest first, optionally of one kassa order."""
        stmt = select(MockRefund)
        if order:
            stmt = stmt.where(MockRefund.order_ref == order)
        with self._db.transaction(read_only=True) as session:
            return paginate(session, MockRefund, stmt, limit, starting_after)

    @staticmethod
    def _lock_intent_row(session: Session, intent_id: str) -> MockIntent | None:
        intent = session.scalar(_LOCK_INTENT, {"intent_id": intent_id})
        if intent is not None:
            session.info[_LOCKED_INTENT] = intent
        return intent

    @classmethod
    def _locked_intent(cls, session: Session, intent_id: str) -> MockIntent:
        """The intent under its row lock: the one this transaction already locked (`_call`
        locks it first), or read and locked now."""
        held = session.info.get(_LOCKED_INTENT)
        intent = held if held is not None and held.id == intent_id else None
        intent = intent or cls._lock_intent_row(session, intent_id)
        if intent is None:
            raise _missing("intent", intent_id)
        return intent

    @staticmethod
    def _view(intent: MockIntent) -> ProviderIntent:
        status = IntentStatus(intent.status)
        return ProviderIntent(
            id=intent.id,
            status=status,
            amount=intent.amount,
            currency=intent.currency,
            amount_received=intent.amount if status is IntentStatus.SUCCEEDED else 0,
            client_secret=intent.client_secret,
            next_action=(
                {
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {
                        "type": "three_d_secure_redirect",
                        "confirm_url": f"/v1/providers/mock/intents/{intent.id}/confirm",
                    },
                }
                if status is IntentStatus.REQUIRES_ACTION
                else None
            ),
            last_error=_failure_from(intent.last_error) if intent.last_error else None,
            reference=intent.reference,
        )

    @staticmethod
    def _refund_view(row: MockRefund) -> ProviderRefund:
        return ProviderRefund(
            id=row.id,
            intent_id=row.intent_id,
            amount=row.amount,
            currency=row.currency,
            status=RefundStatus(row.status),
            reference=row.reference,
        )
