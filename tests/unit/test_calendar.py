"""The shop's calendar (kassa.domain.calendar), the one period of the KPIs and the CSV
exports (api-contract.md: Revenue KPIs, CSV exports): windows and `from`/`to` as calendar
days in the shop's time zone, where each day begins in UTC (DST days included), the
refusals (422 `invalid_period`, the field named), and the `KASSA_TIMEZONE` setting.
Expected values are worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.config import ConfigError, Settings
from kassa.domain.calendar import (
    MAX_SPAN_DAYS,
    Period,
    Window,
    days_period,
    local_midnight,
    parse_day,
    requested_period,
    shop_zone,
    today,
    window_days,
)
from kassa.domain.errors import DomainError, ErrorKind

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-03-04 23:30 UTC is already 2026-03-05 in Berlin (UTC+1 in winter)
LATE_EVENING_UTC = datetime(2026, 3, 4, 23, 30, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def period(**given: str | None) -> Period:
    args: dict[str, str | None] = {"window": None, "from_": None, "to": None, **given}
    return requested_period(
        window=args["window"],
        from_=args["from_"],
        to=args["to"],
        now=LATE_EVENING_UTC,
        zone=BERLIN,
    )


def refused(**given: str | None) -> DomainError:
    with pytest.raises(DomainError) as caught:
        period(**given)
    assert caught.value.kind is ErrorKind.INVALID
    assert caught.value.code == "invalid_period"
    assert caught.value.errors and caught.value.errors[0].loc[0] == "query"
    return caught.value


@pytest.mark.parametrize(
    ("window", "first", "last"),
    [
        ("today", date(2026, 3, 5), date(2026, 3, 5)),
        ("yesterday", date(2026, 3, 4), date(2026, 3, 4)),
        ("7d", date(2026, 2, 27), date(2026, 3, 5)),  # 7 days including today
        ("30d", date(2026, 2, 4), date(2026, 3, 5)),
        ("mtd", date(2026, 3, 1), date(2026, 3, 5)),
        ("ytd", date(2026, 1, 1), date(2026, 3, 5)),
    ],
)
def test_windows_are_calendar_days_ending_on_the_shops_today(
    window: str, first: date, last: date
) -> None:
    found = period(window=window)
    assert (found.first, found.last, found.window) == (first, last, Window(window))
    if window == "7d":
        assert found.days == 7
    if window == "30d":
        assert found.days == 30


def test_a_day_is_local_midnight_to_local_midnight_in_utc() -> None:
    today = period(window="today")
    assert today.start == datetime(2026, 3, 4, 23, 0, tzinfo=UTC)
    assert today.end == datetime(2026, 3, 5, 23, 0, tzinfo=UTC)
    assert today.describe() == {
        "window": "today",
        "from": "2026-03-05",
        "to": "2026-03-05",
        "timezone": "Europe/Berlin",
    }


def test_a_daylight_saving_day_is_23_or_25_hours_long() -> None:
    spring = period(from_="2026-03-29", to="2026-03-29")  # clocks go forward in Berlin
    autumn = period(from_="2026-10-25", to="2026-10-25")  # and back
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)


def test_from_and_to_are_both_inclusive() -> None:
    found = period(from_="2026-01-01", to="2026-01-31")
    assert found.days == 31 and found.window is None
    assert found.start == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert found.end == datetime(2026, 1, 31, 23, 0, tzinfo=UTC)


def test_the_span_may_be_366_days_and_no_more() -> None:
    assert period(from_="2024-01-01", to="2024-12-31").days == MAX_SPAN_DAYS  # a leap year
    error = refused(from_="2025-01-01", to="2026-01-02")
    assert "367 days" in error.detail and error.errors[0].loc == ("query", "to")
    assert refused(from_="0001-01-02", to="9999-12-30").errors[0].loc == ("query", "to")
    # a leap year's ytd on 31 December is 366 days: the longest window, and allowed
    first, last = window_days(Window.YEAR_TO_DATE, date(2028, 12, 31))
    assert days_period(first, last, UTC).days == 366


def test_windows_across_month_and_year_ends() -> None:
    assert window_days(Window.YESTERDAY, date(2026, 1, 1)) == (date(2025, 12, 31),) * 2
    assert window_days(Window.LAST_7_DAYS, date(2026, 3, 2)) == (
        date(2026, 2, 24),
        date(2026, 3, 2),
    )
    assert window_days(Window.MONTH_TO_DATE, date(2026, 12, 1)) == (date(2026, 12, 1),) * 2


def test_from_after_to_is_refused() -> None:
    error = refused(from_="2026-02-02", to="2026-02-01")
    assert error.errors[0].loc == ("query", "from")


@pytest.mark.parametrize(
    "given",
    [
        {},  # no period at all
        {"from_": "2026-01-01"},  # to missing
        {"to": "2026-01-01"},  # from missing
        {"window": "7d", "from_": "2026-01-01", "to": "2026-01-02"},  # both ways
        {"window": "week"},
        {"window": ""},
        {"from_": "2026-1-1", "to": "2026-01-02"},
        {"from_": "2026-02-30", "to": "2026-03-01"},
        {"from_": "20260101", "to": "2026-01-02"},
        {"from_": "2026-01-01T00:00:00", "to": "2026-01-02"},
        {"from_": "2026-01-01 ", "to": "2026-01-02"},
        {"from_": "2026-01-01\n", "to": "2026-01-02"},
        {"from_": "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661", "to": "2026-01-02"},
        {"from_": "0001-01-01", "to": "0001-01-01"},  # would overflow moved to UTC
        {"from_": "9999-12-31", "to": "9999-12-31"},
        {"from_": "0000-01-01", "to": "0000-01-01"},
        {"window": "7D"},
        {"from_": "2026-01-01", "to": "\uff19\uff19\uff19\uff19-01-01"},  # fullwidth digits
        {"from_": "2026-01-01", "to": "'; DROP TABLE orders; --"},
    ],
)
def test_bad_periods_are_refused_with_the_field_named(given: dict[str, str]) -> None:
    refused(**given)


def test_the_extreme_days_still_convert() -> None:
    for zone in (ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")):
        first = requested_period(
            window=None, from_="0001-01-02", to="0001-01-02", now=LATE_EVENING_UTC, zone=zone
        )
        last = requested_period(
            window=None, from_="9999-12-30", to="9999-12-30", now=LATE_EVENING_UTC, zone=zone
        )
        assert first.start < first.end and last.start < last.end


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({}, "from"),
        ({"from_": "2026-01-01"}, "to"),
        ({"window": "7d", "to": "2026-01-01"}, "window"),
        ({"from_": "2026-02-30", "to": "2026-03-01"}, "from"),
        ({"from_": "2026-01-01", "to": "9999-12-31"}, "to"),
    ],
)
def test_the_refusal_names_the_field_at_fault(given: dict[str, str], field: str) -> None:
    assert refused(**given).errors[0].loc == ("query", field)


def test_parse_day_and_shop_zone() -> None:
    assert parse_day("2026-02-28", "from") == date(2026, 2, 28)
    assert shop_zone("Europe/Berlin") == BERLIN
    assert shop_zone(UTC) is UTC


# -- the shop's days in UTC ------------------------------------------------------------


def test_today_is_the_shops_local_date() -> None:
    # 23:30 UTC on 31 Oct 2026 is 00:30 on 1 Nov in Berlin (CET, UTC+1)
    assert today(utc(2026, 10, 31, 23, 30), BERLIN) == date(2026, 11, 1)
    assert today(utc(2026, 10, 31, 23, 30), UTC) == date(2026, 10, 31)
    # 20:00 UTC is still the same day in Berlin but already the next in Tokyo (UTC+9)
    assert today(utc(2026, 5, 1, 20), ZoneInfo("Asia/Tokyo")) == date(2026, 5, 2)


def test_a_25_hour_day_when_the_clocks_go_back() -> None:
    # Berlin, 25 Oct 2026: CEST (UTC+2) until 03:00, then CET (UTC+1). The day starts at
    # 00:00 CEST = 22:00 UTC on the 24th and ends at 00:00 CET on the 26th = 23:00 UTC.
    bounds = Period(date(2026, 10, 24), date(2026, 10, 26), BERLIN).boundaries()
    assert bounds == [
        utc(2026, 10, 23, 22),  # 24 Oct, CEST
        utc(2026, 10, 24, 22),  # 25 Oct, CEST at midnight
        utc(2026, 10, 25, 23),  # 26 Oct, CET
        utc(2026, 10, 26, 23),  # 27 Oct
    ]
    assert bounds[2] - bounds[1] == timedelta(hours=25)


def test_a_23_hour_day_when_the_clocks_go_forward() -> None:
    # Berlin, 29 Mar 2026: CET (UTC+1) until 02:00, then CEST (UTC+2).
    bounds = Period(date(2026, 3, 29), date(2026, 3, 29), BERLIN).boundaries()
    assert bounds == [utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)]
    assert bounds[1] - bounds[0] == timedelta(hours=23)


def test_a_day_whose_midnight_does_not_exist() -> None:
    # Santiago, 6 Sep 2026: at 00:00 (-04) the clocks jump to 01:00 (-03), so the day's
    # first instant is the jump itself, 04:00 UTC; the day before ended then, 24 h long.
    santiago = ZoneInfo("America/Santiago")
    bounds = Period(date(2026, 9, 5), date(2026, 9, 6), santiago).boundaries()
    assert bounds == [utc(2026, 9, 5, 4), utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)]


def test_the_boundaries_are_the_periods_start_days_and_end() -> None:
    found = period(from_="2026-11-25", to="2026-12-01")
    assert found.dates()[0] == date(2026, 11, 25) and found.dates()[-1] == date(2026, 12, 1)
    bounds = found.boundaries()
    assert len(bounds) == found.days + 1 == 8
    assert (bounds[0], bounds[-1]) == (found.start, found.end)


ZONES = sorted(z for z in available_timezones() if z not in {"localtime", "Factory"})


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(min_value=date(1971, 1, 1), max_value=date(2040, 12, 31)),
)
def test_each_day_starts_at_the_first_instant_of_that_local_date(zone: str, day: date) -> None:
    tz = ZoneInfo(zone)
    start = local_midnight(day, tz)
    assert start.tzinfo is UTC
    assert start.astimezone(tz).date() == day
    assert (start - timedelta(microseconds=1)).astimezone(tz).date() < day
    # and the next day starts later, so days never overlap or leave a gap
    assert local_midnight(day + timedelta(days=1), tz) > start


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
