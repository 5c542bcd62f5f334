"""The orders pages and their actions, through the TestClient on both databases: search by
number, the attempt timeline, refund in major units with its guard against a second post,
fulfil, and what an analyst sees and may do."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.storage.tables import AuditRecord, Refund
from kassa.worker import Worker
from tests.builders import make_product, paid_order
from tests.conftest import Keys
from tests.dashboard.conftest import StaffClient
from tests.support import statements_sent

Staff = Callable[[str], StaffClient]


def _paid(client: TestClient, keys: Keys, amount: int = 1000) -> dict[str, object]:
    make_product(client, keys, unit_amount=amount)
    placed = paid_order(client, keys)
    return placed


def test_a_number_search_finds_the_order_and_links_it_by_number(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    number = str(placed["number"])
    ops = staff("ops")
    for typed in (number, number.lower(), number.replace("K-", "").lstrip("0")):
        page = ops.get("/dashboard/orders", params={"q": typed})
        assert page.status_code == 200, page.text
        assert f'href="/dashboard/orders/{number}"' in page.text, typed
    missing = ops.get("/dashboard/orders", params={"q": "K-999999"})
    assert missing.status_code == 200 and "No order matches" in missing.text


def test_the_order_page_shows_each_attempt_on_a_timeline(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    page = staff("analyst").get(f"/dashboard/orders/{placed['number']}")
    assert page.status_code == 200, page.text
    assert 'aria-label="Attempts of pay_' in page.text
    assert "Attempt 1" in page.text and "succeeded" in page.text
    assert "€10.00" in page.text


def test_a_partial_refund_typed_in_major_units_refunds_that_and_issues_a_credit_note(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    number = placed["number"]
    ops = staff("ops")
    form = ops.get(f"/dashboard/orders/{number}/refund")
    assert form.status_code == 200 and 'name="committed" value="0"' in form.text
    done = ops.post(f"/dashboard/orders/{number}/refund", {"amount": "3.00", "committed": "0"})
    assert done.status_code == 303, done.text
    Worker(kassa, name="test-worker").drain()  # issues the credit note
    page = ops.get(done.headers["location"])
    assert "The refund was made." in page.text
    assert "€3.00" in page.text and "Credit note" in page.text
    with kassa.db.transaction() as session:
        assert session.scalar(select(func.sum(Refund.amount))) == 300
        actors = session.scalars(
            select(AuditRecord.actor_user).where(AuditRecord.action.like("refund%"))
        ).all()
    assert actors and all(actor == ops.user_id for actor in actors)


def test_the_same_refund_form_posted_twice_refunds_once(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    ops = staff("ops")
    form = {"amount": "3.00", "committed": "0"}
    first = ops.post(f"/dashboard/orders/{placed['number']}/refund", form)
    second = ops.post(f"/dashboard/orders/{placed['number']}/refund", form)
    assert first.status_code == 303 and second.status_code == 409, second.text
    assert "refunded since this was confirmed" in second.text
    with kassa.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 1


def test_amounts_that_are_not_major_units_of_the_currency_are_refused(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    ops = staff("ops")
    for typed in ("3.005", "abc", "-3", "0", "", "11.00"):
        r = ops.post(
            f"/dashboard/orders/{placed['number']}/refund", {"amount": typed, "committed": "0"}
        )
        assert r.status_code in (409, 422), (typed, r.status_code)
    with kassa.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0


def test_fulfil_marks_the_order_fulfilled(client: TestClient, keys: Keys, staff: Staff) -> None:
    placed = _paid(client, keys)
    ops = staff("ops")
    assert ops.get(f"/dashboard/orders/{placed['number']}/fulfil").status_code == 200
    done = ops.post(f"/dashboard/orders/{placed['number']}/fulfil")
    assert done.status_code == 303
    order = client.get(f"/v1/orders/{placed['id']}", headers=keys.headers("admin")).json()
    assert order["status"] == "fulfilled"


def test_an_analyst_sees_no_action_and_is_refused_if_they_post_anyway(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    analyst = staff("analyst")
    page = analyst.get(f"/dashboard/orders/{placed['number']}")
    assert page.status_code == 200
    for control in ("/refund", "/fulfil", "/cancel"):
        assert f"/dashboard/orders/{placed['number']}{control}" not in page.text
    for action in ("refund", "fulfil", "cancel"):
        r = analyst.post(
            f"/dashboard/orders/{placed['number']}/{action}", {"amount": "1.00", "committed": "0"}
        )
        assert r.status_code == 403, (action, r.text)
        assert analyst.get(f"/dashboard/orders/{placed['number']}/{action}").status_code == 403
    with kassa.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0


def test_a_form_without_its_csrf_token_is_refused(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    placed = _paid(client, keys)
    ops = staff("ops")
    for token in ("", "forged"):
        r = ops.post(
            f"/dashboard/orders/{placed['number']}/refund",
            {"amount": "1.00", "committed": "0", "csrf_token": token},
        )
        assert r.status_code == 403, r.text
    with kassa.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0


def test_pages_need_a_session_and_signing_out_ends_it(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    anonymous = client.get("/dashboard/orders", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/dashboard/sign-in?next=%2Fdashboard%2Forders"
    ops = staff("ops")
    assert ops.get("/dashboard/orders").status_code == 200
    assert ops.post("/dashboard/sign-out").status_code == 303
    assert ops.get("/dashboard/orders").status_code == 303


def test_every_page_carries_a_policy_that_allows_this_origin_only(staff: Staff) -> None:
    page = staff("admin").get("/dashboard/orders")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_the_order_page_reads_the_same_number_of_statements_however_many_refunds(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    """No N+1: an order with one refund and one with four cost the page the same reads."""
    make_product(client, keys, unit_amount=1000)
    one, four = paid_order(client, keys), paid_order(client, keys)
    for placed, refunds in ((one, 1), (four, 4)):
        for _ in range(refunds):
            r = client.post(
                f"/v1/orders/{placed['id']}/refunds",
                json={"amount": 100},
                headers=keys.headers("ops"),
            )
            assert r.status_code == 201, r.text
    Worker(kassa, name="test-worker").drain()
    admin = staff("admin")
    counts = []
    for placed in (one, four):
        admin.get(f"/dashboard/orders/{placed['number']}")  # warm: the session's touch
        with statements_sent(kassa) as seen:
            page = admin.get(f"/dashboard/orders/{placed['number']}")
        assert page.status_code == 200
        counts.append(len([s for s in seen if s.lstrip().upper().startswith("SELECT")]))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 16, counts


def test_what_buyers_and_staff_typed_is_shown_as_text_never_as_markup(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    make_product(client, keys, "EVIL", title=hostile, unit_amount=500)
    placed = paid_order(client, keys, lines=(("EVIL", 1),))
    page = staff("admin").get(f"/dashboard/orders/{placed['number']}")
    assert page.status_code == 200
    assert hostile not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    searched = staff("admin").get("/dashboard/orders", params={"q": hostile})
    assert hostile not in searched.text and "&lt;script&gt;" in searched.text
