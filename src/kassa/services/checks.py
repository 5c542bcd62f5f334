"""Reconciliation: does every cent add up? (`kassa check`)

Each check compares two records that kassa keeps in step inside one transaction (an
order's `amount_paid` and its succeeded payments, a wallet's balance and its ledger, a
document counter and the documents it numbered), or kassa's records and the provider's.
A healthy database yields no finding; every finding names the check, the subject and
what disagrees, so staff can act on it.

The database checks read one consistent snapshot (`Database.snapshot`), so a change
committed while the check runs can never look like an inconsistency. The provider
check lists the provider's intents and refunds of the window through its API (the
mock's own tables; Stripe's list endpoints through the SDK) and compares them with
kassa's payments and refunds, both ways.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kassa.domain.documents import Series, format_number, sequence_problems
from kassa.domain.payments import PaymentStatus
from kassa.domain.refunds import RefundStatus
from kassa.domain.wallet import EntryKind
from kassa.providers.base import IntentStatus, ProviderError, ProviderIntent, ProviderRefund
from kassa.providers.registry import ProviderRegistry
from kassa.services.context import Clock
from kassa.storage.database import Database
from kassa.storage.tables import (
    DocumentCounter,
    IssuedDocument,
    Order,
    Payment,
    Product,
    Refund,
    WalletBalance,
    WalletEntry,
)

SUCCEEDED = PaymentStatus.SUCCEEDED.value
REFUND_SUCCEEDED = RefundStatus.SUCCEEDED.value
WALLET_PROVIDER = "wallet"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class CheckOptions:
    now: datetime
    stuck_after: timedelta
    provider_window: timedelta


DatabaseCheck = Callable[[Session, CheckOptions], list[Finding]]


def order_payments(session: Session, options: CheckOptions) -> list[Finding]:
    """An order's `amount_paid` is the sum of its succeeded payments."""
    paid = (
        select(Payment.order_id, func.sum(Payment.amount).label("total"))
        .where(Payment.status == SUCCEEDED, Payment.order_id.is_not(None))
        .group_by(Payment.order_id)
        .subquery()
    )
    rows = session.execute(
        select(Order.id, Order.amount_paid, func.coalesce(paid.c.total, 0))
        .outerjoin(paid, paid.c.order_id == Order.id)
        .where(Order.amount_paid != func.coalesce(paid.c.total, 0))
        .order_by(Order.pk)
    ).all()
    return [
        Finding(
            "order_payments",
            order_id,
            f"amount_paid is {amount_paid} but its succeeded payments sum to {int(total)}",
        )
        for order_id, amount_paid, total in rows
    ]


def order_refunds(session: Session, options: CheckOptions) -> list[Finding]:
    """Never more refunded than paid; `amount_refunded` is the sum of succeeded refunds."""
    refunded = (
        select(Refund.order_id, func.sum(Refund.amount).label("total"))
        .where(Refund.status == REFUND_SUCCEEDED)
        .group_by(Refund.order_id)
        .subquery()
    )
    total = func.coalesce(refunded.c.total, 0)
    rows = session.execute(
        select(Order.id, Order.amount_paid, Order.amount_refunded, total)
        .outerjoin(refunded, refunded.c.order_id == Order.id)
        .where((Order.amount_refunded != total) | (total > Order.amount_paid))
        .order_by(Order.pk)
    ).all()
    findings = []
    for order_id, amount_paid, amount_refunded, refunds in rows:
        if int(refunds) > amount_paid or amount_refunded > amount_paid:
            findings.append(
                Finding(
                    "order_refunds",
                    order_id,
                    f"refunded {max(int(refunds), amount_refunded)} exceeds paid {amount_paid}",
                )
            )
        if amount_refunded != int(refunds):
            findings.append(
                Finding(
                    "order_refunds",
                    order_id,
                    f"amount_refunded is {amount_refunded} but its succeeded refunds sum "
                    f"to {int(refunds)}",
                )
            )
    return findings


