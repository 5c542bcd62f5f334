"""Document numbering and included tax: pure rules."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.documents import (
    Series,
    format_number,
    included_tax,
    parse_number,
    sequence_problems,
)


def test_numbers_read_as_the_contract_shows() -> None:
    assert format_number(Series.INVOICE, 2026, 1) == "INV-2026-000001"
    assert format_number(Series.CREDIT_NOTE, 2026, 42) == "CN-2026-000042"
    assert format_number(Series.INVOICE, 2026, 1_234_567) == "INV-2026-1234567"
    with pytest.raises(ValueError, match="start at 1"):
        format_number(Series.INVOICE, 2026, 0)
    with pytest.raises(ValueError, match="not a document number"):
        parse_number("INV-26-1")


@given(st.sampled_from(list(Series)), st.integers(1, 9999), st.integers(1, 10**9))
def test_numbers_round_trip(series: Series, year: int, sequence: int) -> None:
    assert parse_number(format_number(series, year, sequence)) == (series, year, sequence)


def test_sequence_problems_find_gaps_twins_and_strays() -> None:
    assert sequence_problems([1, 2, 3], 3).clean
    assert sequence_problems([], 0).clean
    found = sequence_problems([1, 3, 3, 5], 4)
    assert (found.missing, found.duplicated, found.beyond_counter) == ((2, 4), (3,), (5,))
    assert not found.clean


def test_included_tax_examples() -> None:
    assert included_tax(11900, 1900) == 1900  # 119.00 gross at 19 % holds 19.00
    assert included_tax(2999, 1900) == 479  # 478.84 -> 479
    assert included_tax(1000, 0) == 0
    assert included_tax(0, 1900) == 0
    with pytest.raises(ValueError, match="gross amount must not be negative"):
        included_tax(-1, 1900)


@given(st.integers(0, 10**15), st.integers(0, 100_000))
def test_included_tax_is_the_exact_share_rounded_half_up(gross: int, rate_bp: int) -> None:
    exact = Fraction(gross * rate_bp, 10_000 + rate_bp)
    tax = included_tax(gross, rate_bp)
    assert exact - Fraction(1, 2) < tax <= exact + Fraction(1, 2)  # half up
    assert 0 <= tax <= gross
