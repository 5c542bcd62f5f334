"""Check findings: what the reconciliation checks found, open ones first, and their
acknowledgement (who looked, when, with a note) through `kassa.findings`, as
`GET /v1/checks/findings` and `POST /v1/checks/findings/{id}/acknowledge` do.

The list is a page of the service's newest-first list for one view (open, not yet
acknowledged, acknowledged, resolved); an order a finding names is linked by its number,
all of a page's numbers read at once (`orders.numbers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.pages.common import listed, page_router, too_long
from kassa.dashboard.web import redirect, render
from kassa.domain.errors import DomainError
from kassa.domain.ids import has_prefix
from kassa.domain.roles import Permission
from kassa.services.checks import CHECK_NAMES
from kassa.services.findings import OPEN, RESOLVED, FindingView

router = page_router()
PAGE_SIZE = 50
MAX_NOTE = 2000  # as the API's FindingAcknowledge


@dataclass(frozen=True, slots=True)
class View:
    """One way of reading the findings: a status, and whether acknowledged ones count."""

    label: str
    status: str
    acknowledged: bool | None


# The views, in the order of the filter; the first (open) is the default.
VIEWS = {
    "open": View("Open", OPEN, None),
    "unacknowledged": View("Open, not acknowledged", OPEN, False),
    "acknowledged": View("Open, acknowledged", OPEN, True),
    "resolved": View("Resolved", RESOLVED, None),
}
NOTICES = {"acknowledged": "The finding is acknowledged. It stays open until its problem is gone."}


@dataclass(frozen=True, slots=True)
class Subject:
    """What a finding is about, as the page shows it: its text, and a page to open it."""

    text: str
    href: str | None


def subjects_of(staff: Staff, findings: list[FindingView]) -> dict[str, Subject]:
    """Each finding's subject, orders linked by number (one read for the page)."""
    numbers = staff.kassa.orders.numbers_of(
        staff.ctx, [f.subject for f in findings if has_prefix(f.subject, "ord")]
    )
    subjects = {}
    for finding in findings:
        subject = finding.subject
        if subject in numbers:
            subjects[finding.id] = Subject(numbers[subject], f"/orders/{numbers[subject]}")
        elif has_prefix(subject, "cus"):  # a wallet: "cus_…/EUR"
            subjects[finding.id] = Subject(subject, f"/customers/{subject.split('/')[0]}")
        else:
            subjects[finding.id] = Subject(subject, None)
    return subjects


@router.get("/findings")
def findings_list(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_FINDINGS))],
    show: str = "open",
    check: str = "",
    after: str = "",
    notice: str = "",
) -> Response:
    view = VIEWS.get(show, VIEWS["open"])
    check = check if check in CHECK_NAMES else ""
    findings, has_more = listed(
        lambda: staff.kassa.findings.list(
            limit=PAGE_SIZE,
            starting_after=after or None,
            status=view.status,
            check=check or None,
            acknowledged=view.acknowledged,
        )
    )
    return render(
        request,
        staff.viewer,
        "findings.html.j2",
        {
            "findings": findings,
            "subjects": subjects_of(staff, findings),
            "has_more": has_more,
            "views": VIEWS,
            "show": show if show in VIEWS else "open",
            "view": view,
            "checks": CHECK_NAMES,
            "check": check,
            "notice": NOTICES.get(notice, ""),
        },
    )


def _finding(staff: Staff, finding_id: str) -> FindingView:
    try:
        return staff.kassa.findings.get(finding_id)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no finding {finding_id}.") from exc


def _acknowledge_page(
    request: Request, staff: Staff, finding: FindingView, note: str, error: str, status: int
) -> Response:
    return render(
        request,
        staff.viewer,
        "finding_acknowledge.html.j2",
        {
            "f": finding,
            "subject": subjects_of(staff, [finding])[finding.id],
            "note": note,
            "error": error,
            "max_note": MAX_NOTE,
        },
        status=status,
    )


@router.get("/findings/{finding_id}/acknowledge")
def acknowledge_page(
    request: Request,
    finding_id: str,
    staff: Annotated[Staff, Depends(allowed(Permission.ACKNOWLEDGE_FINDINGS))],
) -> Response:
    """The finding in full, and the form that acknowledges it with a note."""
    finding = _finding(staff, finding_id)
    return _acknowledge_page(request, staff, finding, finding.note or "", "", 200)


@router.post("/findings/{finding_id}/acknowledge")
def acknowledge(
    request: Request,
    finding_id: str,
    posted: Annotated[Posted, Depends(posting(Permission.ACKNOWLEDGE_FINDINGS))],
) -> Response:
    staff = posted.staff
    note = posted.text("note")
    if error := too_long("note", note, MAX_NOTE):
        finding = _finding(staff, finding_id)
        return _acknowledge_page(request, staff, finding, note, error, 422)
    try:
        staff.kassa.findings.acknowledge(staff.ctx, finding_id, note or None)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no finding {finding_id}.") from exc
    return redirect("/findings", notice="acknowledged")
