from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.money import Money
from kassa.domain.orders import (
    ALLOWED_TRANSITIONS,
    CatalogueEntry,
    LineRequest,
    OrderRefundStatus,
    OrderStatus,
    ProductStatus,
    check_stock,
    order_number,
    price_order,
    refund_status,
    transition,
)
from kassa.domain.roles import Permission, Role, allows

LEGAL = {
    (OrderStatus.PENDING, OrderStatus.PAID),
    (OrderStatus.PENDING, OrderStatus.CANCELED),
    (OrderStatus.PAID, OrderStatus.FULFILLED),
}


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("target", list(OrderStatus))
def test_transition_table_is_exactly_the_contract(
    current: OrderStatus, target: OrderStatus
) -> None:
    if (current, target) in LEGAL:
        assert transition(current, target) is target
    else:
        with pytest.raises(DomainError) as info:
            transition(current, target)
        assert info.value.code == "invalid_order_transition"
        assert info.value.kind is ErrorKind.CONFLICT


class OrderLifecycle(RuleBasedStateMachine):
    """Random walks over the status machine: terminal states stay terminal, paid money
    is never un-paid, and every refused move leaves the status unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.status = OrderStatus.PENDING
        self.history: list[OrderStatus] = [self.status]

    @rule(wanted=st.sampled_from(list(OrderStatus)))
    def attempt(self, wanted: OrderStatus) -> None:
        before = self.status
        try:
            self.status = transition(self.status, wanted)
        except DomainError:
            assert self.status is before
            assert (before, wanted) not in LEGAL
        else:
            assert (before, wanted) in LEGAL
            self.history.append(self.status)

    @precondition(lambda self: self.status in (OrderStatus.CANCELED, OrderStatus.FULFILLED))
    @rule()
    def terminal_states_have_no_exit(self) -> None:
        assert ALLOWED_TRANSITIONS[self.status] == frozenset()

    @invariant()
    def paid_orders_never_return_to_pending_or_cancel(self) -> None:
        if OrderStatus.PAID in self.history:
            after = self.history[self.history.index(OrderStatus.PAID) :]
            assert OrderStatus.PENDING not in after
            assert OrderStatus.CANCELED not in after

    @invariant()
    def history_has_no_repeats(self) -> None:
        assert len(set(self.history)) == len(self.history)


TestOrderLifecycle = OrderLifecycle.TestCase


def entry(sku: str, amount: int, currency: str = "EUR", **kw: object) -> CatalogueEntry:
    return CatalogueEntry(
        sku=sku,
        title=sku.title(),
        unit_price=Money(amount, currency),
        stock=kw.get("stock"),  # type: ignore[arg-type]
        unique=bool(kw.get("unique", False)),
        status=ProductStatus.AVAILABLE,
    )


def test_prices_come_from_the_catalogue() -> None:
    catalogue = {"A": entry("A", 1999), "B": entry("B", 250)}
    priced = price_order("EUR", [LineRequest("A", 2), LineRequest("B", 3)], catalogue)
    assert [(line.sku, line.amount) for line in priced.lines] == [("A", 3998), ("B", 750)]
    assert priced.subtotal == Money(4748, "EUR") == priced.total


def test_pricing_reports_every_bad_line() -> None:
    catalogue = {"A": entry("A", 100), "Y": entry("Y", 100, "JPY"), "U": entry("U", 5, unique=True)}
    with pytest.raises(DomainError) as info:
        price_order(
            "EUR",
            [
                LineRequest("A", 1),
                LineRequest("A", 1),
                LineRequest("Z", 1),
                LineRequest("Y", 1),
                LineRequest("U", 2),
            ],
            catalogue,
        )
    fields = [e.loc for e in info.value.errors]
    assert fields == [
        ("body", "lines", 1, "sku"),
        ("body", "lines", 2, "sku"),
        ("body", "lines", 3, "sku"),
        ("body", "lines", 4, "quantity"),
    ]
    assert info.value.code == "currency_mismatch"


def test_stock_check_refuses_only_the_impossible() -> None:
    check_stock(entry("A", 1, stock=None), 10_000)
    check_stock(entry("A", 1, stock=3), 3)
    with pytest.raises(DomainError) as info:
        check_stock(entry("A", 1, stock=3), 4)
    assert info.value.code == "insufficient_stock"


@pytest.mark.parametrize(
    ("paid", "refunded", "expected"),
    [
        (1000, 0, OrderRefundStatus.NONE),
        (1000, 1, OrderRefundStatus.PARTIAL),
        (1000, 1000, OrderRefundStatus.FULL),
    ],
)
def test_refund_status(paid: int, refunded: int, expected: OrderRefundStatus) -> None:
    assert refund_status(paid, refunded) is expected


def test_order_numbers_are_human() -> None:
    assert order_number(42) == "K-000042"


def test_roles() -> None:
    assert allows(Role.ADMIN, Permission.READ_AUDIT)
    assert not allows(Role.OPS, Permission.READ_AUDIT)
    assert allows(Role.OPS, Permission.WRITE_CATALOGUE)
    assert not allows(Role.ANALYST, Permission.WRITE_CATALOGUE)
    assert allows(Role.STOREFRONT, Permission.CREATE_ORDERS)
    assert not allows(Role.STOREFRONT, Permission.FULFILL_ORDERS)
    assert not allows(Role.STOREFRONT, Permission.READ_CUSTOMERS)
