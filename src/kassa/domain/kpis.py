"""Revenue KPIs without a database: the integer rounding of their ratios.

Ratios are rounded half up in integers (`round_half_up`), never through a float:
`refund_rate_bp` and `success_rate_bp` are basis points (10,000 = 100 %). Which calendar
days a report covers, and where each begins in UTC, is the shop's calendar
(`kassa.domain.calendar`), shared with the CSV exports.
"""

from __future__ import annotations

BASIS_POINTS = 10_000


def round_half_up(numerator: int, denominator: int) -> int:
    """`numerator / denominator` rounded to the nearest integer, halves upwards
    (towards +infinity), in integer arithmetic: floor((2n + d) / 2d)."""
    if denominator <= 0:
        raise ValueError("the denominator must be positive")
    return (2 * numerator + denominator) // (2 * denominator)


def basis_points(part: int, whole: int) -> int | None:
    """`part` as a share of `whole` in basis points, rounded half up; None if `whole` is 0
    (a rate of nothing is unknown, not zero)."""
    if whole == 0:
        return None
    return round_half_up(part * BASIS_POINTS, whole)


def average(total: int, count: int) -> int:
    """`total / count` rounded half up; 0 when there is nothing to average."""
    return round_half_up(total, count) if count else 0
