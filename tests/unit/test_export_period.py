"""The period of an export (api-contract.md: Revenue KPIs, CSV exports): windows and
`from`/`to` as calendar days in the shop's time zone, turned into a UTC range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.export_period import (
    MAX_SPAN_DAYS,
    ExportPeriod,
    Window,
    export_period,
    parse_day,
    shop_zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-03-04 23:30 UTC is already 2026-03-05 in Berlin (UTC+1 in winter)
LATE_EVENING_UTC = datetime(2026, 3, 4, 23, 30, tzinfo=UTC)


def period(**given: str | None) -> ExportPeriod:
    args: dict[str, str | None] = {"window": None, "from_": None, "to": None, **given}
    return export_period(
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
    ],
)
def test_bad_periods_are_refused_with_the_field_named(given: dict[str, str]) -> None:
    refused(**given)


def test_the_extreme_days_still_convert() -> None:
    for zone in (ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")):
        first = export_period(
            window=None, from_="0001-01-02", to="0001-01-02", now=LATE_EVENING_UTC, zone=zone
        )
        last = export_period(
            window=None, from_="9999-12-30", to="9999-12-30", now=LATE_EVENING_UTC, zone=zone
        )
        assert first.start < first.end and last.start < last.end


def test_parse_day_and_shop_zone() -> None:
    assert parse_day("2026-02-28", "from") == date(2026, 2, 28)
    assert shop_zone("Europe/Berlin") == BERLIN
    assert shop_zone(UTC) is UTC
