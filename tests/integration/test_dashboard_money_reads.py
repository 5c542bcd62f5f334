"""The two service additions the dashboard's money pages stand on, on both databases:
`orders.numbers_of` (every order number a page of payments links to, in one statement,
only the orders the caller may see) and `wallets.adjust(if_balance=)` (an adjustment that
was confirmed against a balance the wallet no longer holds changes nothing)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.storage.tables import AuditRecord, WalletEntry
from tests.builders import customer, make_product, order
from tests.conftest import Keys
from tests.support import statements_sent


def test_numbers_of_maps_the_ids_to_numbers_in_one_statement(
    kassa: Kassa, client: TestClient, keys: Keys, system: RequestContext
) -> None:
    make_product(client, keys)
    placed = [order(client, keys) for _ in range(5)]
    ids = [str(p["id"]) for p in placed]
    with statements_sent(kassa) as seen:
        numbers = kassa.orders.numbers_of(system, [*ids, ids[0], "ord_unknown"])
    assert numbers == {str(p["id"]): str(p["number"]) for p in placed}
    assert len([s for s in seen if s.lstrip().startswith("SELECT")]) == 1, seen  # BEGIN aside
    with statements_sent(kassa) as seen:
        assert kassa.orders.numbers_of(system, []) == {}
    assert seen == []  # nothing asked, nothing read


def test_numbers_of_gives_a_storefront_only_its_own_orders(
    kassa: Kassa, client: TestClient, keys: Keys
) -> None:
    make_product(client, keys)
    own = order(client, keys, "storefront")
    other = order(client, keys, "other_storefront")
    storefront = RequestContext(keys.ids["storefront"], Role.STOREFRONT)
    numbers = kassa.orders.numbers_of(storefront, [str(own["id"]), str(other["id"])])
    assert numbers == {str(own["id"]): str(own["number"])}


def _entries_and_audits(kassa: Kassa) -> tuple[int, int]:
    with kassa.db.transaction() as session:
        entries = session.scalar(select(func.count()).select_from(WalletEntry))
        audits = session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "wallet.adjusted")
        )
    return int(entries or 0), int(audits or 0)


def test_an_adjustment_confirmed_against_the_balance_held_is_made(
    kassa: Kassa, client: TestClient, keys: Keys, system: RequestContext
) -> None:
    cus = customer(client, keys)
    first = kassa.wallets.adjust(system, cus, "EUR", 1500, "goodwill", if_balance=0)
    assert (first.prev_balance, first.new_balance) == (0, 1500)
    second = kassa.wallets.adjust(system, cus, "eur", -200, "debt", if_balance=1500)
    assert (second.prev_balance, second.new_balance) == (1500, -200)
    assert kassa.wallets.view(cus).balances == {"EUR": -200}


@pytest.mark.parametrize("seen", [0, 1499, 1501])
def test_an_adjustment_confirmed_against_another_balance_changes_nothing(
    kassa: Kassa, client: TestClient, keys: Keys, system: RequestContext, seen: int
) -> None:
    cus = customer(client, keys)
    kassa.wallets.adjust(system, cus, "EUR", 1500, "goodwill")
    before = _entries_and_audits(kassa)
    with pytest.raises(DomainError) as refused:
        kassa.wallets.adjust(system, cus, "EUR", 100, "again", if_balance=seen)
    assert refused.value.code == "wallet_balance_changed"
    assert refused.value.kind is ErrorKind.CONFLICT
    assert kassa.wallets.view(cus).balances == {"EUR": 1500}
    assert _entries_and_audits(kassa) == before


def test_a_guarded_adjustment_of_a_currency_the_wallet_never_held_starts_from_zero(
    kassa: Kassa, client: TestClient, keys: Keys, system: RequestContext
) -> None:
    cus = customer(client, keys)
    with pytest.raises(DomainError):
        kassa.wallets.adjust(system, cus, "JPY", 700, "new", if_balance=5)
    assert kassa.wallets.view(cus).balances == {}  # the refused one left no empty wallet
    made = kassa.wallets.adjust(system, cus, "JPY", 700, "new", if_balance=0)
    assert (made.prev_balance, made.new_balance, made.currency) == (0, 700, "JPY")