def wallet_ledger(session: Session, options: CheckOptions) -> list[Finding]:
    """Each wallet's balance is the sum of its entries; each wallet payment has its entry."""
    sums = {
        (customer, currency): int(total)
        for customer, currency, total in session.execute(
            select(
                WalletEntry.customer_id, WalletEntry.currency, func.sum(WalletEntry.amount)
            ).group_by(WalletEntry.customer_id, WalletEntry.currency)
        )
    }
    balances = {
        (row.customer_id, row.currency): row.balance
        for row in session.scalars(select(WalletBalance))
    }
    findings = [
        Finding(
            "wallet_ledger",
            f"{customer}/{currency}",
            f"balance is {balances.get((customer, currency), 0)} but its ledger sums to "
            f"{sums.get((customer, currency), 0)}",
        )
        for customer, currency in sorted(set(sums) | set(balances))
        if balances.get((customer, currency), 0) != sums.get((customer, currency), 0)
    ]
    entries = {
        reference: amount
        for reference, amount in session.execute(
            select(WalletEntry.reference, WalletEntry.amount).where(
                WalletEntry.kind == EntryKind.PAYMENT.value
            )
        )
    }
    for payment_id, amount in session.execute(
        select(Payment.id, Payment.amount)
        .where(Payment.provider == WALLET_PROVIDER, Payment.status == SUCCEEDED)
        .order_by(Payment.pk)
    ):
        if entries.get(payment_id) != -amount:
            findings.append(
                Finding(
                    "wallet_ledger",
                    payment_id,
                    f"wallet payment of {amount} has ledger entry {entries.get(payment_id)}",
                )
            )
    return findings


def stock(session: Session, options: CheckOptions) -> list[Finding]:
    """No product has negative stock."""
    return [
        Finding("stock", product_id, f"stock is {level} (below zero)")
        for product_id, level in session.execute(
            select(Product.id, Product.stock).where(Product.stock < 0).order_by(Product.pk)
        )
    ]


def document_numbers(session: Session, options: CheckOptions) -> list[Finding]:
    """Per series and year: numbers 1..counter, each once, and each printed as numbered."""
    counters = {
        (row.series, row.year): row.last_number for row in session.scalars(select(DocumentCounter))
    }
    issued: dict[tuple[str, int], list[int]] = defaultdict(list)
    findings = []
    for series, year, sequence, number in session.execute(
        select(
            IssuedDocument.series,
            IssuedDocument.year,
            IssuedDocument.sequence,
            IssuedDocument.number,
        )
    ):
        issued[(series, year)].append(sequence)
        if number != format_number(Series(series), year, sequence):
            findings.append(
                Finding("document_numbers", number, f"stored as {series} {year} #{sequence}")
            )
    for series, year in sorted(set(counters) | set(issued)):
        found = sequence_problems(issued.get((series, year), []), counters.get((series, year), 0))
        findings += [
            Finding("document_numbers", f"{series}-{year}", f"{problem}: {_few(numbers)}")
            for problem, numbers in (
                ("gap", found.missing),
                ("duplicated", found.duplicated),
                ("numbers beyond the counter", found.beyond_counter),
            )
            if numbers
        ]
    return findings


def missing_documents(session: Session, options: CheckOptions) -> list[Finding]:
    """Paid orders have an invoice and succeeded refunds a credit note, once the worker has
    had `stuck_after` to issue them."""
    cutoff = options.now - options.stuck_after
    invoiced = select(IssuedDocument.invoiced_order_id).where(
        IssuedDocument.invoiced_order_id.is_not(None)
    )
    credited = select(IssuedDocument.refund_id).where(IssuedDocument.refund_id.is_not(None))
    findings = [
        Finding("missing_documents", order_id, f"paid at {paid_at:%Y-%m-%d %H:%M} but no invoice")
        for order_id, paid_at in session.execute(
            select(Order.id, Order.paid_at)
            .where(Order.paid_at.is_not(None), Order.paid_at < cutoff, Order.id.not_in(invoiced))
            .order_by(Order.pk)
        )
    ]
    findings += [
        Finding("missing_documents", refund_id, "succeeded refund without a credit note")
        for (refund_id,) in session.execute(
            select(Refund.id)
            .where(
                Refund.status == REFUND_SUCCEEDED,
                func.coalesce(Refund.updated_at, Refund.created_at) < cutoff,
                Refund.id.not_in(credited),
            )
            .order_by(Refund.pk)
        )
    ]
    return findings


