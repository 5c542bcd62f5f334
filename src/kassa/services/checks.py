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
kassa's payments and refunds, both ways, a page at a time: a large shop's window is
never held in memory.

A run says which checks it ran to the end (`Sweep.completed`); `services/findings.py`
stores what it found and resolves only what those checks no longer find.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from kassa.domain.documents import Series, format_number, sequence_problems
from kassa.domain.payments import PaymentStatus
from kassa.domain.refunds import RefundStatus
from kassa.domain.wallet import EntryKind
from kassa.providers.base import (
    LIST_PAGE_SIZE,
    IntentStatus,
    PaymentProvider,
    ProviderError,
    ProviderIntent,
    ProviderRefund,
)
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
    # Which run of the check can vouch for it: the provider, for `provider_records`.
    scope: str = ""


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
    """Paid orders have an invoice and succeeded refunds a credit note. An order's invoice
    is issued as it is paid (one paid by an earlier version of kassa had its invoice from a
    job), a credit note by the worker: each is given `stuck_after` before it counts."""
    cutoff = options.now - options.stuck_after
    # NOT EXISTS, an anti-join on the documents' unique indexes: a NOT IN (subquery) is a
    # hashed subplan only while the subquery fits in work_mem, and over 800,000 invoices
    # PostgreSQL ran it as a plain subplan, one scan of the documents per paid order (it
    # ran for minutes in bench/scale.py's 1,000,000-order shop before it was killed)
    invoiced = exists().where(IssuedDocument.invoiced_order_id == Order.id)
    credited = exists().where(IssuedDocument.refund_id == Refund.id)
    findings = [
        Finding("missing_documents", order_id, f"paid at {paid_at:%Y-%m-%d %H:%M} but no invoice")
        for order_id, paid_at in session.execute(
            select(Order.id, Order.paid_at)
            .where(Order.paid_at.is_not(None), Order.paid_at < cutoff, ~invoiced)
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
                ~credited,
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
PROVIDER_CHECK = "provider_records"
CHECK_NAMES = (*(check.__name__ for check in DATABASE_CHECKS), PROVIDER_CHECK)
# The database checks whose verdict depends on `stuck_after`: a run with another one than
# the configured one finds what it finds, but cannot say that their findings are gone.
_JUDGED_BY_STUCK_AFTER = frozenset({missing_documents.__name__, stuck_payments.__name__})
PROVIDER_WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one run of the checks saw, as of `observed_at` (when it began).

    `completed` names the checks that ran to the end with the standard criteria, as
    (check, scope) pairs (scope: the provider, for `provider_records`; empty for the
    database checks). Only those can vouch that a finding is gone: a check that did not
    run (`--no-providers`), or did not finish (the provider could not be listed), or ran
    with other criteria (`--stuck-after`, `--window-days`) leaves its findings as they
    were."""

    observed_at: datetime
    findings: list[Finding]
    completed: frozenset[tuple[str, str]]


def _received(intent: ProviderIntent) -> int:
    """What a succeeded intent took. kassa never captures partially, so a succeeded intent
    took its amount; `amount_received` says so at Stripe, but localstripe leaves it 0."""
    return intent.amount_received or intent.amount


def _few(numbers: tuple[int, ...], shown: int = 10) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" … ({len(numbers)} in all)" if len(numbers) > shown else "")


T = TypeVar("T")


def _pages(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size`, each taken from the iterator only when asked for."""
    while page := list(islice(items, size)):
        yield page


class _Marks:
    """A set of row keys from `base` up, one bit each: which of kassa's records the
    provider listed. For a window of a million payments it takes 125 KB, where a set of
    their keys would take tens of megabytes. Keys below `base` (records older than the
    window, which nothing asks about) are not kept."""

    def __init__(self, base: int | None) -> None:
        self._base = base
        self._bits = bytearray()

    def add(self, key: int) -> None:
        if self._base is None or key < self._base:
            return
        offset = key - self._base
        byte = offset >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits)))
        self._bits[byte] |= 1 << (offset & 7)

    def __contains__(self, key: int) -> bool:
        if self._base is None or key < self._base:
            return False
        offset = key - self._base
        byte = offset >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (offset & 7)))


@dataclass(frozen=True, slots=True)
class _KassaRecord:
    """A payment or refund as kassa recorded it, in the terms the provider check uses."""

    pk: int
    id: str
    provider_id: str | None
    status: str
    succeeded: bool
    amount: int
    currency: str
    created_at: datetime
    changed_at: datetime  # its last change (a status, a provider id)
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
    row: Any,  # a payment's or refund's `_Kind.columns`
    provider_id: str | None,
    succeeded: bool,
    *,
    at_provider: bool = True,
    started_by_kassa: bool = True,
) -> _KassaRecord:
    return _KassaRecord(
        pk=row.pk,
        id=row.id,
        provider_id=provider_id,
        status=row.status,
        succeeded=succeeded,
        amount=row.amount,
        currency=row.currency,
        created_at=row.created_at,
        changed_at=row.updated_at or row.created_at,
        at_provider=at_provider,
        started_by_kassa=started_by_kassa,
    )


