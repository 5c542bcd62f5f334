"""Payment rules: statuses, failure classification, the retry policy, gateway health.

Pure: the orchestrator (services) applies these to what providers answer.

The classification table (the contract's):

| provider answer                                      | category | retried automatically |
|------------------------------------------------------|----------|-----------------------|
| api_error, rate_limit_error / 429, HTTP 5xx          | soft     | yes (transient)       |
| timeout, connection or DNS failure                   | soft     | yes, once resolved    |
| card_declined + insufficient_funds                   | soft     | no                    |
| card_declined + generic_decline, any other decline   | hard     | no                    |
| authentication / invalid request / idempotency error | hard     | no                    |
| requires_action (3-D Secure)                         | —        | not a failure         |
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class PaymentStatus(StrEnum):
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED})
# Still open at the provider: the order must not be cancelled under the shopper.
IN_FLIGHT_STATUSES = frozenset({PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})

_P = PaymentStatus
# Which status may follow which, whoever reports it (the orchestrator, the browser flow, a
# webhook, the resume job), in whatever order the reports arrive:
# - `succeeded` is final: money received is never un-received by a late or stale report;
# - money reported received is recorded from every other status (a success after a
#   failure report is the shopper's second card on the same intent; after a cancel it is
#   money that arrived anyway, which staff refund: it is never dropped);
# - a failed intent may be retried at the provider (processing, requires_action again);
# - a canceled payment only ever moves to succeeded (see above).
PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    _P.PROCESSING: frozenset({_P.REQUIRES_ACTION, _P.SUCCEEDED, _P.FAILED, _P.CANCELED}),
    _P.REQUIRES_ACTION: frozenset({_P.PROCESSING, _P.SUCCEEDED, _P.FAILED, _P.CANCELED}),
    _P.FAILED: frozenset({_P.PROCESSING, _P.REQUIRES_ACTION, _P.SUCCEEDED}),
    _P.CANCELED: frozenset({_P.SUCCEEDED}),
    _P.SUCCEEDED: frozenset(),
}


def payment_may_become(current: PaymentStatus, target: PaymentStatus) -> bool:
    """Whether a payment in `current` may move to `target` (never to itself)."""
    return target in PAYMENT_TRANSITIONS[current]


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    SOFT_FAILURE = "soft_failure"
    HARD_FAILURE = "hard_failure"
    REQUIRES_ACTION = "requires_action"
    UNKNOWN = "unknown"


class FailureCategory(StrEnum):
    SOFT = "soft"
    HARD = "hard"


class ErrorType(StrEnum):
    """What went wrong, in Stripe's vocabulary plus the network's."""

    API_ERROR = "api_error"
    RATE_LIMIT = "rate_limit_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection_error"
    CARD_ERROR = "card_error"
    AUTHENTICATION = "authentication_error"
    INVALID_REQUEST = "invalid_request_error"
    IDEMPOTENCY = "idempotency_error"


TRANSIENT = frozenset(
    {ErrorType.API_ERROR, ErrorType.RATE_LIMIT, ErrorType.TIMEOUT, ErrorType.CONNECTION}
)


@dataclass(frozen=True, slots=True)
class ProviderFailure:
    """A provider call that did not answer with a usable result.

    `reached_provider` is False when the request certainly never arrived (connection
    refused, timeout before sending), None when nobody can tell (a timeout after the
    request was sent: the provider may have acted), True when the provider answered.
    """

    type: ErrorType
    message: str
    code: str | None = None
    decline_code: str | None = None
    http_status: int | None = None
    reached_provider: bool | None = True

    @property
    def outcome_unknown(self) -> bool:
        return self.reached_provider is None


@dataclass(frozen=True, slots=True)
class Classification:
    outcome: AttemptOutcome
    category: FailureCategory
    retryable: bool


def classify(failure: ProviderFailure) -> Classification:
    if failure.outcome_unknown:
        return Classification(AttemptOutcome.UNKNOWN, FailureCategory.SOFT, retryable=True)
    if failure.type in TRANSIENT or (
        failure.http_status is not None
        and (failure.http_status == 429 or failure.http_status >= 500)
    ):
        return Classification(AttemptOutcome.SOFT_FAILURE, FailureCategory.SOFT, retryable=True)
    if failure.type is ErrorType.CARD_ERROR and failure.decline_code == "insufficient_funds":
        return Classification(AttemptOutcome.SOFT_FAILURE, FailureCategory.SOFT, retryable=False)
    return Classification(AttemptOutcome.HARD_FAILURE, FailureCategory.HARD, retryable=False)


def failure_json(failure: ProviderFailure) -> dict[str, Any]:
    """How a failure is kept on a payment or refund and shown in the API."""
    return {
        "category": classify(failure).category.value,
        "type": failure.code if failure.code == "card_declined" else failure.type.value,
        "error_type": failure.type.value,
        "code": failure.code,
        "decline_code": failure.decline_code,
        "message": failure.message,
    }


def is_gateway_failure(outcome: AttemptOutcome, error_type: str | None) -> bool:
    """Whether an attempt speaks against the gateway's health.

    Infrastructure failures do; a decline or a 3-D Secure challenge is the gateway
    working as it should, so they count as healthy answers."""
    if outcome is AttemptOutcome.UNKNOWN:
        return True
    return outcome is AttemptOutcome.SOFT_FAILURE and error_type in {t.value for t in TRANSIENT}


# -- retries ------------------------------------------------------------------------------

MAX_RETRY_DELAY_MS = 2_999  # the contract: a retry happens within 3 s


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `max_retries` automatic retries of transient failures, each after a
    jittered delay below 3 s."""

    max_retries: int = 1
    base_delay_ms: int = 200
    max_delay_ms: int = 1_000

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 <= self.base_delay_ms <= self.max_delay_ms <= MAX_RETRY_DELAY_MS:
            raise ValueError(f"need 0 <= base_delay_ms <= max_delay_ms <= {MAX_RETRY_DELAY_MS}")

    def delay_ms(self, retry_number: int, rng: random.Random) -> int:
        """Delay before retry `retry_number` (1-based): exponential, "full jitter"."""
        ceiling = min(self.max_delay_ms, self.base_delay_ms * 2 ** (retry_number - 1))
        return rng.randint(ceiling // 2, ceiling) if ceiling else 0


class RetryVerdict(StrEnum):
    RETRY = "retry"
    NOT_RETRYABLE = "not_retryable"
    EXHAUSTED = "retries_exhausted"
    GATEWAY_DEGRADED = "gateway_degraded"


def retry_verdict(
    classification: Classification, retries_done: int, policy: RetryPolicy, degraded: bool
) -> RetryVerdict:
    if not classification.retryable:
        return RetryVerdict.NOT_RETRYABLE
    if retries_done >= policy.max_retries:
        return RetryVerdict.EXHAUSTED
    if degraded:
        return RetryVerdict.GATEWAY_DEGRADED
    return RetryVerdict.RETRY


# -- gateway health -----------------------------------------------------------------------


class GatewayState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """A gateway turns degraded when its failure rate reaches `degrade_at` (or its p95
    latency reaches `degrade_p95_ms`) over at least `min_attempts` in the window, and
    turns healthy again only below `recover_below` — the gap is the hysteresis that keeps
    it from flapping."""

    window_s: int = 300
    min_attempts: int = 20
    degrade_at: float = 0.5
    recover_below: float = 0.25
    degrade_p95_ms: int = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.recover_below <= self.degrade_at <= 1:
            raise ValueError("need 0 <= recover_below <= degrade_at <= 1")


@dataclass(frozen=True, slots=True)
class HealthStats:
    attempts: int
    failures: int
    avg_latency_ms: float
    p95_latency_ms: int

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def success_rate(self) -> float:
        return 1.0 - self.failure_rate if self.attempts else 1.0


def health_stats(samples: Sequence[tuple[int, bool]]) -> HealthStats:
    """From (latency_ms, was_gateway_failure) samples."""
    if not samples:
        return HealthStats(0, 0, 0.0, 0)
    latencies = sorted(latency for latency, _ in samples)
    p95_index = max(0, -(-95 * len(latencies) // 100) - 1)  # nearest-rank
    return HealthStats(
        attempts=len(samples),
        failures=sum(1 for _, failed in samples if failed),
        avg_latency_ms=sum(latencies) / len(latencies),
        p95_latency_ms=latencies[p95_index],
    )


def next_state(
    previous: GatewayState, stats: HealthStats, thresholds: HealthThresholds
) -> GatewayState:
    if stats.attempts < thresholds.min_attempts:
        return GatewayState.HEALTHY  # too little evidence left in the window to call it
    slow = stats.p95_latency_ms >= thresholds.degrade_p95_ms
    if previous is GatewayState.HEALTHY:
        degrade = stats.failure_rate >= thresholds.degrade_at or slow
        return GatewayState.DEGRADED if degrade else GatewayState.HEALTHY
    recovered = stats.failure_rate < thresholds.recover_below and not slow
    return GatewayState.HEALTHY if recovered else GatewayState.DEGRADED
