"""Schemathesis against a live server: every operation, with an admin and a storefront key.

The schema is loaded from the server's own `/openapi.json`; each operation gets a bounded
number of generated cases per key (positive and negative data, derandomized so a run is
reproducible), half of them with path parameters naming objects that exist (seeded
below). Every answer must be no server error, with a documented status and content type,
and a body that matches the documented schema (problems included).

Nothing is excluded: the webhook route answers its signature problems (documented), the
sandbox's confirm and dispute controls run against seeded intents and charges.

The case counts are printed at the end (`EXAMPLES` per operation, key and mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.context import RequestContext
from tests.conftest import LiveServer, _truncate_postgres, start_server, stop_server

EXAMPLES = 8  # per operation, key and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
KEYS = ("admin", "storefront")


@dataclass
class Seeded:
    server: LiveServer
    secrets: dict[str, str]
    ids: dict[str, list[str]] = field(default_factory=dict)

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[key]}"}


def _seed(url: str, seeded: Seeded) -> None:
    """A few products, customers, orders (pending, paid, refunded), intents and charges."""
    admin, shop = seeded.headers("admin"), seeded.headers("storefront")
    ids: dict[str, list[str]] = {"provider": ["mock", "stripe"]}

    def post(path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
        response = httpx.post(url + path, json=body, headers=headers, timeout=30)
        assert response.status_code in (200, 201, 202), (path, response.text)
        return response.json()

    for sku, extra in [("MUG", {"stock": 50}), ("LAMP", {"unique": True}), ("PEN", {})]:
        post("/v1/products", {"sku": sku, "title": sku.title(), "unit_amount": 1500,
                              "currency": "EUR", **extra}, admin)  # fmt: skip
    ids["sku"] = ["MUG", "LAMP", "PEN"]
    customers = [
        post("/v1/customers", {"email": f"c{i}@example.com"}, headers)["id"]
        for i, headers in enumerate((shop, admin))
    ]
    ids["customer_id"] = customers
    orders = []
    for headers, customer in [(shop, customers[0]), (shop, None), (admin, customers[1])]:
        body: dict[str, Any] = {"currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]}
        body |= {"customer": customer} if customer else {"email": "guest@example.com"}
        orders.append(post("/v1/orders", body, headers)["id"])
    paid = post(f"/v1/orders/{orders[0]}/payments", {"payment_method": "pm_card_visa"}, shop)
    browser = post(f"/v1/orders/{orders[1]}/payments", {}, shop)
    refund = post(f"/v1/orders/{orders[0]}/refunds", {"amount": 100}, admin)
    post(f"/v1/customers/{customers[1]}/wallet/top-ups",
         {"amount": 5000, "currency": "EUR", "payment_method": "pm_card_visa"}, admin)  # fmt: skip
    ids["order_id"] = orders
    ids["payment_id"] = [paid["id"], browser["id"]]
    ids["refund_id"] = [refund["id"]]
    ids["intent_id"] = [browser["provider_payment_id"], paid["provider_payment_id"]]
    charges = httpx.get(url + "/v1/providers/mock/charges", headers=admin, timeout=30).json()
    ids["charge_id"] = [c["id"] for c in charges["data"]][:2] or ["ch_none"]
    deadline = time.monotonic() + 10  # the invoice is issued by background work
    documents: list[str] = []
    while not documents and time.monotonic() < deadline:
        listed = httpx.get(url + "/v1/invoices", headers=admin, timeout=30).json()
        documents = [d["id"] for d in listed.get("data", [])]
        time.sleep(0.2)
    ids["document_id"] = documents or ["inv_none"]
    seeded.ids = ids


@pytest.fixture
def seeded(pg_database: str) -> Iterator[Seeded]:
    _truncate_postgres(pg_database)
    core = Kassa(Settings(database_url=pg_database))
    try:
        system = RequestContext.system("test")
        secrets = {role: core.api_keys.create(system, role, role)[1] for role in KEYS}
    finally:
        core.close()
    server = start_server(pg_database, workers=1, KASSA_RETRY_BASE_DELAY_MS="10",
                          KASSA_RETRY_MAX_DELAY_MS="20")  # fmt: skip
    try:
        result = Seeded(server, secrets)
        _seed(server.url, result)
        yield result
    finally:
        stop_server(server)


def _strategies(operation: Any, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Generated cases; for operations with path parameters, half name seeded objects."""
    names = [p.name for p in operation.path_parameters]
    modes = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        generated = operation.as_strategy(generation_mode=mode)
        if names:
            known = st.fixed_dictionaries({n: st.sampled_from(ids.get(n, ["x"])) for n in names})
            existing = known.flatmap(
                lambda path, m=mode: operation.as_strategy(generation_mode=m, path_parameters=path)
            )
            generated = st.one_of(generated, existing)
        modes.append(generated)
    return st.one_of(modes)


def _fuzz(
    operation: Any, strategy: st.SearchStrategy[Any], url: str, headers: dict[str, str]
) -> int:
    """Run one operation's cases; returns how many were sent, raises the first failure."""
    sent = 0

    @settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(
            base_url=url, session=session, headers=headers, checks=CHECKS, timeout=30
        )

    with requests.Session() as session:
        run()
    return sent


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seeded.server.url
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    cases: dict[str, int] = dict.fromkeys(KEYS, 0)
    failures: list[str] = []
    started = time.monotonic()
    for key in KEYS:
        for operation in operations:
            strategy = _strategies(operation, seeded.ids)
            try:
                cases[key] += _fuzz(operation, strategy, url, seeded.headers(key))
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"--- {operation.label} with the {key} key:\n{exc}")
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nschemathesis: {len(operations)} operations; generated cases: "
            + ", ".join(f"{key} key {count}" for key, count in cases.items())
            + f"; {len(failures)} failing operation(s); {elapsed:.0f} s"
        )
    assert not failures, "\n\n".join(failures)
