"""The operations pages in chromium, on both databases: findings, webhook endpoints and a
delivery log, exports, the audit log, API keys and users each load signed in with no
console error and no request to another host, pass axe-core, and are screenshotted; and
their actions through the forms: acknowledge a finding, retry a failed delivery, download
an export, create a key (its secret shown once) and revoke it, create a user and disable
them. An analyst gets 403 on /keys and sees no Keys, Users or Audit log in the menu."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect
from sqlalchemy import select, text

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.roles import Role
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.services.staff_sessions import SESSION_COOKIE
from kassa.services.webhook_delivery import RETRY_AFTER_S
from kassa.storage.tables import AuditRecord
from tests.browser.support import PageGuard, Served, assert_accessible, eventually
from tests.builders import make_product, paid_order
from tests.conftest import FakeClock, Keys
from tests.webhook_receiver import Receiver, serve_receiver

SYSTEM = RequestContext.system("test")
PASSWORD = "correct horse battery staple"
Screenshot = Callable[[Page, str], Path]


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Webhook endpoints on this machine (the test receiver) are allowed."""
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def sign_in(page: Page, served: Served, role: str) -> str:
    """A staff user of `role` with their own password, signed in on `page` (the session
    cookie set as the sign-in page sets it); their id."""
    kassa = served.kassa
    email = f"{role}@shop.example"
    user, one_time = kassa.staff_users.create(SYSTEM, email, Role(role))
    token, _ = kassa.staff_sessions.sign_in(email, one_time, "browser test")
    token, _ = kassa.staff_sessions.change_password(token, one_time, PASSWORD)
    page.context.add_cookies(
        [
            {
                "name": SESSION_COOKIE,
                "value": token,
                "domain": "127.0.0.1",
                "path": "/dashboard",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
    return user.id


def visit(page: Page, path: str, status: int = 200) -> None:
    response = page.goto(path)
    assert response is not None and response.status == status, (path, response)
    page.wait_for_load_state("networkidle")


def broken_order(kassa: Kassa, client: TestClient, keys: Keys) -> dict[str, object]:
    """A paid order whose amount_paid no longer matches its payment, and a run of the
    checks that finds it."""
    make_product(client, keys)
    placed = paid_order(client, keys)
    with kassa.db.transaction() as session:
        session.execute(
            text("UPDATE orders SET amount_paid = amount_paid + 1 WHERE id = :id"),
            {"id": placed["id"]},
        )
    assert kassa.findings.run(SYSTEM, with_providers=False).new == 1
    return placed


def failed_delivery(kassa: Kassa, receiver: Receiver, clock: FakeClock) -> tuple[str, str]:
    """An endpoint whose one delivery failed all 8 attempts (the receiver answers 500
    eight times, then 204): the endpoint's id and the delivery's."""
    kassa.dispatcher.drain()  # the events so far (an order paid) go to no endpoint
    receiver.answer("/hook", *[500] * 8, 204)
    endpoint = kassa.webhook_endpoints.create(
        SYSTEM, receiver.url + "/hook", [events.REFUND_SUCCEEDED], "the accounting system"
    )
    with kassa.db.transaction() as session:
        events.record(session, events.REFUND_SUCCEEDED, {"id": "re_1", "object": "refund"}, clock())
    kassa.dispatcher.drain()
    kassa.webhook_sender.drain()
    for delay in RETRY_AFTER_S:
        clock.advance(delay)
        kassa.webhook_sender.drain()
    delivery = kassa.webhook_endpoints.deliveries(endpoint.id, limit=1).data[0]
    assert delivery.status == "failed"
    return endpoint.id, delivery.id


def test_each_operations_page_loads_is_accessible_and_is_screenshotted(
    page: Page,
    served: Served,
    client: TestClient,
    keys: Keys,
    receiver: Receiver,
    clock: FakeClock,
    screenshot: Screenshot,
) -> None:
    kassa = served.kassa
    placed = broken_order(kassa, client, keys)
    endpoint_id, _ = failed_delivery(kassa, receiver, clock)
    kassa.staff_users.create(SYSTEM, "ops@shop.example", Role.OPS)
    sign_in(page, served, "admin")

    pages = {
        "findings": "/dashboard/findings",
        "webhooks": "/dashboard/webhooks",
        "webhook-deliveries": f"/dashboard/webhooks/{endpoint_id}",
        "exports": "/dashboard/exports",
        "audit": "/dashboard/audit",
        "keys": "/dashboard/keys",
        "users": "/dashboard/users",
    }
    for name, path in pages.items():
        visit(page, path)
        expect(page.get_by_role("heading", level=1)).to_have_count(1)
        assert_accessible(page, name)
        screenshot(page, name)
    visit(page, "/dashboard/findings")
    expect(page.get_by_role("link", name=str(placed["number"]), exact=True)).to_be_visible()

    # the confirmation pages, too
    finding_id = kassa.findings.list(limit=1).data[0].id
    (ops,) = [u for u in kassa.staff_users.list(SYSTEM) if u.email == "ops@shop.example"]
    for path in (
        f"/dashboard/findings/{finding_id}/acknowledge",
        f"/dashboard/keys/{keys.ids['ops']}/revoke",
        f"/dashboard/users/{ops.id}/disable",
    ):
        visit(page, path)
        assert_accessible(page, path)


def test_a_finding_is_acknowledged_with_a_note_through_its_form(
    page: Page, served: Served, client: TestClient, keys: Keys
) -> None:
    kassa = served.kassa
    broken_order(kassa, client, keys)
    user_id = sign_in(page, served, "ops")
    visit(page, "/dashboard/findings")
    page.get_by_role("link", name="Acknowledge").click()
    page.get_by_label("Note (optional)").fill("the bank is looking into it")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_contain_text("The finding is acknowledged")
    expect(page.locator("tbody")).to_contain_text("the bank is looking into it")
    (finding,) = kassa.findings.list(limit=10).data
    assert (finding.acknowledged_by, finding.note) == (user_id, "the bank is looking into it")


def test_a_failed_delivery_is_retried_through_its_form(
    page: Page, served: Served, receiver: Receiver, clock: FakeClock
) -> None:
    kassa = served.kassa
    endpoint_id, delivery_id = failed_delivery(kassa, receiver, clock)
    user_id = sign_in(page, served, "admin")
    visit(page, "/dashboard/webhooks")
    page.get_by_role("link", name=receiver.url + "/hook").click()
    expect(page.get_by_text("HTTP 500")).to_have_count(8)
    page.get_by_role("button", name=f"Retry delivery {delivery_id}").click()
    expect(page.get_by_role("status")).to_contain_text("The delivery is due now")
    assert kassa.webhook_sender.drain() == 1
    page.reload()
    expect(page.get_by_text("HTTP 204")).to_have_count(1)
    expect(page.get_by_role("button", name=f"Retry delivery {delivery_id}")).to_have_count(0)
    assert page.url.endswith(f"/dashboard/webhooks/{endpoint_id}?notice=retried")
    with kassa.db.transaction(read_only=True) as session:
        actors = session.scalars(
            select(AuditRecord.actor_user).where(AuditRecord.action == "webhook_delivery.retried")
        ).all()
    assert actors == [user_id]


def test_an_export_downloads_as_a_csv_and_is_audited_with_the_user(
    page: Page, served: Served, client: TestClient, keys: Keys
) -> None:
    kassa = served.kassa
    make_product(client, keys)
    placed = paid_order(client, keys)
    user_id = sign_in(page, served, "analyst")
    visit(page, "/dashboard/exports")
    page.get_by_label("Days").select_option("30d")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download orders CSV").click()
    assert download.value.suggested_filename.startswith("kassa-orders-")
    body = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][0] == "id" and [row[0] for row in rows[1:]] == [placed["id"]]

    def audited() -> AuditRecord | None:
        with kassa.db.transaction(read_only=True) as session:
            return session.scalar(select(AuditRecord).where(AuditRecord.action == "export.orders"))

    # written when the stream closes, which is after the browser has the last byte
    record = eventually(audited)
    assert record.actor_user == user_id
    assert record.after is not None and record.after["filters"]["window"] == "30d"


def test_a_new_key_shows_its_secret_once_and_revoking_it_locks_it_out(
    page: Page, served: Served, page_guard: PageGuard, screenshot: Callable[[Page, str], Path]
) -> None:
    sign_in(page, served, "admin")
    visit(page, "/dashboard/keys")
    page.get_by_label("Name", exact=True).fill("web shop")
    page.get_by_label("Role", exact=True).select_option("storefront")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("shown only this once")
    secret = page.get_by_label("Secret of").input_value()
    assert secret.startswith("kassa_sk_")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(served.url + "/v1/products", headers=bearer).status_code == 200
    created = [k.id for k in served.kassa.api_keys.list() if k.name == "web shop"]

    # a reload re-posts the form: told so (409), nothing more made, the secret not shown
    page_guard.allow_console(r"status of 409")
    page.reload()
    expect(page.get_by_role("heading", name="This form was sent already")).to_be_visible()
    assert secret not in page.content() and created[0] in page.content()
    assert [k.id for k in served.kassa.api_keys.list() if k.name == "web shop"] == created
    assert_accessible(page, "form sent already")
    screenshot(page, "form-sent-already")

    page.get_by_role("link", name="Back to the API keys").click()
    expect(page.get_by_role("cell", name="web shop", exact=True)).to_be_visible()
    assert secret not in page.content()
    page.get_by_role("link", name="Revoke key web shop").click()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text("The key is revoked")
    assert httpx.get(served.url + "/v1/products", headers=bearer).status_code == 401


def test_a_new_user_is_created_with_a_one_time_password_and_disabled(
    page: Page, served: Served
) -> None:
    kassa = served.kassa
    sign_in(page, served, "admin")
    visit(page, "/dashboard/users")
    page.get_by_label("Email", exact=True).fill("bea@shop.example")
    page.get_by_label("Role", exact=True).select_option("ops")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_contain_text("shown only this once")
    password = page.get_by_label("One-time password of bea@shop.example").input_value()
    _, session = kassa.staff_sessions.sign_in("bea@shop.example", password, "elsewhere")
    assert session.must_change_password

    page.get_by_role("link", name="Done: back to the users").click()
    page.get_by_role("link", name="Disable bea@shop.example").click()
    page.get_by_role("button", name="Disable user").click()
    expect(page.get_by_role("status")).to_contain_text("The user is disabled")
    (bea,) = [u for u in kassa.staff_users.list(SYSTEM) if u.email == "bea@shop.example"]
    assert bea.disabled
    expect(page.get_by_role("link", name="Disable admin@shop.example")).to_have_count(0)


def test_an_analyst_gets_403_on_keys_and_sees_no_admin_pages_in_the_menu(
    page: Page, served: Served, page_guard: PageGuard
) -> None:
    sign_in(page, served, "analyst")
    visit(page, "/dashboard/exports")
    menu = page.get_by_role("navigation", name="Main")
    expect(menu.get_by_role("link", name="Exports")).to_be_visible()
    for label in ("API keys", "Users", "Audit log", "Webhooks", "Findings"):
        expect(menu.get_by_role("link", name=label)).to_have_count(0)
    page_guard.allow_console(r"status of 403")
    for path in ("/dashboard/keys", "/dashboard/users", "/dashboard/audit"):
        visit(page, path, status=403)
        expect(page.get_by_role("alert")).to_contain_text("may not")
    assert_accessible(page, "the 403 page")