def _payment_record(payment: Any) -> _KassaRecord:
    return _kassa_record(payment, payment.provider_payment_id, payment.status == SUCCEEDED)


def _refund_record(refund: Any) -> _KassaRecord:
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

    def page(
        self,
        name: str,
        ours: Sequence[_KassaRecord],
        theirs: Sequence[_ProviderRecord],
        began: datetime,
        listed: _Marks,
    ) -> list[Finding]:
        """One page of the provider's records against kassa's records that it names (by
        the provider's id, or kassa's id as the reference), both ways; kassa's records it
        names are marked in `listed`. A kassa record changed after the run `began` is not
        judged: the provider's page may predate the change."""
        by_provider_id = {record.provider_id: record for record in ours if record.provider_id}
        by_id = {record.id: record for record in ours}
        findings = []
        for theirs_one in theirs:
            known = by_provider_id.get(theirs_one.id)
            if known is not None:
                listed.add(known.pk)
                if known.changed_at > began:
                    continue
                findings += self._against_listed(name, known, theirs_one)
            match = known or by_id.get(theirs_one.reference or "")
            if match is not None and match.changed_at > began:
                continue
            if not self._accounts_for(theirs_one, match, under_id=known is not None):
                state = _kassa_state(match)
                findings.append(
                    _finding(theirs_one.id, self.unaccounted, name, theirs=theirs_one, state=state)
                )
        return findings

    def _against_listed(
        self, name: str, ours: _KassaRecord, theirs: _ProviderRecord
    ) -> list[Finding]:
        """kassa's record, found in the provider's list under its provider id."""
        if not (ours.succeeded and ours.at_provider):
            return []
        if not theirs.succeeded:
            return [_finding(ours.id, self.other_status, name, theirs=theirs)]
        if not self._same_amount(ours, theirs):
            return [_finding(ours.id, self.other_amount, name, ours=ours, theirs=theirs)]
        return []

    def missing(self, name: str, ours: _KassaRecord) -> Finding:
        """kassa's succeeded record of the window that the provider did not list."""
        return _finding(ours.id, self.not_listed, name, ours=ours)

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


def _finding(subject: str, template: str, name: str, **fields: object) -> Finding:
    return Finding(PROVIDER_CHECK, subject, template.format(name=name, **fields), scope=name)


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


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of record the provider check compares: kassa's table and how to read it,
    the provider's list and how to read it, and what to compare."""

    model: type[Payment] | type[Refund]
    provider_id: Any  # the column holding the provider's id
    # what the check reads of each row (plain rows, not ORM objects: a page of objects
    # with every column cost more than the rest of the comparison)
    columns: tuple[Any, ...]
    ours: Callable[[Any], _KassaRecord]
    listing: Callable[[PaymentProvider, datetime, int], Iterator[_ProviderRecord]]
    # kassa's records the provider must list: succeeded, through it, started by kassa
    must_be_listed: tuple[ColumnElement[bool], ...]
    comparison: _Comparison


def _columns(model: type[Payment] | type[Refund], *own: str) -> tuple[Any, ...]:
    common = ("pk", "id", "status", "amount", "currency", "created_at", "updated_at")
    return tuple(getattr(model, name) for name in (*common, *own))


_KINDS = (
    _Kind(
        Payment,
        Payment.provider_payment_id,
        _columns(Payment, "provider_payment_id"),
        _payment_record,
        lambda p, since, size: map(_intent_record, p.list_intents(since, page_size=size)),
        (Payment.status == SUCCEEDED,),
        _PAYMENTS,
    ),
    _Kind(
        Refund,
        Refund.provider_refund_id,
        _columns(Refund, "provider_refund_id", "destination", "origin"),
        _refund_record,
        lambda p, since, size: map(_listed_refund, p.list_refunds(since, page_size=size)),
        (
            Refund.status == REFUND_SUCCEEDED,
            Refund.destination == "original",
            Refund.origin == "kassa",
        ),
        _REFUNDS,
    ),
)


