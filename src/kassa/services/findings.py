"""Check findings: what the reconciliation checks found, kept and followed until it is gone.

A run of the checks (`kassa check`, `POST /v1/checks/run`, or the worker every
`KASSA_CHECK_INTERVAL_S`) is stored here as of the moment it began (`Sweep.observed_at`):

- a finding not open yet opens (`first_seen_at`); one still open is seen again
  (`last_seen_at` and `detail` move);
- an open finding that this run did not find is resolved (`resolved_at`), but only if
  its check ran to the end for its scope with the standard criteria
  (`Sweep.completed`): a check that did not run (`--no-providers`), could not finish (a
  provider that did not answer) or ran with other thresholds says nothing about it.

**One row per episode.** A problem that comes back after it was resolved opens a new
finding with its own id, rather than reopening the old row: the resolved row keeps the
history (when it was seen, when it went), and an acknowledgement belongs to the episode
it was given for, so "known, being fixed" never silences a recurrence nobody has looked
at. The partial unique index on (check, subject) where open keeps one open episode per
finding.

**Concurrent runs.** Runs may overlap (the worker's and an operator's `kassa check`);
each stores its findings in one transaction that first takes the lock of the `stored`
run mark, so stores happen one at a time. Each applies only what it saw more recently
than the table knows: it never moves `last_seen_at` back, never resolves a finding a
later run has seen, and never reopens one a later run found gone. So two runs at once
create no duplicate and lose no update, whichever stores first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.domain.errors import not_found
from kassa.domain.ids import new_id
from kassa.services import audit, events
from kassa.services.checks import Finding, Reconciliation, Sweep
from kassa.services.context import Clock, RequestContext
from kassa.services.pagination import Page, paginate
from kassa.storage.database import Database
from kassa.storage.tables import CheckFinding, CheckRunMark
from kassa.storage.upsert import dialect_insert

log = logging.getLogger("kassa.checks")

OPEN, RESOLVED = "open", "resolved"
STATUSES = (OPEN, RESOLVED)
STORED, PERIODIC = "stored", "periodic"
# A finding's detail as stored and shown; a check that explains more is cut here.
MAX_DETAIL = 2000

_Key = tuple[str, str]  # (check, subject)


@dataclass(frozen=True, slots=True)
class FindingView:
    id: str
    check: str
    subject: str
    status: str
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None

    @classmethod
    def of(cls, row: CheckFinding) -> FindingView:
        return cls(
            id=row.id,
            check=row.check_name,
            subject=row.subject,
            status=row.status,
            detail=row.detail,
            first_seen_at=row.first_seen_at,
            last_seen_at=row.last_seen_at,
            resolved_at=row.resolved_at,
            acknowledged_at=row.acknowledged_at,
            acknowledged_by=row.acknowledged_by,
            note=row.note,
        )


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one run left behind: `open` findings in all (those its checks found, and
    those of checks it could not vouch for, which stay open), of which `new` it opened,
    and how many it `resolved`. `findings` are the open ones, by check and subject."""

    open: int
    new: int
    resolved: int
    findings: list[FindingView]
    observed_at: datetime
    completed: frozenset[tuple[str, str]]

    def seen_now(self, finding: FindingView) -> bool:
        """Whether this run found `finding` (else it stays open from an earlier run,
        because its check did not run to the end this time)."""
        return finding.last_seen_at >= self.observed_at


def _merge(findings: Iterable[Finding]) -> dict[_Key, Finding]:
    """One finding per (check, subject): a check that reports two problems about one
    subject (an order refunded beyond what was paid, and whose total disagrees) gives one
    finding with both details."""
    merged: dict[_Key, Finding] = {}
    for finding in findings:
        key = (finding.check, finding.subject)
        earlier = merged.get(key)
        if earlier is not None and finding.detail not in earlier.detail.split("; "):
            finding = Finding(
                finding.check, finding.subject, f"{earlier.detail}; {finding.detail}", earlier.scope
            )
        elif earlier is not None:
            finding = earlier
        merged[key] = finding
    return merged


