"""Check findings: stored by every run, open while found, resolved by the first complete run
that no longer finds them (issue 11, part 3). Both databases.

Inconsistencies are seeded behind kassa's back with plain SQL, as a bug or a hand-made
"fix" would leave them, and repaired the same way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from kassa.bootstrap import Kassa
from kassa.cli import app as cli
from kassa.config import Settings
from kassa.domain.payments import ErrorType, ProviderFailure
from kassa.providers.base import ProviderError
from kassa.services.catalogue import NewProduct
from kassa.services.checks import Finding, Sweep
from kassa.services.context import RequestContext
from kassa.services.findings import FindingView
from kassa.storage.tables import AuditRecord, CheckFinding
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys, Sleeps

OPS = RequestContext(actor_key_id="key_ops_tester", role=RequestContext.system().role)


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    return kassa


def paid(client: TestClient, keys: Keys) -> str:
    return str(builders.paid_order(client, keys, "ops")["id"])


def nudge_amount_paid(kassa: Kassa, order_id: str, by: int) -> None:
    """Move an order's amount_paid away from its payments (or back), behind kassa's back."""
    with kassa.db.transaction() as s:
        s.execute(
            text("UPDATE orders SET amount_paid = amount_paid + :by WHERE id = :id"),
            {"by": by, "id": order_id},
        )


def rows(kassa: Kassa) -> list[CheckFinding]:
    with kassa.db.transaction(read_only=True) as s:
        return list(s.scalars(select(CheckFinding).order_by(CheckFinding.pk)))


def open_keys(kassa: Kassa) -> set[tuple[str, str]]:
    return {(r.check_name, r.subject) for r in rows(kassa) if r.status == "open"}


def test_the_lifecycle_open_acknowledged_seen_again_resolved(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order_id = paid(client, keys)
    first = shop.findings.run(OPS)
    assert (first.open, first.new, first.resolved, first.findings) == (0, 0, 0, [])

    nudge_amount_paid(shop, order_id, 1)
    clock.advance(60)
    opened = shop.findings.run(OPS)
    assert (opened.open, opened.new, opened.resolved) == (1, 1, 0)
    (finding,) = opened.findings
    assert (finding.check, finding.subject, finding.status) == ("order_payments", order_id, "open")
    assert finding.id.startswith("chk_")
    assert "amount_paid is 1001" in finding.detail
    assert finding.first_seen_at == finding.last_seen_at == clock.now
    assert finding.resolved_at is None and finding.acknowledged_at is None

    clock.advance(30)
    acked = shop.findings.acknowledge(OPS, finding.id, "refund of 1 cent pending at the bank")
    assert acked.status == "open"  # acknowledging is not fixing
    assert (acked.acknowledged_at, acked.acknowledged_by) == (clock.now, "key_ops_tester")
    assert acked.note == "refund of 1 cent pending at the bank"
    with shop.db.transaction(read_only=True) as s:
        audit = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "check_finding.acknowledged")
        ).one()
    assert (audit.subject_id, audit.actor_key_id) == (finding.id, "key_ops_tester")
    assert audit.after is not None and audit.after["note"] == acked.note

    nudge_amount_paid(shop, order_id, 1)  # worse now: seen again, with the new detail
    clock.advance(60)
    again = shop.findings.run(OPS)
    assert (again.open, again.new, again.resolved) == (1, 0, 0)
    (seen,) = again.findings
    assert seen.id == finding.id and seen.first_seen_at == finding.first_seen_at
    assert seen.last_seen_at == clock.now and "amount_paid is 1002" in seen.detail
    assert seen.acknowledged_by == "key_ops_tester"  # the acknowledgement stays

    nudge_amount_paid(shop, order_id, -2)  # repaired
    clock.advance(60)
    gone = shop.findings.run(OPS)
    assert (gone.open, gone.new, gone.resolved, gone.findings) == (0, 0, 1, [])
    resolved = shop.findings.get(finding.id)
    assert (resolved.status, resolved.resolved_at) == ("resolved", clock.now)
    assert resolved.last_seen_at == seen.last_seen_at
    assert resolved.note == acked.note  # history keeps what staff wrote
    assert len(rows(shop)) == 1


def test_a_problem_that_comes_back_opens_a_new_unacknowledged_finding(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order_id = paid(client, keys)
    nudge_amount_paid(shop, order_id, 5)
    (first,) = shop.findings.run(OPS).findings
    shop.findings.acknowledge(OPS, first.id, "known")
    nudge_amount_paid(shop, order_id, -5)
    clock.advance(60)
    assert shop.findings.run(OPS).resolved == 1

    nudge_amount_paid(shop, order_id, 7)
    clock.advance(60)
    report = shop.findings.run(OPS)
    assert (report.open, report.new) == (1, 1)
    (second,) = report.findings
    assert second.id != first.id and second.first_seen_at == clock.now
    assert second.acknowledged_at is None and second.note is None
    assert shop.findings.get(first.id).status == "resolved"
    assert [r.status for r in rows(shop)] == ["resolved", "open"]


def test_two_problems_about_one_subject_are_one_finding(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    order_id = paid(client, keys)
    with shop.db.transaction() as s:  # refunded beyond what was paid, and disagreeing
        s.execute(
            text(
                "INSERT INTO refunds (id, order_id, amount, currency, status, destination, "
                "origin, created_at) VALUES ('re_forged', :o, 5000, 'EUR', 'succeeded', "
                "'original', 'kassa', CURRENT_TIMESTAMP)"
            ),
            {"o": order_id},
        )
    report = shop.findings.run(OPS, with_providers=False)
    (finding,) = report.findings
    assert (finding.check, finding.subject) == ("order_refunds", order_id)
    assert "exceeds paid 1000" in finding.detail and "sum to 5000" in finding.detail


def test_a_check_that_did_not_run_leaves_its_findings_open(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order_id = paid(client, keys)
    nudge_amount_paid(shop, order_id, 1)
    with shop.db.transaction() as s:  # and the sandbox says the payment was canceled
        s.execute(
            text(
                "UPDATE mock_intents SET status = 'canceled' WHERE id = (SELECT "
                "provider_payment_id FROM payments WHERE order_id = :o)"
            ),
            {"o": order_id},
        )
    report = shop.findings.run(OPS)
    assert {f.check for f in report.findings} == {"order_payments", "provider_records"}
    (provider_finding,) = [f for f in report.findings if f.check == "provider_records"]

    # both repaired; a run without the providers resolves only what it checked
    nudge_amount_paid(shop, order_id, -1)
    with shop.db.transaction() as s:
        s.execute(text("UPDATE mock_intents SET status = 'succeeded'"))
    clock.advance(60)
    no_providers = shop.findings.run(OPS, with_providers=False)
    assert (no_providers.open, no_providers.resolved) == (1, 1)
    assert [f.id for f in no_providers.findings] == [provider_finding.id]
    assert not no_providers.seen_now(no_providers.findings[0])  # carried, not re-found

    # a run whose provider comparison fails: the provider's findings stay, one more opens
    def unreachable(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise ProviderError(ProviderFailure(ErrorType.CONNECTION, "sandbox down"))

    monkeypatch.setattr(shop.mock, "list_intents", unreachable)
    clock.advance(60)
    failed = shop.findings.run(OPS)
    assert failed.resolved == 0
    assert {(f.check, f.subject) for f in failed.findings} == {
        ("provider_records", provider_finding.subject),
        ("provider_records", "mock"),
    }
    (down,) = [f for f in failed.findings if f.subject == "mock"]
    assert "could not list the provider" in down.detail

    # a run with another window or threshold finds, but resolves nothing of those checks
    monkeypatch.undo()
    clock.advance(60)
    narrow = shop.findings.run(OPS, provider_window_days=1)
    assert (narrow.open, narrow.resolved) == (2, 0)

    clock.advance(60)  # the provider answers again, with the standard window
    back = shop.findings.run(OPS)
    assert (back.open, back.resolved) == (0, 2)


def test_stuck_after_other_than_configured_resolves_none_of_its_checks(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    with builders.invoices_withheld(shop):  # its invoice is never issued
        order_id = paid(client, keys)
    clock.advance(shop.settings.stuck_payment_after_s + 1)
    (missing,) = shop.findings.run(OPS).findings
    assert (missing.check, missing.subject) == ("missing_documents", order_id)
    clock.advance(60)
    lenient = shop.findings.run(OPS, stuck_after_s=10**6)
    assert (lenient.open, lenient.resolved) == (1, 0)  # not found, but not vouched gone


def test_the_workers_periodic_run_opens_and_resolves_on_its_own_clock(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order_id = paid(client, keys)
    ticks = [1000.0]
    worker = Worker(shop, name="w", monotonic=lambda: ticks[0])
    worker.drain()  # the invoice is issued: nothing is late however far the clock moves

    def tick(seconds: float) -> None:
        ticks[0] += seconds
        worker._upkeep()  # what run_forever does between batches
        worker.checks.join()

    nudge_amount_paid(shop, order_id, 3)
    tick(0)  # a worker that just started does not run the checks at once
    assert rows(shop) == []
    tick(60)  # a minute later it asks: none ran before, so it runs them
    (finding,) = [r for r in rows(shop) if r.status == "open"]
    assert (finding.check_name, finding.subject) == ("order_payments", order_id)

    nudge_amount_paid(shop, order_id, -3)
    tick(60)  # the worker asks again a minute later, but an hour has not passed
    assert open_keys(shop) == {("order_payments", order_id)}

    clock.advance(shop.settings.check_interval_s)
    tick(59)  # due on kassa's clock, but the worker asks once a minute
    assert open_keys(shop) == {("order_payments", order_id)}
    tick(1)
    (resolved,) = rows(shop)
    assert (resolved.status, resolved.resolved_at) == ("resolved", clock.now)
    with shop.db.transaction(read_only=True) as s:  # the worker's runs are not audited
        assert (
            s.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "checks.run")
            )
            == 0
        )


def test_one_periodic_run_per_interval_however_many_workers(shop: Kassa, clock: FakeClock) -> None:
    assert shop.findings.run_if_due() is not None
    other = Kassa(shop.settings, clock=clock)  # another worker process, same database
    try:
        assert other.findings.run_if_due() is None
        assert shop.findings.run_if_due() is None
        clock.advance(shop.settings.check_interval_s - 1)
        assert other.findings.run_if_due() is None
        clock.advance(1)
        assert other.findings.run_if_due() is not None
        assert shop.findings.run_if_due() is None
    finally:
        other.close()


def test_a_run_that_began_earlier_never_undoes_what_a_later_one_stored(
    shop: Kassa, clock: FakeClock
) -> None:
    """Runs overlap (the worker's and an operator's); the slower one stores last, with
    older news. It must not move `last_seen_at` back, resolve what the later run saw, or
    reopen what the later run found gone."""
    everything = frozenset({("order_payments", "")})
    t0 = clock.now

    def sweep(at: Any, *subjects: str) -> Sweep:
        found = [Finding("order_payments", s, f"seen at {at:%H:%M:%S}") for s in subjects]
        return Sweep(at, found, everything)

    shop.findings.store(sweep(t0 + timedelta(seconds=10), "ord_a", "ord_b"))
    # an older run, stored later: it saw ord_a (older detail), did not see ord_b, saw ord_c
    late = shop.findings.store(sweep(t0 + timedelta(seconds=5), "ord_a", "ord_c"))
    assert late.resolved == 0 and late.new == 1
    by_subject = {r.subject: r for r in rows(shop)}
    assert by_subject["ord_a"].last_seen_at == t0 + timedelta(seconds=10)
    assert by_subject["ord_a"].detail.endswith(f"{t0 + timedelta(seconds=10):%H:%M:%S}")
    assert by_subject["ord_b"].status == "open"

    # a later run finds ord_a gone; an older one that still saw it stores after it
    shop.findings.store(sweep(t0 + timedelta(seconds=20), "ord_b", "ord_c"))
    stale = shop.findings.store(sweep(t0 + timedelta(seconds=15), "ord_a", "ord_b", "ord_c"))
    assert stale.new == 0
    assert open_keys(shop) == {("order_payments", "ord_b"), ("order_payments", "ord_c")}
    assert len(rows(shop)) == 3


def test_two_runs_storing_at_once_make_no_duplicate(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock, sleeps: Sleeps
) -> None:
    """Two cores on one database (a worker and `kassa check`), each sweeping and then
    storing at the same moment, over and over: one open finding per problem, whoever
    stores first, and a repaired problem resolved once."""
    orders = [paid(client, keys) for _ in range(3)]
    for order_id in orders:
        nudge_amount_paid(shop, order_id, 1)
    other = Kassa(shop.settings, clock=clock, sleep=sleeps)
    errors: list[BaseException] = []
    try:
        for round_ in range(6):
            if round_ == 3:
                for order_id in orders[:2]:
                    nudge_amount_paid(shop, order_id, -1)
            clock.advance(1)
            sweeps = [core.reconciliation.sweep(with_providers=False) for core in (shop, other)]
            barrier = threading.Barrier(2)

            def store(core: Kassa, sweep: Sweep, barrier: threading.Barrier) -> None:
                try:
                    barrier.wait(timeout=10)
                    core.findings.store(sweep)
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [
                threading.Thread(target=store, args=(core, sweep, barrier))
                for core, sweep in zip((shop, other), sweeps, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert not errors, errors
    finally:
        other.close()
    all_rows = rows(shop)
    assert len(all_rows) == 3  # one episode per order: never a duplicate
    assert open_keys(shop) == {("order_payments", orders[2])}
    assert {r.subject for r in all_rows if r.status == "resolved"} == set(orders[:2])


# -- `kassa check` ---------------------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, database_url: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("KASSA_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["check", *args])
    return result.exit_code, result.stdout, result.stderr


def test_kassa_check_prints_the_findings_and_ends_with_the_totals(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = paid(client, keys), paid(client, keys)
    nudge_amount_paid(shop, first, 1)
    nudge_amount_paid(shop, second, 2)
    code, out, err = run_cli(monkeypatch, database_url, "--fail-on-issues")
    lines = out.splitlines()
    assert code == 1, (out, err)
    assert lines[-1] == "open=2 resolved=0"
    assert sorted(lines[:-1]) == sorted(
        [
            f"order_payments  {first}  amount_paid is 1001 but its succeeded payments sum to 1000",
            f"order_payments  {second}  amount_paid is 1002 but its succeeded payments sum to 1000",
        ]
    )
    assert "2 issue(s) found. order_payments: 2" in err

    (finding,) = [f for f in shop.findings.list(limit=10).data if f.subject == first]
    shop.findings.acknowledge(OPS, finding.id, "looking into it")
    code, out, _ = run_cli(monkeypatch, database_url)  # reporting only: exit 0
    assert code == 0
    assert "[acknowledged by key_ops_tester: looking into it]" in out
    assert out.splitlines()[-1] == "open=2 resolved=0"

    nudge_amount_paid(shop, first, -1)
    code, out, _ = run_cli(monkeypatch, database_url, "--fail-on-issues", "--json")
    assert code == 1
    (line,) = out.splitlines()  # stdout is JSON lines only; the totals go to stderr
    body = json.loads(line)
    assert body["object"] == "check_finding" and body["subject"] == second
    assert set(body) == {
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

    nudge_amount_paid(shop, second, -2)
    code, out, err = run_cli(monkeypatch, database_url, "--fail-on-issues")
    assert (code, out) == (0, "open=0 resolved=1\n"), err


def test_kassa_check_without_providers_keeps_their_findings_and_fails(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paid(client, keys)
    with shop.db.transaction() as s:
        s.execute(text("UPDATE mock_intents SET status = 'canceled'"))
        payment_id = s.execute(text("SELECT id FROM payments")).scalar_one()
    code, out, _ = run_cli(monkeypatch, database_url)
    assert code == 0 and out.splitlines()[-1] == "open=1 resolved=0"
    with shop.db.transaction() as s:
        s.execute(text("UPDATE mock_intents SET status = 'succeeded'"))
    code, out, err = run_cli(monkeypatch, database_url, "--no-providers", "--fail-on-issues")
    assert code == 1, "a finding left open by a check that did not run still counts"
    assert "not rechecked this run" in out and out.splitlines()[-1] == "open=1 resolved=0"
    assert "provider_records: not run (1 open)" in err
    assert out.startswith(f"provider_records  {payment_id}  succeeded in kassa, but canceled")


def test_the_check_finding_view_is_what_the_api_shows(shop: Kassa) -> None:
    """One shape: the CLI's --json renders FindingView through the API's schema."""
    assert set(FindingView.__dataclass_fields__) == {
        "id",
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
    assert Settings().check_interval_s == 3600
