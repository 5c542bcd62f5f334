"""The period of a CSV export: calendar days in the shop's time zone, as a UTC range.

The contract gives exports the KPIs' filters: `window=today|yesterday|7d|30d|mtd|ytd`, or
`from=YYYY-MM-DD&to=YYYY-MM-DD` (both inclusive); `from > to` or a span over 366 days is
refused (422). A day is a calendar day where the shop is (`KASSA_TIMEZONE`), so the rows of
a day are those created from its local midnight up to the next one, whatever the UTC
offset, across daylight-saving changes too.

NOTE (issue 11): the KPI work brings its own window module; this one is the exports' own
until the two are merged into one home (the rules are the contract's, stated once here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from kassa.domain.errors import DomainError, FieldProblem, invalid

MAX_SPAN_DAYS = 366
# Days whose local midnights (and the next day's) fit in a `datetime` whatever the zone's
# offset: 0001-01-01 or 9999-12-31 would overflow when moved to UTC.
FIRST_DAY = date(1, 1, 2)
LAST_DAY = date(9999, 12, 30)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits, matched whole
INVALID_PERIOD = "invalid_period"


class Window(StrEnum):
    """A named period ending today (the shop's today); `7d` and `30d` include today."""

    TODAY = "today"
    YESTERDAY = "yesterday"
    LAST_7_DAYS = "7d"
    LAST_30_DAYS = "30d"
    MONTH_TO_DATE = "mtd"
    YEAR_TO_DATE = "ytd"


@dataclass(frozen=True, slots=True)
class ExportPeriod:
    """The calendar days `first`..`last` (inclusive) in `zone`; `window` when named by one."""

    first: date
    last: date
    zone: tzinfo
    window: Window | None = None

    @property
    def start(self) -> datetime:
        """The first instant of the period, in UTC: local midnight starting `first`."""
        return _local_midnight(self.first, self.zone)

    @property
    def end(self) -> datetime:
        """The first instant after the period, in UTC: local midnight ending `last`."""
        return _local_midnight(self.last + timedelta(days=1), self.zone)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def describe(self) -> dict[str, str | None]:
        """The period as the audit log keeps it."""
        return {
            "window": self.window.value if self.window else None,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "timezone": zone_name(self.zone),
        }


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    # A midnight that does not exist locally (a daylight-saving jump at 00:00) resolves to
    # the first instant of that day, as zoneinfo maps a skipped time with the old offset.
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def zone_name(zone: tzinfo) -> str:
    return zone.key if isinstance(zone, ZoneInfo) else str(zone.tzname(None) or zone)


def shop_zone(value: object) -> tzinfo:
    """The shop's time zone from a setting: an IANA name (`Europe/Berlin`) or a tzinfo."""
    if isinstance(value, tzinfo):
        return value
    return ZoneInfo(str(value))


def _problem(field: str, message: str) -> DomainError:
    return invalid(INVALID_PERIOD, f"{field}: {message}", FieldProblem(("query", field), message))


def parse_day(raw: str, field: str) -> date:
    """A calendar day written `YYYY-MM-DD`, and nothing looser."""
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError
        day = date.fromisoformat(raw)
    except ValueError:
        raise _problem(field, f"{raw!r} is not a valid date written YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _problem(field, f"must lie between {FIRST_DAY} and {LAST_DAY}")
    return day


def parse_window(raw: str) -> Window:
    try:
        return Window(raw)
    except ValueError:
        known = ", ".join(w.value for w in Window)
        raise _problem("window", f"{raw!r} is not one of {known}") from None


def window_days(window: Window, today: date) -> tuple[date, date]:
    """The first and last day of `window` when it is `today`."""
    match window:
        case Window.TODAY:
            return today, today
        case Window.YESTERDAY:
            return today - timedelta(days=1), today - timedelta(days=1)
        case Window.LAST_7_DAYS:
            return today - timedelta(days=6), today
        case Window.LAST_30_DAYS:
            return today - timedelta(days=29), today
        case Window.MONTH_TO_DATE:
            return today.replace(day=1), today
        case Window.YEAR_TO_DATE:
            return today.replace(month=1, day=1), today


def export_period(
    *,
    window: str | None,
    from_: str | None,
    to: str | None,
    now: datetime,
    zone: tzinfo,
) -> ExportPeriod:
    """The period a request names: a `window`, or `from` and `to` (inclusive); one of the
    two ways, not both, and at most `MAX_SPAN_DAYS` days."""
    if window is not None:
        if from_ is not None or to is not None:
            raise _problem("window", "give either window or from and to, not both")
        named = parse_window(window)
        first, last = window_days(named, now.astimezone(zone).date())
        return ExportPeriod(first, last, zone, named)
    if from_ is None or to is None:
        missing = "from" if from_ is None else "to"
        raise _problem(missing, "missing: give window=today|yesterday|7d|30d|mtd|ytd, or both")
    first, last = parse_day(from_, "from"), parse_day(to, "to")
    if first > last:
        raise _problem("from", f"{first} is after to ({last})")
    period = ExportPeriod(first, last, zone)
    if period.days > MAX_SPAN_DAYS:
        raise _problem("to", f"the period spans {period.days} days; at most {MAX_SPAN_DAYS}")
    return period
