"""Invoices and credit notes: issued by the worker, numbered gap-free, immutable, rendered.

On both databases, through the API and the real worker loop.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.documents import Series, included_tax
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.invoices import ISSUE_INVOICE, allocate_number
from kassa.services.jobs import enqueue
from kassa.storage.tables import DocumentCounter, IssuedDocument, Job, Order
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        seller_name="Kassa Test GmbH",
        seller_address=("Hauptstr. 1", "10115 Berlin"),
        seller_tax_id="DE123456789",
        tax_rate_bp=1900,
        document_locale="de_DE",
    )


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Enamel mug", 1250, "EUR", stock=None))
    kassa.catalogue.create(system, NewProduct("TEA", "Green tea", 499, "EUR", stock=None))
    return kassa


def paid_order(client: TestClient, keys: Keys, **buyer: Any) -> dict[str, Any]:
    lines = [("MUG", 2), ("TEA", 1)]
    return builders.paid_order(
        client, keys, "ops", lines=lines, **(buyer or {"email": "ada@example.com"})
    )


def work(kassa: Kassa) -> int:
    return Worker(kassa, name="test-worker").drain()


def test_a_paid_order_has_its_invoice_as_soon_as_it_is_paid(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order = paid_order(client, keys)
    # issued in the transaction that paid the order: no job asks for it, no worker runs
    with shop.db.transaction(read_only=True) as session:
        assert ISSUE_INVOICE not in session.scalars(select(Job.kind)).all()
    got = client.get(f"/v1/orders/{order['id']}/invoice", headers=keys.headers("analyst"))
    assert got.status_code == 200, got.text
    invoice = got.json()
    year = clock.now.year
    assert invoice["number"] == f"INV-{year}-000001"
    assert invoice["id"].startswith("inv_") and invoice["object"] == "invoice"
    assert invoice["order"] == order["id"] and invoice["refund"] is None
    assert (invoice["currency"], invoice["total"]) == ("EUR", 2999) == ("EUR", order["total"])
    assert [(li["quantity"], li["unit_amount"], li["amount"]) for li in invoice["lines"]] == [
        (2, 1250, 2500),
        (1, 499, 499),
    ]
    assert invoice["taxes"] == [{"label": "VAT", "rate_bp": 1900, "amount": 479}]
    assert invoice["tax"] == included_tax(2999, 1900) == 479
    assert invoice["seller"]["name"] == "Kassa Test GmbH"
    assert invoice["seller"]["tax_id"] == "DE123456789"
    assert invoice["buyer"]["email"] == "ada@example.com"

    again = client.get(f"/v1/invoices/{invoice['id']}", headers=keys.headers("analyst"))
    assert again.json() == invoice

    second = paid_order(client, keys)
    number = client.get(f"/v1/orders/{second['id']}/invoice", headers=keys.headers("ops"))
    assert number.json()["number"] == f"INV-{year}-000002"


def test_the_pdf_and_html_say_what_the_invoice_says(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    order = paid_order(client, keys, email="zoë@example.com")
    work(shop)
    invoice = client.get(f"/v1/orders/{order['id']}/invoice", headers=keys.headers("ops")).json()

    pdf = client.get(invoice["pdf_url"], headers=keys.headers("analyst"))
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert invoice["number"] in pdf.headers["content-disposition"]
    reader = PdfReader(io.BytesIO(pdf.content))
    words = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    assert invoice["number"] in words
    assert "Enamel mug" in words and "Green tea" in words
    assert "29,99" in words  # de_DE: decimal comma
    assert "Kassa Test GmbH" in words

    html = client.get(invoice["html_url"], headers=keys.headers("analyst"))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert invoice["number"] in html.text and "Enamel mug" in html.text
    assert "29,99" in html.text
    # the same bytes every time: rendered from the frozen content
    assert client.get(invoice["pdf_url"], headers=keys.headers("ops")).content == pdf.content


def test_each_refund_gets_a_credit_note_referring_to_the_invoice(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    customer = client.post(
        "/v1/customers",
        json={"email": "c@example.com", "name": "Cleo"},
        headers=keys.headers("ops"),
    ).json()["id"]
    order = paid_order(client, keys, customer=customer)
    work(shop)
    invoice = client.get(f"/v1/orders/{order['id']}/invoice", headers=keys.headers("ops")).json()
    assert invoice["buyer"]["name"] == "Cleo"

    first = client.post(
        f"/v1/orders/{order['id']}/refunds",
        json={"amount": 1000, "reason": "chipped mug"},
        headers=keys.headers("ops"),
    )
    assert first.status_code == 201, first.text
    second = client.post(
        f"/v1/orders/{order['id']}/refunds",
        json={"amount": 499, "destination": "wallet"},
        headers=keys.headers("ops"),
    )
    assert second.status_code == 201, second.text
    work(shop)

    notes = client.get(
        f"/v1/orders/{order['id']}/credit-notes", headers=keys.headers("analyst")
    ).json()["data"]
    year = clock.now.year
    assert [(n["number"], n["total"], n["refund"]) for n in notes] == [
        (f"CN-{year}-000001", 1000, first.json()["id"]),
        (f"CN-{year}-000002", 499, second.json()["id"]),
    ]
    assert all(n["id"].startswith("cn_") and n["object"] == "credit_note" for n in notes)
    assert invoice["number"] in notes[0]["reference"]
    assert notes[0]["notes"] == "chipped mug"
    assert notes[0]["taxes"][0]["amount"] == included_tax(1000, 1900)
    pdf = client.get(notes[1]["pdf_url"], headers=keys.headers("ops"))
    words = " ".join(PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().split())
    assert notes[1]["number"] in words and "wallet" in words
    assert client.get(notes[0]["html_url"], headers=keys.headers("ops")).status_code == 200
    # credit notes are not invoices, and the other way round
    wrong = client.get(f"/v1/invoices/{notes[0]['id']}", headers=keys.headers("ops"))
    assert (wrong.status_code, wrong.json()["code"]) == (404, "invoice_not_found")
    wrong = client.get(f"/v1/credit-notes/{invoice['id']}.pdf", headers=keys.headers("ops"))
    assert (wrong.status_code, wrong.json()["code"]) == (404, "credit_note_not_found")


def test_who_may_read_documents(shop: Kassa, client: TestClient, keys: Keys) -> None:
    order = paid_order(client, keys)
    work(shop)
    invoice = client.get(f"/v1/orders/{order['id']}/invoice", headers=keys.headers("admin")).json()
    for path in (
        f"/v1/orders/{order['id']}/invoice",
        f"/v1/invoices/{invoice['id']}",
        invoice["pdf_url"],
        invoice["html_url"],
        f"/v1/orders/{order['id']}/credit-notes",
    ):
        assert client.get(path).status_code == 401
        # staff made this order: for a storefront key it does not exist (its own orders'
        # documents are readable: tests/api/test_storefront_confinement.py)
        assert client.get(path, headers=keys.headers("storefront")).status_code == 404
        assert client.get(path, headers=keys.headers("analyst")).status_code == 200
    for path, code in (
        ("/v1/orders/ord_missing/invoice", "order_not_found"),
        ("/v1/orders/ord_missing/credit-notes", "order_not_found"),
        ("/v1/invoices/inv_missing", "invoice_not_found"),
        ("/v1/invoices/inv_missing.pdf", "invoice_not_found"),
        ("/v1/credit-notes/cn_missing.html", "credit_note_not_found"),
    ):
        got = client.get(path, headers=keys.headers("ops"))
        assert (got.status_code, got.json()["code"]) == (404, code), path


def test_issuing_twice_changes_nothing(shop: Kassa, client: TestClient, keys: Keys) -> None:
    order = paid_order(client, keys)
    work(shop)
    with shop.db.transaction() as session:  # a duplicate request, as after a lost lease
        shop.invoices.issue_invoice(session, {"order": order["id"]})
    with shop.db.transaction(read_only=True) as session:
        documents = session.scalars(select(IssuedDocument)).all()
        counter = session.scalar(select(DocumentCounter.last_number))
    assert [d.number for d in documents] == [documents[0].number] and counter == 1


def test_an_invoice_job_of_an_earlier_version_still_invoices_an_order_paid_without_one(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    """Before issue 10 the invoice came from a `documents.issue_invoice` job; one still
    queued at the upgrade must bill its order, and only once."""
    order = builders.order(client, keys, "ops", lines=[("MUG", 2), ("TEA", 1)])
    with shop.db.transaction() as session:  # as an earlier version left it: paid, no invoice
        session.execute(
            update(Order)
            .where(Order.id == order["id"])
            .values(status="paid", paid_at=clock.now, amount_paid=Order.total)
        )
        enqueue(session, ISSUE_INVOICE, {"order": order["id"]}, clock.now)
    assert work(shop) >= 1
    invoice = client.get(f"/v1/orders/{order['id']}/invoice", headers=keys.headers("ops")).json()
    assert invoice["number"] == f"INV-{clock.now.year}-000001"
    assert invoice["total"] == order["total"]
    with shop.db.transaction() as session:  # the same job again: nothing more
        shop.invoices.issue_invoice(session, {"order": order["id"]})
    with shop.db.transaction(read_only=True) as session:
        assert len(session.scalars(select(IssuedDocument)).all()) == 1


def test_an_unpaid_order_is_never_invoiced(shop: Kassa, client: TestClient, keys: Keys) -> None:
    order = client.post(
        "/v1/orders",
        json={
            "email": "u@example.com",
            "currency": "EUR",
            "lines": [{"sku": "TEA", "quantity": 1}],
        },
        headers=keys.headers("ops"),
    ).json()
    with shop.db.transaction() as session:
        shop.invoices.issue_invoice(session, {"order": order["id"]})
        assert session.scalar(select(IssuedDocument.pk)) is None
    with shop.db.transaction(read_only=True) as session:
        kinds = session.scalars(select(Job.kind)).all()
    assert ISSUE_INVOICE not in kinds


def test_a_rolled_back_document_gives_its_number_back(shop: Kassa) -> None:
    def write_and_fail() -> None:
        with shop.db.transaction() as session:
            assert allocate_number(session, Series.INVOICE, 2030) == 1
            raise RuntimeError("the document could not be written")

    with pytest.raises(RuntimeError, match="could not be written"):
        write_and_fail()
    with shop.db.transaction() as session:
        assert allocate_number(session, Series.INVOICE, 2030) == 1
        assert allocate_number(session, Series.INVOICE, 2030) == 2
        assert allocate_number(session, Series.CREDIT_NOTE, 2030) == 1
        assert allocate_number(session, Series.INVOICE, 2031) == 1


def test_numbers_restart_each_year(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    clock.now = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    first = paid_order(client, keys)
    work(shop)
    clock.now = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)
    second = paid_order(client, keys)
    work(shop)
    numbers = [
        client.get(f"/v1/orders/{o['id']}/invoice", headers=keys.headers("ops")).json()["number"]
        for o in (first, second)
    ]
    assert numbers == ["INV-2026-000001", "INV-2027-000001"]


def test_the_database_refuses_to_change_an_issued_document(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    paid_order(client, keys)
    work(shop)
    for statement in (
        "UPDATE documents SET total = 1",
        "UPDATE documents SET content = '{}'",
        "DELETE FROM documents",
    ):
        with pytest.raises((DBAPIError, IntegrityError)), shop.db.transaction() as session:
            session.execute(text(statement))
    with shop.db.transaction(read_only=True) as session:
        row = session.scalars(select(IssuedDocument)).one()
    assert row.total == 2999 and json.dumps(row.content)
