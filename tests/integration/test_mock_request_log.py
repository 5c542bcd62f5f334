"""The sandbox's request log: one line per call, whatever became of the call, written with
the idempotency key's claim (one statement on PostgreSQL) where the call gets that far."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.providers.base import IntentRequest, ProviderError
from kassa.providers.mock.tables import MockIdempotency, MockRequest
from tests.support import statements_sent


def log_lines(kassa: Kassa) -> list[tuple[str, str, str | None, str | None]]:
    with kassa.db.transaction(read_only=True) as s:
        return [
            (r.reference, r.operation, r.idempotency_key, r.fault)
            for r in s.scalars(select(MockRequest).order_by(MockRequest.pk))
        ]


def request(reference: str, method: str = "pm_card_visa") -> IntentRequest:
    return IntentRequest(
        amount=1450, currency="EUR", reference=reference, payment_method=method, metadata={}
    )


def test_a_keyed_call_logs_its_line_with_the_key_s_claim(kassa: Kassa, is_postgres: bool) -> None:
    with statements_sent(kassa) as seen:
        intent = kassa.mock.create_intent(request("pay_log_1"), idempotency_key="k-create")
    logged = [s for s in seen if "mock_requests" in s]
    claims = [s for s in seen if "mock_idempotency" in s]
    if is_postgres:  # one statement: the line as a CTE of the claim
        assert len(logged) == 1 and logged == claims
        assert logged[0].lstrip().upper().startswith("WITH")
    else:
        assert len(logged) == 1 and len(claims) == 1 and logged != claims
    assert log_lines(kassa) == [("pay_log_1", "create_intent", "k-create", None)]

    # The same key again: replayed, and logged again (the log is of calls, not effects).
    again = kassa.mock.create_intent(request("pay_log_1"), idempotency_key="k-create")
    assert again.id == intent.id
    assert log_lines(kassa)[1:] == [("pay_log_1", "create_intent", "k-create", None)]
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(MockIdempotency.object_id)) == intent.id


def test_a_call_refused_before_its_claim_and_a_fault_first_are_still_logged(
    kassa: Kassa,
) -> None:
    with pytest.raises(ProviderError):  # no such intent: refused before any claim
        kassa.mock.confirm_intent("pi_mock_nope", idempotency_key="k-missing")
    assert log_lines(kassa) == [("pi_mock_nope", "confirm_intent", "k-missing", None)]

    with pytest.raises(ProviderError):  # the script's fault strikes before the sandbox acts
        kassa.mock.create_intent(
            request("pay_log_2", "pm_card_visa|api_error"), idempotency_key="k-fault"
        )
    assert log_lines(kassa)[1:] == [("pay_log_2", "create_intent", "k-fault", "api_error")]
    with kassa.db.transaction(read_only=True) as s:  # and that key was never claimed
        assert s.scalar(select(MockIdempotency).where(MockIdempotency.key == "k-fault")) is None

    # Its retry with the same key acts, and logs a line of its own.
    intent = kassa.mock.create_intent(
        request("pay_log_2", "pm_card_visa|api_error"), idempotency_key="k-fault"
    )
    assert intent.id.startswith("pi_mock_")
    assert log_lines(kassa)[2:] == [("pay_log_2", "create_intent", "k-fault", None)]