def stuck_payments(session: Session, options: CheckOptions) -> list[Finding]:
    """No payment stays `processing` (outcome unknown), and no refund `pending`, for longer
    than `stuck_after`."""
    cutoff = options.now - options.stuck_after
    refunds = [
        Finding(
            "stuck_payments",
            refund_id,
            f"refund pending since {created_at:%Y-%m-%d %H:%M:%S} UTC ({provider or 'no answer'})",
        )
        for refund_id, created_at, provider in session.execute(
            select(Refund.id, Refund.created_at, Refund.provider)
            .where(Refund.status == RefundStatus.PENDING.value, Refund.created_at < cutoff)
            .order_by(Refund.pk)
        )
    ]
    return refunds + [
        Finding(
            "stuck_payments",
            payment_id,
            f"processing since {created_at:%Y-%m-%d %H:%M:%S} UTC ({provider})",
        )
        for payment_id, created_at, provider in session.execute(
            select(Payment.id, Payment.created_at, Payment.provider)
            .where(
                Payment.status == PaymentStatus.PROCESSING.value,
                func.coalesce(Payment.updated_at, Payment.created_at) < cutoff,
            )
            .order_by(Payment.pk)
        )
    ]


DATABASE_CHECKS: tuple[DatabaseCheck, ...] = (
    order_payments,
    order_refunds,
    wallet_ledger,
    stock,
    document_numbers,
    missing_documents,
    stuck_payments,
)
CHECK_NAMES = (*(check.__name__ for check in DATABASE_CHECKS), "provider_records")


def _received(intent: ProviderIntent) -> int:
    """What a succeeded intent took. kassa never captures partially, so a succeeded intent
    took its amount; `amount_received` says so at Stripe, but localstripe leaves it 0."""
    return intent.amount_received or intent.amount


def _few(numbers: tuple[int, ...], shown: int = 10) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" … ({len(numbers)} in all)" if len(numbers) > shown else "")


@dataclass(frozen=True, slots=True)
class _KassaRecord:
    """A payment or refund as kassa recorded it, in the terms the provider check uses."""

    id: str
    provider_id: str | None
    status: str
    succeeded: bool
    amount: int
    currency: str
    created_at: datetime
    # Money kassa moved through the provider (a refund to the wallet moves none there).
    at_provider: bool
    # Started by kassa (not reported by the provider), so the provider must list it.
    started_by_kassa: bool


@dataclass(frozen=True, slots=True)
class _ProviderRecord:
    """An intent or refund as the provider lists it."""

    id: str
    reference: str | None  # kassa's id for it, as stored at the provider
    status: str
    succeeded: bool
    amount: int  # what moved: an intent's amount received, a refund's amount
    currency: str


def _kassa_record(
    row: Payment | Refund,
    provider_id: str | None,
    succeeded: bool,
    *,
    at_provider: bool = True,
    started_by_kassa: bool = True,
) -> _KassaRecord:
    return _KassaRecord(
        id=row.id,
        provider_id=provider_id,
        status=row.status,
        succeeded=succeeded,
        amount=row.amount,
        currency=row.currency,
        created_at=row.created_at,
        at_provider=at_provider,
        started_by_kassa=started_by_kassa,
    )


def _payment_record(payment: Payment) -> _KassaRecord:
    return _kassa_record(payment, payment.provider_payment_id, payment.status == SUCCEEDED)


