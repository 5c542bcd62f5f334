"""The pure side of revenue KPIs (kassa.domain.kpis): the integer rounding of their
ratios. Which days a window covers and where they begin in UTC is the shop's calendar,
shared with the exports (tests/unit/test_calendar.py). Expected values are worked out by
hand in the comments."""

from __future__ import annotations

import pytest

from kassa.domain.kpis import average, basis_points, round_half_up

# -- rounding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numerator", "denominator", "rounded"),
    [
        (41800, 12, 3483),  # 3483.33 -> 3483 (the contract's average_order_value)
        (2500 * 10000, 41800, 598),  # 598.09 -> 598 (its refund_rate_bp)
        (12 * 10000, 14, 8571),  # 8571.43 -> 8571 (its success_rate_bp)
        (7, 2, 4),  # 3.5: halves go up
        (5, 2, 3),
        (1, 2, 1),
        (1, 3, 0),
        (2, 3, 1),
        (10, 5, 2),
        (0, 7, 0),
        (-1, 2, 0),  # -0.5 goes up, towards +infinity
        (-3, 2, -1),
        (10**30 + 1, 2, 5 * 10**29 + 1),  # no float anywhere: exact at any size
    ],
)
def test_round_half_up(numerator: int, denominator: int, rounded: int) -> None:
    assert round_half_up(numerator, denominator) == rounded


def test_rates_of_nothing_are_unknown_and_averages_zero() -> None:
    assert basis_points(0, 0) is None and basis_points(5, 0) is None
    assert basis_points(0, 100) == 0 and basis_points(3, 4) == 7500
    assert basis_points(1500, 1000) == 15000  # refunds of earlier orders: over 100 %
    assert average(0, 0) == 0 and average(8000, 5) == 1600 and average(1001, 2) == 501
    with pytest.raises(ValueError, match="positive"):
        round_half_up(1, 0)