def _detail(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


class CheckFindings:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        reconciliation: Reconciliation,
        *,
        interval_s: int,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the checks' interval must be positive")
        self._db = db
        self._clock = clock
        self._reconciliation = reconciliation
        self._interval = timedelta(seconds=interval_s)

    # -- runs -----------------------------------------------------------------------------

    def run(
        self,
        ctx: RequestContext | None = None,
        *,
        stuck_after_s: int | None = None,
        provider_window_days: int | None = None,
        with_providers: bool = True,
    ) -> RunReport:
        """Run the checks now and store what they found. A run asked for by someone
        (`ctx`: the API, the CLI) is audited; the worker's are not."""
        options: dict[str, Any] = {"with_providers": with_providers}
        if provider_window_days is not None:
            options["provider_window_days"] = provider_window_days
        sweep = self._reconciliation.sweep(stuck_after_s=stuck_after_s, **options)
        return self.store(sweep, ctx)

    def run_if_due(self) -> RunReport | None:
        """The worker's scheduled run: if none began in the last `KASSA_CHECK_INTERVAL_S`
        (on any worker), claim this one and run the checks; else None."""
        if not self._claim_periodic():
            return None
        report = self.run()
        log.info("checks ran open=%s new=%s resolved=%s", report.open, report.new, report.resolved)
        return report

    def _claim_periodic(self) -> bool:
        """One statement: count a periodic run and move its start to now, if the last one
        began at least an interval ago (or there was none). Two workers asking at once:
        the second waits on the row and then finds it is not due."""
        now = self._clock()
        with self._db.transaction() as session:
            insert = dialect_insert(session, CheckRunMark)
            claimed = session.execute(
                insert.values(kind=PERIODIC, runs=1, last_started_at=now)
                .on_conflict_do_update(
                    index_elements=["kind"],
                    set_={"runs": CheckRunMark.runs + 1, "last_started_at": now},
                    where=CheckRunMark.last_started_at.is_(None)
                    | (CheckRunMark.last_started_at <= now - self._interval),
                )
                .returning(CheckRunMark.runs)
            ).first()
        return claimed is not None

    # -- storing a run --------------------------------------------------------------------

    def store(self, sweep: Sweep, ctx: RequestContext | None = None) -> RunReport:
        """Store a run's findings (see the module's docstring), in one transaction."""
        found = _merge(sweep.findings)
        observed = sweep.observed_at
        with self._db.transaction() as session:
            self._lock_stores(session, observed)
            open_rows = {
                (row.check_name, row.subject): row
                for row in session.scalars(select(CheckFinding).where(CheckFinding.status == OPEN))
            }
            new = sum(
                self._seen(session, open_rows.get(key), finding, observed)
                for key, finding in sorted(found.items())
            )
            resolved = 0
            for key, row in sorted(open_rows.items()):
                if key not in found and self._vouched_gone(row, sweep):
                    row.status, row.resolved_at = RESOLVED, observed
                    resolved += 1
            session.flush()
            still_open = [
                FindingView.of(row)
                for row in session.scalars(
                    select(CheckFinding)
                    .where(CheckFinding.status == OPEN)
                    .order_by(CheckFinding.check_name, CheckFinding.subject)
                )
            ]
            if ctx is not None:
                audit.record(
                    session,
                    ctx,
                    at=self._clock(),
                    action="checks.run",
                    subject="checks",
                    after={"open": len(still_open), "new": new, "resolved": resolved},
                )
        return RunReport(len(still_open), new, resolved, still_open, observed, sweep.completed)

    @staticmethod
    def _lock_stores(session: Session, observed: datetime) -> None:
        """Count this run in the `stored` mark; the upsert holds that row's lock until the
        transaction ends, so a concurrent store waits for this one (SQLite: the write
        transaction is exclusive anyway)."""
        insert = dialect_insert(session, CheckRunMark)
        session.execute(
            insert.values(kind=STORED, runs=1, last_started_at=observed).on_conflict_do_update(
                index_elements=["kind"],
                set_={"runs": CheckRunMark.runs + 1, "last_started_at": observed},
            )
        )

    def _seen(
        self, session: Session, row: CheckFinding | None, finding: Finding, observed: datetime
    ) -> int:
        """Record that the run saw `finding`; 1 if it opened it, else 0."""
        if row is not None:  # open already: seen again, unless a later run saw it since
            if row.last_seen_at <= observed:
                row.last_seen_at = observed
                row.detail = _detail(finding.detail)
                row.scope = finding.scope
            return 0
        gone_since = session.scalar(
            select(CheckFinding.pk)
            .where(
                CheckFinding.check_name == finding.check,
                CheckFinding.subject == finding.subject,
                CheckFinding.status == RESOLVED,
                CheckFinding.resolved_at > observed,
            )
            .limit(1)
        )
        if gone_since is not None:
            return 0  # a later run found it gone: this sighting is older news
        insert = dialect_insert(session, CheckFinding)
        new = FindingView(
            id=new_id("chk"),
            check=finding.check,
            subject=finding.subject,
            status=OPEN,
            detail=_detail(finding.detail),
            first_seen_at=observed,
            last_seen_at=observed,
            resolved_at=None,
            acknowledged_at=None,
            acknowledged_by=None,
            note=None,
        )
        opened = session.execute(
            insert.values(
                id=new.id,
                check_name=new.check,
                subject=new.subject,
                scope=finding.scope,
                status=new.status,
                detail=new.detail,
                first_seen_at=observed,
                last_seen_at=observed,
            )
            .on_conflict_do_nothing(
                index_elements=["check_name", "subject"],
                index_where=CheckFinding.status == OPEN,
            )
            .returning(CheckFinding.pk)
        ).first()
        if opened is None:
            return 0
        opening = events.resource_json("check_finding", new)
        events.record(session, events.CHECK_FINDING_OPENED, opening, self._clock())
        return 1

    @staticmethod
    def _vouched_gone(row: CheckFinding, sweep: Sweep) -> bool:
        """Whether the run, which did not find `row`, can say it is gone: its check ran to
        the end for its scope, and no later run has seen it meanwhile."""
        return (row.check_name, row.scope) in sweep.completed and (
            row.last_seen_at <= sweep.observed_at
        )

    # -- reading and acknowledging --------------------------------------------------------

    def list(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        status: str | None = None,
        check: str | None = None,
        acknowledged: bool | None = None,
    ) -> Page[FindingView]:
        """Findings, newest first; `acknowledged` True or False keeps only those someone has
        (or nobody has) acknowledged (the dashboard's "open, not yet looked at")."""
        stmt = select(CheckFinding)
        if status:
            stmt = stmt.where(CheckFinding.status == status)
        if check:
            stmt = stmt.where(CheckFinding.check_name == check)
        if acknowledged is not None:
            seen = CheckFinding.acknowledged_at.is_not(None)
            stmt = stmt.where(seen if acknowledged else CheckFinding.acknowledged_at.is_(None))
        with self._db.transaction(read_only=True) as session:
            page = paginate(session, CheckFinding, stmt, limit, starting_after)
            return page.map(FindingView.of)

    def get(self, finding_id: str) -> FindingView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(CheckFinding).where(CheckFinding.id == finding_id))
            if row is None:
                raise _unknown(finding_id)
            return FindingView.of(row)

    def acknowledge(
        self, ctx: RequestContext, finding_id: str, note: str | None = None
    ) -> FindingView:
        """Record who looked at a finding, when, and what they noted (a later
        acknowledgement replaces it). The finding stays open until a run no longer finds
        its problem: acknowledging is not fixing."""
        now = self._clock()
        with self._db.transaction() as session:
            row = session.scalar(
                select(CheckFinding).where(CheckFinding.id == finding_id).with_for_update()
            )
            if row is None:
                raise _unknown(finding_id)
            before = _acknowledgement(row)
            # a staff user is named by their id (`usr_…`), not the dashboard's actor key
            by = ctx.actor_user or ctx.actor_key_id
            row.acknowledged_at, row.acknowledged_by, row.note = now, by, note
            audit.record(
                session,
                ctx,
                at=now,
                action="check_finding.acknowledged",
                subject=row.id,
                before=before,
                after=_acknowledgement(row),
            )
            session.flush()
            return FindingView.of(row)


def _acknowledgement(row: CheckFinding) -> dict[str, Any]:
    return {
        "acknowledged_at": row.acknowledged_at.isoformat() if row.acknowledged_at else None,
        "acknowledged_by": row.acknowledged_by,
        "note": row.note,
    }


def _unknown(finding_id: str) -> Exception:
    return not_found("check_finding_not_found", f"no check finding {finding_id!r}")