def _refund_record(refund: Refund) -> _KassaRecord:
    return _kassa_record(
        refund,
        refund.provider_refund_id,
        refund.status == REFUND_SUCCEEDED,
        at_provider=refund.destination == "original",
        started_by_kassa=refund.origin == "kassa",
    )


def _provider_record(
    listed: ProviderIntent | ProviderRefund, *, succeeded: bool, amount: int
) -> _ProviderRecord:
    return _ProviderRecord(
        id=listed.id,
        reference=listed.reference,
        status=listed.status.value,
        succeeded=succeeded,
        amount=amount,
        currency=listed.currency,
    )


def _intent_record(intent: ProviderIntent) -> _ProviderRecord:
    succeeded = intent.status is IntentStatus.SUCCEEDED
    return _provider_record(intent, succeeded=succeeded, amount=_received(intent))


def _listed_refund(refund: ProviderRefund) -> _ProviderRecord:
    succeeded = refund.status is RefundStatus.SUCCEEDED
    return _provider_record(refund, succeeded=succeeded, amount=refund.amount)


_Listed = dict[str, _ProviderRecord]  # the provider's records by their id


@dataclass(frozen=True, slots=True)
class _Comparison:
    """What to compare between kassa's records of one kind and the provider's, both ways.

    The texts are `str.format` templates over `name` (the provider), `ours`
    (a `_KassaRecord`), `theirs` (a `_ProviderRecord`) and `state` (kassa's side of an
    unaccounted provider record)."""

    not_listed: str  # kassa's succeeded record is missing from the provider's list
    other_status: str  # ... is listed, but not succeeded
    other_amount: str  # ... is listed as succeeded, for another amount
    unaccounted: str  # the provider's succeeded record has no succeeded record in kassa
    compares_currency: bool
    # Whether a kassa record under the provider's id accounts for the provider's record
    # whatever its status, and whether a succeeded one its reference names does.
    any_status_under_id: bool
    reference_accounts: bool

    def compare(
        self,
        name: str,
        ours: Sequence[_KassaRecord],
        theirs: Sequence[_ProviderRecord],
        since: datetime,
    ) -> list[Finding]:
        listed = {record.id: record for record in theirs}
        return self._kassa_against_provider(name, ours, listed, since) + (
            self._provider_against_kassa(name, ours, theirs)
        )

    def _kassa_against_provider(
        self, name: str, ours: Sequence[_KassaRecord], listed: _Listed, since: datetime
    ) -> list[Finding]:
        findings = []
        for record in ours:
            if not (record.succeeded and record.at_provider):
                continue
            found = listed.get(record.provider_id or "")
            if found is None:
                if record.created_at >= since and record.started_by_kassa:
                    findings.append(_finding(record.id, self.not_listed, name=name, ours=record))
            elif not found.succeeded:
                findings.append(_finding(record.id, self.other_status, name=name, theirs=found))
            elif not self._same_amount(record, found):
                findings.append(
                    _finding(record.id, self.other_amount, name=name, ours=record, theirs=found)
                )
        return findings

    def _provider_against_kassa(
        self, name: str, ours: Sequence[_KassaRecord], theirs: Sequence[_ProviderRecord]
    ) -> list[Finding]:
        by_provider_id = {record.provider_id: record for record in ours if record.provider_id}
        by_id = {record.id: record for record in ours}
        findings = []
        for listed in theirs:
            known = by_provider_id.get(listed.id)
            match = known or by_id.get(listed.reference or "")
            if not self._accounts_for(listed, match, under_id=known is not None):
                state = _kassa_state(match)
                findings.append(
                    _finding(listed.id, self.unaccounted, name=name, theirs=listed, state=state)
                )
        return findings

    def _accounts_for(
        self, listed: _ProviderRecord, match: _KassaRecord | None, *, under_id: bool
    ) -> bool:
        """Whether kassa's `match` (found under the provider's id, else by the reference)
        accounts for the provider's `listed` record; one that did not succeed needs none."""
        if not listed.succeeded:
            return True
        if match is None:
            return False
        if under_id:
            return match.succeeded or self.any_status_under_id
        return match.succeeded and self.reference_accounts

    def _same_amount(self, ours: _KassaRecord, theirs: _ProviderRecord) -> bool:
        return ours.amount == theirs.amount and (
            not self.compares_currency or ours.currency == theirs.currency
        )


