"""Revenue: the KPIs of a period (`GET /v1/kpis`: a named window or from/to days, one
currency or all) as cards, and each currency's daily series as bar charts drawn on the
server (`dashboard.charts`), with the same numbers in a table for those who cannot see
the charts.

The period and currency are checked by the KPI service itself (`kpis.query`), so the
page refuses exactly what the API refuses, with the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from kassa.dashboard.auth import Staff, allowed
from kassa.dashboard.charts import Bar, bar_chart
from kassa.dashboard.formatting import percent
from kassa.dashboard.pages.common import page_router
from kassa.dashboard.web import Viewer, render
from kassa.domain.calendar import Window
from kassa.domain.errors import DomainError
from kassa.domain.kpis import BASIS_POINTS
from kassa.domain.roles import Permission
from kassa.services.kpis import DailyRow, KpiReport

router = page_router()
DEFAULT_WINDOW = Window.LAST_30_DAYS.value
WINDOW_LABELS = {
    Window.TODAY.value: "Today",
    Window.YESTERDAY.value: "Yesterday",
    Window.LAST_7_DAYS.value: "Last 7 days",
    Window.LAST_30_DAYS.value: "Last 30 days",
    Window.MONTH_TO_DATE.value: "Month to date",
    Window.YEAR_TO_DATE.value: "Year to date",
}


@dataclass(frozen=True, slots=True)
class CurrencySeries:
    """One currency's figures for every day of the period (days without a sale or refund
    as zeros) and its charts."""

    currency: str
    days: list[DailyRow]
    net_chart: Markup
    orders_chart: Markup


def daily_series(report: KpiReport, currency: str) -> list[DailyRow]:
    """`currency`'s row for every day from the report's first to its last: the report
    lists only the days that sold or refunded anything."""
    rows = {row.date: row for row in report.series if row.currency == currency}
    days = (report.first + timedelta(days=i) for i in range((report.last - report.first).days + 1))
    return [rows.get(day) or DailyRow(day, currency, 0, 0, 0, 0) for day in days]


def series_of(report: KpiReport, viewer: Viewer) -> list[CurrencySeries]:
    charted = []
    for figures in report.currencies:
        code = figures.currency
        days = daily_series(report, code)
        net = bar_chart(
            f"net-{code.lower()}",
            f"Net sales per day in {code}, {report.first} to {report.last}",
            [Bar(day.date.isoformat(), day.net_sales) for day in days],
            _money_in(viewer, code),
        )
        paid = bar_chart(
            f"orders-{code.lower()}",
            f"Orders paid per day in {code}, {report.first} to {report.last}",
            [Bar(day.date.isoformat(), day.orders_paid) for day in days],
        )
        charted.append(CurrencySeries(code, days, net, paid))
    return charted


def _money_in(viewer: Viewer, currency: str) -> Callable[[int], str]:
    return lambda amount: viewer.money(amount, currency)


def rate(basis_points: int | None, locale: str) -> str:
    """A rate kept in basis points as a percentage; a rate of nothing is unknown ("—")."""
    if basis_points is None:
        return "—"
    return percent(Decimal(basis_points) / BASIS_POINTS, locale, digits=2)


@router.get("/revenue")
def revenue_page(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_ANALYTICS))],
    window: str = "",
    from_: Annotated[str, Query(alias="from")] = "",
    to: str = "",
    currency: str = "",
) -> Response:
    """A named window (30 days unless another is chosen), or from and to when both are
    given: the one or the other, as the API takes them. Whatever is typed reaches
    `kpis.query`, whose refusal is shown on the page (not the API's problem document)."""
    first, last, currency = from_.strip(), to.strip(), currency.strip()
    dated = bool(first or last)
    kpis = staff.kassa.kpis
    form: dict[str, Any] = {
        "window": "" if dated else (window or DEFAULT_WINDOW),
        "first": first,
        "last": last,
        "currency": currency.upper(),
        "windows": WINDOW_LABELS,
    }
    try:
        query = kpis.query(
            window=None if dated else (window or DEFAULT_WINDOW),
            first=first or None,
            last=last or None,
            currency=currency or None,
        )
    except DomainError as exc:
        context = {**form, "report": None, "series": [], "error": exc.detail}
        return render(request, staff.viewer, "revenue.html.j2", context, status=422)
    report = kpis.report(query)
    locale = staff.viewer.locale
    context = {
        **form,
        "report": report,
        "series": series_of(report, staff.viewer),
        "rate": lambda bp: rate(bp, locale),
        "error": "",
    }
    return render(request, staff.viewer, "revenue.html.j2", context)
