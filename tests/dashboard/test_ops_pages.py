"""The operations pages through the TestClient on both databases: check findings and their
acknowledgement, webhook endpoints and a retried delivery, CSV exports audited with the
user, the audit log's filters and pages, API keys (secret shown once, revoke) and staff
users (one-time password shown once, disable, never oneself); and who may see what."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.services.exports import CONTRACT
from kassa.services.webhook_delivery import RETRY_AFTER_S
from kassa.storage.tables import AuditRecord
from tests.builders import make_product, paid_order
from tests.conftest import FakeClock, Keys
from tests.dashboard.conftest import StaffClient
from tests.support import statements_sent
from tests.webhook_receiver import Receiver, serve_receiver

Staff = Callable[[str], StaffClient]
SYSTEM = RequestContext.system("test")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Webhook endpoints on this machine (the test receiver) are allowed."""
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def audited(kassa: Kassa, action: str) -> list[AuditRecord]:
    with kassa.db.transaction(read_only=True) as session:
        return list(
            session.scalars(
                select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.pk)
            )
        )


# -- check findings -----------------------------------------------------------------------


def broken_orders(
    kassa: Kassa, client: TestClient, keys: Keys, n: int, *, first: bool = True
) -> list[dict[str, object]]:
    """`n` paid orders whose amount_paid no longer matches their payments (as a bug behind
    kassa's back would leave them), and a run of the checks that finds them."""
    if first:
        make_product(client, keys)
    orders = [paid_order(client, keys) for _ in range(n)]
    with kassa.db.transaction() as session:
        for placed in orders:
            session.execute(
                text("UPDATE orders SET amount_paid = amount_paid + 1 WHERE id = :id"),
                {"id": placed["id"]},
            )
    report = kassa.findings.run(SYSTEM, with_providers=False)
    assert report.new == n, report
    return orders


