"""The create forms whose answer shows a secret act once per form, however often it is sent
(a reload re-posting the answer, a double click): see `services/staff_forms.py`.

A handler checks what was typed first (a refusal there claims nothing), then asks
`first_sending`: either the claim of this form's token, which it marks `made` with what
it created or `refused` when the service turned the form down, or the page that says what
the first sending made.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted
from kassa.dashboard.web import FORM_TOKEN, render
from kassa.services.staff_forms import MAX_TOKEN


@dataclass(frozen=True, slots=True)
class FirstSending:
    """This post is its form's first: what it creates is recorded against the token."""

    posted: Posted
    token: str

    def made(self, resource_id: str) -> None:
        staff = self.posted.staff
        staff.kassa.staff_forms.made(staff.session.id, self.token, resource_id)

    def refused(self) -> None:
        staff = self.posted.staff
        staff.kassa.staff_forms.release(staff.session.id, self.token)


def first_sending(
    request: Request, posted: Posted, *, what: str, listing: tuple[str, str]
) -> FirstSending | Response:
    """Claim the form's token; the claim, or (409) the page saying that the form was sent
    already and what it made, linking to `listing` ((dashboard path, title), e.g. ("/keys",
    "API keys")) where `what` (e.g. "API key") is. A form without a token was not rendered
    by kassa: 403, as for CSRF."""
    staff = posted.staff
    token = posted.text(FORM_TOKEN)
    if not token or len(token) > MAX_TOKEN:
        raise staff.refuse(403, "This form has expired or was not sent by kassa. Reload the page.")
    earlier = staff.kassa.staff_forms.claim(staff.session.id, token)
    if earlier is None:
        return FirstSending(posted, token)
    return render(
        request,
        staff.viewer,
        "sent_already.html.j2",
        {
            "what": what,
            "listing": listing[0],
            "listing_title": listing[1],
            "made": earlier.resource_id,
        },
        status=409,
    )
