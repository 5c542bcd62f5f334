"""Revenue KPIs without a database: which calendar days a report covers, where each of
those days begins in UTC, and the integer rounding of its ratios.

A KPI report covers whole calendar days in the shop's time zone (`KASSA_TIMEZONE`), from
its first day to its last, both included (`DateSpan`). Timestamps are stored in UTC, so
the storage needs the UTC instant at which each local day begins: `ShopCalendar` gives
them (`boundaries`), and a day is the half-open range [its start, the next day's start).
Local midnight is not always 24 hours after the previous one: a day on which the clocks
change lasts 23 or 25 hours (Europe/Berlin on 2026-03-29 and 2026-10-25), and in a few
zones midnight itself is skipped (America/Santiago starts its summer at 24:00). Asking
zoneinfo for each midnight separately gets all of these right; adding 24 hours would not.

Ratios are rounded half up in integers (`round_half_up`), never through a float:
`refund_rate_bp` and `success_rate_bp` are basis points (10,000 = 100 %).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from kassa.domain.errors import FieldProblem, invalid

BASIS_POINTS = 10_000
MAX_DAYS = 366  # a leap year's `ytd` on 31 December is the longest named window
# Dates a report may name: far enough from the calendar's ends that a day's start and the
# next day's start, in any zone, stay representable.
EARLIEST = date(1970, 1, 1)
LATEST = date(9998, 12, 31)
INVALID_RANGE = "invalid_date_range"

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits: \d takes any script's


class NamedWindow(StrEnum):
    """The windows a report may name instead of `from`/`to`, counted back from today."""

    TODAY = "today"
    YESTERDAY = "yesterday"
    LAST_7_DAYS = "7d"  # today and the six days before it
    LAST_30_DAYS = "30d"
    MONTH_TO_DATE = "mtd"
    YEAR_TO_DATE = "ytd"


@dataclass(frozen=True, slots=True)
class DateSpan:
    """Calendar days `first` to `last`, both included (`first <= last`)."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]


def named_span(window: NamedWindow, today: date) -> DateSpan:
    """The days a named window covers, `today` being the shop's local date."""
    if window is NamedWindow.TODAY:
        return DateSpan(today, today)
    if window is NamedWindow.YESTERDAY:
        yesterday = today - timedelta(days=1)
        return DateSpan(yesterday, yesterday)
    if window is NamedWindow.LAST_7_DAYS:
        return DateSpan(today - timedelta(days=6), today)
    if window is NamedWindow.LAST_30_DAYS:
        return DateSpan(today - timedelta(days=29), today)
    if window is NamedWindow.MONTH_TO_DATE:
        return DateSpan(today.replace(day=1), today)
    return DateSpan(today.replace(month=1, day=1), today)


def _field(name: str) -> tuple[str, str]:
    return ("query", name)


def parse_date(raw: str, name: str) -> date:
    """`YYYY-MM-DD`, a real date within `EARLIEST`..`LATEST`; nothing looser."""
    parsed: date | None = None
    if _ISO_DATE.fullmatch(raw):
        try:
            parsed = date.fromisoformat(raw)
        except ValueError:
            parsed = None
    if parsed is None:
        message = f"{name} must be a date written YYYY-MM-DD, got {raw!r}"
        raise invalid("validation_error", message, FieldProblem(_field(name), "invalid date"))
    if not EARLIEST <= parsed <= LATEST:
        message = f"{name} must lie between {EARLIEST} and {LATEST}"
        raise invalid("validation_error", message, FieldProblem(_field(name), "out of range"))
    return parsed


def checked_span(first: date, last: date) -> DateSpan:
    """`first`..`last` if it is a span a report may cover: in order, at most `MAX_DAYS`."""
    if first > last:
        raise invalid(
            INVALID_RANGE,
            f"from ({first}) is after to ({last})",
            FieldProblem(_field("from"), "after to"),
        )
    span = DateSpan(first, last)
    if span.days > MAX_DAYS:
        raise invalid(
            INVALID_RANGE,
            f"from {first} to {last} is {span.days} days; a report covers at most {MAX_DAYS}",
            FieldProblem(_field("to"), f"more than {MAX_DAYS} days after from"),
        )
    return span


def requested_span(
    window: str | None, first: str | None, last: str | None, today: date
) -> DateSpan:
    """The span a query asks for: `window=` alone, or `from=` and `to=` together."""
    if window is not None:
        if first is not None or last is not None:
            raise invalid(
                "validation_error",
                "give either window or from and to, not both",
                FieldProblem(_field("window"), "not with from/to"),
            )
        try:
            named = NamedWindow(window)
        except ValueError:
            known = ", ".join(w.value for w in NamedWindow)
            raise invalid(
                "validation_error",
                f"window must be one of {known}, got {window!r}",
                FieldProblem(_field("window"), "unknown window"),
            ) from None
        return named_span(named, today)
    if first is None or last is None:
        missing = [name for name, raw in (("from", first), ("to", last)) if raw is None]
        raise invalid(
            "validation_error",
            "give window, or from and to (YYYY-MM-DD, both included)",
            *(FieldProblem(_field(name), "required without window") for name in missing),
        )
    return checked_span(parse_date(first, "from"), parse_date(last, "to"))


@dataclass(frozen=True, slots=True)
class ShopCalendar:
    """The shop's calendar days in UTC: `zone` is the shop's time zone."""

    zone: tzinfo

    def today(self, now: datetime) -> date:
        """The shop's local date at the instant `now` (an aware datetime)."""
        return now.astimezone(self.zone).date()

    def start_of(self, day: date) -> datetime:
        """The first instant (UTC) of the local calendar day `day`.

        `fold=0` is what makes the rare skipped midnight right: a local midnight inside a
        spring-forward gap is read with the offset in force before the gap, which lands
        exactly on the instant the clocks jump, the day's first real instant. An
        ambiguous midnight (clocks set back over it) is read at its first occurrence."""
        local = datetime.combine(day, time(0, 0), tzinfo=self.zone)
        return local.astimezone(UTC)

    def boundaries(self, span: DateSpan) -> list[datetime]:
        """The start of each day of `span` and the start of the day after it (`days + 1`
        instants, increasing): day i is [boundaries[i], boundaries[i + 1])."""
        last = span.last + timedelta(days=1)
        return [self.start_of(day) for day in (*span.dates(), last)]


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
