"""`kassa check`: clean on a healthy shop, and finds each seeded inconsistency.

Both databases. The seeded faults are written behind kassa's back with plain SQL (or
straight at the provider), the way a bug, a manual fix or a lost webhook would leave them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from kassa.bootstrap import Kassa
from kassa.cli import app as cli
from kassa.config import Settings
from kassa.providers.base import IntentRequest
from kassa.services.catalogue import NewProduct
from kassa.services.checks import Finding
from kassa.services.context import RequestContext
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys, Sleeps
from tests.stripe_fake import FakeStripe, start_fake_stripe

STUCK_S = 900


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    kassa.catalogue.create(system, NewProduct("LAMP", "Lamp", 2500, "EUR", stock=5))
    return kassa


def post(client: TestClient, keys: Keys, path: str, body: dict[str, Any], role: str = "ops") -> Any:
    r = client.post(path, json=body, headers=keys.headers(role))
    assert r.status_code in (200, 201), r.text
    return r.json()


def paid_order(client: TestClient, keys: Keys, customer: str | None = None, **pay: Any) -> Any:
    buyer = {"customer": customer} if customer else {"email": "b@example.com"}
    return builders.paid_order(client, keys, "ops", lines=[("MUG", 2)], payment=pay, **buyer)


def busy_shop(shop: Kassa, client: TestClient, keys: Keys) -> dict[str, str]:
    """A bit of everything: card and wallet payments, partial, full and wallet refunds,
    a top-up, an adjustment, limited stock sold, documents issued."""
    customer = post(client, keys, "/v1/customers", {"email": "w@example.com"})["id"]
    post(
        client,
        keys,
        f"/v1/customers/{customer}/wallet/top-ups",
        {"amount": 5000, "currency": "EUR", "payment_method": "pm_card_visa"},
    )
    first = paid_order(client, keys)
    post(client, keys, f"/v1/orders/{first['id']}/refunds", {"amount": 300})
    second = paid_order(client, keys, customer)
    post(client, keys, f"/v1/orders/{second['id']}/refunds", {"destination": "wallet"})
    third = paid_order(client, keys, customer, provider="wallet")
    post(client, keys, f"/v1/orders/{third['id']}/refunds", {"amount": 500})
    post(
        client,
        keys,
        f"/v1/customers/{customer}/wallet/adjust",
        {"currency": "EUR", "balance": -700, "reason": "goodwill reversed"},
        role="admin",
    )
    lamp = post(
        client,
        keys,
        "/v1/orders",
        {"email": "l@example.com", "currency": "EUR", "lines": [{"sku": "LAMP", "quantity": 5}]},
    )
    post(client, keys, f"/v1/orders/{lamp['id']}/payments", {"payment_method": "pm_card_visa"})
    Worker(shop, name="w").drain()
    return {"customer": customer, "first": first["id"], "second": second["id"]}


def checks_of(findings: list[Finding]) -> set[str]:
    return {f.check for f in findings}


def run_cli(monkeypatch: pytest.MonkeyPatch, database_url: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("KASSA_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["check", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_healthy_shop_is_clean(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    clock: FakeClock,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy_shop(shop, client, keys)
    assert shop.reconciliation.run() == []
    clock.advance(STUCK_S * 4)  # nothing is waiting for the worker either
    assert shop.reconciliation.run() == []
    code, out, err = run_cli(monkeypatch, database_url, "--fail-on-issues")
    assert (code, out) == (0, "open=0 resolved=0\n"), (out, err)
    assert "0 issue(s) found" in err and "provider_records: ok" in err


def test_an_order_whose_amount_paid_disagrees_with_its_payments(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = busy_shop(shop, client, keys)
    with shop.db.transaction() as s:
        s.execute(
            text("UPDATE orders SET amount_paid = amount_paid + 1 WHERE id = :id"),
            {"id": ids["first"]},
        )
    findings = shop.reconciliation.run()
    assert [(f.check, f.subject) for f in findings] == [("order_payments", ids["first"])]
    assert "amount_paid is 2001" in findings[0].detail
    code, out, _ = run_cli(monkeypatch, database_url, "--fail-on-issues")
    assert code == 1 and f"order_payments  {ids['first']}" in out
    code, _, _ = run_cli(monkeypatch, database_url)  # reporting only: exit 0
    assert code == 0


def test_refunds_beyond_what_was_paid(shop: Kassa, client: TestClient, keys: Keys) -> None:
    ids = busy_shop(shop, client, keys)
    with shop.db.transaction() as s:  # a refund row kassa never wrote
        s.execute(
            text(
                "INSERT INTO refunds (id, order_id, amount, currency, status, destination, "
                "origin, created_at) VALUES ('re_forged', :o, 5000, 'EUR', 'succeeded', "
                "'original', 'kassa', CURRENT_TIMESTAMP)"
            ),
            {"o": ids["first"]},
        )
    findings = shop.reconciliation.run(with_providers=False)
    assert {(f.check, f.subject) for f in findings} == {("order_refunds", ids["first"])}
    details = " | ".join(f.detail for f in findings)
    assert "exceeds paid 2000" in details and "sum to 5300" in details


def test_a_wallet_balance_that_is_not_its_ledger(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    ids = busy_shop(shop, client, keys)
    with shop.db.transaction() as s:
        s.execute(text("UPDATE wallet_balances SET balance = balance + 5"))
    findings = shop.reconciliation.run()
    assert [(f.check, f.subject) for f in findings] == [("wallet_ledger", f"{ids['customer']}/EUR")]
    assert "balance is -695 but its ledger sums to -700" in findings[0].detail


def test_negative_stock(shop: Kassa, client: TestClient, keys: Keys, is_postgres: bool) -> None:
    busy_shop(shop, client, keys)
    # The schema itself refuses negative stock; switch that guard off to seed the fault.
    with shop.db.transaction() as s:
        if is_postgres:
            s.execute(text("ALTER TABLE products DROP CONSTRAINT ck_products_stock_non_negative"))
        else:
            s.execute(text("PRAGMA ignore_check_constraints = ON"))
        s.execute(text("UPDATE products SET stock = -2 WHERE sku = 'LAMP'"))
    try:
        findings = shop.reconciliation.run()
        assert [(f.check, f.detail) for f in findings] == [("stock", "stock is -2 (below zero)")]
    finally:
        with shop.db.transaction() as s:
            s.execute(text("UPDATE products SET stock = 0 WHERE sku = 'LAMP'"))
            if is_postgres:
                s.execute(
                    text(
                        "ALTER TABLE products ADD CONSTRAINT ck_products_stock_non_negative "
                        "CHECK (stock IS NULL OR stock >= 0)"
                    )
                )


def test_document_number_gaps_and_strays(shop: Kassa, client: TestClient, keys: Keys) -> None:
    busy_shop(shop, client, keys)
    unpaid = post(
        client,
        keys,
        "/v1/orders",
        {"email": "u@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]},
    )
    with shop.db.transaction() as s:
        # a number taken without its document (a gap) ...
        s.execute(text("UPDATE document_counters SET last_number = last_number + 1"))
        year = s.execute(text("SELECT year FROM document_counters")).scalars().first()
        # ... and a document numbered past its counter
        s.execute(
            text(
                "INSERT INTO documents (id, kind, series, year, sequence, number, order_id, "
                "invoiced_order_id, currency, total, tax, content, issued_at) "
                "VALUES ('inv_stray', 'invoice', 'INV', :year, 99, :number, :o, :o, 'EUR', "
                "0, 0, '{}', CURRENT_TIMESTAMP)"
            ),
            {"number": f"INV-{year}-000099", "year": year, "o": unpaid["id"]},
        )
    found = {(f.subject, f.detail) for f in shop.reconciliation.run()}
    assert (f"INV-{year}", "gap: 5") in found  # 4 invoices issued, counter moved to 5
    assert (f"CN-{year}", "gap: 4") in found  # 3 credit notes issued
    assert (f"INV-{year}", "numbers beyond the counter: 99") in found


def test_stuck_payments_and_documents_the_worker_never_issued(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order = post(
        client,
        keys,
        "/v1/orders",
        {"email": "s@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]},
    )
    browser = post(client, keys, f"/v1/orders/{order['id']}/payments", {})
    with shop.db.transaction() as s:  # an outcome kassa never learnt
        s.execute(
            text("UPDATE payments SET status = 'processing' WHERE id = :id"), {"id": browser["id"]}
        )
    with builders.invoices_withheld(shop):  # its invoice is never issued
        paid = paid_order(client, keys)
    unsure = paid_order(client, keys, payment_method="pm_card_visa|ok,ok,api_error,api_error")
    pending = post(client, keys, f"/v1/orders/{unsure['id']}/refunds", {"amount": 100})
    assert pending["status"] == "pending"  # the provider's answer is unknown
    assert shop.reconciliation.run() == []  # not yet late
    clock.advance(STUCK_S + 1)
    found = {(f.check, f.subject) for f in shop.reconciliation.run()}
    assert found == {
        ("stuck_payments", browser["id"]),
        ("stuck_payments", pending["id"]),
        ("missing_documents", paid["id"]),
    }
    assert checks_of(shop.reconciliation.run(stuck_after_s=10 * STUCK_S)) == set()


def test_kassa_and_the_mock_provider_disagree(shop: Kassa, client: TestClient, keys: Keys) -> None:
    ids = busy_shop(shop, client, keys)
    # money taken at the provider that kassa never recorded (a lost request, say)
    intent = shop.mock.create_intent(
        IntentRequest(1234, "EUR", "pay_unknown", "pm_card_visa"), idempotency_key="k1"
    )
    shop.mock.confirm_intent(intent.id, idempotency_key="k2")
    # a refund made at the provider's dashboard, whose webhook never arrived
    with shop.db.transaction(read_only=True) as s:
        first_intent = s.execute(
            text(
                "SELECT provider_payment_id FROM payments WHERE order_id = :o "
                "AND status = 'succeeded'"
            ),
            {"o": ids["second"]},
        ).scalar_one()
    outside = shop.mock.refund(first_intent, 100, idempotency_key="k3", reference="outside")
    # and a payment the provider says failed, which kassa holds as succeeded
    with shop.db.transaction() as s:
        s.execute(
            text(
                "UPDATE mock_intents SET status = 'canceled' WHERE id = (SELECT "
                "provider_payment_id FROM payments WHERE order_id = :o AND provider = 'mock')"
            ),
            {"o": ids["first"]},
        )
    findings = shop.reconciliation.run()
    assert checks_of(findings) == {"provider_records"}
    by_subject = {f.subject: f.detail for f in findings}
    assert "received 1234 EUR, but the payment is unknown to kassa" in by_subject[intent.id]
    assert "refunded 100 EUR, but the refund is unknown to kassa" in by_subject[outside.id]
    assert any("but canceled at mock" in detail for detail in by_subject.values())
    assert len(findings) == 3
    assert shop.reconciliation.run(with_providers=False) == []


@pytest.fixture
def fresh_stripe() -> Iterator[FakeStripe]:
    yield from start_fake_stripe()  # its own server: no other test's objects in its lists


def test_kassa_and_stripe_disagree_listed_through_the_sdk(
    database_url: str, fresh_stripe: FakeStripe, clock: FakeClock, sleeps: Sleeps
) -> None:
    settings = Settings(
        database_url=database_url,
        stripe_secret_key="sk_test_kassa",
        stripe_api_base=fresh_stripe.url,
        stripe_timeout_s=5,
    )
    core = Kassa(settings, clock=clock, sleep=sleeps)
    try:
        system = RequestContext.system("test")
        core.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR"))
        from kassa.services.orders import LineRequest, NewOrder

        order = core.orders.create(
            system, NewOrder("EUR", [LineRequest("MUG", 1)], email="s@example.com")
        )
        payment = core.payments.pay(
            system, order.id, provider="stripe", payment_method="pm_card_visa"
        )
        assert payment.status == "succeeded"
        core.refunds.create(system, order.id, amount=450)
        assert core.reconciliation.run() == []

        stripe_gateway = core.providers.get("stripe")
        stray = stripe_gateway.create_intent(
            IntentRequest(999, "EUR", "pay_elsewhere", "pm_card_visa"), idempotency_key="x1"
        )
        stray = stripe_gateway.confirm_intent(stray.id, idempotency_key="x2")
        assert stray.status.value == "succeeded"
        findings = core.reconciliation.run()
        assert [(f.check, f.subject) for f in findings] == [("provider_records", stray.id)]
        assert "stripe received 999 EUR" in findings[0].detail
    finally:
        core.close()
