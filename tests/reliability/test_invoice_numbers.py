"""100 orders paid at once: invoices numbered 1..100, no gap, no twin.

The payments race through a two-process server, and each order's invoice is issued in
the transaction that pays it, so the number allocation races with the payments
themselves; four `kassa worker` processes apply the sandbox's webhooks meanwhile (a
no-op for payments already settled, and nothing to invoice twice).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.domain.documents import parse_number
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.invoices import ISSUE_INVOICE
from kassa.storage.tables import DocumentCounter, IssuedDocument, Job, Order, ProviderEvent
from tests.conftest import Keys, LiveServer
from tests.reliability.test_races import _fire

ORDERS = 100


@pytest.fixture
def workers(database_url: str, is_postgres: bool) -> Iterator[list[subprocess.Popen[bytes]]]:
    if not is_postgres:
        pytest.skip("many concurrent workers are a PostgreSQL deployment (SQLite: one writer)")
    env = {**os.environ, "KASSA_DATABASE_URL": database_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kassa.cli", "worker", "--poll", "0.05"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_100_orders_paid_concurrently_get_invoices_1_to_100(
    workers: list[subprocess.Popen[bytes]],
    live_server: LiveServer,
    kassa: Kassa,
    keys: Keys,
    system: RequestContext,
) -> None:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    with httpx.Client(base_url=live_server.url, headers=keys.headers("ops"), timeout=60) as http:
        orders = [
            http.post(
                "/v1/orders",
                json={
                    "email": f"b{i}@example.com",
                    "currency": "EUR",
                    "lines": [{"sku": "MUG", "quantity": 1 + i % 3}],
                },
            ).json()["id"]
            for i in range(ORDERS)
        ]
    pending = iter(orders)
    responses = _fire(
        ORDERS,
        lambda h: h.post(
            f"{live_server.url}/v1/orders/{next(pending)}/payments",
            json={"payment_method": "pm_card_visa"},
            headers=keys.headers("ops"),
        ),
    )
    assert [r.status_code for r in responses] == [201] * ORDERS
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).where(Order.status == "paid")) == ORDERS
        # every invoice is there as its payment answered: none waits for a worker
        assert s.scalar(select(func.count()).select_from(IssuedDocument)) == ORDERS

    deadline = time.monotonic() + 120  # the workers apply every webhook of the payments
    while time.monotonic() < deadline:
        with kassa.db.transaction(read_only=True) as s:
            unapplied = s.scalar(
                select(func.count())
                .select_from(ProviderEvent)
                .where(ProviderEvent.applied_at.is_(None))
            )
        if unapplied == 0:
            break
        assert all(w.poll() is None for w in workers), "a worker died"
        time.sleep(0.2)
    assert unapplied == 0

    with kassa.db.transaction(read_only=True) as s:
        rows = s.execute(
            select(IssuedDocument.number, IssuedDocument.invoiced_order_id, IssuedDocument.total)
        ).all()
        counter = s.scalar(select(DocumentCounter.last_number))
        totals = {order_id: total for order_id, total in s.execute(select(Order.id, Order.total))}
        invoice_jobs = s.scalar(select(func.count()).where(Job.kind == ISSUE_INVOICE))
    sequences = sorted(parse_number(number)[2] for number, _, _ in rows)
    assert sequences == list(range(1, ORDERS + 1))  # no gap, no duplicate
    assert counter == ORDERS
    assert sorted(order for _, order, _ in rows) == sorted(orders)  # one invoice per order
    assert all(total == totals[order] for _, order, total in rows)
    assert invoice_jobs == 0  # nothing left for a worker to issue