class Reconciliation:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        providers: ProviderRegistry,
        *,
        stuck_after_s: int,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        if page_size < 1:
            raise ValueError("the provider check's page must hold at least one record")
        self._db = db
        self._clock = clock
        self._providers = providers
        self._stuck_after = timedelta(seconds=stuck_after_s)
        self._page_size = page_size

    def run(
        self,
        *,
        stuck_after_s: int | None = None,
        provider_window_days: int = PROVIDER_WINDOW_DAYS,
        with_providers: bool = True,
    ) -> list[Finding]:
        """Every finding of one run (see `sweep`)."""
        return self.sweep(
            stuck_after_s=stuck_after_s,
            provider_window_days=provider_window_days,
            with_providers=with_providers,
        ).findings

    def sweep(
        self,
        *,
        stuck_after_s: int | None = None,
        provider_window_days: int = PROVIDER_WINDOW_DAYS,
        with_providers: bool = True,
    ) -> Sweep:
        """Run the checks: the database ones in one snapshot, then each enabled provider's
        comparison; says which of them ran to the end with the standard criteria."""
        stuck_after = (
            timedelta(seconds=stuck_after_s) if stuck_after_s is not None else self._stuck_after
        )
        options = CheckOptions(
            now=self._clock(),
            stuck_after=stuck_after,
            provider_window=timedelta(days=provider_window_days),
        )
        findings: list[Finding] = []
        completed: set[tuple[str, str]] = set()
        with self._db.snapshot() as session:
            for check in DATABASE_CHECKS:
                findings += check(session, options)
                if stuck_after == self._stuck_after or check.__name__ not in (
                    _JUDGED_BY_STUCK_AFTER
                ):
                    completed.add((check.__name__, ""))
        for name in self._providers.names if with_providers else []:
            found, complete = self._provider_outcome(name, options)
            findings += found
            if complete and provider_window_days == PROVIDER_WINDOW_DAYS:
                completed.add((PROVIDER_CHECK, name))
        return Sweep(options.now, findings, frozenset(completed))

    def provider_records(self, name: str, options: CheckOptions) -> list[Finding]:
        """kassa's payments and refunds at provider `name` against the provider's own list,
        both ways, over the window."""
        return self._provider_outcome(name, options)[0]

    def _provider_outcome(self, name: str, options: CheckOptions) -> tuple[list[Finding], bool]:
        """The provider check's findings, and whether it ran to the end.

        Memory stays bounded by the page size, not the window: the provider's records are
        read a page at a time, and each page is compared with the kassa records it names,
        read by id; which of kassa's records were listed is kept one bit each, so that
        kassa's succeeded records the provider did not list are found afterwards by
        paging through kassa's own (`_unlisted`)."""
        since = options.now - options.provider_window
        provider = self._providers.existing(name)
        findings: list[Finding] = []
        try:
            for kind in _KINDS:
                listed = _Marks(self._first_key(kind, name, since))
                records = kind.listing(provider, since, self._page_size)
                for page in _pages(records, self._page_size):
                    findings += self._compare_page(kind, name, page, options.now, listed)
                findings += self._unlisted(kind, name, since, options.now, listed)
        except ProviderError as exc:
            failed = Finding(PROVIDER_CHECK, name, f"could not list the provider: {exc}", name)
            return [*findings, failed], False
        return findings, True

    def _first_key(self, kind: _Kind, name: str, since: datetime) -> int | None:
        model = kind.model
        with self._db.transaction(read_only=True) as session:
            first = session.scalar(
                select(func.min(model.pk)).where(model.provider == name, model.created_at >= since)
            )
        return None if first is None else int(first)

    def _compare_page(
        self,
        kind: _Kind,
        name: str,
        page: list[_ProviderRecord],
        began: datetime,
        listed: _Marks,
    ) -> list[Finding]:
        """One page against the kassa records it names: by the provider's id, and by the
        reference (kassa's id) for the provider's records no kassa record has the id of.
        Two lookups, each on its index (one query with both under OR is a sequential scan
        on PostgreSQL: every page would read the whole table)."""
        model = kind.model
        with self._db.transaction(read_only=True) as session:
            rows = list(
                session.execute(
                    select(*kind.columns).where(
                        model.provider == name, kind.provider_id.in_([r.id for r in page])
                    )
                )
            )
            ours = [kind.ours(row) for row in rows]
            known = {record.provider_id for record in ours}
            references = [r.reference for r in page if r.reference and r.id not in known]
            if references:
                ours += [
                    kind.ours(row)
                    for row in session.execute(
                        select(*kind.columns).where(
                            model.provider == name, model.id.in_(references)
                        )
                    )
                ]
        return kind.comparison.page(name, ours, page, began, listed)

    def _unlisted(
        self, kind: _Kind, name: str, since: datetime, began: datetime, listed: _Marks
    ) -> list[Finding]:
        """kassa's records the provider must have listed (succeeded through it in the
        window, before the run began, unchanged since) that it did not, page by page."""
        model = kind.model
        changed = func.coalesce(model.updated_at, model.created_at)
        after = 0
        findings = []
        while True:
            with self._db.transaction(read_only=True) as session:
                ours = [
                    kind.ours(row)
                    for row in session.execute(
                        select(*kind.columns)
                        .where(
                            model.provider == name,
                            model.created_at >= since,
                            changed <= began,
                            model.pk > after,
                            *kind.must_be_listed,
                        )
                        .order_by(model.pk)
                        .limit(self._page_size)
                    )
                ]
            findings += [kind.comparison.missing(name, r) for r in ours if r.pk not in listed]
            if len(ours) < self._page_size:
                return findings
            after = ours[-1].pk
