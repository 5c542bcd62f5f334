"""The provider check on a large shop: the provider's records are read a page at a time
and each page is compared before the next is fetched, so memory holds one page, not the
window (issue 11, part 3). Shown on the sandbox with a page of 2 records. Both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.providers.base import IntentRequest
from kassa.services.catalogue import NewProduct
from kassa.services.checks import _Marks
from kassa.services.context import RequestContext
from kassa.services.orders import LineRequest, NewOrder
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys, Sleeps, make_keys
from tests.stripe_fake import FakeStripe, start_fake_stripe

PAGE = 2
ORDERS = 7


@pytest.fixture
def small_pages(database_url: str, clock: FakeClock, sleeps: Sleeps) -> Iterator[Kassa]:
    core = Kassa(
        Settings(database_url=database_url, check_page_size=PAGE), clock=clock, sleep=sleeps
    )
    core.catalogue.create(RequestContext.system(), NewProduct("MUG", "Mug", 1000, "EUR"))
    yield core
    core.close()


def busy(core: Kassa) -> tuple[list[str], Keys]:
    """ORDERS paid orders through the sandbox, three of them partly refunded."""
    keys = make_keys(core)
    with TestClient(create_app(core)) as client:
        orders = [builders.paid_order(client, keys, "ops")["id"] for _ in range(ORDERS)]
        for order_id in orders[:3]:
            r = client.post(
                f"/v1/orders/{order_id}/refunds", json={"amount": 100}, headers=keys.headers("ops")
            )
            assert r.status_code == 201, r.text
    Worker(core, name="w").drain()
    return orders, keys


def intent_of(core: Kassa, order_id: str) -> str:
    with core.db.transaction(read_only=True) as s:
        return str(
            s.execute(
                text("SELECT provider_payment_id FROM payments WHERE order_id = :o"),
                {"o": order_id},
            ).scalar_one()
        )


def test_the_comparison_finds_the_same_across_many_pages(small_pages: Kassa) -> None:
    core = small_pages
    orders, _ = busy(core)
    assert core.reconciliation.run() == []

    # on the 3rd page: an intent the sandbox now says was canceled
    canceled = intent_of(core, orders[5])
    # money the sandbox took that kassa never recorded: the last page
    stray = core.mock.create_intent(
        IntentRequest(1234, "EUR", "pay_unknown", "pm_card_visa"), idempotency_key="k1"
    )
    core.mock.confirm_intent(stray.id, idempotency_key="k2")
    # a kassa payment the sandbox no longer lists (its intent left the window)
    unlisted = intent_of(core, orders[1])
    with core.db.transaction() as s:
        s.execute(
            text("UPDATE mock_intents SET status = 'canceled' WHERE id = :i"), {"i": canceled}
        )
        s.execute(
            text("UPDATE mock_intents SET created_at = :old WHERE id = :i"),
            {"old": "2001-01-01 00:00:00", "i": unlisted},
        )

    found = {(f.subject, f.detail) for f in core.reconciliation.run()}
    payment = {o: pid for o, pid in _payments(core)}
    assert found == {
        (payment[orders[5]], f"succeeded in kassa, but canceled at mock ({canceled})"),
        (stray.id, "mock received 1234 EUR, but the payment is unknown to kassa"),
        (payment[orders[1]], f"succeeded in kassa, but mock lists no intent {unlisted}"),
    }
    # the same as one page would find
    whole = Kassa(core.settings.model_copy(update={"check_page_size": 100}), clock=core.clock)
    try:
        assert {(f.subject, f.detail) for f in whole.reconciliation.run()} == found
    finally:
        whole.close()


def _payments(core: Kassa) -> list[tuple[str, str]]:
    with core.db.transaction(read_only=True) as s:
        return [(str(o), str(p)) for o, p in s.execute(text("SELECT order_id, id FROM payments"))]


def test_each_provider_page_is_compared_before_the_next_is_fetched(small_pages: Kassa) -> None:
    core = small_pages
    busy(core)
    reads: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM mock_intents" in statement:
            reads.append("sandbox page")
        elif "FROM payments" in statement:
            reads.append("kassa")

    event.listen(core.db.engine, "before_cursor_execute", record)
    try:
        assert core.reconciliation.run() == []
    finally:
        event.remove(core.db.engine, "before_cursor_execute", record)
    pages = reads.count("sandbox page")
    # 7 intents in pages of 2: four pages (the last one short ends the listing)
    assert pages == -(-ORDERS // PAGE)
    # never two provider pages in a row: each was compared (kassa's rows it names, read
    # by id) before the next was fetched, so one page at a time is in memory
    assert all((a, b) != ("sandbox page", "sandbox page") for a, b in pairwise(reads)), reads
    assert reads.index("sandbox page") < reads.index("kassa", reads.index("sandbox page"))


def test_marks_hold_one_bit_per_record() -> None:
    marks = _Marks(1_000)
    for key in (1_000, 1_007, 1_008, 250_000):
        marks.add(key)
    marks.add(5)  # older than the window: not kept, never asked about
    assert [k in marks for k in (1_000, 1_007, 1_008, 250_000)] == [True] * 4
    assert [k in marks for k in (5, 999, 1_001, 1_009, 249_999, 10**9)] == [False] * 6
    assert len(marks._bits) == (250_000 - 1_000) // 8 + 1  # ~31 KB for 249,000 keys
    assert 5 not in _Marks(None)


@pytest.fixture
def fresh_stripe() -> Iterator[FakeStripe]:
    yield from start_fake_stripe()  # its own server: no other test's objects in its lists


def test_stripe_is_listed_page_by_page_through_the_sdk(
    database_url: str, fresh_stripe: FakeStripe, clock: FakeClock, sleeps: Sleeps
) -> None:
    settings = Settings(
        database_url=database_url,
        stripe_secret_key="sk_test_kassa",
        stripe_api_base=fresh_stripe.url,
        stripe_timeout_s=5,
        check_page_size=PAGE,
    )
    core = Kassa(settings, clock=clock, sleep=sleeps)
    try:
        system = RequestContext.system("test")
        core.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR"))
        for _ in range(5):
            placed = core.orders.create(
                system, NewOrder("EUR", [LineRequest("MUG", 1)], email="s@example.com")
            )
            paid = core.payments.pay(
                system, placed.id, provider="stripe", payment_method="pm_card_visa"
            )
            assert paid.status == "succeeded"
        fresh_stripe.recorder.clear()
        assert core.reconciliation.run() == []
        listed = [
            r.path
            for r in fresh_stripe.recorder.requests
            if r.method == "GET" and r.path.startswith("/v1/payment_intents")
        ]
        assert len(listed) == 3, listed  # 5 intents, 2 a page
        assert all(f"limit={PAGE}" in path for path in listed)
        assert all("starting_after=" in path for path in listed[1:])
    finally:
        core.close()


def test_a_failure_on_a_later_stripe_page_is_a_provider_error() -> None:
    """The SDK fetches the next page while it iterates: an error there must reach the check
    as the provider's failure (reported, nothing resolved), not as a crash."""
    from datetime import UTC, datetime

    import stripe

    from kassa.providers.base import ProviderError
    from kassa.providers.stripe.gateway import StripeGateway

    class Page:
        def auto_paging_iter(self) -> Iterator[Any]:
            yield {"id": "pi_1", "created": 2_000_000_000}
            raise stripe.APIConnectionError("connection reset on page 2")

    gateway = StripeGateway("sk_test_x")
    records = gateway._newest_first(lambda **_: Page(), datetime(2020, 1, 1, tzinfo=UTC), PAGE)
    assert next(records) == {"id": "pi_1", "created": 2_000_000_000}
    with pytest.raises(ProviderError, match="connection reset on page 2"):
        next(records)
