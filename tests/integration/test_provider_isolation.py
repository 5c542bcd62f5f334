"""Issue 8, findings 1 and 2: a provider's events touch only that provider's payments, and
the sandbox takes payments beside Stripe only when KASSA_PROVIDERS names it.

Stripe runs as localstripe behind the official SDK; every event is signed for real with
the secret of the provider it is posted to (the sandbox's default secret is public).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.webhooks import APPLY_EVENT
from kassa.storage.tables import Job, ProviderEvent, Refund
from kassa.worker import Worker
from tests.conftest import FakeClock, Keys, Sleeps, make_keys
from tests.events import MOCK_SECRET, charge_refunded, dispute, event, intent, signed
from tests.stripe_fake import FakeStripe, start_fake_stripe

STRIPE_KEY = "sk_test_isolation"
STRIPE_WHSEC = "whsec_stripe_isolation"


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    yield from start_fake_stripe()


def _kassa(
    database_url: str, fake: FakeStripe, clock: FakeClock, sleeps: Sleeps, **extra: Any
) -> Iterator[Kassa]:
    settings = Settings(
        database_url=database_url,
        stripe_secret_key=STRIPE_KEY,
        stripe_api_base=fake.url,
        stripe_webhook_secrets=(STRIPE_WHSEC,),
        stripe_timeout_s=5,
        **extra,
    )
    core = Kassa(settings, clock=clock, sleep=sleeps)
    core.catalogue.create(RequestContext.system("t"), NewProduct("MUG", "Mug", 1450, "EUR"))
    yield core
    core.close()


@pytest.fixture
def both(
    database_url: str, fake_stripe: FakeStripe, clock: FakeClock, sleeps: Sleeps
) -> Iterator[Kassa]:
    """Stripe with the sandbox named beside it: both webhook routes exist."""
    yield from _kassa(
        database_url, fake_stripe, clock, sleeps, providers=("stripe", "mock", "wallet")
    )


@pytest.fixture
def stripe_only(
    database_url: str, fake_stripe: FakeStripe, clock: FakeClock, sleeps: Sleeps
) -> Iterator[Kassa]:
    """Stripe configured and KASSA_PROVIDERS left at its default (stripe,wallet)."""
    yield from _kassa(database_url, fake_stripe, clock, sleeps)


def _order(api: TestClient, keys: Keys) -> dict[str, Any]:
    r = api.post(
        "/v1/orders",
        json={
            "email": "i@example.com",
            "currency": "EUR",
            "lines": [{"sku": "MUG", "quantity": 1}],
        },
        headers=keys.headers("storefront"),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _pay(api: TestClient, keys: Keys, order_id: str, provider: str, **body: Any) -> Any:
    return api.post(
        f"/v1/orders/{order_id}/payments",
        json={"provider": provider, **body},
        headers=keys.headers("storefront"),
    )


def _post_event(
    api: TestClient, clock: FakeClock, provider: str, secret: str, kind: str, obj: dict[str, Any]
) -> None:
    body = event(f"evt_{provider}_{kind}_{obj['id']}", kind, obj)
    r = api.post(
        f"/v1/webhooks/{provider}",
        content=body,
        headers=signed(body, int(clock.now.timestamp()), secret),
    )
    assert r.status_code == 200, r.text


def _apply_all(core: Kassa) -> None:
    Worker(core, name="t").drain()


def _order_state(api: TestClient, keys: Keys, order_id: str) -> tuple[str, int, int, bool]:
    o = api.get(f"/v1/orders/{order_id}", headers=keys.headers("admin")).json()
    return o["status"], o["amount_paid"], o["amount_refunded"], o.get("disputed", False)


def test_a_sandbox_event_cannot_settle_a_stripe_payment(
    both: Kassa, clock: FakeClock, fake_stripe: FakeStripe
) -> None:
    keys = make_keys(both)
    with TestClient(create_app(both)) as api:
        order = _order(api, keys)
        stripe_pay = _pay(api, keys, order["id"], "stripe").json()  # browser flow: not paid
        assert stripe_pay["status"] == "requires_action"
        pi = stripe_pay["provider_payment_id"]
        # Signed with the sandbox's public secret, naming the Stripe payment two ways.
        for forged_id in (pi, "pi_forged"):
            _post_event(
                api,
                clock,
                "mock",
                MOCK_SECRET,
                "payment_intent.succeeded",
                intent(forged_id, stripe_pay["id"], order["total"]),
            )
        _apply_all(both)
        assert _order_state(api, keys, order["id"]) == ("pending", 0, 0, False)
        got = api.get(f"/v1/payments/{stripe_pay['id']}", headers=keys.headers("admin")).json()
        assert got["status"] == "requires_action"
        refused = api.get("/v1/audit?limit=100", headers=keys.headers("admin")).json()["data"]
        assert any(r["action"] == "provider_event.refused" for r in refused)


def test_a_stripe_event_cannot_settle_a_sandbox_payment(both: Kassa, clock: FakeClock) -> None:
    keys = make_keys(both)
    with TestClient(create_app(both)) as api:
        order = _order(api, keys)
        mock_pay = _pay(api, keys, order["id"], "mock").json()
        assert mock_pay["status"] == "requires_action"
        _post_event(
            api,
            clock,
            "stripe",
            STRIPE_WHSEC,
            "payment_intent.succeeded",
            intent(mock_pay["provider_payment_id"], mock_pay["id"], order["total"]),
        )
        _apply_all(both)
        assert _order_state(api, keys, order["id"]) == ("pending", 0, 0, False)


def test_a_stripe_success_naming_a_settled_sandbox_payment_is_refused_not_settled(
    both: Kassa, clock: FakeClock
) -> None:
    """The acknowledgement stores the success of a payment that has succeeded already as
    applied (no job): only for this provider's payment. A Stripe event naming a sandbox
    payment's intent is not: it gets its job, and the job refuses it. (Its id is longer
    than 60 characters: before migration 0020 the refusal's audit record did not fit on
    PostgreSQL, and the job retried until it died with the refusal never recorded.)"""
    keys = make_keys(both)
    with TestClient(create_app(both)) as api:
        order = _order(api, keys)
        paid = _pay(api, keys, order["id"], "mock", payment_method="pm_card_visa").json()
        assert paid["status"] == "succeeded"
        body = intent(paid["provider_payment_id"], paid["id"], order["total"])
        _post_event(api, clock, "stripe", STRIPE_WHSEC, "payment_intent.succeeded", body)
        with both.db.transaction(read_only=True) as s:
            (applied_at,) = s.execute(
                select(ProviderEvent.applied_at).where(ProviderEvent.provider == "stripe")
            ).one()
        assert applied_at is None  # not taken for the sandbox payment's own news
        _apply_all(both)
        with both.db.transaction(read_only=True) as s:
            event_id, outcome = s.execute(
                select(ProviderEvent.event_id, ProviderEvent.outcome).where(
                    ProviderEvent.provider == "stripe"
                )
            ).one()
            jobs = s.scalars(select(Job.state).where(Job.kind == APPLY_EVENT)).all()
        assert len(event_id) > 60 and jobs == ["done"]
        assert outcome is not None and outcome.startswith("refused: ")
        audit = api.get("/v1/audit?limit=100", headers=keys.headers("admin")).json()["data"]
        assert any(r["action"] == "provider_event.refused" for r in audit)
        assert _order_state(api, keys, order["id"]) == ("paid", order["total"], 0, False)


def test_refunds_and_disputes_of_another_provider_are_refused(
    both: Kassa, clock: FakeClock
) -> None:
    """A paid sandbox order; Stripe-signed refund and dispute events name its payment."""
    keys = make_keys(both)
    with TestClient(create_app(both)) as api:
        order = _order(api, keys)
        paid = _pay(api, keys, order["id"], "mock", payment_method="pm_card_visa").json()
        assert paid["status"] == "succeeded"
        pi = paid["provider_payment_id"]
        _post_event(
            api,
            clock,
            "stripe",
            STRIPE_WHSEC,
            "charge.refunded",
            charge_refunded(pi, paid["id"], [("re_forged", order["total"])]),
        )
        _post_event(
            api,
            clock,
            "stripe",
            STRIPE_WHSEC,
            "charge.dispute.created",
            dispute(pi, paid["id"], order["total"]),
        )
        _apply_all(both)
        assert _order_state(api, keys, order["id"]) == ("paid", order["total"], 0, False)


def test_a_refund_event_cannot_settle_a_refund_of_another_payment(
    both: Kassa, clock: FakeClock
) -> None:
    """Two sandbox payments; an event about the first names the second's pending refund."""
    keys = make_keys(both)
    with TestClient(create_app(both)) as api:
        first, second = _order(api, keys), _order(api, keys)
        p1 = _pay(api, keys, first["id"], "mock", payment_method="pm_card_visa").json()
        p2 = _pay(api, keys, second["id"], "mock", payment_method="pm_card_visa").json()
        with both.db.transaction() as s:
            s.add(
                Refund(
                    id="re_pending_other",
                    order_id=second["id"],
                    payment_id=p2["id"],
                    amount=100,
                    currency="EUR",
                    status="pending",
                    destination="original",
                    origin="kassa",
                    created_at=clock.now,
                )
            )
        obj = charge_refunded(p1["provider_payment_id"], p1["id"], [])
        obj["refunds"]["data"] = [
            {
                "id": "re_x",
                "amount": 100,
                "status": "succeeded",
                "metadata": {"kassa_refund": "re_pending_other"},
            }
        ]
        _post_event(api, clock, "mock", MOCK_SECRET, "charge.refunded", obj)
        _apply_all(both)
        assert _order_state(api, keys, first["id"])[2] == 0
        assert _order_state(api, keys, second["id"])[2] == 0
        with both.db.transaction(read_only=True) as s:
            status = s.scalar(select(Refund.status).where(Refund.id == "re_pending_other"))
        assert status == "pending"


