"""A dead database under the dashboard: a page for people (503, HTML, Retry-After), never a
traceback or the API's JSON; and the dashboard works again once the database is back."""

from __future__ import annotations

from collections.abc import Callable

from kassa.bootstrap import Kassa
from tests.dashboard.conftest import StaffClient
from tests.reliability.test_database_outage import Outage


def test_pages_and_forms_answer_503_as_a_page_while_the_database_is_away(
    kassa: Kassa, staff: Callable[[str], StaffClient]
) -> None:
    ops = staff("ops")
    outage = Outage(kassa)
    outage.begin()
    try:
        for answer in (
            ops.get("/dashboard/orders"),
            ops.get("/dashboard/orders/K-000001"),
            ops.post("/dashboard/orders/K-000001/fulfil"),
            ops.client.get("/dashboard/sign-in"),  # needs no database: still served
        ):
            if answer.request.url.path == "/dashboard/sign-in":
                assert answer.status_code == 200
                continue
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("text/html")
            assert int(answer.headers["retry-after"]) > 0
            assert "cannot reach its database" in answer.text
    finally:
        outage.end()
    assert ops.get("/dashboard/orders").status_code == 200
