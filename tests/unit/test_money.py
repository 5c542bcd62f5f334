from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kassa.domain.errors import DomainError
from kassa.domain.money import CurrencyMismatch, Money, currency_exponent, normalize_currency

CURRENCIES = st.sampled_from(["EUR", "USD", "JPY", "BHD", "KWD", "CLF", "GBP"])
AMOUNTS = st.integers(min_value=-(10**15), max_value=10**15)


def money(currency: st.SearchStrategy[str] = CURRENCIES) -> st.SearchStrategy[Money]:
    return st.builds(Money, AMOUNTS, currency)


def test_exponents_come_from_iso_4217() -> None:
    assert currency_exponent("JPY") == 0
    assert currency_exponent("EUR") == 2
    assert currency_exponent("BHD") == 3
    assert currency_exponent("clf") == 4


def test_currency_codes_are_normalised_and_validated() -> None:
    assert normalize_currency(" eur ") == "EUR"
    for bad in ("EU", "EURO", "XYZ", "€", ""):
        with pytest.raises(DomainError) as info:
            normalize_currency(bad)
        assert info.value.code == "unknown_currency"


@pytest.mark.parametrize("amount", [19.99, "1999", True, None])
def test_amounts_must_be_int_never_float_or_string(amount: object) -> None:
    with pytest.raises(TypeError):
        Money(amount, "EUR")  # type: ignore[arg-type]


def test_formatting_uses_decimal_major_units() -> None:
    assert str(Money(1999, "EUR")) == "19.99 EUR"
    assert str(Money(500, "JPY")) == "500 JPY"
    assert str(Money(1234, "BHD")) == "1.234 BHD"
    assert Money(1999, "EUR").format("de_DE") == "19,99\xa0€"


@given(money(), money())
def test_mixed_currencies_are_refused(a: Money, b: Money) -> None:
    assume(a.currency != b.currency)
    with pytest.raises(CurrencyMismatch):
        _ = a + b
    with pytest.raises(CurrencyMismatch):
        _ = a < b


@given(CURRENCIES, AMOUNTS, AMOUNTS, AMOUNTS)
def test_addition_is_associative_commutative_and_subtraction_inverts(
    cur: str, x: int, y: int, z: int
) -> None:
    a, b, c = Money(x, cur), Money(y, cur), Money(z, cur)
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b) - b == a
    assert a + Money.zero(cur) == a
    negated = -a
    assert -negated == a
    assert negated + a == Money.zero(cur)


@given(money(), st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20))
def test_allocation_loses_and_invents_nothing(total: Money, weights: list[int]) -> None:
    assume(sum(weights) > 0)
    parts = total.allocate(weights)
    assert len(parts) == len(weights)
    assert sum(p.amount for p in parts) == total.amount
    assert all(p.currency == total.currency for p in parts)
    # each part is within one minor unit of its exact share
    for part, weight in zip(parts, weights, strict=True):
        exact_times_total = total.amount * weight
        assert abs(part.amount * sum(weights) - exact_times_total) < sum(weights)
    # a zero weight never receives anything
    for part, weight in zip(parts, weights, strict=True):
        if weight == 0:
            assert part.amount == 0


@given(money(), st.integers(min_value=1, max_value=50))
def test_split_is_near_equal_with_remainder_first(total: Money, n: int) -> None:
    parts = [p.amount for p in total.split(n)]
    assert sum(parts) == total.amount
    assert max(parts) - min(parts) <= 1
    assert parts == sorted(parts, key=abs, reverse=True)


def test_allocation_remainder_goes_to_largest_fractions_then_earliest() -> None:
    assert [p.amount for p in Money(100, "EUR").allocate([1, 1, 1])] == [34, 33, 33]
    assert [p.amount for p in Money(5, "EUR").allocate([3, 7])] == [2, 3]  # tie: earlier
    assert [p.amount for p in Money(10, "EUR").allocate([1, 2])] == [3, 7]  # 3.33 / 6.67
    assert [p.amount for p in Money(-100, "EUR").allocate([1, 1, 1])] == [-34, -33, -33]


def test_allocation_rejects_meaningless_weights() -> None:
    with pytest.raises(ValueError, match="at least one weight"):
        Money(1, "EUR").allocate([])
    with pytest.raises(ValueError, match="not all be zero"):
        Money(1, "EUR").allocate([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        Money(1, "EUR").allocate([1, -1])


NOT_MONEY = [
    "XXX",  # no currency
    "XTS",  # reserved for testing
    "XAU",  # gold
    "XAG",  # silver
    "XPT",  # platinum
    "XPD",  # palladium
    "XDR",  # IMF special drawing right
    "XBA",  # European bond-market units
    "XBB",
    "XBC",
    "XBD",
    "XSU",  # SUCRE
    "XUA",  # ADB unit of account
    "XEU",  # withdrawn units
    "XFU",
]


@pytest.mark.parametrize("code", NOT_MONEY + [c.lower() for c in NOT_MONEY[:3]])
def test_iso_4217_codes_that_are_not_money_are_refused(code: str) -> None:
    with pytest.raises(DomainError) as info:
        normalize_currency(code, ("body", "currency"))
    assert info.value.code == "unknown_currency"
    assert [e.loc for e in info.value.errors] == [("body", "currency")]
    assert "not money" in info.value.detail
    with pytest.raises(DomainError):
        Money(100, code)


@pytest.mark.parametrize("code", ["XAF", "XOF", "XCD", "XCG", "XPF"])
def test_the_currency_unions_x_codes_are_money(code: str) -> None:
    assert normalize_currency(code.lower()) == code
    assert Money(100, code).currency == code