def test_findings_link_their_order_by_number_and_are_acknowledged_with_a_note(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    (placed,) = broken_orders(kassa, client, keys, 1)
    ops = staff("ops")
    page = ops.get("/dashboard/findings")
    assert page.status_code == 200, page.text
    assert f'href="/dashboard/orders/{placed["number"]}"' in page.text
    assert "order payments" in page.text and "amount_paid is 1001" in page.text
    (finding_id,) = [f.id for f in kassa.findings.list(limit=10).data]
    link = f"/dashboard/findings/{finding_id}/acknowledge"
    assert link in page.text

    form = ops.get(link)
    assert form.status_code == 200 and '<label for="note">' in form.text
    done = ops.post(link, {"note": "refund being checked with the bank"})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/dashboard/findings?notice=acknowledged"

    finding = kassa.findings.get(finding_id)
    assert finding.status == "open" and finding.acknowledged_at is not None
    assert (finding.note, finding.acknowledged_by) == (
        "refund being checked with the bank",
        ops.user_id,
    )
    (record,) = audited(kassa, "check_finding.acknowledged")
    assert (record.subject_id, record.actor_user) == (finding_id, ops.user_id)

    acknowledged = ops.get("/dashboard/findings", params={"show": "acknowledged"}).text
    not_yet = ops.get("/dashboard/findings", params={"show": "unacknowledged"}).text
    assert "refund being checked with the bank" in acknowledged and link in acknowledged
    assert link not in not_yet and "No open, not acknowledged finding" in not_yet
    resolved = ops.get("/dashboard/findings", params={"show": "resolved"}).text
    assert "No resolved finding" in resolved


def test_the_findings_page_reads_as_much_for_many_findings_as_for_one(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    """No read per finding: the orders' numbers are read at once."""
    broken_orders(kassa, client, keys, 1)
    ops = staff("ops")
    with statements_sent(kassa) as one:
        assert ops.get("/dashboard/findings").status_code == 200
    broken_orders(kassa, client, keys, 6, first=False)
    with statements_sent(kassa) as seven:
        page = ops.get("/dashboard/findings")
    assert page.text.count('href="/dashboard/orders/K-') == 7
    assert len(seven) == len(one), seven


def test_an_analyst_may_not_read_findings_and_an_overlong_note_is_refused(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    broken_orders(kassa, client, keys, 1)
    (finding_id,) = [f.id for f in kassa.findings.list(limit=10).data]
    analyst = staff("analyst")
    assert analyst.get("/dashboard/findings").status_code == 403
    refused = analyst.post(f"/dashboard/findings/{finding_id}/acknowledge", {"note": "x"})
    assert refused.status_code == 403
    long = staff("ops").post(f"/dashboard/findings/{finding_id}/acknowledge", {"note": "x" * 2001})
    assert long.status_code == 422 and "at most 2000" in long.text
    assert kassa.findings.get(finding_id).acknowledged_at is None
    assert audited(kassa, "check_finding.acknowledged") == []


# -- webhooks -----------------------------------------------------------------------------


def failed_delivery(kassa: Kassa, receiver: Receiver, clock: FakeClock) -> str:
    """An endpoint whose one delivery failed all its attempts (the receiver answers 500
    eight times, then 204); its id."""
    receiver.answer("/hook", *[500] * 8, 204)
    endpoint = kassa.webhook_endpoints.create(SYSTEM, receiver.url + "/hook", ["*"])
    with kassa.db.transaction() as session:
        events.record(session, events.ORDER_PAID, {"id": "ord_1", "object": "order"}, clock())
    kassa.dispatcher.drain()
    kassa.webhook_sender.drain()
    for delay in RETRY_AFTER_S:
        clock.advance(delay)
        kassa.webhook_sender.drain()
    return endpoint.id


def test_a_failed_delivery_is_retried_through_its_form_and_then_succeeds(
    kassa: Kassa, receiver: Receiver, clock: FakeClock, staff: Staff
) -> None:
    endpoint_id = failed_delivery(kassa, receiver, clock)
    admin = staff("admin")
    endpoints = admin.get("/dashboard/webhooks")
    assert endpoints.status_code == 200, endpoints.text
    assert f'href="/dashboard/webhooks/{endpoint_id}"' in endpoints.text
    assert "enabled" in endpoints.text and "all events" in endpoints.text

    page = admin.get(f"/dashboard/webhooks/{endpoint_id}")
    assert page.status_code == 200, page.text
    assert page.text.count("HTTP 500") == 8 and "order.paid" in page.text
    delivery_id = kassa.webhook_endpoints.deliveries(endpoint_id, limit=1).data[0].id
    retry = f"/dashboard/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry"
    assert f'action="{retry}"' in page.text

    done = admin.post(retry)
    assert done.status_code == 303, done.text
    (record,) = audited(kassa, "webhook_delivery.retried")
    assert (record.subject_id, record.actor_user) == (delivery_id, admin.user_id)
    assert kassa.webhook_sender.drain() == 1
    after = admin.get(done.headers["location"])
    assert "The delivery is due now" in after.text
    assert "HTTP 204" in after.text and f'action="{retry}"' not in after.text


def test_an_endpoint_is_disabled_and_enabled_again_and_only_admins_see_webhooks(
    kassa: Kassa, receiver: Receiver, clock: FakeClock, staff: Staff
) -> None:
    endpoint_id = failed_delivery(kassa, receiver, clock)
    admin = staff("admin")
    assert admin.post(f"/dashboard/webhooks/{endpoint_id}/disable").status_code == 303
    page = admin.get(f"/dashboard/webhooks/{endpoint_id}").text
    assert "disabled by an admin" in page and "Enable endpoint" in page
    assert kassa.webhook_endpoints.get(endpoint_id).disabled
    assert admin.post(f"/dashboard/webhooks/{endpoint_id}/enable").status_code == 303
    assert not kassa.webhook_endpoints.get(endpoint_id).disabled
    ops = staff("ops")
    assert ops.get("/dashboard/webhooks").status_code == 403
    assert ops.get(f"/dashboard/webhooks/{endpoint_id}").status_code == 403
    delivery_id = kassa.webhook_endpoints.deliveries(endpoint_id, limit=1).data[0].id
    refused = ops.post(f"/dashboard/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry")
    assert refused.status_code == 403
    assert audited(kassa, "webhook_delivery.retried") == []
    assert 'href="/dashboard/webhooks"' not in ops.get("/dashboard/orders").text


def test_an_endpoint_is_created_with_its_secret_shown_once_and_deleted_after_a_confirmation(
    kassa: Kassa, receiver: Receiver, staff: Staff
) -> None:
    admin = staff("admin")
    form = {"url": receiver.url + "/new", "description": "warehouse"}
    none = admin.post("/dashboard/webhooks", form)
    assert none.status_code == 422 and "Choose the events" in none.text
    bad = admin.post("/dashboard/webhooks", {"url": "ftp://x.example/", "event:*": "on"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    made = admin.post(
        "/dashboard/webhooks", {**form, "event:order.paid": "on", "event:refund.failed": "on"}
    )
    assert made.status_code == 200, made.text
    assert "shown only this once" in made.text
    secret = made.text.split('id="secret" readonly value="')[1].split('"')[0]
    assert secret.startswith("whsec_")
    (endpoint,) = kassa.webhook_endpoints.list(limit=10).data
    assert (endpoint.url, endpoint.events, endpoint.description) == (
        receiver.url + "/new",
        ["order.paid", "refund.failed"],
        "warehouse",
    )
    assert secret not in admin.get(f"/dashboard/webhooks/{endpoint.id}").text
    (created,) = audited(kassa, "webhook_endpoint.created")
    assert created.actor_user == admin.user_id

    confirm = admin.get(f"/dashboard/webhooks/{endpoint.id}/delete")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    gone = admin.post(f"/dashboard/webhooks/{endpoint.id}/delete")
    assert gone.status_code == 303 and gone.headers["location"].endswith("notice=deleted")
    assert kassa.webhook_endpoints.list(limit=10).data == []
    assert admin.get(f"/dashboard/webhooks/{endpoint.id}").status_code == 404
    assert staff("ops").post("/dashboard/webhooks", {**form, "event:*": "on"}).status_code == 403


# -- exports ------------------------------------------------------------------------------


def test_an_export_is_downloaded_by_a_form_and_audited_with_the_user(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    make_product(client, keys)
    placed = paid_order(client, keys)
    analyst = staff("analyst")
    page = analyst.get("/dashboard/exports")
    assert page.status_code == 200, page.text
    for name in kassa.exports.available():
        assert f'name="export" value="{name}"' in page.text

    r = analyst.post("/dashboard/exports", {"export": "orders", "window": "mtd"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="kassa-orders-')
    rows = list(csv.reader(io.StringIO(r.text)))
    assert tuple(rows[0]) == CONTRACT["orders"]
    assert [row[0] for row in rows[1:]] == [placed["id"]]
    (record,) = audited(kassa, "export.orders")
    assert record.actor_user == analyst.user_id
    assert record.after and record.after["rows"] == 1 and record.after["completed"] is True
    assert record.after["filters"]["window"] == "mtd"

    # the catalogue is as of now: the period is not sent with it
    products = analyst.post("/dashboard/exports", {"export": "products", "window": "mtd"})
    assert products.status_code == 200 and "MUG" in products.text
    today = kassa.clock().date().isoformat()
    custom = analyst.post(
        "/dashboard/exports", {"export": "orders", "window": "custom", "from": today, "to": today}
    )
    assert custom.status_code == 200 and placed["id"] in custom.text


def test_a_bad_period_or_a_missing_token_exports_nothing(kassa: Kassa, staff: Staff) -> None:
    analyst = staff("analyst")
    half = analyst.post("/dashboard/exports", {"export": "orders", "window": "custom", "from": ""})
    assert half.status_code == 422 and 'role="alert"' in half.text
    backwards = analyst.post(
        "/dashboard/exports",
        {"export": "orders", "window": "custom", "from": "2026-02-01", "to": "2026-01-01"},
    )
    assert backwards.status_code == 422
    unknown = analyst.post("/dashboard/exports", {"export": "secrets", "window": "mtd"})
    assert unknown.status_code == 404
    forged = analyst.post("/dashboard/exports", {"export": "orders", "csrf_token": ""})
    assert forged.status_code == 403
    with kassa.db.transaction(read_only=True) as session:
        exported = session.scalars(
            select(AuditRecord.action).where(AuditRecord.action.like("export.%"))
        ).all()
    assert exported == []


# -- audit log ----------------------------------------------------------------------------


def test_the_audit_log_is_newest_first_filtered_by_user_or_key_and_paginated(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    admin = staff("admin")
    made = admin.post("/dashboard/keys", {"name": "by the dashboard", "role": "analyst"})
    assert made.status_code == 200, made.text
    make_product(client, keys, "TEE")  # by the ops key
    page = admin.get("/dashboard/audit")
    assert page.status_code == 200, page.text
    assert page.text.index("product.") < page.text.index("api_key.created")
    assert admin.user_id in page.text

    mine = admin.get("/dashboard/audit", params={"actor": admin.user_id}).text
    assert "api_key.created" in mine and "product." not in mine
    by_key = admin.get("/dashboard/audit", params={"actor": keys.ids["ops"]}).text
    assert "product." in by_key and "api_key.created" not in by_key
    created = admin.get("/dashboard/audit", params={"action": "api_key.created"}).text
    assert created.count("<tr>") == 1 + 6  # the header, the fixture's five keys and this one

    for n in range(50):  # a page of records newer than everything above
        kassa.api_keys.create(SYSTEM, "analyst", f"bulk {n}")
    first = admin.get("/dashboard/audit").text
    assert first.count("<tr>") == 1 + 50 and "Older records" in first
    assert "bulk 49" in first and "bulk 0" in first and "by the dashboard" not in first
    older = first.split('<p><a href="')[-1].split('">Older records')[0].replace("&amp;", "&")
    second = admin.get(older)
    assert second.status_code == 200 and "by the dashboard" in second.text
    assert "bulk 0" not in second.text


def test_the_audit_log_links_orders_by_number_and_is_for_admins_only(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    make_product(client, keys)
    placed = paid_order(client, keys)
    admin = staff("admin")
    page = admin.get("/dashboard/audit", params={"subject": str(placed["id"])})
    assert f'href="/dashboard/orders/{placed["number"]}"' in page.text
    assert staff("ops").get("/dashboard/audit").status_code == 403


# -- API keys -----------------------------------------------------------------------------


def test_a_new_keys_secret_is_shown_once_and_revoking_it_locks_it_out(
    kassa: Kassa, client: TestClient, staff: Staff
) -> None:
    admin = staff("admin")
    form = admin.get("/dashboard/keys")
    assert form.status_code == 200 and '<label for="role">' in form.text
    made = admin.post("/dashboard/keys", {"name": "web shop", "role": "storefront"})
    assert made.status_code == 200, made.text
    assert "shown only this once" in made.text
    secret = made.text.split('id="secret" readonly value="')[1].split('"')[0]
    assert secret.startswith("kassa_sk_")
    products = client.get("/v1/products", headers={"Authorization": f"Bearer {secret}"})
    assert products.status_code == 200
    listing = admin.get("/dashboard/keys").text
    assert "web shop" in listing and secret not in listing
    (record,) = [r for r in audited(kassa, "api_key.created") if r.actor_user]
    assert record.actor_user == admin.user_id

    (key,) = [k for k in kassa.api_keys.list() if k.name == "web shop"]
    confirm = admin.get(f"/dashboard/keys/{key.id}/revoke")
    assert confirm.status_code == 200 and "Revoke key" in confirm.text
    assert admin.post(f"/dashboard/keys/{key.id}/revoke").status_code == 303
    refused = client.get("/v1/products", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    (revoked,) = audited(kassa, "api_key.revoked")
    assert revoked.actor_user == admin.user_id


def test_a_bad_role_is_refused_and_no_role_below_admin_sees_keys_users_or_audit(
    kassa: Kassa, keys: Keys, staff: Staff
) -> None:
    admin = staff("admin")
    bad = admin.post("/dashboard/keys", {"name": "x", "role": "owner"})
    assert bad.status_code == 422 and "role must be one of" in bad.text
    analyst = staff("analyst")
    menu = analyst.get("/dashboard/orders").text
    for path in ("/keys", "/users", "/audit"):
        assert f'href="/dashboard{path}"' not in menu, path
        assert analyst.get(f"/dashboard{path}").status_code == 403, path
    assert analyst.post("/dashboard/keys", {"name": "x", "role": "admin"}).status_code == 403
    assert analyst.get(f"/dashboard/keys/{keys.ids['ops']}/revoke").status_code == 403
    assert analyst.post(f"/dashboard/keys/{keys.ids['ops']}/revoke").status_code == 403
    assert not [k for k in kassa.api_keys.list() if k.revoked_at or k.name == "x"]
    for path in ("/keys", "/users", "/audit"):
        assert f'href="/dashboard{path}"' in admin.get("/dashboard/orders").text, path


# -- users --------------------------------------------------------------------------------


def test_a_new_user_gets_a_one_time_password_shown_once_and_can_sign_in(
    kassa: Kassa, staff: Staff
) -> None:
    admin = staff("admin")
    made = admin.post("/dashboard/users", {"email": "Bea@Shop.example", "role": "ops"})
    assert made.status_code == 200, made.text
    assert "shown only this once" in made.text
    password = made.text.split('id="password" readonly value="')[1].split('"')[0]
    _, session = kassa.staff_sessions.sign_in("bea@shop.example", password, "test")
    assert session.must_change_password and session.user.role == "ops"
    listing = admin.get("/dashboard/users").text
    assert "bea@shop.example" in listing and password not in listing
    (record,) = [r for r in audited(kassa, "staff_user.create") if r.actor_user]
    assert record.actor_user == admin.user_id

    again = admin.post("/dashboard/users", {"email": "bea@shop.example", "role": "ops"})
    assert again.status_code == 409 and 'role="alert"' in again.text
    bad = admin.post("/dashboard/users", {"email": "not an address", "role": "ops"})
    assert bad.status_code == 422
    storefront = admin.post("/dashboard/users", {"email": "s@shop.example", "role": "storefront"})
    assert storefront.status_code == 422


def test_disabling_a_user_ends_their_session_but_an_admin_cannot_disable_themselves(
    kassa: Kassa, staff: Staff
) -> None:
    admin, ops = staff("admin"), staff("ops")
    assert ops.get("/dashboard/orders").status_code == 200
    confirm = admin.get(f"/dashboard/users/{ops.user_id}/disable")
    assert confirm.status_code == 200 and "Disable user" in confirm.text
    assert admin.post(f"/dashboard/users/{ops.user_id}/disable").status_code == 303
    assert ops.get("/dashboard/orders").status_code == 303  # to sign in: the session ended
    (record,) = audited(kassa, "staff_user.disable")
    assert (record.subject_id, record.actor_user) == (ops.user_id, admin.user_id)

    own = admin.get(f"/dashboard/users/{admin.user_id}/disable")
    assert own.status_code == 200 and "You cannot disable yourself" in own.text
    assert "Disable user" not in own.text
    refused = admin.post(f"/dashboard/users/{admin.user_id}/disable")
    assert refused.status_code == 409 and "You cannot disable yourself" in refused.text
    assert not kassa.staff_users.get(SYSTEM, admin.user_id).disabled
    assert admin.get("/dashboard/users").status_code == 200
    listing = admin.get("/dashboard/users").text
    assert f"/dashboard/users/{admin.user_id}/disable" not in listing


def test_resetting_a_password_shows_the_new_one_once_and_ops_may_not_manage_users(
    kassa: Kassa, staff: Staff
) -> None:
    admin, analyst = staff("admin"), staff("analyst")
    reset = admin.post(f"/dashboard/users/{analyst.user_id}/reset-password")
    assert reset.status_code == 200, reset.text
    password = reset.text.split('id="password" readonly value="')[1].split('"')[0]
    _, session = kassa.staff_sessions.sign_in(analyst.email, password, "test")
    assert session.must_change_password
    ops = staff("ops")
    assert ops.get("/dashboard/users").status_code == 403
    assert (
        ops.post("/dashboard/users", {"email": "x@shop.example", "role": "admin"}).status_code
        == 403
    )
    assert ops.post(f"/dashboard/users/{admin.user_id}/disable").status_code == 403
    assert not kassa.staff_users.get(SYSTEM, admin.user_id).disabled
    assert [r for r in audited(kassa, "staff_user.create") if r.actor_user] == []


# -- a handful of queries a page ----------------------------------------------------------


def test_every_operations_page_issues_a_handful_of_statements(
    kassa: Kassa,
    client: TestClient,
    keys: Keys,
    receiver: Receiver,
    clock: FakeClock,
    staff: Staff,
) -> None:
    """With rows on every page (findings about orders, a delivery of 8 attempts, dozens of
    audit records, keys and users), no page reads per row."""
    broken_orders(kassa, client, keys, 5)
    endpoint_id = failed_delivery(kassa, receiver, clock)
    admin = staff("admin")
    for n in range(3):
        staff("analyst")
        kassa.api_keys.create(SYSTEM, "analyst", f"more {n}")
    for path in (
        "/dashboard/findings",
        "/dashboard/webhooks",
        f"/dashboard/webhooks/{endpoint_id}",
        "/dashboard/exports",
        "/dashboard/audit",
        "/dashboard/keys",
        "/dashboard/users",
    ):
        with statements_sent(kassa) as sent:
            assert admin.get(path).status_code == 200, path
        reads = [s for s in sent if s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
        assert len(reads) <= 6, (path, reads)
