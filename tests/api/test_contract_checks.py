"""Contract tests for check findings (api-contract.md v1.1: Monitoring: check findings).

`POST /v1/checks/run` → `{open, new, resolved, findings}`, `GET /v1/checks/findings`
(a list like every other), `POST /v1/checks/findings/{id}/acknowledge {note}`. Ops and
admin keys only: analyst and storefront keys get 403.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from kassa.bootstrap import Kassa
from kassa.storage.tables import CheckFinding
from tests import builders
from tests.conftest import FakeClock, Keys

FINDING_FIELDS = {
    "id",
    "object",
    "check",
    "subject",
    "status",
    "detail",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "acknowledged_at",
    "acknowledged_by",
    "note",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture
def broken(kassa: Kassa, client: TestClient, keys: Keys) -> list[str]:
    """Three paid orders whose amount_paid no longer matches their payments."""
    builders.make_product(client, keys)
    orders = [builders.paid_order(client, keys, "ops")["id"] for _ in range(3)]
    with kassa.db.transaction() as s:
        s.execute(text("UPDATE orders SET amount_paid = amount_paid + 1"))
    return orders


def run(client: TestClient, keys: Keys, role: str = "ops", **headers: str) -> Any:
    r = client.post("/v1/checks/run", headers=keys.headers(role, **headers))
    assert r.status_code == 200, r.text
    return r.json()


def assert_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


@pytest.mark.parametrize("role", ["analyst", "storefront"])
def test_below_ops_may_neither_run_nor_read_nor_acknowledge(
    client: TestClient, keys: Keys, broken: list[str], role: str
) -> None:
    finding = run(client, keys)["findings"][0]["id"]
    assert_problem(
        client.post("/v1/checks/run", headers=keys.headers(role)), 403, "insufficient_role"
    )
    assert_problem(
        client.get("/v1/checks/findings", headers=keys.headers(role)), 403, "insufficient_role"
    )
    r = client.post(
        f"/v1/checks/findings/{finding}/acknowledge", json={"note": "x"}, headers=keys.headers(role)
    )
    assert_problem(r, 403, "insufficient_role")
    assert_problem(client.post("/v1/checks/run"), 401, "missing_api_key")


@pytest.mark.parametrize("role", ["ops", "admin"])
def test_ops_and_admin_run_the_checks(
    client: TestClient, keys: Keys, broken: list[str], role: str
) -> None:
    body = run(client, keys, role)
    assert set(body) == {"open", "new", "resolved", "findings"}
    assert (body["open"], body["new"], body["resolved"]) == (3, 3, 0)
    assert {f["subject"] for f in body["findings"]} == set(broken)
    for finding in body["findings"]:
        assert set(finding) == FINDING_FIELDS
        assert finding["object"] == "check_finding" and finding["id"].startswith("chk_")
        assert (finding["check"], finding["status"]) == ("order_payments", "open")
        assert RFC3339_UTC.match(finding["first_seen_at"]), finding
        assert finding["resolved_at"] is finding["acknowledged_at"] is finding["note"] is None
    again = run(client, keys, role)
    assert (again["open"], again["new"], again["resolved"]) == (3, 0, 0)


def test_a_run_is_audited_and_replayed_by_its_idempotency_key(
    client: TestClient, keys: Keys, broken: list[str], kassa: Kassa
) -> None:
    first = client.post("/v1/checks/run", headers=keys.headers("ops", **{"Idempotency-Key": "r1"}))
    assert first.status_code == 200
    with kassa.db.transaction() as s:  # repaired: a new run would resolve them
        s.execute(text("UPDATE orders SET amount_paid = amount_paid - 1"))
    replay = client.post("/v1/checks/run", headers=keys.headers("ops", **{"Idempotency-Key": "r1"}))
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == first.content
    assert run(client, keys)["resolved"] == 3
    audit = client.get(
        "/v1/audit", params={"action": "checks.run"}, headers=keys.headers("admin")
    ).json()["data"]
    assert len(audit) == 2  # the replay ran nothing
    assert {a["actor_key_id"] for a in audit} == {keys.ids["ops"]}
    assert audit[-1]["after"] == {"open": 3, "new": 3, "resolved": 0}
    assert audit[-1]["request_id"] == first.headers["X-Request-Id"]


def test_findings_are_listed_newest_first_with_filters_and_cursor(
    client: TestClient, keys: Keys, broken: list[str], kassa: Kassa, clock: FakeClock
) -> None:
    run(client, keys)
    with kassa.db.transaction() as s:  # one repaired
        s.execute(
            text("UPDATE orders SET amount_paid = amount_paid - 1 WHERE id = :o"), {"o": broken[0]}
        )
    clock.advance(60)
    run(client, keys)
    ops = keys.headers("ops")

    everything = client.get("/v1/checks/findings", headers=ops).json()
    assert everything["object"] == "list" and everything["has_more"] is False
    ids = [f["id"] for f in everything["data"]]
    # newest first: the order they were stored in, reversed (ids made in the same
    # millisecond do not sort by time: their tail is random)
    with kassa.db.transaction(read_only=True) as s:
        stored = list(s.scalars(select(CheckFinding.id).order_by(CheckFinding.pk.desc())))
    assert ids == stored and len(ids) == 3

    open_ = client.get("/v1/checks/findings", params={"status": "open"}, headers=ops).json()
    assert {f["subject"] for f in open_["data"]} == set(broken[1:])
    resolved = client.get("/v1/checks/findings", params={"status": "resolved"}, headers=ops)
    (gone,) = resolved.json()["data"]
    assert gone["subject"] == broken[0] and RFC3339_UTC.match(gone["resolved_at"])
    by_check = client.get("/v1/checks/findings", params={"check": "stock"}, headers=ops).json()
    assert by_check["data"] == []

    first = client.get("/v1/checks/findings", params={"limit": 2}, headers=ops).json()
    assert first["has_more"] is True
    rest = client.get(
        "/v1/checks/findings",
        params={"limit": 2, "starting_after": first["data"][-1]["id"]},
        headers=ops,
    ).json()
    assert [f["id"] for f in first["data"] + rest["data"]] == ids and rest["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"status": "closed"},
        {"status": "open' OR 1=1 --"},
        {"check": "no_such_check"},
        {"limit": 0},
        {"limit": 101},
        {"starting_after": "chk_nope"},
    ],
)
def test_bad_list_parameters_are_422(client: TestClient, keys: Keys, params: Any) -> None:
    r = client.get("/v1/checks/findings", params=params, headers=keys.headers("ops"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_acknowledge_records_who_and_when_and_the_finding_stays_open(
    client: TestClient, keys: Keys, broken: list[str], clock: FakeClock
) -> None:
    finding = run(client, keys)["findings"][0]
    clock.advance(120)
    r = client.post(
        f"/v1/checks/findings/{finding['id']}/acknowledge",
        json={"note": "  bank reversal, fixing on Monday  "},
        headers=keys.headers("admin"),
    )
    assert r.status_code == 200, r.text
    acked = r.json()
    assert set(acked) == FINDING_FIELDS
    assert acked["status"] == "open" and acked["acknowledged_by"] == keys.ids["admin"]
    assert acked["note"] == "bank reversal, fixing on Monday"
    assert acked["acknowledged_at"] == clock.now.isoformat().replace("+00:00", "Z")
    listed = client.get(
        "/v1/checks/findings", params={"status": "open"}, headers=keys.headers("ops")
    ).json()["data"]
    assert next(f for f in listed if f["id"] == finding["id"])["note"] == acked["note"]
    # without a body: acknowledged, no note
    r = client.post(f"/v1/checks/findings/{finding['id']}/acknowledge", headers=keys.headers("ops"))
    assert r.status_code == 200 and r.json()["note"] is None
    assert r.json()["acknowledged_by"] == keys.ids["ops"]
    r = client.post(  # a blank note is no note
        f"/v1/checks/findings/{finding['id']}/acknowledge",
        json={"note": "   "},
        headers=keys.headers("ops"),
    )
    assert r.status_code == 200 and r.json()["note"] is None
    audit = client.get(
        "/v1/audit", params={"subject": finding["id"]}, headers=keys.headers("admin")
    ).json()["data"]
    assert [a["action"] for a in audit] == ["check_finding.acknowledged"] * 3


def test_acknowledging_an_unknown_finding_is_404(client: TestClient, keys: Keys) -> None:
    for finding_id in ["chk_000000000000000000000000", "ord_x", "' OR 1=1 --", "x" * 300]:
        r = client.post(
            f"/v1/checks/findings/{finding_id}/acknowledge",
            json={"note": "?"},
            headers=keys.headers("ops"),
        )
        assert_problem(r, 404, "check_finding_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"note": "x" * 2001},
        {"note": 42},
        {"note": "a\x00b"},
        {"note": "ok", "status": "resolved"},  # a finding is resolved by a run, not by hand
        [],
    ],
)
def test_bad_acknowledgements_are_refused(
    client: TestClient, keys: Keys, broken: list[str], body: Any
) -> None:
    finding = run(client, keys)["findings"][0]
    r = client.post(
        f"/v1/checks/findings/{finding['id']}/acknowledge", json=body, headers=keys.headers("ops")
    )
    assert 400 <= r.status_code < 500 and r.status_code != 404, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    listed = client.get("/v1/checks/findings", headers=keys.headers("ops")).json()["data"]
    assert all(f["acknowledged_at"] is None and f["status"] == "open" for f in listed)
