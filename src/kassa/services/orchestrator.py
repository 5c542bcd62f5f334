"""The payment orchestrator: drives one payment through a provider under the retry policy.

A server-side payment is two provider calls: create the intent (moves no money), then
confirm it (charges). Each call is an *attempt*, recorded as it ends. A failure is
classified (domain.payments.classify); only transient infrastructure failures are
retried, at most `policy.max_retries` times per payment, after a jittered delay under
3 s, with the *same* provider idempotency key, and never into a degraded gateway.

An attempt whose outcome is unknown (a timeout after the request was sent) is first
resolved by looking the payment up at the provider: if the call took effect, its result
is used and nothing is retried, so a lost answer can never become a second charge.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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
from kassa.providers.base import (
    IntentRequest,
    IntentStatus,
    PaymentProvider,
    ProviderError,
    ProviderIntent,
)


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
    """How the orchestration ended."""

    intent: ProviderIntent | None
    failure: ProviderFailure | None
    classification: Classification | None
    retries: int
    no_retry_reason: RetryVerdict | None
    elapsed_ms: int

    @property
    def recovered_by_retry(self) -> bool:
        return self.failure is None and self.retries > 0


class _Step:
    """What one provider call needs: the call, and how to tell if it took effect."""

    def __init__(
        self,
        operation: str,
        call: Callable[[], ProviderIntent],
        resolve: Callable[[], ProviderIntent | None],
    ) -> None:
        self.operation = operation
        self.call = call
        self.resolve = resolve


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

    # -- the two flows ----------------------------------------------------------------

    def charge(self, request: IntentRequest, idempotency_base: str) -> Outcome:
        """Create and confirm an intent for `request` (server-side confirmation)."""
        started = time.monotonic()
        intent, failure, cls, reason = self._run(self._create_step(request, idempotency_base))
        if intent is not None and intent.status is IntentStatus.REQUIRES_CONFIRMATION:
            intent, failure, cls, reason = self._run(self._confirm_step(intent, idempotency_base))
        return Outcome(intent, failure, cls, self._retries, reason, _ms_since(started))

    def create(self, request: IntentRequest, idempotency_base: str) -> Outcome:
        """Only create the intent; the browser confirms it with the client secret."""
        started = time.monotonic()
        intent, failure, cls, reason = self._run(self._create_step(request, idempotency_base))
        return Outcome(intent, failure, cls, self._retries, reason, _ms_since(started))

    def _create_step(self, request: IntentRequest, base: str) -> _Step:
        provider = self._provider
        return _Step(
            "create_intent",
            lambda: provider.create_intent(request, idempotency_key=f"{base}:create"),
            lambda: provider.find_intent(request.reference),
        )

    def _confirm_step(self, intent: ProviderIntent, base: str) -> _Step:
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
        )

    # -- one step, with the policy ----------------------------------------------------

    def _run(
        self, step: _Step
    ) -> tuple[
        ProviderIntent | None, ProviderFailure | None, Classification | None, RetryVerdict | None
    ]:
        while True:
            self._number += 1
            started_at = self._clock()
            t0 = time.monotonic()
            try:
                intent = step.call()
            except ProviderError as exc:
                failure = exc.failure
                cls = classify(failure)
                self._log(step, started_at, t0, cls.outcome, failure)
                if failure.outcome_unknown:
                    resolved = self._resolve(step)
                    if resolved is not None:
                        return self._settled(resolved)
                verdict = retry_verdict(
                    cls, self._retries, self._policy, self._is_degraded(self._provider.name)
                )
                if verdict is not RetryVerdict.RETRY:
                    return None, failure, cls, verdict
                self._retries += 1
                self._pending_delay = self._policy.delay_ms(self._retries, self._rng)
                self._sleep(self._pending_delay / 1000)
                continue
            outcome = (
                AttemptOutcome.REQUIRES_ACTION
                if intent.status is IntentStatus.REQUIRES_ACTION
                else AttemptOutcome.SUCCEEDED
            )
            self._log(step, started_at, t0, outcome, None)
            return self._settled(intent)

    def _resolve(self, step: _Step) -> ProviderIntent | None:
        """Look the payment up; None when it cannot be found or the look-up fails."""
        try:
            return step.resolve()
        except ProviderError:
            return None

    @staticmethod
    def _settled(
        intent: ProviderIntent,
    ) -> tuple[ProviderIntent | None, ProviderFailure | None, Classification | None, None]:
        """A call that took effect; a declined intent still reports its decline."""
        if intent.status is IntentStatus.REQUIRES_PAYMENT_METHOD and intent.last_error:
            return None, intent.last_error, classify(intent.last_error), None
        return intent, None, None, None

    def _log(
        self,
        step: _Step,
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


def _ms_since(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)
