"""A refund asked for while the worker applies a provider event to the same payment, on
PostgreSQL, really concurrently (bench/dashboard.py met it as a 500 DeadlockDetected).

The webhook handlers lock the payment, then its order. Opening a refund locks the order,
then inserts refund rows whose foreign key takes a KEY SHARE lock on the payment. With the
payment locked FOR UPDATE that key share waits for the handler, while the handler waits
for the order: a deadlock, one side aborted. The payment's row lock is FOR NO KEY UPDATE
(kassa never changes a payment's key), which a foreign key's KEY SHARE does not wait for.
"""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from kassa.bootstrap import Kassa
from kassa.services.context import RequestContext
from kassa.services.orders import lock_order
from kassa.services.settlement import lock_payment
from tests.builders import make_product, paid_order
from tests.conftest import Keys


def test_a_refund_beside_a_webhook_holding_its_payment_waits_instead_of_deadlocking(
    kassa: Kassa, client: TestClient, keys: Keys, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("row locks: PostgreSQL (SQLite has one writer)")
    make_product(client, keys, unit_amount=1000)
    placed = paid_order(client, keys)
    payments = client.get(f"/v1/orders/{placed['id']}/payments", headers=keys.headers("admin"))
    payment_id = payments.json()["data"][0]["id"]
    handler_holds_payment = threading.Event()
    failures: list[BaseException] = []

    def webhook_handler() -> None:
        try:
            with kassa.db.transaction() as session:
                assert lock_payment(session, payment_id) is not None
                handler_holds_payment.set()
                time.sleep(0.6)  # the refund locks the order and reaches its insert
                assert lock_order(session, placed["id"]) is not None
        except BaseException as exc:
            failures.append(exc)

    def refund() -> None:
        try:
            assert handler_holds_payment.wait(10)
            kassa.refunds.create(RequestContext.system("test"), placed["id"], amount=300)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=webhook_handler), threading.Thread(target=refund)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    order = client.get(f"/v1/orders/{placed['id']}", headers=keys.headers("admin")).json()
    assert order["amount_refunded"] == 300
