"""The provider-call engine: drives provider calls under the retry policy.

Every call that can move money goes through here: a server-side payment is two calls,
create the intent (moves no money) then confirm it (charges); a refund is one call per
refund part. Each call is a `_Step`: the call itself, and how to tell, when its answer
is lost, whether it took effect. Each call is an *attempt*, recorded as it ends. A
failure is classified (domain.payments.classify); only transient infrastructure failures
are retried, at most `policy.max_retries` times per orchestration, after a jittered
delay under 3 s, with the *same* provider idempotency key, and never into a degraded
gateway.

An attempt whose outcome is unknown (a timeout after the request was sent) is first
resolved by looking the payment or refund up at the provider: if the call took effect,
its result is used and nothing is retried, so a lost answer can never become a second
charge, and a refund that happened is known at once instead of after a resume.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from kassa.domain.payments import (
    AttemptOutcome,
    Classification,
    ProviderFailure,
    RetryPolicy,
    RetryVerdict,
    classify,
    is_gateway_failure,
    retry_verdict,
)
from kassa.domain.refunds import RefundStatus
from kassa.providers.base import (
    IntentRequest,
    IntentStatus,
    PaymentProvider,
    ProviderError,
    ProviderIntent,
    ProviderRefund,
)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    operation: str
    started_at: datetime
    duration_ms: int
    outcome: AttemptOutcome
    error_type: str | None = None
    code: str | None = None
    decline_code: str | None = None
    retry_delay_ms: int | None = None

    @property
    def gateway_failure(self) -> bool:
        return is_gateway_failure(self.outcome, self.error_type)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a payment's orchestration ended."""

    intent: ProviderIntent | None
    failure: ProviderFailure | None
    classification: Classification | None
    retries: int
    no_retry_reason: RetryVerdict | None
    elapsed_ms: int

    @property
    def recovered_by_retry(self) -> bool:
        return self.failure is None and self.retries > 0


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """How a refund call's orchestration ended: the provider's refund (succeeded, pending
    or failed at the provider), or no refund and the last failure."""

    refund: ProviderRefund | None
    failure: ProviderFailure | None
    classification: Classification | None
    retries: int
    no_retry_reason: RetryVerdict | None
    elapsed_ms: int

    @property
    def outcome_unknown(self) -> bool:
        """No answer, and no proof the provider did not act (or could not be reached only
        for now): the refund part must stay pending and be asked about again later."""
        return (
            self.refund is None
            and self.classification is not None
            and (self.classification.retryable)
        )


@dataclass(frozen=True, slots=True)
class _Step(Generic[R]):
    """What one provider call needs: the call, how to tell whether it took effect (None:
    it did not, or nobody can tell), how its answer counts as an attempt, and whether an
    answer is in fact a refusal (a declined intent found by the look-up)."""

    operation: str
    call: Callable[[], R]
    resolve: Callable[[], R | None]
    outcome: Callable[[R], AttemptOutcome]
    refusal: Callable[[R], ProviderFailure | None]


@dataclass(frozen=True, slots=True)
class _Ran(Generic[R]):
    """How one step ended: a result that took effect, or the failure that ended it."""

    result: R | None
    failure: ProviderFailure | None = None
    classification: Classification | None = None
    verdict: RetryVerdict | None = None


