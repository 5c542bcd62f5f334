"""Issue 8 hostile review: the payment resume job racing the request it resumes.

The resume job is enqueued when a payment opens and runs `KASSA_PAYMENT_RESUME_AFTER_S`
later, whether or not the request that opened the payment is still talking to the
provider (a slow gateway: two 30 s timeouts and a look-up outlast the default 60 s).
Nothing claims the payment for one of them: the job reads `processing`, the request
then settles the payment `failed` (its retries exhausted on `api_error`), the order is
payable again and the shopper pays it with a new payment; the job's own provider call
(the first to get through) then charges the first payment too, and `_settle` turns the
failed payment into a success: the order is paid twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.roles import Role
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import Order, Payment
from tests.conftest import FakeClock


@pytest.fixture
def racing(database_url: str, clock: FakeClock) -> Iterator[Kassa]:
    core = Kassa(Settings(database_url=database_url), clock=clock, sleep=clock.advance)
    core.catalogue.create(RequestContext.system("t"), NewProduct("MUG", "Mug", 1450, "EUR"))
    yield core
    core.close()


def _charges(core: Kassa) -> int:
    # the sandbox's tables live in kassa.storage.tables or, after a refactor, beside it
    modules = ("kassa.storage.tables", "kassa.providers.mock.tables")
    found = [getattr(importlib.import_module(m), "MockCharge", None) for m in modules if _has(m)]
    charge = next(c for c in found if c is not None)
    with core.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).select_from(charge)) or 0)


def test_the_resume_job_and_its_request_never_charge_an_order_twice(
    racing: Kassa,
) -> None:
    core = racing
    shopper = RequestContext("key_shop", Role.ADMIN)
    view = _new_order(core, shopper)
    job_calling, request_settled = threading.Event(), threading.Event()
    real_create = core.mock.create_intent
    job: dict[str, Any] = {}

    def create_intent(request: Any, *, idempotency_key: str) -> Any:
        if threading.current_thread().name == "resume-job":
            job_calling.set()
            request_settled.wait(10)
        return real_create(request, idempotency_key=idempotency_key)

    core.mock.create_intent = create_intent  # type: ignore[method-assign]

    def start_the_job() -> None:  # during the request's retry delay
        with core.db.transaction(read_only=True) as s:
            pid = s.scalar(select(Payment.id).where(Payment.order_id == view))

        def run() -> None:
            try:
                core.payments.resume({"payment": pid})
            except Exception as exc:
                job["error"] = exc

        thread = threading.Thread(target=run, name="resume-job")
        job["thread"] = thread
        thread.start()
        assert job_calling.wait(10)

    real_settle = core.payments._settle
    settles = {"n": 0}

    def settle(ctx: Any, payment_id: str, outcome: Any, *rest: Any) -> Any:
        settles["n"] += 1
        if settles["n"] == 1:  # the request's: its retries ran out, it is about to write
            start_the_job()
        return real_settle(ctx, payment_id, outcome, *rest)

    core.payments._settle = settle  # type: ignore[method-assign]
    first = core.payments.pay(shopper, view, payment_method="pm_card_visa|api_error,api_error")
    assert first.status == "failed"
    second = core.payments.pay(shopper, view, payment_method="pm_card_visa")
    assert second.status == "succeeded"
    request_settled.set()
    job["thread"].join(10)
    with core.db.transaction(read_only=True) as s:
        paid = s.scalar(select(Order.amount_paid).where(Order.id == view))
    assert _charges(core) == 1, f"{_charges(core)} charges, order amount_paid {paid}"
    assert paid == 1450


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _new_order(core: Kassa, ctx: RequestContext) -> str:
    from fastapi.testclient import TestClient

    from kassa.api.app import create_app
    from tests.conftest import make_keys

    keys = make_keys(core)
    with TestClient(create_app(core)) as c:
        r = c.post(
            "/v1/orders",
            json={
                "email": "a@example.com",
                "currency": "EUR",
                "lines": [{"sku": "MUG", "quantity": 1}],
            },
            headers=keys.headers("ops"),
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])
