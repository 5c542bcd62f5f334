"""The shop's calendar: which calendar days a `window` or `from`/`to` names, and where each
of those days begins and ends in UTC. One home for the KPIs and the CSV exports, whose
filters the contract makes the same (api-contract.md: Revenue KPIs, CSV exports).

A period is whole calendar days in the shop's time zone (`KASSA_TIMEZONE`), from its first
day to its last, both included: `window=today|yesterday|7d|30d|mtd|ytd` (ending on the
shop's today; `7d` includes today), or `from=YYYY-MM-DD&to=YYYY-MM-DD`. One way or the
other, not both; `from > to` or more than `MAX_SPAN_DAYS` days is refused. Every refusal
is 422 `invalid_period` naming the query field at fault.

Timestamps are stored in UTC, so a day is the half-open range [its local midnight, the
next local midnight) in UTC. Local midnight is not always 24 hours after the previous
one: a day on which the clocks change lasts 23 or 25 hours (Europe/Berlin on 2026-03-29
and 2026-10-25), and in a few zones midnight itself is skipped (America/Santiago starts
its summer at 24:00). Asking zoneinfo for each midnight separately gets all of these
right; adding 24 hours would not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from kassa.domain.errors import DomainError, FieldProblem, invalid

MAX_SPAN_DAYS = 366  # a leap year's `ytd` on 31 December is the longest named window
# Days whose local midnights (and the next day's) fit in a `datetime` whatever the zone's
# offset: 0001-01-01 or 9999-12-31 would overflow when moved to UTC.
FIRST_DAY = date(1, 1, 2)
LAST_DAY = date(9999, 12, 30)
INVALID_PERIOD = "invalid_period"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits (\d takes any script's)


class Window(StrEnum):
    """A named period ending today (the shop's today); `7d` and `30d` include today."""

    TODAY = "today"
    YESTERDAY = "yesterday"
    LAST_7_DAYS = "7d"
    LAST_30_DAYS = "30d"
    MONTH_TO_DATE = "mtd"
    YEAR_TO_DATE = "ytd"


WINDOWS = ", ".join(w.value for w in Window)


@dataclass(frozen=True, slots=True)
class Period:
    """The calendar days `first`..`last` (inclusive, `first <= last`) in `zone`; `window`
    when the request named it by one."""

    first: date
    last: date
    zone: tzinfo
    window: Window | None = None

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]

    @property
    def start(self) -> datetime:
        """The first instant of the period, in UTC: local midnight starting `first`."""
        return local_midnight(self.first, self.zone)

    @property
    def end(self) -> datetime:
        """The first instant after the period, in UTC: local midnight ending `last`."""
        return local_midnight(self.last + timedelta(days=1), self.zone)

    def boundaries(self) -> list[datetime]:
        """The start of each day and the start of the day after the last (`days + 1`
        instants, increasing): day i is [boundaries[i], boundaries[i + 1])."""
        after = self.last + timedelta(days=1)
        return [local_midnight(day, self.zone) for day in (*self.dates(), after)]

    @property
    def timezone(self) -> str:
        return zone_name(self.zone)

    def describe(self) -> dict[str, str | None]:
        """The period as the audit log keeps it."""
        return {
            "window": self.window.value if self.window else None,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "timezone": self.timezone,
        }


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The first instant (UTC) of the local calendar day `day`.

    `fold=0` is what makes the rare skipped midnight right: a local midnight inside a
    spring-forward gap is read with the offset in force before the gap, which lands
    exactly on the instant the clocks jump, the day's first real instant. An ambiguous
    midnight (clocks set back over it) is read at its first occurrence."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def today(now: datetime, zone: tzinfo) -> date:
    """The shop's local date at the instant `now` (an aware datetime)."""
    return now.astimezone(zone).date()


def zone_name(zone: tzinfo) -> str:
    return zone.key if isinstance(zone, ZoneInfo) else str(zone.tzname(None) or zone)


def shop_zone(value: object) -> tzinfo:
    """The shop's time zone from a setting: an IANA name (`Europe/Berlin`) or a tzinfo."""
    if isinstance(value, tzinfo):
        return value
    return ZoneInfo(str(value))


def period_problem(field: str, message: str) -> DomainError:
    """The one refusal of a period: 422 `invalid_period`, the query field named."""
    return invalid(INVALID_PERIOD, f"{field}: {message}", FieldProblem(("query", field), message))


def parse_day(raw: str, field: str) -> date:
    """A calendar day written `YYYY-MM-DD`, within `FIRST_DAY`..`LAST_DAY`; nothing looser."""
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError
        day = date.fromisoformat(raw)
    except ValueError:
        raise period_problem(field, f"{raw!r} is not a valid date written YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise period_problem(field, f"must lie between {FIRST_DAY} and {LAST_DAY}")
    return day


def parse_window(raw: str) -> Window:
    try:
        return Window(raw)
    except ValueError:
        raise period_problem("window", f"{raw!r} is not one of {WINDOWS}") from None


def window_days(window: Window, on: date) -> tuple[date, date]:
    """The first and last day of `window` when the shop's today is `on`."""
    match window:
        case Window.TODAY:
            return on, on
        case Window.YESTERDAY:
            return on - timedelta(days=1), on - timedelta(days=1)
        case Window.LAST_7_DAYS:
            return on - timedelta(days=6), on
        case Window.LAST_30_DAYS:
            return on - timedelta(days=29), on
        case Window.MONTH_TO_DATE:
            return on.replace(day=1), on
        case Window.YEAR_TO_DATE:
            return on.replace(month=1, day=1), on


def days_period(first: date, last: date, zone: tzinfo) -> Period:
    """`first`..`last` if a request may name it: in order, at most `MAX_SPAN_DAYS` days."""
    if first > last:
        raise period_problem("from", f"{first} is after to ({last})")
    period = Period(first, last, zone)
    if period.days > MAX_SPAN_DAYS:
        raise period_problem("to", f"the period spans {period.days} days; at most {MAX_SPAN_DAYS}")
    return period


def requested_period(
    *,
    window: str | None,
    from_: str | None,
    to: str | None,
    now: datetime,
    zone: tzinfo,
) -> Period:
    """The period a request names: a `window`, or `from` and `to` (inclusive); one of the
    two ways, not both."""
    if window is not None:
        if from_ is not None or to is not None:
            raise period_problem("window", "give either window or from and to, not both")
        named = parse_window(window)
        first, last = window_days(named, today(now, zone))
        return Period(first, last, zone, named)
    if from_ is None or to is None:
        missing = "from" if from_ is None else "to"
        raise period_problem(
            missing, f"missing: give window={WINDOWS.replace(', ', '|')}, or both from and to"
        )
    return days_period(parse_day(from_, "from"), parse_day(to, "to"), zone)
