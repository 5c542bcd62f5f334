"""The export registry and its rules, below the API: the contract binds every source,
another service's rows plug in under a contract name (the KPI series does), days are the
shop's, and a process streams a bounded number of exports at once."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.domain.errors import DomainError, ErrorKind
from kassa.services.context import RequestContext
from kassa.services.export_sources import TABLE_EXPORTS, RowsExport, TableExport
from kassa.services.exports import CONTRACT, MAX_RUNNING, Exports
from kassa.storage.tables import AuditRecord, Customer
from tests.builders import make_product
from tests.conftest import FakeClock, Keys
from tests.integration.test_export_streaming import insert_orders
from tests.integration.test_kpis import Shop, a_week_of_trade
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


def test_kpis_csv_is_the_series_of_get_kpis_for_the_same_period(
    kassa: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    """The `kpis` export is the KPI service's own daily series (registered at start-up),
    read in the export's snapshot: for the same period, row for row what `GET /v1/kpis`
    answers as `series`, over a week of trade in two currencies with refunds."""
    make_product(client, keys, "MUG", unit_amount=1000, currency="EUR")
    make_product(client, keys, "CAP", unit_amount=1500, currency="USD")
    a_week_of_trade(Shop(client, keys), clock)
    auth = keys.headers("analyst")
    for params in (
        {"from": "2026-11-25", "to": "2026-12-01"},
        {"from": "2026-11-20", "to": "2026-12-02"},
        {"window": "7d"},
        {"window": "mtd"},
    ):
        report = client.get("/v1/kpis", params=params, headers=auth)
        assert report.status_code == 200, report.text
        response = client.get("/v1/exports/kpis.csv", params=params, headers=auth)
        assert response.status_code == 200, response.text
        first, last = report.json()["from"], report.json()["to"]
        assert response.headers["content-disposition"] == (
            f'attachment; filename="kassa-kpis-{first}-{last}.csv"'
        )
        series = [[str(day[c]) for c in CONTRACT["kpis"]] for day in report.json()["series"]]
        assert csv_rows(response.content) == [list(CONTRACT["kpis"]), *series], params
    week = csv_rows(
        client.get(
            "/v1/exports/kpis.csv", params={"from": "2026-11-25", "to": "2026-12-01"}, headers=auth
        ).content
    )
    assert len(week) > 5  # the comparison above compared something
    assert ["2026-11-27", "EUR", "0", "0", "500", "-500"] in week  # a number, not escaped text
    with kassa.db.transaction(read_only=True) as session:
        records = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "export.kpis")
        ).all()
    assert len(records) == 5
    assert all(r.after is not None and r.after["completed"] for r in records)
    assert len(week) - 1 in {r.after["rows"] for r in records if r.after is not None}


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