def test_the_sandbox_is_off_in_a_stripe_deployment_unless_named(stripe_only: Kassa) -> None:
    keys = make_keys(stripe_only)
    with TestClient(create_app(stripe_only)) as api:
        order = _order(api, keys)
        r = _pay(api, keys, order["id"], "mock", payment_method="pm_card_visa")
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "provider_not_enabled"
        assert _order_state(api, keys, order["id"])[0] == "pending"
        # its webhook and its own routes do not exist here
        body = event("evt_1", "payment_intent.succeeded", intent("pi_1", "pay_1", 1))
        assert (
            api.post("/v1/webhooks/mock", content=body, headers=signed(body, 0)).status_code == 404
        )
        for path in ("/v1/providers/mock/charges", "/v1/providers/mock/refunds"):
            assert api.get(path, headers=keys.headers("admin")).status_code == 404
        confirm = api.post(
            "/v1/providers/mock/intents/pi_1/confirm",
            json={"payment_method": "pm_card_visa"},
            headers=keys.headers("storefront"),
        )
        assert confirm.status_code == 404
        top_up = api.post(
            f"/v1/customers/{_customer(api, keys)}/wallet/top-ups",
            json={
                "amount": 500,
                "currency": "EUR",
                "payment_method": "pm_card_visa",
                "provider": "mock",
            },
            headers=keys.headers("storefront"),
        )
        assert top_up.status_code == 422 and top_up.json()["code"] == "provider_not_enabled"


