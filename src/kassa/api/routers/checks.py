"""Monitoring: the reconciliation checks' findings (ops and admin keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.routing import local_effect
from kassa.api.schemas import CheckFindingOut, CheckRunOut, FindingAcknowledge, ListOf
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.checks import CHECK_NAMES
from kassa.services.context import RequestContext
from kassa.services.findings import STATUSES

checks = router("/v1/checks", "checks")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@checks.get("/findings", response_model=ListOf[CheckFindingOut])
def list_findings(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_FINDINGS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    status: Annotated[str | None, Query(pattern=f"^({'|'.join(STATUSES)})$")] = None,
    check: Annotated[str | None, Query(pattern=f"^({'|'.join(CHECK_NAMES)})$")] = None,
) -> object:
    return kassa.findings.list(
        limit=page.limit, starting_after=page.starting_after, status=status, check=check
    )


@checks.post("/run", response_model=CheckRunOut)
def run_checks(
    ctx: Annotated[RequestContext, Depends(require(Permission.RUN_CHECKS))],
    kassa: Core,
) -> object:
    """Run every check now (the provider comparison included) and store the findings, as
    `kassa check` and the worker do. On a large shop this takes as long as listing the
    providers' records of the last 30 days."""
    return kassa.findings.run(ctx)


@checks.post(
    "/findings/{finding_id}/acknowledge",
    response_model=CheckFindingOut,
    responses=problems(404, "check_finding_not_found"),
)
@local_effect
def acknowledge_finding(
    finding_id: str,
    ctx: Annotated[RequestContext, Depends(require(Permission.ACKNOWLEDGE_FINDINGS))],
    kassa: Core,
    body: Annotated[FindingAcknowledge | None, Body()] = None,
) -> object:
    """Record who looked at a finding, when, and their note. It stays open until its
    problem is gone."""
    note = body.note if body else None
    return kassa.findings.acknowledge(ctx, finding_id, note or None)  # blank: no note
