"""Revenue KPIs over whole calendar days of the shop (`GET /v1/kpis`; docs/kpis.md).

Every figure is counted by the time of its own event, in the shop's time zone
(`KASSA_TIMEZONE`): an order by when it was paid (`orders.paid_at`), created or canceled,
a refund by when it succeeded (`refunds.succeeded_at`), a customer by when it was created,
a payment by when it was created (and counted only once it has ended), and the wallets'
liability is the sum of their ledger (`wallet_entries`) up to the end of the window.
Amounts are kept apart per currency and never added across currencies.

All figures come from the database's own aggregation (GROUP BY, SUM, COUNT): no row of an
order, refund or payment is loaded into Python, only the per-day and per-currency sums.
They are read inside one `Database.snapshot()` (REPEATABLE READ on PostgreSQL), so a
payment or refund committed while the report runs is in every figure or in none.

Day bucketing, the one subtle part: a calendar day of the shop is the half-open range of
UTC instants [its local midnight, the next local midnight), and those instants are
computed in Python with zoneinfo (`domain.calendar.Period.boundaries`), one per day, so a 23- or
25-hour day on a DST change and a skipped midnight are exact. The days go to the database
as a small table (`WITH days AS (SELECT ... FROM (VALUES (0, :b0, :b1), ...))`, at most
366 rows, see `_days_table`), and each event is joined to the day whose range holds its
timestamp (`starts <= t < ends`), then grouped by day and currency. This is the same
plain SQL on SQLite and on PostgreSQL: it needs no time zone support in the database
(SQLite has none; PostgreSQL's `AT TIME ZONE` would be exact too but is not portable, and
a fixed UTC offset would misfile the hours around every DST change). On PostgreSQL each
day is an index range scan on the event's time column (migration 0012). The totals of the
window are the sums of its days, so the series and the totals never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    column,
    func,
    select,
    text,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from kassa.domain.calendar import Period, requested_period, shop_zone
from kassa.domain.kpis import average, basis_points
from kassa.domain.money import normalize_currency
from kassa.domain.payments import PaymentStatus
from kassa.domain.refunds import RefundStatus
from kassa.services.context import Clock
from kassa.storage.database import Database
from kassa.storage.prebuilt import kept
from kassa.storage.tables import UTC_TIME, Customer, Order, Payment, Refund, WalletEntry

FINISHED = (PaymentStatus.SUCCEEDED.value, PaymentStatus.FAILED.value)


@dataclass(frozen=True, slots=True)
class KpiQuery:
    """What a report covers: calendar days of the shop, and one currency or all."""

    period: Period
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One calendar day and currency of the series (a day with any sale or refund)."""

    date: date
    currency: str
    orders_paid: int
    gross_sales: int
    refunds: int
    net_sales: int


