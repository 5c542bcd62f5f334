"""Idempotency-Key rules of the contract, including crash recovery and restarts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.domain.orders import LineRequest
from kassa.domain.roles import Role
from kassa.services import idempotency
from kassa.services.context import RequestContext
from kassa.services.idempotency import Proceed, fingerprint
from kassa.services.orders import NewOrder
from kassa.storage.tables import IdempotencyKey, Order
from tests.conftest import FakeClock, Keys

ORDER = {"email": "buyer@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 2}]}


def _catalogue(client: TestClient, keys: Keys) -> None:
    for sku, unique in (("MUG", False), ("VASE", True)):
        r = client.post(
            "/v1/products",
            json={
                "sku": sku,
                "title": sku,
                "unit_amount": 1450,
                "currency": "EUR",
                "unique": unique,
            },
            headers=keys.headers("ops"),
        )
        assert r.status_code == 201, r.text


def _order_count(kassa: Kassa) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).select_from(Order)) or 0)


def _post(client: TestClient, keys: Keys, key: str, body: object, role: str = "storefront"):
    return client.post(
        "/v1/orders", json=body, headers=keys.headers(role, **{"Idempotency-Key": key})
    )


def test_same_key_same_body_replays_byte_for_byte(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    _catalogue(client, keys)
    first = _post(client, keys, "k-1", ORDER)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = _post(client, keys, "k-1", ORDER)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert _order_count(kassa) == 1


def test_json_key_order_and_whitespace_do_not_make_a_different_request(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    _catalogue(client, keys)
    first = _post(client, keys, "k-2", ORDER)
    reordered = (
        '{"lines":[{"quantity":2,"sku":"MUG"}],  "currency":"EUR","email":"buyer@example.com"}'
    )
    again = client.post(
        "/v1/orders",
        content=reordered,
        headers=keys.headers(
            "storefront", **{"Idempotency-Key": "k-2", "Content-Type": "application/json"}
        ),
    )
    assert again.content == first.content
    assert _order_count(kassa) == 1


def test_same_key_different_body_is_422(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    _catalogue(client, keys)
    assert _post(client, keys, "k-3", ORDER).status_code == 201
    other = _post(client, keys, "k-3", {**ORDER, "email": "someone@example.com"})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    # same key on another route is a different request too
    other_route = client.post(
        "/v1/customers",
        json={"email": "x@example.com"},
        headers=keys.headers("storefront", **{"Idempotency-Key": "k-3"}),
    )
    assert other_route.json()["code"] == "idempotency_key_reused"
    assert _order_count(kassa) == 1


def test_keys_are_scoped_to_the_api_key(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    _catalogue(client, keys)
    a = _post(client, keys, "shared", ORDER, role="storefront")
    b = _post(client, keys, "shared", ORDER, role="other_storefront")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers
    assert _order_count(kassa) == 2


def test_key_while_first_request_runs_is_409(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    _catalogue(client, keys)
    body = client.build_request("POST", "/v1/orders", json=ORDER).content
    # The first request holds the key (as a still-running request would).
    decision = kassa.idempotency.begin(
        keys.ids["storefront"], "busy", fingerprint("POST", "/v1/orders", body)
    )
    assert isinstance(decision, Proceed)
    r = _post(client, keys, "busy", ORDER)
    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_key_in_use"
    assert _order_count(kassa) == 0


def test_crash_after_effect_is_answered_from_the_resource(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    """The process died after the order committed but before the answer was stored."""
    _catalogue(client, keys)
    body = client.build_request("POST", "/v1/orders", json=ORDER).content
    decision = kassa.idempotency.begin(
        keys.ids["storefront"], "crash", fingerprint("POST", "/v1/orders", body)
    )
    assert isinstance(decision, Proceed)
    ctx = RequestContext(keys.ids["storefront"], Role.STOREFRONT)
    # A claim committed on its own, then the effect (as a request whose effect is not
    # local commits them: see the payment tests); then the process died.
    with kassa.idempotency.running(kassa.idempotency.adopt(decision.pk)):
        created = kassa.orders.create(
            ctx, NewOrder(currency="EUR", lines=[LineRequest("MUG", 2)], email="buyer@example.com")
        )
    # still within the lock timeout: the key is in use
    assert _post(client, keys, "crash", ORDER).status_code == 409
    clock.advance(kassa.settings.idempotency_lock_timeout_s + 1)
    recovered = _post(client, keys, "crash", ORDER)
    assert recovered.status_code == 201
    assert recovered.json()["id"] == created.id
    assert _order_count(kassa) == 1
    replay = _post(client, keys, "crash", ORDER)
    assert replay.content == recovered.content


def test_a_local_effect_commits_with_its_answer_or_not_at_all(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    """Claim, order and answer are one transaction: a request that died after creating
    the order but before storing its answer leaves no order and no key behind, so the
    retry runs it exactly once."""
    _catalogue(client, keys)
    body = client.build_request("POST", "/v1/orders", json=ORDER).content
    claim = idempotency.Claim(
        kassa.idempotency,
        keys.ids["storefront"],
        "held",
        fingerprint("POST", "/v1/orders", body),
        local=True,
    )
    ctx = RequestContext(keys.ids["storefront"], Role.STOREFRONT)
    with kassa.idempotency.running(claim):
        kassa.orders.create(
            ctx, NewOrder(currency="EUR", lines=[LineRequest("MUG", 2)], email="buyer@example.com")
        )
        assert claim.scope.session is not None  # held open for the answer
    # the block ended without `finish`: the process "died"
    assert _order_count(kassa) == 0
    r = _post(client, keys, "held", ORDER)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    assert _order_count(kassa) == 1
    assert _post(client, keys, "held", ORDER).content == r.content


def test_crash_before_effect_runs_the_request_once(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    _catalogue(client, keys)
    body = client.build_request("POST", "/v1/orders", json=ORDER).content
    kassa.idempotency.begin(keys.ids["storefront"], "died", fingerprint("POST", "/v1/orders", body))
    clock.advance(kassa.settings.idempotency_lock_timeout_s + 1)
    r = _post(client, keys, "died", ORDER)
    assert r.status_code == 201
    assert _order_count(kassa) == 1


def test_errors_are_replayed_too(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    _catalogue(client, keys)
    vase = {**ORDER, "lines": [{"sku": "VASE", "quantity": 1}]}
    assert _post(client, keys, "v-1", vase).status_code == 201
    refused = _post(client, keys, "v-2", vase)
    assert refused.status_code == 409
    assert refused.json()["code"] == "item_unavailable"
    replay = _post(client, keys, "v-2", vase)
    assert replay.status_code == 409
    assert replay.content == refused.content
    assert replay.headers["idempotent-replayed"] == "true"


def test_keys_survive_a_restart(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    _catalogue(client, keys)
    first = _post(client, keys, "restart", ORDER)
    restarted = Kassa(kassa.settings, clock=clock)
    try:
        with TestClient(create_app(restarted)) as fresh:
            again = _post(fresh, keys, "restart", ORDER)
    finally:
        restarted.close()
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


def test_keys_are_kept_for_the_retention_then_forgotten(
    client: TestClient, keys: Keys, kassa: Kassa, clock: FakeClock
) -> None:
    _catalogue(client, keys)
    first = _post(client, keys, "old", ORDER)
    clock.advance(24 * 3600)
    assert _post(client, keys, "old", ORDER).content == first.content
    clock.advance(kassa.settings.idempotency_retention_s)
    fresh = _post(client, keys, "old", ORDER)
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]


def test_bad_keys_are_refused_without_effect(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    _catalogue(client, keys)
    r = _post(client, keys, "x" * 256, ORDER)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_idempotency_key"
    assert _post(client, keys, "x" * 255, ORDER).status_code == 201
    assert _order_count(kassa) == 1


def test_unauthenticated_request_with_key_is_401_and_stores_nothing(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    r = client.post("/v1/orders", json=ORDER, headers={"Idempotency-Key": "anon"})
    assert r.status_code == 401
    assert r.json()["code"] == "missing_api_key"


@pytest.mark.parametrize("what", ["pay", "top_up"])
def test_a_payment_claims_its_key_already_linked_to_it(
    client: TestClient, keys: Keys, kassa: Kassa, what: str
) -> None:
    """A payment's id (an order's pay, a wallet top-up) is drawn before its key is
    claimed, so the claim's INSERT names the payment and no UPDATE of the key follows;
    the payment opened is that one."""
    _catalogue(client, keys)
    if what == "pay":
        order = _post(client, keys, "order-1", ORDER).json()
        path, body = f"/v1/orders/{order['id']}/payments", {"provider": "mock"}
    else:
        made = client.post(
            "/v1/customers", json={"email": "w@example.com"}, headers=keys.headers("storefront")
        )
        assert made.status_code == 201, made.text
        path = f"/v1/customers/{made.json()['id']}/wallet/top-ups"
        body = {"amount": 500, "currency": "EUR"}
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(kassa.db.engine, "before_cursor_execute", note)
    try:
        paid = client.post(
            path,
            json={**body, "payment_method": "pm_card_visa"},
            headers=keys.headers("storefront", **{"Idempotency-Key": "pay-1"}),
        )
    finally:
        event.remove(kassa.db.engine, "before_cursor_execute", note)
    assert paid.status_code == 201, paid.text
    with kassa.db.transaction(read_only=True) as s:
        row = s.execute(
            select(IdempotencyKey.resource_type, IdempotencyKey.resource_id).where(
                IdempotencyKey.key == "pay-1"
            )
        ).one()
    assert tuple(row) == ("payment", paid.json()["id"])
    linking = [s for s in seen if s.startswith("UPDATE idempotency_keys SET resource_type")]
    assert linking == []
