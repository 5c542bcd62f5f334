"""The pure side of revenue KPIs (kassa.domain.kpis): which days a window covers, where
each local day begins in UTC (DST days included), the integer rounding, and the
`KASSA_TIMEZONE` setting. Expected values are worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.config import ConfigError, Settings
from kassa.domain.errors import DomainError
from kassa.domain.kpis import (
    DateSpan,
    NamedWindow,
    ShopCalendar,
    average,
    basis_points,
    checked_span,
    named_span,
    parse_date,
    requested_span,
    round_half_up,
)

BERLIN = ShopCalendar(ZoneInfo("Europe/Berlin"))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# -- windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "first", "last"),
    [
        ("today", date(2026, 12, 1), date(2026, 12, 1)),
        ("yesterday", date(2026, 11, 30), date(2026, 11, 30)),
        ("7d", date(2026, 11, 25), date(2026, 12, 1)),  # today and the six days before
        ("30d", date(2026, 11, 2), date(2026, 12, 1)),
        ("mtd", date(2026, 12, 1), date(2026, 12, 1)),
        ("ytd", date(2026, 1, 1), date(2026, 12, 1)),
    ],
)
def test_named_windows_count_back_from_today(window: str, first: date, last: date) -> None:
    assert named_span(NamedWindow(window), date(2026, 12, 1)) == DateSpan(first, last)


def test_windows_across_month_and_year_ends() -> None:
    assert named_span(NamedWindow.YESTERDAY, date(2026, 1, 1)) == DateSpan(
        date(2025, 12, 31), date(2025, 12, 31)
    )
    assert named_span(NamedWindow.LAST_7_DAYS, date(2026, 3, 2)) == DateSpan(
        date(2026, 2, 24), date(2026, 3, 2)
    )
    # a leap year's ytd on 31 December is 366 days: the longest window, and allowed
    leap = named_span(NamedWindow.YEAR_TO_DATE, date(2028, 12, 31))
    assert leap.days == 366 and checked_span(leap.first, leap.last) == leap


def test_a_span_is_in_order_and_at_most_366_days() -> None:
    assert checked_span(date(2025, 1, 1), date(2026, 1, 1)).days == 366
    for first, last in [
        (date(2026, 3, 2), date(2026, 3, 1)),  # from after to
        (date(2025, 1, 1), date(2026, 1, 2)),  # 367 days
        (date(1970, 1, 1), date(9998, 12, 31)),
    ]:
        with pytest.raises(DomainError) as caught:
            checked_span(first, last)
        assert caught.value.code == "invalid_date_range"
    assert checked_span(date(2026, 3, 1), date(2026, 3, 1)).days == 1


@pytest.mark.parametrize(
    ("window", "first", "last", "field"),
    [
        (None, None, None, "from"),  # neither
        ("7d", "2026-01-01", None, "window"),  # both
        ("7d", None, "2026-01-01", "window"),
        (None, "2026-01-01", None, "to"),  # half of from/to
        ("week", None, None, "window"),
        ("7D", None, None, "window"),
        (None, "2026-02-30", "2026-03-01", "from"),  # no such day
        (None, "2026-1-5", "2026-03-01", "from"),  # not YYYY-MM-DD
        (None, "2026-01-05T00:00:00Z", "2026-03-01", "from"),
        (None, "20260105", "2026-03-01", "from"),
        (None, "2026-01-05\n", "2026-03-01", "from"),
        (None, "2026-01-01", "\uff19\uff19\uff19\uff19-01-01", "to"),  # fullwidth digits
        (None, "0001-01-01", "0001-01-02", "from"),  # before 1970
        (None, "2026-01-01", "9999-12-31", "to"),  # the day after it has no date
        (None, "2026-01-01", "'; DROP TABLE orders; --", "to"),
    ],
)
def test_a_query_names_a_window_or_both_days(
    window: str | None, first: str | None, last: str | None, field: str
) -> None:
    with pytest.raises(DomainError) as caught:
        requested_span(window, first, last, date(2026, 12, 1))
    assert caught.value.code == "validation_error"
    assert ("query", field) in [p.loc for p in caught.value.errors]


def test_from_and_to_are_both_included() -> None:
    span = requested_span(None, "2026-11-25", "2026-12-01", date(2000, 1, 1))
    assert (span.first, span.last, span.days) == (date(2026, 11, 25), date(2026, 12, 1), 7)
    assert span.dates()[0] == date(2026, 11, 25) and span.dates()[-1] == date(2026, 12, 1)
    assert parse_date("9998-12-31", "to") == date(9998, 12, 31)


# -- the shop's days in UTC ------------------------------------------------------------


def test_today_is_the_shops_local_date() -> None:
    # 23:30 UTC on 31 Oct 2026 is 00:30 on 1 Nov in Berlin (CET, UTC+1)
    assert BERLIN.today(utc(2026, 10, 31, 23, 30)) == date(2026, 11, 1)
    assert ShopCalendar(ZoneInfo("UTC")).today(utc(2026, 10, 31, 23, 30)) == date(2026, 10, 31)
    # 20:00 UTC is still the same day in Berlin but already the next in Tokyo (UTC+9)
    assert ShopCalendar(ZoneInfo("Asia/Tokyo")).today(utc(2026, 5, 1, 20)) == date(2026, 5, 2)


def test_a_25_hour_day_when_the_clocks_go_back() -> None:
    # Berlin, 25 Oct 2026: CEST (UTC+2) until 03:00, then CET (UTC+1). The day starts at
    # 00:00 CEST = 22:00 UTC on the 24th and ends at 00:00 CET on the 26th = 23:00 UTC.
    bounds = BERLIN.boundaries(DateSpan(date(2026, 10, 24), date(2026, 10, 26)))
    assert bounds == [
        utc(2026, 10, 23, 22),  # 24 Oct, CEST
        utc(2026, 10, 24, 22),  # 25 Oct, CEST at midnight
        utc(2026, 10, 25, 23),  # 26 Oct, CET
        utc(2026, 10, 26, 23),  # 27 Oct
    ]
    assert bounds[2] - bounds[1] == timedelta(hours=25)


def test_a_23_hour_day_when_the_clocks_go_forward() -> None:
    # Berlin, 29 Mar 2026: CET (UTC+1) until 02:00, then CEST (UTC+2).
    bounds = BERLIN.boundaries(DateSpan(date(2026, 3, 29), date(2026, 3, 29)))
    assert bounds == [utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)]
    assert bounds[1] - bounds[0] == timedelta(hours=23)


def test_a_day_whose_midnight_does_not_exist() -> None:
    # Santiago, 6 Sep 2026: at 00:00 (-04) the clocks jump to 01:00 (-03), so the day's
    # first instant is the jump itself, 04:00 UTC; the day before ended then, 24 h long.
    santiago = ShopCalendar(ZoneInfo("America/Santiago"))
    bounds = santiago.boundaries(DateSpan(date(2026, 9, 5), date(2026, 9, 6)))
    assert bounds == [utc(2026, 9, 5, 4), utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)]


ZONES = sorted(z for z in available_timezones() if z not in {"localtime", "Factory"})


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(min_value=date(1971, 1, 1), max_value=date(2040, 12, 31)),
)
def test_each_day_starts_at_the_first_instant_of_that_local_date(zone: str, day: date) -> None:
    calendar = ShopCalendar(ZoneInfo(zone))
    start = calendar.start_of(day)
    tz = ZoneInfo(zone)
    assert start.tzinfo is UTC
    assert start.astimezone(tz).date() == day
    assert (start - timedelta(microseconds=1)).astimezone(tz).date() < day
    # and the next day starts later, so days never overlap or leave a gap
    assert calendar.start_of(day + timedelta(days=1)) > start


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


# -- the setting --------------------------------------------------------------------------


def test_the_time_zone_setting() -> None:
    assert Settings.from_env({}).timezone == "UTC"
    assert Settings.from_env({"KASSA_TIMEZONE": ""}).timezone == "UTC"
    assert Settings.from_env({"KASSA_TIMEZONE": "Europe/Berlin"}).timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd", "/etc/localtime"]
)
def test_an_unknown_time_zone_is_one_line_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match="KASSA_TIMEZONE") as caught:
        Settings.from_env({"KASSA_TIMEZONE": name})
    assert "\n" not in str(caught.value) and "IANA" in str(caught.value)
