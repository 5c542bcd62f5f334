"""Customers: the list with search by e-mail, one customer's page (their wallet's balances
and ledger, their orders), and the admin's balance adjustment, confirmed on a page of its
own (old balance → new balance) before anything changes.

Read and changed through the services the API uses (`kassa.customers`, `kassa.wallets`,
`kassa.orders`) with the signed-in user's context: an adjustment made here is checked,
audited (the user as actor) and reported (`wallet.adjusted`) as the API's would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from babel.numbers import list_currencies
from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.formatting import AmountNotUnderstood, parse_balance
from kassa.dashboard.pages.common import page_router, refused_status
from kassa.dashboard.web import redirect, render
from kassa.domain.errors import DomainError
from kassa.domain.money import MAX_AMOUNT, is_currency, normalize_currency
from kassa.domain.roles import Permission
from kassa.services.customers import CustomerView
from kassa.services.orders import OrderView
from kassa.services.wallets import WalletView

router = page_router()
PAGE_SIZE = 50
ORDERS_SHOWN = 50  # the customer's newest orders on their page
REASON_MAX = 500  # as the API's `reason`
NOTICES = {"adjusted": "The balance is adjusted.", "unchanged": "The balance was already that."}


@router.get("/customers")
def customers_list(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_CUSTOMERS))],
    q: str = "",
    after: str = "",
) -> Response:
    """Newest first; a search is an e-mail (whatever its case) or a customer id (cus_…)."""
    q = q.strip()
    customers: list[CustomerView] = []
    has_more = False
    try:
        if q.startswith("cus_"):
            customers = [staff.kassa.customers.get(q)]
        else:
            page = staff.kassa.customers.list(
                limit=PAGE_SIZE, starting_after=after or None, email=q or None
            )
            customers, has_more = list(page.data), page.has_more
    except DomainError:  # no such customer, or a stale cursor: nothing to list
        customers, has_more = [], False
    return render(
        request,
        staff.viewer,
        "customers.html.j2",
        {"customers": customers, "has_more": has_more, "q": q},
    )


@dataclass(frozen=True, slots=True)
class CustomerDossier:
    """What the customer's page shows, each part from its own service."""

    customer: CustomerView
    wallet: WalletView | None  # None: the reader's role may not read wallets
    orders: list[OrderView]
    more_orders: bool

    def currencies(self) -> tuple[list[str], list[str]]:
        """The adjustment form's choices: the wallet's and the orders' currencies, then
        every other currency kassa takes."""
        own = set(self.wallet.balances if self.wallet else ()) | {o.currency for o in self.orders}
        others = {code for code in list_currencies() if is_currency(code)} - own
        return sorted(own), sorted(others)

    def balance(self, currency: str) -> int:
        return self.wallet.balances.get(currency, 0) if self.wallet else 0


def _dossier(staff: Staff, customer_id: str) -> CustomerDossier:
    kassa = staff.kassa
    try:
        customer = kassa.customers.get(customer_id)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no customer {customer_id}.") from exc
    wallet = kassa.wallets.view(customer.id) if staff.viewer.can(Permission.READ_WALLETS) else None
    orders, more = [], False
    if staff.viewer.can(Permission.READ_ORDERS):
        page = kassa.orders.list(staff.ctx, limit=ORDERS_SHOWN, customer=customer.id)
        orders, more = list(page.data), page.has_more
    return CustomerDossier(customer, wallet, orders, more)


@router.get("/customers/{customer_id}")
def customer_page(
    request: Request,
    customer_id: str,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_CUSTOMERS))],
    notice: str = "",
) -> Response:
    dossier = _dossier(staff, customer_id)
    return render(
        request,
        staff.viewer,
        "customer.html.j2",
        {"d": dossier, "c": dossier.customer, "notice": NOTICES.get(notice, ""), "error": ""},
    )


# -- adjusting a balance ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Typed:
    """The adjustment form as typed: a currency, a balance in major units, a reason."""

    currency: str
    balance: str
    reason: str

    def checked(self, staff: Staff) -> tuple[str, int, str]:
        """(currency, balance in minor units, reason); ValueError saying what is wrong."""
        try:
            code = normalize_currency(self.currency)
        except DomainError as exc:
            raise ValueError(exc.detail) from exc
        balance = parse_balance(self.balance, code, staff.viewer.locale)
        if abs(balance) > MAX_AMOUNT:
            raise ValueError(f"a balance is at most {staff.viewer.money(MAX_AMOUNT, code)}")
        if not self.reason:
            raise ValueError("give a reason: it is kept in the wallet's ledger and audit log")
        if len(self.reason) > REASON_MAX:
            raise ValueError(f"the reason has more than {REASON_MAX} characters")
        return code, balance, self.reason


def _form_again(
    request: Request, staff: Staff, dossier: CustomerDossier, typed: Typed, error: str, status: int
) -> Response:
    """The customer's page with the form as typed and why it was not taken."""
    return render(
        request,
        staff.viewer,
        "customer.html.j2",
        {"d": dossier, "c": dossier.customer, "notice": "", "error": error, "typed": typed},
        status=status,
    )


@router.get("/customers/{customer_id}/adjust")
def confirm_adjustment(
    request: Request,
    customer_id: str,
    staff: Annotated[Staff, Depends(allowed(Permission.ADJUST_WALLETS))],
    currency: str = "",
    balance: str = "",
    reason: str = "",
) -> Response:
    """ "Set the EUR balance from €5.00 to €12.50?": the page the form's button leads to."""
    dossier = _dossier(staff, customer_id)
    typed = Typed(currency.strip(), balance.strip(), reason.strip())
    try:
        code, minor, why = typed.checked(staff)
    except (AmountNotUnderstood, ValueError) as exc:
        return _form_again(request, staff, dossier, typed, str(exc), 422)
    context: dict[str, Any] = {
        "d": dossier,
        "c": dossier.customer,
        "currency": code,
        "old": dossier.balance(code),
        "new": minor,
        "reason": why,
    }
    return render(request, staff.viewer, "customer_adjust.html.j2", context)


@router.post("/customers/{customer_id}/adjust")
def adjust(
    request: Request,
    customer_id: str,
    posted: Annotated[Posted, Depends(posting(Permission.ADJUST_WALLETS))],
) -> Response:
    """Set the confirmed balance, guarded by the balance the confirmation page showed: if
    the wallet moved since (or this form was posted already), nothing changes (409)."""
    staff = posted.staff
    dossier = _dossier(staff, customer_id)
    typed = Typed(posted.text("currency"), posted.text("balance"), posted.text("reason"))
    try:
        code, minor, why = typed.checked(staff)
        seen = int(posted.text("old"))
    except (AmountNotUnderstood, ValueError) as exc:
        return _form_again(request, staff, dossier, typed, str(exc), 422)
    try:
        done = staff.kassa.wallets.adjust(
            staff.ctx, dossier.customer.id, code, minor, why, if_balance=seen
        )
    except DomainError as exc:
        status = refused_status(exc)
        return _form_again(request, staff, dossier, typed, exc.detail, status)
    changed = done.prev_balance != done.new_balance
    return redirect(
        f"/customers/{dossier.customer.id}", notice="adjusted" if changed else "unchanged"
    )