def _kassa_state(match: _KassaRecord | None) -> str:
    return "unknown to kassa" if match is None else f"{match.status} in kassa ({match.id})"


def _finding(subject: str, template: str, **fields: object) -> Finding:
    return Finding("provider_records", subject, template.format(**fields))


_PAYMENTS = _Comparison(
    not_listed="succeeded in kassa, but {name} lists no intent {ours.provider_id}",
    other_status="succeeded in kassa, but {theirs.status} at {name} ({theirs.id})",
    other_amount=(
        "kassa recorded {ours.amount} {ours.currency}, {name} received "
        "{theirs.amount} {theirs.currency} ({theirs.id})"
    ),
    unaccounted="{name} received {theirs.amount} {theirs.currency}, but the payment is {state}",
    compares_currency=True,
    any_status_under_id=False,
    reference_accounts=True,
)
_REFUNDS = _Comparison(
    not_listed="succeeded in kassa, but {name} lists no refund {ours.provider_id}",
    other_status="succeeded in kassa, but {theirs.status} at {name}",
    other_amount="kassa refunded {ours.amount}, {name} {theirs.amount}",
    unaccounted="{name} refunded {theirs.amount} {theirs.currency}, but the refund is {state}",
    compares_currency=False,
    any_status_under_id=True,
    reference_accounts=False,
)


class Reconciliation:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        providers: ProviderRegistry,
        *,
        stuck_after_s: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._providers = providers
        self._stuck_after = timedelta(seconds=stuck_after_s)

    def run(
        self,
        *,
        stuck_after_s: int | None = None,
        provider_window_days: int = 30,
        with_providers: bool = True,
    ) -> list[Finding]:
        options = CheckOptions(
            now=self._clock(),
            stuck_after=(
                timedelta(seconds=stuck_after_s) if stuck_after_s is not None else self._stuck_after
            ),
            provider_window=timedelta(days=provider_window_days),
        )
        findings: list[Finding] = []
        with self._db.snapshot() as session:
            for check in DATABASE_CHECKS:
                findings += check(session, options)
        if with_providers:
            for name in self._providers.names:
                findings += self.provider_records(name, options)
        return findings

    def provider_records(self, name: str, options: CheckOptions) -> list[Finding]:
        """kassa's payments and refunds at provider `name` against the provider's own list,
        both ways, over the window."""
        since = options.now - options.provider_window
        provider = self._providers.existing(name)
        try:
            intents = list(provider.list_intents(since))
            refunds = list(provider.list_refunds(since))
        except ProviderError as exc:
            return [Finding("provider_records", name, f"could not list the provider: {exc}")]
        with self._db.snapshot() as session:
            payments = session.scalars(
                select(Payment).where(
                    Payment.provider == name,
                    (Payment.created_at >= since)
                    | Payment.provider_payment_id.in_([i.id for i in intents]),
                )
            ).all()
            ours = session.scalars(
                select(Refund).where(
                    Refund.provider == name,
                    (Refund.created_at >= since)
                    | Refund.provider_refund_id.in_([r.id for r in refunds]),
                )
            ).all()
            return _PAYMENTS.compare(
                name,
                [_payment_record(p) for p in payments],
                [_intent_record(i) for i in intents],
                since,
            ) + _REFUNDS.compare(
                name, [_refund_record(r) for r in ours], [_listed_refund(r) for r in refunds], since
            )
