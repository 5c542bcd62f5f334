"""The export registry and its rules, below the API: the contract binds every source,
another service's rows plug in under a contract name (the KPI series will), days are the
shop's, and a process streams a bounded number of exports at once."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.bootstrap import Kassa
from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.export_period import ExportPeriod
from kassa.services.context import RequestContext
from kassa.services.csv_cells import Cell
from kassa.services.export_sources import TABLE_EXPORTS, RowsExport, TableExport
from kassa.services.exports import CONTRACT, MAX_RUNNING, Exports
from kassa.storage.tables import AuditRecord, Customer
from tests.conftest import Keys
from tests.integration.test_export_streaming import insert_orders
from tests.reliability.test_database_outage import Outage, assert_unavailable

CLI = RequestContext.system("cli")


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def test_every_table_export_selects_the_contracts_columns_in_order() -> None:
    assert set(TABLE_EXPORTS) == set(CONTRACT) - {"kpis"}
    for name, source in TABLE_EXPORTS.items():
        assert tuple(source.columns) == CONTRACT[name], name


def test_a_source_is_refused_unless_the_contract_fixes_its_columns(kassa: Kassa) -> None:
    with pytest.raises(ValueError, match=r"not in exports_contract\.json"):
        kassa.exports.register("wallets", RowsExport(lambda session, period: []))
    shuffled = TableExport(
        select(Customer.email.label("email"), Customer.id.label("id")),
        key=Customer.pk,
        created=Customer.created_at,
    )
    with pytest.raises(ValueError, match="the contract says"):
        kassa.exports.register("customers", shuffled)


def daily_series(session: Session, period: ExportPeriod | None) -> Iterator[Sequence[Cell]]:
    """Rows shaped as the KPI daily series, from the period it is given."""
    assert period is not None and session.is_active
    yield (period.first, "EUR", 2, 6000, 0, 6000)
    yield (period.last, "EUR", 0, 0, 500, -500)  # net sales may be negative


def test_the_kpi_series_plugs_in_under_its_contract_name(
    kassa: Kassa, client: TestClient, keys: Keys
) -> None:
    before = client.get(
        "/v1/exports/kpis.csv", params={"window": "7d"}, headers=keys.headers("analyst")
    )
    assert before.status_code == 404 and before.json()["code"] == "export_not_found"

    kassa.exports.register("kpis", RowsExport(daily_series))
    response = client.get(
        "/v1/exports/kpis.csv",
        params={"from": "2026-11-25", "to": "2026-12-01"},
        headers=keys.headers("analyst"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        'attachment; filename="kassa-kpis-2026-11-25-2026-12-01.csv"'
    )
    assert csv_rows(response.content) == [
        list(CONTRACT["kpis"]),
        ["2026-11-25", "EUR", "2", "6000", "0", "6000"],
        ["2026-12-01", "EUR", "0", "0", "500", "-500"],  # a number, not escaped text
    ]
    with kassa.db.transaction(read_only=True) as session:
        record = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "export.kpis")
        ).one()
    assert record.after is not None and record.after["rows"] == 2


def test_days_are_the_shops_calendar_days(kassa: Kassa) -> None:
    """At 12:00 UTC on 4 March it is already 01:00 on 5 March in Auckland (UTC+13)."""
    insert_orders(kassa, 0, 1, datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    auckland = Exports(kassa.db, kassa.clock, ZoneInfo("Pacific/Auckland"))
    in_utc = Exports(kassa.db, kassa.clock, UTC)

    def count(exports: Exports, day: date) -> int:
        with exports.open(CLI, "orders", from_=day.isoformat(), to=day.isoformat()) as export:
            body = b"".join(export)
        assert export.filters["timezone"] in ("Pacific/Auckland", "UTC")
        return len(csv_rows(body)) - 1

    assert count(auckland, date(2026, 3, 5)) == 1
    assert count(auckland, date(2026, 3, 4)) == 0
    assert count(in_utc, date(2026, 3, 4)) == 1
    assert count(in_utc, date(2026, 3, 5)) == 0


def test_a_process_streams_a_bounded_number_of_exports(kassa: Kassa) -> None:
    """Each open export holds a pooled connection: more than a few slow downloads would
    take the pool from the API. The next one is refused (409) until one closes."""
    exports = Exports(kassa.db, kassa.clock, UTC, max_running=2)
    first = exports.open(CLI, "products")
    second = exports.open(CLI, "customers", window="today")
    with pytest.raises(DomainError) as busy:
        exports.open(CLI, "orders", window="today")
    assert (busy.value.kind, busy.value.code) == (ErrorKind.CONFLICT, "exports_busy")
    with pytest.raises(DomainError) as refused:  # a refusal never takes a slot
        exports.open(CLI, "orders", from_="2026-02-02", to="2026-01-01")
    assert refused.value.code == "invalid_period"
    first.close()
    with exports.open(CLI, "orders", window="today") as third:
        assert b"".join(third).startswith(b"id,number,")
    second.close()
    with exports.open(CLI, "products"), exports.open(CLI, "products"):
        pass  # both slots free again


def test_an_outage_is_503_and_takes_no_export_slot(
    kassa: Kassa, client: TestClient, keys: Keys
) -> None:
    outage = Outage(kassa)
    auth = keys.headers("analyst")
    assert client.get("/v1/exports/contract", headers=auth).status_code == 200  # key cached
    outage.begin()
    for _ in range(MAX_RUNNING + 1):
        assert_unavailable(client.get("/v1/exports/products.csv", headers=auth))
    outage.end()
    with kassa.exports.open(CLI, "products"), kassa.exports.open(CLI, "products"):
        response = client.get("/v1/exports/products.csv", headers=auth)
        assert response.status_code == 200, response.text  # the failed ones hold no slot
    with kassa.db.transaction(read_only=True) as session:
        records = session.scalars(
            select(AuditRecord.after).where(AuditRecord.action == "export.products")
        ).all()
    # none for the 503s; the two opened here were closed unread
    assert sorted(r["completed"] for r in records if r) == [False, False, True]
