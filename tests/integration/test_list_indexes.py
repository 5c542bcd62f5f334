"""Every list filter reaches its rows through an index, in the cursor's order.

The lists page newest first (`ORDER BY pk DESC LIMIT n`, after `pk < cursor`). The
statements here are the ones the services really send (captured from the engine), asked
of the planner with EXPLAIN. A filter that can match any number of rows (an e-mail, a
status, a storefront's own orders, an audit action) must be served by an index that
yields the rows already in order: no sort, however many rows match. A filter bounded by
one order (its payments, refunds, documents) needs an index that leads with the order;
sorting those few rows is fine.

PostgreSQL is told to avoid sequential scans and sorts where it has any other way
(`enable_seqscan`, `enable_sort` off), so an empty table tells what a big one would: if a
plan still sorts or scans, no index could serve it. On SQLite every secondary index ends
in the rowid (`pk`), so (column) already is (column, pk); the check there is that the plan
uses an index and no temporary B-tree for the ORDER BY.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, inspect

from kassa.bootstrap import Kassa
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.services.pagination import CreatedRange
from tests.builders import make_product, order, paid_order
from tests.conftest import Keys

Statement = tuple[str, Any]


@contextmanager
def captured(kassa: Kassa) -> Iterator[list[Statement]]:
    """The statements the engine runs meanwhile, with their parameters."""
    seen: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(kassa.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(kassa.db.engine, "before_cursor_execute", record)


def page_query(kassa: Kassa, call: Callable[[], object]) -> Statement:
    """The one page query (`ORDER BY … pk DESC`) that `call` sends."""
    with captured(kassa) as seen:
        call()
    pages = [s for s in seen if "pk DESC" in s[0] and "LIMIT" in s[0]]
    assert len(pages) == 1, [s[0] for s in seen]
    return pages[0]


def postgres_plan(kassa: Kassa, statement: Statement, in_order: bool) -> list[dict[str, Any]]:
    """Every node of the plan PostgreSQL would choose if it could avoid sequential scans
    and, `in_order`, sorts; else if it could avoid plain index scans too (a walk down the
    primary key, filtering, looks cheap on a small table; a bitmap scan needs an index on
    the filter)."""
    sql, parameters = statement
    raw = kassa.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_sort = off" if in_order else "SET enable_indexscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, parameters)
        row = cursor.fetchone()
        raw.rollback()
    finally:
        raw.close()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return nodes


def sqlite_plan(kassa: Kassa, statement: Statement) -> list[str]:
    sql, parameters = statement
    raw = kassa.db.engine.raw_connection()
    try:
        rows = raw.cursor().execute("EXPLAIN QUERY PLAN " + sql, parameters).fetchall()
    finally:
        raw.close()
    return [str(row[-1]) for row in rows]


def assert_served_by_index(
    kassa: Kassa, statement: Statement, table: str, columns: tuple[str, ...], in_order: bool
) -> None:
    """`table`'s rows are found through an index on `columns` (all of them in its
    condition); with `in_order`, without sorting them either."""
    if kassa.db.engine.dialect.name == "sqlite":
        details = sqlite_plan(kassa, statement)
        steps = [d for d in details if d.startswith(("SEARCH", "SCAN")) and f" {table} " in d + " "]
        assert steps and all(d.startswith("SEARCH") for d in steps), details
        names = ["rowid" if c == "pk" else c for c in columns]  # pk is the rowid there
        assert all(re.search(rf"\b{c}[=<>]", steps[0]) for c in names), details
        if in_order:
            assert not any("TEMP B-TREE FOR ORDER BY" in d for d in details), details
        return
    nodes = postgres_plan(kassa, statement, in_order)
    scans = [n for n in nodes if n.get("Relation Name") == table]
    assert scans, nodes
    for scan in scans:
        assert "Seq Scan" not in scan["Node Type"], scan
        condition = scan.get("Index Cond", "") + scan.get("Recheck Cond", "")
        assert all(c in condition for c in columns), (columns, nodes)
    if in_order:
        assert not any("Sort" in n["Node Type"] for n in nodes), nodes


@pytest.fixture
def shop(client: TestClient, keys: Keys, kassa: Kassa) -> dict[str, str]:
    """One paid order, one pending one: ids to filter and page by."""
    make_product(client, keys)
    paid = paid_order(client, keys)
    pending = order(client, keys)
    return {"paid": paid["id"], "pending": pending["id"], "storefront": keys.ids["storefront"]}


STAFF = RequestContext("key_staff", Role.ADMIN)


def test_order_lists_are_served_in_cursor_order(kassa: Kassa, shop: dict[str, str]) -> None:
    storefront = RequestContext(shop["storefront"], Role.STOREFRONT)
    cases: list[tuple[Callable[[], object], tuple[str, ...]]] = [
        (lambda: kassa.orders.list(STAFF, limit=20, email="a@example.com"), ("email",)),
        (lambda: kassa.orders.list(STAFF, limit=20, customer="cus_x"), ("customer_id",)),
        (lambda: kassa.orders.list(STAFF, limit=20, status="pending"), ("status",)),
        (lambda: kassa.orders.list(storefront, limit=20), ("created_by_key",)),
        (
            lambda: kassa.orders.list(
                STAFF, limit=20, email="a@example.com", starting_after=shop["pending"]
            ),
            ("email", "pk"),
        ),
        (
            lambda: kassa.orders.list(storefront, limit=20, starting_after=shop["pending"]),
            ("created_by_key", "pk"),
        ),
    ]
    for call, columns in cases:
        assert_served_by_index(kassa, page_query(kassa, call), "orders", columns, in_order=True)


def test_payment_document_and_audit_lists_are_served_in_cursor_order(
    kassa: Kassa, shop: dict[str, str]
) -> None:
    cases: list[tuple[Callable[[], object], str, tuple[str, ...]]] = [
        (lambda: kassa.payments.list(STAFF, limit=20, status="succeeded"), "payments", ("status",)),
        (lambda: kassa.audit.list(limit=20, action="order.paid"), "audit_log", ("action",)),
        (lambda: kassa.audit.list(limit=20, actor_key_id="key_x"), "audit_log", ("actor_key_id",)),
        (lambda: kassa.audit.list(limit=20, subject_id=shop["paid"]), "audit_log", ("subject_id",)),
        (lambda: kassa.audit.list(limit=20, actor_user="usr_x"), "audit_log", ("actor_user",)),
    ]
    if kassa.db.engine.dialect.name == "postgresql":  # SQLite still walks the invoices
        credit_notes = lambda: kassa.invoices.list("credit_note", limit=20)  # noqa: E731
        cases.append((credit_notes, "documents", ("kind",)))
    for call, table, columns in cases:
        assert_served_by_index(kassa, page_query(kassa, call), table, columns, in_order=True)


def leading_columns(kassa: Kassa, table: str) -> set[str]:
    """The first column of each index and unique constraint on `table`."""
    inspector = inspect(kassa.db.engine)
    found = inspector.get_indexes(table) + list(inspector.get_unique_constraints(table))
    return {str(index["column_names"][0]) for index in found if index["column_names"]}


def test_one_orders_lists_have_an_index_on_the_order(kassa: Kassa, shop: dict[str, str]) -> None:
    """An order's payments, refunds and documents are a handful of rows: an index that
    leads with the order finds them (sorting them is cheap). Checked in the catalogue, not
    the planner: on a near-empty table the planner's choice says nothing about a big one."""
    for table in ("payments", "refunds", "documents", "audit_log"):
        column = "subject_id" if table == "audit_log" else "order_id"
        assert column in leading_columns(kassa, table), table
    assert "order_id" in leading_columns(kassa, "order_lines")
    assert "payment_id" in leading_columns(kassa, "payment_attempts")
    assert "refund_id" in leading_columns(kassa, "refund_attempts")


def test_a_time_window_is_an_index_range(kassa: Kassa, shop: dict[str, str]) -> None:
    """`created[gte]`/`created[lt]` narrow by the created_at index (then the few rows of a
    narrow window are sorted; a wide window is read newest first through the key)."""
    window = CreatedRange(gte=kassa.clock(), lt=kassa.clock())
    statement = page_query(kassa, lambda: kassa.orders.list(STAFF, limit=20, created=window))
    assert_served_by_index(kassa, statement, "orders", ("created_at",), in_order=False)