DailyCells = tuple[str, str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class CurrencyKpis:
    currency: str
    orders_paid: int
    gross_sales: int
    refunds: int
    net_sales: int
    average_order_value: int
    refund_rate_bp: int | None
    wallet_liability: int


@dataclass(frozen=True, slots=True)
class PaymentKpis:
    finished: int
    succeeded: int
    success_rate_bp: int | None
    recovered_by_retry: int


@dataclass(frozen=True, slots=True)
class KpiReport:
    first: date  # `from` in the API
    last: date  # `to`
    timezone: str
    currencies: list[CurrencyKpis]
    orders_created: int
    orders_canceled: int
    new_customers: int
    payments: PaymentKpis
    series: list[DailyRow]


@dataclass(frozen=True, slots=True)
class _Days:
    """The window's days as the database sees them: a table of (day, starts, ends), the
    values of its bind parameters, and the window's bounds."""

    table: CTE
    bounds: dict[str, datetime]  # the table's parameters: b0 .. bN
    dates: list[date]
    start: datetime  # the first day's first instant (UTC)
    end: datetime  # the instant after the last day (UTC)


def _days_table(days: int) -> CTE:
    """`days(day, starts, ends)`: day i runs from bound `b<i>` to bound `b<i+1>`.

    Written as text and kept per number of days (storage.prebuilt): SQLAlchemy's own
    `values()` construct is compiled anew on every execution, about 100 us per bound
    value, a quarter of a second of CPU for a year's report. `column1..3` are the names
    both SQLite and PostgreSQL give the columns of a VALUES list."""

    def build() -> CTE:
        rows = ", ".join(f"({i}, :b{i}, :b{i + 1})" for i in range(days))
        return (
            text(
                "SELECT column1 AS day, column2 AS starts, column3 AS ends"
                f" FROM (VALUES {rows}) AS bounds"
            )
            .bindparams(*(bindparam(f"b{i}", type_=UTC_TIME) for i in range(days + 1)))
            .columns(column("day", Integer), column("starts", UTC_TIME), column("ends", UTC_TIME))
            .cte("days")
        )

    return kept(("kpis.days", days), build)


def _days(period: Period) -> _Days:
    bounds = period.boundaries()
    return _Days(
        table=_days_table(period.days),
        bounds={f"b{i}": bound for i, bound in enumerate(bounds)},
        dates=period.dates(),
        start=bounds[0],
        end=bounds[-1],
    )


def _in(at: InstrumentedAttribute[datetime | None], days: _Days) -> ColumnElement[bool]:
    return and_(at >= days.start, at < days.end)


def _per_day(days: _Days, at: InstrumentedAttribute[datetime | None], *columns: Any) -> Select[Any]:
    """`columns` per day of `days`, the rows joined to the day whose range holds `at`."""
    day = days.table.c
    return (
        select(day.day, *columns)
        .select_from(days.table)
        .join(at.class_, and_(at >= day.starts, at < day.ends))
        .group_by(day.day)
    )


class Kpis:
    def __init__(self, db: Database, clock: Clock, timezone: str) -> None:
        self._db = db
        self._clock = clock
        self.timezone = timezone
        self.zone = shop_zone(timezone)

    def query(
        self,
        *,
        window: str | None = None,
        first: str | None = None,
        last: str | None = None,
        currency: str | None = None,
    ) -> KpiQuery:
        """The query `window=` or `from=`/`to=` (YYYY-MM-DD, both included) and
        `currency=` ask for, checked (a `DomainError` naming the field if not: 422
        `invalid_period` for the period, as the CSV exports answer)."""
        period = requested_period(
            window=window, from_=first, to=last, now=self._clock(), zone=self.zone
        )
        code = normalize_currency(currency, ("query", "currency")) if currency else None
        return KpiQuery(period, code)

    def report(self, query: KpiQuery) -> KpiReport:
        days = _days(query.period)
        with self._db.snapshot() as session:
            _without_jit(session)
            series = self._series(session, days, query.currency)
            liability = self._wallet_liability(session, days, query.currency)
            created, canceled, customers = self._counts(session, days, query.currency)
            payments = self._payments(session, days, query.currency)
        return KpiReport(
            first=query.period.first,
            last=query.period.last,
            timezone=self.timezone,
            currencies=_per_currency(series, liability, query.currency),
            orders_created=created,
            orders_canceled=canceled,
            new_customers=customers,
            payments=payments,
            series=series,
        )

    def daily_rows(self, session: Session, period: Period | None) -> Iterator[DailyCells]:
        """The daily series of `period` (what `kpis.csv` exports), read with the caller's
        `session` (the export's snapshot), each row's cells in the export contract's
        order: date, currency, orders_paid, gross_sales, refunds, net_sales. Date then
        currency order, as in the report's `series`; all currencies. They are few (at
        most 366 days times the currencies sold in), being sums, not the orders."""
        if period is None:
            raise ValueError("the KPI series covers a period: the export is a timed one")
        _without_jit(session)
        for row in self._series(session, _days(period), None):
            yield (
                row.date.isoformat(),
                row.currency,
                row.orders_paid,
                row.gross_sales,
                row.refunds,
                row.net_sales,
            )

    # -- the statements ---------------------------------------------------------------------

    @staticmethod
    def _series(session: Session, days: _Days, currency: str | None) -> list[DailyRow]:
        sales = _per_day(
            days, Order.paid_at, Order.currency, func.count(), func.sum(Order.total)
        ).group_by(Order.currency)
        refunds = (
            _per_day(days, Refund.succeeded_at, Refund.currency, func.sum(Refund.amount))
            .where(Refund.status == RefundStatus.SUCCEEDED.value)
            .group_by(Refund.currency)
        )
        if currency is not None:
            sales = sales.where(Order.currency == currency)
            refunds = refunds.where(Refund.currency == currency)
        totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for day, code, count, gross in session.execute(sales, days.bounds):
            totals[int(day), str(code)][0:2] = [int(count), int(gross)]
        for day, code, refunded in session.execute(refunds, days.bounds):
            totals[int(day), str(code)][2] = int(refunded)
        return [
            DailyRow(days.dates[day], code, paid, gross, refunded, gross - refunded)
            for (day, code), (paid, gross, refunded) in sorted(totals.items())
        ]

    @staticmethod
    def _wallet_liability(session: Session, days: _Days, currency: str | None) -> dict[str, int]:
        """Per currency, every wallet's balance at the end of the window, added up: the sum
        of the ledger's entries written before that instant (later ones are not yet)."""
        stmt = (
            select(WalletEntry.currency, func.sum(WalletEntry.amount))
            .where(WalletEntry.created_at < days.end)
            .group_by(WalletEntry.currency)
        )
        if currency is not None:
            stmt = stmt.where(WalletEntry.currency == currency)
        return {str(code): int(total) for code, total in session.execute(stmt)}

    @staticmethod
    def _counts(session: Session, days: _Days, currency: str | None) -> tuple[int, int, int]:
        """Orders created and canceled, and customers created, in the window (customers
        have no currency: the filter does not apply to them)."""

        def orders(at: InstrumentedAttribute[datetime | None]) -> ColumnElement[int]:
            stmt = select(func.count()).select_from(Order).where(_in(at, days))
            if currency is not None:
                stmt = stmt.where(Order.currency == currency)
            return stmt.scalar_subquery()

        customers = (
            select(func.count())
            .select_from(Customer)
            .where(_in(Customer.created_at, days))
            .scalar_subquery()
        )
        row = session.execute(
            select(orders(Order.created_at), orders(Order.canceled_at), customers)
        ).one()
        return int(row[0]), int(row[1]), int(row[2])

    @staticmethod
    def _payments(session: Session, days: _Days, currency: str | None) -> PaymentKpis:
        """Payments created in the window that have ended, succeeded or failed (those still
        open, or canceled, are not a verdict on the payment)."""
        succeeded = Payment.status == PaymentStatus.SUCCEEDED.value
        stmt = select(
            func.count(),
            func.coalesce(func.sum(case((succeeded, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Payment.recovered_by_retry.is_(True), 1), else_=0)), 0),
        ).where(_in(Payment.created_at, days), Payment.status.in_(FINISHED))
        if currency is not None:
            stmt = stmt.where(Payment.currency == currency)
        finished, won, recovered = (int(v) for v in session.execute(stmt).one())
        return PaymentKpis(finished, won, basis_points(won, finished), recovered)


def _without_jit(session: Session) -> None:
    """No JIT compilation on PostgreSQL for the rest of this transaction. The planner cannot
    know how many rows one day of the days table matches (its bounds are parameters), so it
    guesses a ninth of the table per day: for a year's report on 1,000,000 orders it then
    estimates tens of millions of rows and JIT-compiles the sales statement, which took
    0.36 s of the statement's 1.0 s (bench/kpis.py) and saved nothing."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def _per_currency(
    series: Sequence[DailyRow], liability: dict[str, int], currency: str | None
) -> list[CurrencyKpis]:
    """The window's figures per currency, the sums of its days. A currency is listed when
    it sold or refunded anything in the window or its wallets owe anything at the end;
    the currency asked for (`currency=`) always is, zeros and all."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in series:
        total = sums[row.currency]
        total[0] += row.orders_paid
        total[1] += row.gross_sales
        total[2] += row.refunds
    codes = set(sums) | {code for code, owed in liability.items() if owed}
    if currency is not None:
        codes.add(currency)
    report = []
    for code in sorted(codes):
        paid, gross, refunded = sums.get(code, (0, 0, 0))
        report.append(
            CurrencyKpis(
                currency=code,
                orders_paid=paid,
                gross_sales=gross,
                refunds=refunded,
                net_sales=gross - refunded,
                average_order_value=average(gross, paid),
                refund_rate_bp=basis_points(refunded, gross),
                wallet_liability=liability.get(code, 0),
            )
        )
    return report
