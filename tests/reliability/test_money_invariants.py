"""Money invariants under random sequences of operations (Hypothesis stateful), both databases.

A `RuleBasedStateMachine` drives kassa's real services on a fresh database per example:
it creates orders (EUR and JPY, for three customers or a guest), pays them by card through
the mock provider (succeeding, declined, 3-D Secure and fault-scripted cards, the scripts
reaching into the refunds too), refunds random amounts (to the card or to the wallet, also
amounts that are not refundable), tops wallets up, pays orders from the wallet and lets an
admin set wallet balances (negative too).

After every step the invariants are read back from the database (not from the model):

- orders: 0 <= amount_refunded <= amount_paid <= total; amount_paid is the sum of the
  order's succeeded payments, amount_refunded the sum of its succeeded refunds;
- wallets: each stored balance is the sum of its ledger entries and its last entry's
  balance_after; lifetime_paid is the sum of its top-ups (so adjustments never move it);
  every top-up, wallet payment and wallet refund has exactly one matching entry;
- money is conserved: what the mock provider's own tables say it charged minus refunded,
  per currency, equals kassa's succeeded mock card payments minus succeeded card refunds
  (and charge by charge); per wallet, and so per currency, the balance equals top-ups +
  refunds to the wallet - wallet spends + the net of the admin adjustments (the audit log);
- the database agrees with a simple model of the expected amounts.

Every refusal must be the documented `DomainError` code the model predicts, and must leave
the whole database unchanged.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.money import MAX_AMOUNT
from kassa.domain.orders import LineRequest
from kassa.providers.mock.tables import MockCharge, MockRefund
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.orders import NewOrder
from kassa.services.refunds import RESUME_AFTER_S
from kassa.storage.tables import (
    AuditRecord,
    Base,
    Order,
    Payment,
    Refund,
    WalletBalance,
    WalletEntry,
)
from kassa.worker import Worker
from tests.conftest import FakeClock, _truncate_postgres

# one product per currency, unlimited stock
PRODUCTS = {"EUR": ("MUG", 1250), "JPY": ("TEA", 700)}
CURRENCIES = sorted(PRODUCTS)
CUSTOMERS = 3

# card -> the payment statuses it may end in (a transient fault recovers by one retry,
# unless the gateway has been marked degraded meanwhile: then no retry, so it fails)
CARDS: dict[str, set[str]] = {
    "pm_card_visa": {"succeeded"},
    "4242424242424242": {"succeeded"},
    "pm_card_chargeDeclined": {"failed"},
    "pm_card_visa_chargeDeclinedInsufficientFunds": {"failed"},
    "pm_card_authenticationRequired": {"requires_action"},
    "pm_card_visa|api_error": {"succeeded", "failed"},
    "pm_card_visa|ok,rate_limit": {"succeeded", "failed"},
    "pm_card_visa|timeout_after_send": {"succeeded"},
    "pm_card_visa|ok,timeout_after_send": {"succeeded"},
    "pm_card_visa|api_error,api_error": {"failed"},
    "pm_card_visa|ok,connection_error,server_error": {"failed"},
    # faults that reach the refunds (calls 1-2 are create and confirm)
    "pm_card_visa|ok,ok,api_error": {"succeeded"},
    "pm_card_visa|ok,ok,timeout_after_send": {"succeeded"},
    "pm_card_visa|ok,ok,api_error,api_error": {"succeeded"},
    "pm_card_visa|ok,ok,ok,server_error,timeout_before_send": {"succeeded"},
    # the refund's answer is lost (the look-up finds the refund), or the provider keeps
    # failing: the part stays pending until the worker's resume job asks again (found by
    # this test: it used to be failed)
    "pm_card_visa|ok,ok,timeout_after_send,api_error": {"succeeded"},
    "pm_card_visa|ok,ok,timeout_after_send,timeout_after_send": {"succeeded"},
}
LOST_REFUND_ANSWER = "pm_card_visa|ok,ok,timeout_after_send,api_error"
NO_REFUND_ANSWER = "pm_card_visa|ok,ok,api_error,api_error"
STATUSES = CARDS

WALLET = "wallet"
# how an order is paid: a card, or its customer's wallet (weighted up: it needs a balance)
PAY_WITH = [*sorted(CARDS), *[WALLET] * 6]

# a refund's amount: None (all that is left), relative to what is left, or any number
REFUND_AMOUNTS = st.one_of(
    st.none(),
    st.sampled_from(["rest", "rest+1", "half", "zero"]),
    st.integers(-100, 6000),
)

KIND_OF = {
    "order_not_paid": ErrorKind.CONFLICT,
    "order_already_refunded": ErrorKind.CONFLICT,
    "order_not_pending": ErrorKind.CONFLICT,
    "payment_in_progress": ErrorKind.CONFLICT,
    "amount_exceeds_refundable": ErrorKind.INVALID,
    "insufficient_wallet_balance": ErrorKind.INVALID,
    "wallet_needs_customer": ErrorKind.INVALID,
    "validation_error": ErrorKind.INVALID,
}


@dataclass
class OrderModel:
    id: str
    customer: str | None
    currency: str
    total: int
    status: str = "pending"  # pending | paid
    paid: int = 0
    refunded: int = 0
    paid_by: str | None = None  # the succeeded payment's provider: mock | wallet
    scripted: bool = False  # paid by a card with a fault script (its refunds may fail)
    in_flight: bool = False  # a 3-D Secure payment waits for the cardholder
    pending: dict[str, int] = field(default_factory=dict)  # refunds with no answer yet


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """`common`, and about one time in ten `rare` (st.one_of would pick each half the time;
    the draw avoids 0 and 9, which Hypothesis favours)."""
    return st.tuples(st.integers(0, 9), common, rare).map(lambda t: t[2] if t[0] == 5 else t[1])


def expect_refusal(code: str, call: Callable[[], Any]) -> None:
    with pytest.raises(DomainError) as info:
        call()
    assert info.value.code == code, (info.value.code, info.value.detail, code)
    assert info.value.kind is KIND_OF[code], (code, info.value.kind)


class MoneyMachine(RuleBasedStateMachine):
    """Abstract: a subclass sets `fresh_url`, a generator function that yields the URL of
    an empty, migrated database for one example (and cleans up after it), and `tally`."""

    fresh_url: Callable[[], Iterator[str]]
    tally: Counter[str]

    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self._url_cm = contextmanager(type(self).fresh_url)()
        url = self._url_cm.__enter__()
        self.clock = FakeClock()
        self.kassa = Kassa(Settings(database_url=url), clock=self.clock, sleep=lambda _s: None)
        self.ctx = RequestContext.system("hypothesis")
        for currency, (sku, price) in PRODUCTS.items():
            self.kassa.catalogue.create(self.ctx, NewProduct(sku, sku, price, currency))
        self.customers = [
            self.kassa.customers.create(self.ctx, f"c{i}@example.com", None).id
            for i in range(CUSTOMERS)
        ]
        self.model: dict[str, OrderModel] = {}
        self.wallet: dict[tuple[str, str], int] = defaultdict(int)
        self.lifetime: dict[tuple[str, str], int] = defaultdict(int)
        self.adjusted: dict[tuple[str, str], int] = defaultdict(int)  # net of adjustments
        self.tally = type(self).tally  # what the run did, for the coverage check

    def teardown(self) -> None:
        self.kassa.close()
        self._url_cm.__exit__(None, None, None)

    # -- helpers -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: a refusal must not change a single one."""
        with self.kassa.db.transaction(read_only=True) as s:
            return {
                t.name: sorted(
                    (tuple(map(repr, row)) for row in s.execute(select(t)).all()),
                )
                for t in Base.metadata.sorted_tables
            }

    def refused(self, code: str, call: Callable[[], Any]) -> None:
        before = self.snapshot()
        expect_refusal(code, call)
        after = self.snapshot()
        changed = [name for name in before if before[name] != after[name]]
        assert not changed, f"refused with {code} but changed {changed}"
        self.tally[f"refused {code}"] += 1

    # -- a random opening, so every example has wallets with money and paid orders --------

    @initialize(
        balances=st.lists(
            st.sampled_from([0, 3_000, 6_000, 15_000, 30_000]), min_size=6, max_size=6
        )
    )
    def opening_balances(self, balances: list[int]) -> None:
        wallets = itertools.product(range(CUSTOMERS), CURRENCIES)
        for (who, currency), balance in zip(wallets, balances, strict=True):
            self.adjust(who, currency, balance)

    @initialize(
        target=orders,
        opening=st.lists(
            st.tuples(
                st.integers(0, CUSTOMERS),
                st.sampled_from(CURRENCIES),
                st.integers(1, 4),
                st.sampled_from(PAY_WITH),
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def opening_orders(self, opening: list[tuple[int, str, int, str]]) -> Any:
        return multiple(*(self.create_order(*spec) for spec in opening))

    # -- rules ---------------------------------------------------------------------------

    @rule(
        target=orders,
        who=st.integers(0, CUSTOMERS),  # CUSTOMERS = a guest
        currency=st.sampled_from(CURRENCIES),
        quantity=st.integers(1, 4),
        pay_with=st.sampled_from([None, *PAY_WITH]),
    )
    def create_order(self, who: int, currency: str, quantity: int, pay_with: str | None) -> str:
        cus = self.customers[who] if who < CUSTOMERS else None
        sku, price = PRODUCTS[currency]
        view = self.kassa.orders.create(
            self.ctx,
            NewOrder(
                currency=currency.lower() if quantity == 3 else currency,
                lines=[LineRequest(sku, quantity)],
                customer=cus,
                email=None if cus else "guest@example.com",
            ),
        )
        assert (view.total, view.currency, view.status) == (price * quantity, currency, "pending")
        self.model[view.id] = OrderModel(view.id, cus, currency, view.total)
        if pay_with is not None:  # most orders are paid straight away
            self._pay(view.id, pay_with)
        return view.id

    @rule(order=orders, method=st.sampled_from(PAY_WITH))
    def pay(self, order: str, method: str) -> None:
        self._pay(order, method)

    def _pay(self, order: str, method: str) -> None:
        m = self.model[order]

        def call() -> Any:
            if method == WALLET:
                return self.kassa.payments.pay(self.ctx, order, provider=WALLET)
            return self.kassa.payments.pay(self.ctx, order, payment_method=method)

        wallet = (m.customer or "", m.currency)
        if m.status != "pending":
            return self.refused("order_not_pending", call)
        if m.in_flight:
            return self.refused("payment_in_progress", call)
        if method == WALLET and m.customer is None:
            return self.refused("wallet_needs_customer", call)
        if method == WALLET and self.wallet[wallet] < m.total:
            return self.refused("insufficient_wallet_balance", call)
        p = call()
        assert (p.order, p.amount, p.currency) == (order, m.total, m.currency)
        if method == WALLET:
            assert (p.provider, p.status) == (WALLET, "succeeded")
            self.wallet[wallet] -= m.total
        else:
            assert p.provider == "mock"
            assert p.status in STATUSES[method], (method, p.status, p.failure)
        self.tally[f"pay {p.provider} {p.status}"] += 1
        if p.status == "succeeded":
            m.status, m.paid, m.paid_by, m.scripted = "paid", m.total, p.provider, "|" in method
        elif p.status == "requires_action":
            m.in_flight = True
        return None

    @rule(order=orders, amount=REFUND_AMOUNTS)
    def refund_to_original(self, order: str, amount: int | str | None) -> None:
        self._refund(order, amount, "original")

    @rule(order=orders, amount=REFUND_AMOUNTS)
    def refund_to_wallet(self, order: str, amount: int | str | None) -> None:
        self._refund(order, amount, "wallet")

    def _refund(self, order: str, amount: int | str | None, destination: str) -> None:
        m = self.model[order]
        rest = m.paid - m.refunded - sum(m.pending.values())  # pending refunds hold theirs
        relative = {"rest": rest, "rest+1": rest + 1, "half": rest // 2, "zero": 0}
        requested = relative[amount] if isinstance(amount, str) else amount
        expected = rest if requested is None else requested

        def call() -> Any:
            return self.kassa.refunds.create(
                self.ctx, order, amount=requested, destination=destination, reason="test"
            )

        if m.paid <= 0:
            return self.refused("order_not_paid", call)
        if rest <= 0:  # refunded, or being refunded (pending), in full
            return self.refused("order_already_refunded", call)
        if not 0 < expected <= rest:
            return self.refused("amount_exceeds_refundable", call)
        if destination == "wallet" and m.customer is None:
            return self.refused("wallet_needs_customer", call)
        r = call()
        assert (r.order, r.amount, r.currency) == (order, expected, m.currency)
        assert r.destination == destination
        # only a card payment with a fault script may see its refund fail at the provider
        at_card = destination == "original" and m.paid_by == "mock"
        may_end = {"succeeded", "failed", "pending"} if at_card and m.scripted else {"succeeded"}
        assert r.status in may_end, (r.status, r.failure)
        if at_card and r.status == "succeeded":
            assert (r.provider_refund_id or "").startswith("re_mock_")
        elif not at_card:
            assert r.provider_refund_id is None
        self.tally[f"refund {destination} {r.status}"] += 1
        if r.status == "pending":
            m.pending[r.id] = expected
        if r.status == "succeeded":
            m.refunded += expected
            if not at_card:  # to the wallet, or back to the wallet that paid
                assert m.customer is not None
                self.wallet[(m.customer, m.currency)] += expected
        return None

    @rule()
    def worker_resumes_refunds(self) -> None:
        """Time passes and the worker runs: refunds left pending are asked about again."""
        self.clock.advance(RESUME_AFTER_S + 1)
        Worker(self.kassa, name="hypothesis").drain()
        for m in self.model.values():
            for refund_id, amount in list(m.pending.items()):
                status = self.kassa.refunds.get(refund_id).status
                if status == "pending":
                    continue
                self.tally[f"resumed refund {status}"] += 1
                del m.pending[refund_id]
                if status == "succeeded":
                    m.refunded += amount

    @rule(
        who=st.integers(0, CUSTOMERS - 1),
        currency=st.sampled_from(CURRENCIES),
        amount=mostly(st.integers(1, 20_000), st.integers(-5, 0)),
        card=st.sampled_from(sorted(CARDS)),
    )
    def top_up(self, who: int, currency: str, amount: int, card: str) -> None:
        cus = self.customers[who]

        def call() -> Any:
            return self.kassa.payments.top_up(self.ctx, cus, amount, currency, card)

        if amount <= 0:
            return self.refused("validation_error", call)
        p = call()
        assert (p.order, p.top_up_customer, p.amount, p.currency) == (None, cus, amount, currency)
        assert p.status in CARDS[card], (card, p.status, p.failure)
        self.tally[f"top-up {p.status}"] += 1
        if p.status == "succeeded":
            self.wallet[(cus, currency)] += amount
            self.lifetime[(cus, currency)] += amount
        return None

    @rule(
        who=st.integers(0, CUSTOMERS - 1),
        currency=st.sampled_from(CURRENCIES),
        balance=mostly(
            st.integers(-5_000, 20_000), st.sampled_from([MAX_AMOUNT + 1, -MAX_AMOUNT - 1])
        ),
    )
    def adjust(self, who: int, currency: str, balance: int) -> None:
        cus = self.customers[who]
        key = (cus, currency)

        def call() -> Any:
            return self.kassa.wallets.adjust(self.ctx, cus, currency, balance, "hypothesis")

        if abs(balance) > MAX_AMOUNT:
            return self.refused("validation_error", call)
        lifetime_before = self._lifetime_paid(cus, currency)
        a = call()
        assert (a.currency, a.prev_balance, a.new_balance) == (currency, self.wallet[key], balance)
        assert self._lifetime_paid(cus, currency) == lifetime_before  # adjustments never move it
        self.tally["adjust"] += 1
        self.adjusted[key] += balance - self.wallet[key]
        self.wallet[key] = balance
        return None

    def _lifetime_paid(self, cus: str, currency: str) -> int:
        with self.kassa.db.transaction(read_only=True) as s:
            value = s.scalar(
                select(WalletBalance.lifetime_paid).where(
                    WalletBalance.customer_id == cus, WalletBalance.currency == currency
                )
            )
        return int(value or 0)

    # -- invariants, read from the database ------------------------------------------------

    @invariant()
    def money_adds_up(self) -> None:
        with self.kassa.db.transaction(read_only=True) as s:
            orders = {o.id: o for o in s.scalars(select(Order))}
            payments = list(s.scalars(select(Payment)))
            refunds = list(s.scalars(select(Refund)))
            balances = {(b.customer_id, b.currency): b for b in s.scalars(select(WalletBalance))}
            entries = list(s.scalars(select(WalletEntry).order_by(WalletEntry.pk)))
            charges = list(s.scalars(select(MockCharge)))
            mock_refunds = list(s.scalars(select(MockRefund)))
            adjustments = list(
                s.scalars(select(AuditRecord).where(AuditRecord.action == "wallet.adjusted"))
            )
        ok_payments = [p for p in payments if p.status == "succeeded"]
        ok_refunds = [r for r in refunds if r.status == "succeeded"]
        # nothing is left half-way after a sequential step
        assert {p.status for p in payments} <= {"succeeded", "failed", "requires_action"}
        assert {r.status for r in refunds} <= {"succeeded", "failed", "pending"}
        assert {r.id for r in refunds if r.status == "pending"} == {
            rid for m in self.model.values() for rid in m.pending
        }

        # -- orders
        paid: dict[str, int] = defaultdict(int)
        refunded: dict[str, int] = defaultdict(int)
        for p in ok_payments:
            if p.order_id is not None:
                paid[p.order_id] += p.amount
        for r in ok_refunds:
            refunded[r.order_id] += r.amount
        assert set(orders) == set(self.model)
        for oid, o in orders.items():
            assert 0 <= o.amount_refunded <= o.amount_paid <= o.total, oid
            assert o.amount_paid == paid[oid], (oid, o.amount_paid, paid[oid])
            assert o.amount_refunded == refunded[oid], (oid, o.amount_refunded, refunded[oid])
            m = self.model[oid]
            assert (o.status, o.amount_paid, o.amount_refunded) == (m.status, m.paid, m.refunded)
        for r in refunds:
            assert r.currency == orders[r.order_id].currency

        # -- wallets: balance == ledger; lifetime_paid == top-ups
        ledger: dict[tuple[str, str], int] = defaultdict(int)
        last_after: dict[tuple[str, str], int] = {}
        top_up_entries: dict[tuple[str, str], int] = defaultdict(int)
        for e in entries:
            key = (e.customer_id, e.currency)
            ledger[key] += e.amount
            last_after[key] = e.balance_after
            assert e.balance_after == ledger[key], (key, e.kind)  # a running total
            if e.kind == "top_up":
                top_up_entries[key] += e.amount
        assert set(ledger) <= set(balances)
        for key, b in balances.items():
            assert b.balance == ledger[key], (key, b.balance, ledger[key])
            assert b.balance == last_after.get(key, 0), key
            assert b.lifetime_paid == top_up_entries[key], (key, b.lifetime_paid)
        for key in set(balances) | set(self.wallet):
            stored = balances[key].balance if key in balances else 0
            assert stored == self.wallet[key], (key, stored, self.wallet[key])
            lifetime = balances[key].lifetime_paid if key in balances else 0
            assert lifetime == self.lifetime[key], (key, lifetime, self.lifetime[key])

        # -- every non-adjustment entry is exactly one top-up, wallet payment or refund
        expected_entries: Counter[tuple[str, str | None, str, str, int]] = Counter()
        source: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for p in ok_payments:
            if p.order_id is None:
                assert p.top_up_customer_id is not None
                key = (p.top_up_customer_id, p.currency)
                expected_entries[("top_up", p.id, *key, p.amount)] += 1
                source[key]["top_ups"] += p.amount
            elif p.provider == "wallet":
                cus = orders[p.order_id].customer_id
                assert cus is not None
                key = (cus, p.currency)
                expected_entries[("payment", p.id, *key, -p.amount)] += 1
                source[key]["spends"] += p.amount
        for r in ok_refunds:
            if r.destination == "wallet" or r.provider == "wallet":
                cus = orders[r.order_id].customer_id
                assert cus is not None
                key = (cus, r.currency)
                expected_entries[("refund", r.id, *key, r.amount)] += 1
                source[key]["refunds"] += r.amount
        got_entries = Counter(
            (e.kind, e.reference, e.customer_id, e.currency, e.amount)
            for e in entries
            if e.kind != "adjustment"
        )
        assert got_entries == expected_entries
        for a in adjustments:
            assert a.before is not None and a.after is not None
            key = (a.subject_id, a.after["currency"])
            source[key]["adjustments"] += a.after["balance"] - a.before["balance"]
        adjustment_entries: dict[tuple[str, str], int] = defaultdict(int)
        for e in entries:
            if e.kind == "adjustment":
                adjustment_entries[(e.customer_id, e.currency)] += e.amount

        # -- money conserved in the wallets: per wallet, hence per currency
        per_currency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for key in set(balances) | set(source):
            flows = source[key]
            stored = balances[key].balance if key in balances else 0
            derived = flows["top_ups"] + flows["refunds"] - flows["spends"] + flows["adjustments"]
            assert stored == derived, (key, stored, dict(flows))
            assert flows["adjustments"] == adjustment_entries[key] == self.adjusted[key], key
            per_currency[key[1]][0] += stored
            per_currency[key[1]][1] += derived
        for currency, (stored_sum, derived_sum) in per_currency.items():
            assert stored_sum == derived_sum, currency

        # -- money conserved at the mock provider, per currency and charge by charge
        provider_net: dict[str, int] = defaultdict(int)
        kassa_net: dict[str, int] = defaultdict(int)
        for c in charges:
            if c.status == "succeeded":
                provider_net[c.currency] += c.amount
        for mr in mock_refunds:
            if mr.status == "succeeded":
                provider_net[mr.currency] -= mr.amount
        mock_payments = [p for p in ok_payments if p.provider == "mock"]
        card_refunds = [r for r in ok_refunds if r.provider == "mock"]
        for p in mock_payments:
            kassa_net[p.currency] += p.amount
        for r in card_refunds:
            assert r.destination == "original"
            kassa_net[r.currency] -= r.amount
        awaited: dict[str, int] = defaultdict(int)  # refunds kassa has no answer for yet
        for r in refunds:
            if r.status == "pending":
                awaited[r.currency] += r.amount
        for currency in set(provider_net) | set(kassa_net):
            gap = kassa_net[currency] - provider_net[currency]
            assert 0 <= gap <= awaited[currency], (
                currency,
                provider_net[currency],
                kassa_net[currency],
                awaited[currency],
            )
        charge_of = {c.intent_id: c for c in charges}
        assert len(charge_of) == len(charges)  # one charge per intent
        assert sorted(c.intent_id for c in charges) == sorted(
            str(p.provider_payment_id) for p in mock_payments
        )
        for p in mock_payments:
            c = charge_of[str(p.provider_payment_id)]
            assert (c.amount, c.currency, c.reference) == (p.amount, p.currency, p.id)
        refunded_on: dict[str, int] = defaultdict(int)
        for mr in mock_refunds:
            refunded_on[mr.charge_id] += mr.amount
        for c in charges:
            assert c.amount_refunded == refunded_on[c.id] <= c.amount, c.id
        pending_ids = {r.id: r.amount for r in refunds if r.status == "pending"}
        settled = sorted((r.provider_refund_id, r.id, r.amount) for r in card_refunds)
        at_provider = sorted(
            (mr.id, mr.reference, mr.amount)
            for mr in mock_refunds
            if mr.reference not in pending_ids
        )
        assert settled == at_provider
        for mr in mock_refunds:  # a refund kassa awaits is one it asked for, for that amount
            assert mr.reference not in pending_ids or pending_ids[mr.reference] == mr.amount


def _fresh_databases(request: pytest.FixtureRequest, database_url: str) -> Callable[[], Any]:
    """A generator function handing out one empty, migrated database per example."""
    if database_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("sqlite_template")
        folder: Path = request.getfixturevalue("tmp_path")
        counter = itertools.count()

        def fresh_sqlite() -> Iterator[str]:
            path = folder / f"example-{next(counter)}.db"
            shutil.copy(template, path)
            yield f"sqlite:///{path}"
            for leftover in folder.glob(path.name + "*"):
                leftover.unlink()

        return fresh_sqlite

    def fresh_postgres() -> Iterator[str]:
        _truncate_postgres(database_url)
        yield database_url

    return fresh_postgres


@pytest.mark.slow
def test_money_invariants_hold_under_random_operations(
    request: pytest.FixtureRequest, database_url: str, is_postgres: bool
) -> None:
    class Bound(MoneyMachine):
        fresh_url = staticmethod(_fresh_databases(request, database_url))
        tally: ClassVar[Counter[str]] = Counter()

    run_state_machine_as_test(
        Bound,
        settings=settings(
            max_examples=12 if is_postgres else 40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # the walk must have done real work, not only been refused
    done = Bound.tally
    assert done["pay mock succeeded"] and done["top-up succeeded"] and done["adjust"], done
    assert done["refund original succeeded"] + done["refund wallet succeeded"], done
    assert done["refused amount_exceeds_refundable"] + done["refused order_not_paid"], done


def test_a_refund_whose_answer_is_lost_and_whose_retry_fails_keeps_the_books_straight(
    request: pytest.FixtureRequest, database_url: str
) -> None:
    """Found by the machine above: the provider refunded, kassa heard no answer, and its
    retry failed too. kassa used to mark the refund failed and free the amount, which could
    then be refunded again. Now the engine looks the refund up at the provider first and
    finds it, so the refund succeeds at once and counts once."""

    class Bound(MoneyMachine):
        fresh_url = staticmethod(_fresh_databases(request, database_url))
        tally: ClassVar[Counter[str]] = Counter()

    machine = Bound()
    try:
        order = machine.create_order(0, "EUR", 3, LOST_REFUND_ANSWER)
        machine.money_adds_up()
        machine.refund_to_original(order, 1250)  # the provider refunds; kassa hears no answer
        m = machine.model[order]
        assert (m.pending, m.refunded) == ({}, 1250)  # found by the look-up
        machine.money_adds_up()
        machine.refund_to_original(order, "rest")
        machine.money_adds_up()
        machine.worker_resumes_refunds()
        machine.money_adds_up()
        assert (m.pending, m.refunded) == ({}, 3750)
        assert machine.tally["resumed refund succeeded"] == 0
    finally:
        machine.teardown()


def test_a_refund_without_an_answer_holds_its_amount_until_the_worker_settles_it(
    request: pytest.FixtureRequest, database_url: str
) -> None:
    """The provider keeps failing (it may or may not have refunded): the part stays pending,
    holding its amount, until the worker asks the provider again with the same key."""

    class Bound(MoneyMachine):
        fresh_url = staticmethod(_fresh_databases(request, database_url))
        tally: ClassVar[Counter[str]] = Counter()

    machine = Bound()
    try:
        order = machine.create_order(0, "EUR", 3, NO_REFUND_ANSWER)
        machine.money_adds_up()
        machine.refund_to_original(order, 1250)  # two 500s: nobody knows
        assert list(machine.model[order].pending.values()) == [1250]
        machine.money_adds_up()
        machine.refund_to_original(order, "rest")  # 3750 - 1250 held: 2500 more, not 3750
        machine.money_adds_up()
        machine.worker_resumes_refunds()
        machine.money_adds_up()
        m = machine.model[order]
        assert (m.pending, m.refunded) == ({}, 3750)
        assert machine.tally["resumed refund succeeded"] == 1
    finally:
        machine.teardown()
