from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.payments import (
    MAX_RETRY_DELAY_MS,
    AttemptOutcome,
    ErrorType,
    FailureCategory,
    GatewayState,
    HealthStats,
    HealthThresholds,
    ProviderFailure,
    RetryPolicy,
    RetryVerdict,
    classify,
    health_stats,
    is_gateway_failure,
    next_state,
    retry_verdict,
)


@pytest.mark.parametrize(
    ("failure", "outcome", "category", "retryable"),
    [
        (ProviderFailure(ErrorType.API_ERROR, "x", http_status=500), "soft_failure", "soft", True),
        (ProviderFailure(ErrorType.RATE_LIMIT, "x", http_status=429), "soft_failure", "soft", True),
        (
            ProviderFailure(ErrorType.TIMEOUT, "x", reached_provider=False),
            "soft_failure",
            "soft",
            True,
        ),
        (
            ProviderFailure(ErrorType.CONNECTION, "x", reached_provider=False),
            "soft_failure",
            "soft",
            True,
        ),
        (ProviderFailure(ErrorType.TIMEOUT, "x", reached_provider=None), "unknown", "soft", True),
        (
            ProviderFailure(ErrorType.INVALID_REQUEST, "x", http_status=503),
            "soft_failure",
            "soft",
            True,
        ),
        (
            ProviderFailure(ErrorType.CARD_ERROR, "x", "card_declined", "insufficient_funds"),
            "soft_failure",
            "soft",
            False,
        ),
        (
            ProviderFailure(ErrorType.CARD_ERROR, "x", "card_declined", "generic_decline"),
            "hard_failure",
            "hard",
            False,
        ),
        (
            ProviderFailure(ErrorType.CARD_ERROR, "x", "card_declined", "stolen_card"),
            "hard_failure",
            "hard",
            False,
        ),
        (ProviderFailure(ErrorType.CARD_ERROR, "x", "expired_card"), "hard_failure", "hard", False),
        (
            ProviderFailure(ErrorType.AUTHENTICATION, "x", http_status=401),
            "hard_failure",
            "hard",
            False,
        ),
        (
            ProviderFailure(ErrorType.INVALID_REQUEST, "x", http_status=400),
            "hard_failure",
            "hard",
            False,
        ),
    ],
)
def test_classification_table(
    failure: ProviderFailure, outcome: str, category: str, retryable: bool
) -> None:
    result = classify(failure)
    assert (result.outcome.value, result.category.value, result.retryable) == (
        outcome,
        category,
        retryable,
    )


@given(
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=MAX_RETRY_DELAY_MS),
    st.integers(min_value=0, max_value=MAX_RETRY_DELAY_MS),
    st.integers(min_value=1, max_value=10),
    st.integers(),
)
def test_retry_delays_stay_under_three_seconds(
    retries: int, base: int, cap: int, n: int, seed: int
) -> None:
    base, cap = min(base, cap), max(base, cap)
    policy = RetryPolicy(max_retries=retries, base_delay_ms=base, max_delay_ms=cap)
    delay = policy.delay_ms(n, random.Random(seed))
    assert 0 <= delay <= cap < 3000


def test_policy_refuses_delays_of_three_seconds_or_more() -> None:
    with pytest.raises(ValueError, match="max_delay_ms"):
        RetryPolicy(max_delay_ms=3000)


def test_retry_verdicts() -> None:
    policy = RetryPolicy(max_retries=1)
    transient = classify(ProviderFailure(ErrorType.API_ERROR, "x"))
    decline = classify(ProviderFailure(ErrorType.CARD_ERROR, "x", "card_declined", "generic"))
    assert retry_verdict(transient, 0, policy, degraded=False) is RetryVerdict.RETRY
    assert retry_verdict(transient, 1, policy, degraded=False) is RetryVerdict.EXHAUSTED
    assert retry_verdict(transient, 0, policy, degraded=True) is RetryVerdict.GATEWAY_DEGRADED
    assert retry_verdict(decline, 0, policy, degraded=False) is RetryVerdict.NOT_RETRYABLE


def test_declines_and_challenges_do_not_count_against_gateway_health() -> None:
    assert is_gateway_failure(AttemptOutcome.SOFT_FAILURE, "api_error")
    assert is_gateway_failure(AttemptOutcome.UNKNOWN, "timeout")
    assert not is_gateway_failure(AttemptOutcome.SOFT_FAILURE, "card_error")
    assert not is_gateway_failure(AttemptOutcome.HARD_FAILURE, "card_error")
    assert not is_gateway_failure(AttemptOutcome.REQUIRES_ACTION, None)


def test_health_stats_nearest_rank_p95() -> None:
    stats = health_stats([(ms, ms > 90) for ms in range(1, 101)])
    assert stats.attempts == 100
    assert stats.failures == 10
    assert stats.p95_latency_ms == 95
    assert stats.avg_latency_ms == 50.5
    assert health_stats([]) == HealthStats(0, 0, 0.0, 0)


def test_health_has_hysteresis() -> None:
    t = HealthThresholds(min_attempts=10, degrade_at=0.5, recover_below=0.25)

    def stats(failures: int, attempts: int = 20) -> HealthStats:
        return HealthStats(attempts, failures, 100.0, 100)

    healthy, degraded = GatewayState.HEALTHY, GatewayState.DEGRADED
    assert next_state(healthy, stats(9), t) is healthy
    assert next_state(healthy, stats(10), t) is degraded
    assert next_state(degraded, stats(6), t) is degraded  # 30 %: not yet recovered
    assert next_state(degraded, stats(4), t) is healthy  # 20 %: below recover_below
    assert next_state(degraded, stats(5, attempts=5), t) is healthy  # too little evidence
    slow = HealthStats(20, 0, 100.0, t.degrade_p95_ms)
    assert next_state(healthy, slow, t) is degraded


def test_soft_and_hard_categories() -> None:
    assert classify(ProviderFailure(ErrorType.API_ERROR, "x")).category is FailureCategory.SOFT