class Orchestrator:
    def __init__(
        self,
        provider: PaymentProvider,
        policy: RetryPolicy,
        *,
        is_degraded: Callable[[str], bool],
        record: Callable[[Attempt], None],
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        first_attempt_number: int = 1,
    ) -> None:
        self._provider = provider
        self._policy = policy
        self._is_degraded = is_degraded
        self._record = record
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._number = first_attempt_number - 1
        self._retries = 0
        self._pending_delay: int | None = None

    # -- the flows --------------------------------------------------------------------

    def charge(self, request: IntentRequest, idempotency_base: str) -> Outcome:
        """Create and confirm an intent for `request` (server-side confirmation)."""
        started = time.monotonic()
        ran = self._run(self._create_step(request, idempotency_base))
        if ran.result is not None and ran.result.status is IntentStatus.REQUIRES_CONFIRMATION:
            ran = self._run(self._confirm_step(ran.result, idempotency_base))
        return self._payment_outcome(ran, started)

    def create(self, request: IntentRequest, idempotency_base: str) -> Outcome:
        """Only create the intent; the browser confirms it with the client secret."""
        started = time.monotonic()
        return self._payment_outcome(
            self._run(self._create_step(request, idempotency_base)), started
        )

    def refund(
        self, intent_id: str, amount: int, idempotency_key: str, reference: str
    ) -> RefundOutcome:
        """Refund `amount` of the intent; `reference` is kassa's refund (part) id, stored at
        the provider so that a refund whose answer was lost can be found again."""
        started = time.monotonic()
        provider = self._provider
        ran = self._run(
            _Step(
                "refund",
                lambda: provider.refund(
                    intent_id, amount, idempotency_key=idempotency_key, reference=reference
                ),
                lambda: provider.find_refund(intent_id, reference),
                _refund_attempt_outcome,
                lambda _: None,  # a refund the provider failed is reported as such
            )
        )
        return RefundOutcome(
            ran.result,
            ran.failure,
            ran.classification,
            self._retries,
            ran.verdict,
            _ms_since(started),
        )

    def _payment_outcome(self, ran: _Ran[ProviderIntent], started: float) -> Outcome:
        return Outcome(
            ran.result,
            ran.failure,
            ran.classification,
            self._retries,
            ran.verdict,
            _ms_since(started),
        )

    def _create_step(self, request: IntentRequest, base: str) -> _Step[ProviderIntent]:
        provider = self._provider
        return _Step(
            "create_intent",
            lambda: provider.create_intent(request, idempotency_key=f"{base}:create"),
            lambda: provider.find_intent(request.reference),
            _intent_attempt_outcome,
            _declined,
        )

    def _confirm_step(self, intent: ProviderIntent, base: str) -> _Step[ProviderIntent]:
        provider = self._provider

        def took_effect() -> ProviderIntent | None:
            current = provider.retrieve_intent(intent.id)
            # Still waiting for confirmation: the confirm never arrived; anything else
            # (charged, declined, challenged, in flight) means it did.
            return None if current.status is IntentStatus.REQUIRES_CONFIRMATION else current

        return _Step(
            "confirm_intent",
            lambda: provider.confirm_intent(intent.id, idempotency_key=f"{base}:confirm"),
            took_effect,
            _intent_attempt_outcome,
            _declined,
        )

    # -- one step, with the policy ----------------------------------------------------

    def _run(self, step: _Step[R]) -> _Ran[R]:
        while True:
            self._number += 1
            started_at = self._clock()
            t0 = time.monotonic()
            try:
                result = step.call()
            except ProviderError as exc:
                failure = exc.failure
                cls = classify(failure)
                self._log(step, started_at, t0, cls.outcome, failure)
                if failure.outcome_unknown:
                    resolved = self._resolve(step)
                    if resolved is not None:
                        return self._took_effect(step, resolved)
                verdict = retry_verdict(
                    cls, self._retries, self._policy, self._is_degraded(self._provider.name)
                )
                if verdict is not RetryVerdict.RETRY:
                    return _Ran(None, failure, cls, verdict)
                self._retries += 1
                self._pending_delay = self._policy.delay_ms(self._retries, self._rng)
                self._sleep(self._pending_delay / 1000)
                continue
            self._log(step, started_at, t0, step.outcome(result), None)
            return self._took_effect(step, result)

    @staticmethod
    def _resolve(step: _Step[R]) -> R | None:
        """Look the call's effect up; None when it cannot be found or the look-up fails."""
        try:
            return step.resolve()
        except ProviderError:
            return None

    @staticmethod
    def _took_effect(step: _Step[R], result: R) -> _Ran[R]:
        """A call that took effect; a refusal (a declined intent) still reports itself."""
        refused = step.refusal(result)
        if refused is not None:
            return _Ran(None, refused, classify(refused))
        return _Ran(result)

    def _log(
        self,
        step: _Step[R],
        started_at: datetime,
        t0: float,
        outcome: AttemptOutcome,
        failure: ProviderFailure | None,
    ) -> None:
        self._record(
            Attempt(
                number=self._number,
                operation=step.operation,
                started_at=started_at,
                duration_ms=_ms_since(t0),
                outcome=outcome,
                error_type=failure.type.value if failure else None,
                code=failure.code if failure else None,
                decline_code=failure.decline_code if failure else None,
                retry_delay_ms=self._pending_delay,
            )
        )
        self._pending_delay = None


def _intent_attempt_outcome(intent: ProviderIntent) -> AttemptOutcome:
    if intent.status is IntentStatus.REQUIRES_ACTION:
        return AttemptOutcome.REQUIRES_ACTION
    return AttemptOutcome.SUCCEEDED


def _declined(intent: ProviderIntent) -> ProviderFailure | None:
    if intent.status is IntentStatus.REQUIRES_PAYMENT_METHOD and intent.last_error:
        return intent.last_error
    return None


def _refund_attempt_outcome(refund: ProviderRefund) -> AttemptOutcome:
    """A refund the provider failed is its answer, not a gateway failure: a hard one."""
    if refund.status is RefundStatus.FAILED:
        return AttemptOutcome.HARD_FAILURE
    return AttemptOutcome.SUCCEEDED


def _ms_since(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)