def _customer(api: TestClient, keys: Keys) -> str:
    r = api.post(
        "/v1/customers", json={"email": "c@example.com"}, headers=keys.headers("storefront")
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_the_wallet_can_be_switched_off(kassa_factory: Any) -> None:
    core = kassa_factory(providers=("mock",))
    keys = make_keys(core)
    with TestClient(create_app(core)) as api:
        order = _order(api, keys)
        r = _pay(api, keys, order["id"], "wallet")
        assert r.status_code == 422 and r.json()["code"] == "provider_not_enabled"
        assert (
            _pay(api, keys, order["id"], "mock", payment_method="pm_card_visa").status_code == 201
        )


@pytest.fixture
def kassa_factory(database_url: str, clock: FakeClock, sleeps: Sleeps) -> Iterator[Any]:
    made: list[Kassa] = []

    def make(**extra: Any) -> Kassa:
        core = Kassa(Settings(database_url=database_url, **extra), clock=clock, sleep=sleeps)
        core.catalogue.create(RequestContext.system("t"), NewProduct("MUG", "Mug", 1450, "EUR"))
        made.append(core)
        return core

    yield make
    for core in made:
        core.close()


@pytest.mark.parametrize(
    ("raw", "stripe", "expected"),
    [
        (None, False, ("mock", "wallet")),
        (None, True, ("stripe", "wallet")),
        ("stripe,mock,wallet", True, ("stripe", "mock", "wallet")),
        (" Mock , wallet ", False, ("mock", "wallet")),
    ],
)
def test_kassa_providers_defaults(raw: str | None, stripe: bool, expected: tuple[str, ...]) -> None:
    env = {"KASSA_DATABASE_URL": "sqlite:///x.db"}
    if raw is not None:
        env["KASSA_PROVIDERS"] = raw
    if stripe:
        env["KASSA_STRIPE_SECRET_KEY"] = "sk_test_x"
    assert Settings.from_env(env).enabled_providers == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [("paypal", "unknown provider"), ("stripe,wallet", "KASSA_STRIPE_SECRET_KEY")],
)
def test_kassa_providers_mistakes_are_named(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"KASSA_DATABASE_URL": "sqlite:///x.db", "KASSA_PROVIDERS": raw})
