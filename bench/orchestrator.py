"""The payment orchestrator under injected faults, and its cost beside the provider itself.

This script pays N orders (default 10,000) through `kassa.payments.pay(...)` against the
mock gateway, with transient faults injected at random (seeded), and reports:

* the success rate, beside the theory for one retry (1 - p^2, 99 % at p = 10 %);
* how many payments met a fault and how many of the retried ones a retry recovered;
* the failures by `no_retry_reason`;
* double charges: orders with more than one charge at the mock (queried from its own
  `mock_charges` table; must be 0), charges for orders whose payment failed (must be 0),
  and succeeded payments without a charge (must be 0);
* the retry delays the policy asked for (each must be under 3 s);
* the time per payment, p50/p99, beside calling the provider directly in the same run.

The fault model. A seeded RNG draws, for every payment, whether its first provider call
(create_intent) fails, with probability `--fault-rate`, and if so with which of the six
transient kinds (api_error, rate_limit, server_error, timeout_before_send,
timeout_after_send, connection_error), uniformly. If it fails with any kind but
timeout_after_send, the retried call fails again with the same probability and a kind
drawn the same way. A timeout after the request was sent is not retried: the orchestrator
looks the intent up at the provider, finds it, and carries on, so it recovers without a
retry. The draws become the mock's fault script, one entry per provider call, e.g.
`pm_card_visa|rate_limit,api_error`. With one retry (kassa's default policy) a payment
fails only when both calls fail, so the theory is 1 - p^2 = 99 %; the exact expectation
under this model is a little higher, 1 - (5p/6)^2, since a timeout_after_send on either
call recovers. Each payment's expected outcome (status, retry count) follows from its
script, and any payment that ends otherwise is reported.

Retry delays are recorded, not slept: `Kassa` gets a `sleep` that only notes the delay it
was asked for. So the run measures the orchestrator, not the policy's waiting.

Why a ratio. Absolute times say more about the machine (CPU, disk, fsync) than about
kassa. So every payment is interleaved with a direct call to the same mock provider
(create_intent then confirm_intent with `pm_card_visa` and fresh idempotency keys, no
kassa in between), against the same database in the same process, and the report gives
pay() ÷ direct for p50 and p99: the orchestrator's cost on top of the provider, including
kassa's own transactions (open the payment, record each attempt, settle and mark the order
paid). The provider is also wrapped with a timer, so the time spent inside provider calls
during pay() is known per payment; pay() minus that is the orchestrator's own overhead.
The ratios are given for all payments and for the clean ones (no fault) alone: a faulted
payment makes extra provider calls, and at p = 10 % they dominate the p99.

Order creation is not timed. A short unmeasured warm-up (clean payments and direct
calls) comes first. The run is bounded by `--payments` and by `--time-limit`.

    .venv/bin/python bench/orchestrator.py [--payments 10000] [--fault-rate 0.10]
                                           [--seed 42] [--database sqlite|postgresql]
                                           [--quick]
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from harness import (
    DATABASES,
    MAX_ERROR_SAMPLES,
    BenchParser,
    describe,
    percentile,
    ratio,
    recorded_params,
    run_benchmark,
    scratch_database,
)
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.orders import LineRequest
from kassa.providers.base import IntentRequest, ProviderIntent, ProviderRefund
from kassa.providers.mock.provider import FAULT_KINDS, MockProvider
from kassa.providers.mock.tables import MockCharge
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.orders import NewOrder
from kassa.services.payments import PaymentView
from kassa.storage.tables import Order

CURRENCY = "EUR"
SKU = "BENCH"
UNIT_AMOUNT = 1000  # cents
CARD = "pm_card_visa"
RESOLVED_BY_LOOKUP = "timeout_after_send"  # the outcome is looked up, not retried
WARMUP = 20
DELAY_LIMIT_MS = 3_000  # the contract: every retry delay is under 3 s

T = TypeVar("T")


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    payments: int
    fault_rate: float
    seed: int
    database: str
    time_limit_s: float
    postgres_url: str


def parse_args(argv: list[str] | None = None) -> Params:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_sized("--payments", "payments to make", default=10_000, quick=1000)
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.10,
        help="probability that a provider call fails (default 0.10)",
    )
    parser.add_argument("--seed", type=int, default=42, help="RNG seed (default 42)")
    parser.add_argument(
        "--database", choices=DATABASES, default="sqlite", help="sqlite (default) or postgresql"
    )
    parser.add_quick("a small run: 1000 payments")
    parser.add_sized(
        "--time-limit", "seconds allowed for the measured loop", default=1800, quick=300, kind=float
    )
    parser.add_postgres_url()
    args = parser.parse(argv)
    if args.payments < 1 or args.time_limit <= 0:
        parser.error("--payments and --time-limit must be positive")
    if not 0.0 <= args.fault_rate <= 1.0:
        parser.error("--fault-rate must be between 0 and 1")
    return Params(
        payments=args.payments,
        fault_rate=args.fault_rate,
        seed=args.seed,
        database=args.database,
        time_limit_s=args.time_limit,
        postgres_url=args.postgres_url,
    )


# --------------------------------------------------------------------------- fault model


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults for one payment's first provider call and, if retried, its retry."""

    first: str | None
    retry: str | None

    @property
    def payment_method(self) -> str:
        script = [kind for kind in (self.first, self.retry) if kind is not None]
        return f"{CARD}|{','.join(script)}" if script else CARD

    @property
    def retried(self) -> bool:
        return self.first is not None and self.first != RESOLVED_BY_LOOKUP

    @property
    def expected_status(self) -> str:
        both_failed = self.retried and self.retry not in (None, RESOLVED_BY_LOOKUP)
        return "failed" if both_failed else "succeeded"

    @property
    def expected_retries(self) -> int:
        return 1 if self.retried else 0


def draw_plan(rng: random.Random, fault_rate: float) -> FaultPlan:
    """Four draws per payment, whatever they decide, so plan i never depends on plan i-1."""
    first_fails = rng.random() < fault_rate
    first_kind = rng.choice(FAULT_KINDS)
    retry_fails = rng.random() < fault_rate
    retry_kind = rng.choice(FAULT_KINDS)
    first = first_kind if first_fails else None
    retry = (
        retry_kind if first is not None and first != RESOLVED_BY_LOOKUP and retry_fails else None
    )
    return FaultPlan(first, retry)


def theory(fault_rate: float) -> tuple[float, float]:
    """(1 - p^2, the exact expectation 1 - (5p/6)^2), as fractions."""
    unresolved = fault_rate * (len(FAULT_KINDS) - 1) / len(FAULT_KINDS)
    return 1 - fault_rate**2, 1 - unresolved**2


# --------------------------------------------------------------------------- instruments


class DelayRecorder:
    """Kassa's `sleep`: notes the delay it is asked for and returns at once."""

    def __init__(self) -> None:
        self.delays_ms: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays_ms.append(seconds * 1000)


class TimedProvider:
    """The mock gateway behind a stopwatch: time spent inside provider calls accumulates
    in `elapsed_s`. Registered under the mock's own name, so pay() goes through it."""

    name = "mock"

    def __init__(self) -> None:
        self._inner: MockProvider | None = None
        self.elapsed_s = 0.0

    def bind(self, inner: MockProvider) -> None:
        self._inner = inner

    @property
    def inner(self) -> MockProvider:
        if self._inner is None:
            raise RuntimeError("TimedProvider used before bind()")
        return self._inner

    def _timed(self, call: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        try:
            return call()
        finally:
            self.elapsed_s += time.perf_counter() - t0

    def create_intent(self, request: IntentRequest, *, idempotency_key: str) -> ProviderIntent:
        return self._timed(
            lambda: self.inner.create_intent(request, idempotency_key=idempotency_key)
        )

    def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        return self._timed(
            lambda: self.inner.confirm_intent(intent_id, idempotency_key=idempotency_key)
        )

    def retrieve_intent(self, intent_id: str) -> ProviderIntent:
        return self._timed(lambda: self.inner.retrieve_intent(intent_id))

    def find_intent(self, reference: str) -> ProviderIntent | None:
        return self._timed(lambda: self.inner.find_intent(reference))

    def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> ProviderIntent:
        return self._timed(
            lambda: self.inner.cancel_intent(intent_id, idempotency_key=idempotency_key)
        )

    def refund(
        self, intent_id: str, amount: int, *, idempotency_key: str, reference: str
    ) -> ProviderRefund:
        return self._timed(
            lambda: self.inner.refund(
                intent_id, amount, idempotency_key=idempotency_key, reference=reference
            )
        )

    def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return self._timed(lambda: self.inner.retrieve_refund(refund_id))

    def find_refund(self, intent_id: str, reference: str) -> ProviderRefund | None:
        return self._timed(lambda: self.inner.find_refund(intent_id, reference))

    def list_intents(self, since: datetime, *, page_size: int = 100) -> Iterator[ProviderIntent]:
        return self.inner.list_intents(since, page_size=page_size)

    def list_refunds(self, since: datetime, *, page_size: int = 100) -> Iterator[ProviderRefund]:
        return self.inner.list_refunds(since, page_size=page_size)


# --------------------------------------------------------------------------- one run


@dataclass
class Record:
    """One measured payment."""

    plan: FaultPlan
    order_id: str
    status: str
    retry_count: int
    recovered_by_retry: bool
    no_retry_reason: str | None
    pay_ms: float
    provider_ms: float

    @property
    def overhead_ms(self) -> float:
        return self.pay_ms - self.provider_ms

    @property
    def as_expected(self) -> bool:
        return (
            self.status == self.plan.expected_status
            and self.retry_count == self.plan.expected_retries
        )


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    direct_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # samples of pay() raising
    crashed: int = 0
    direct_failed: int = 0
    timed_out: bool = False
    wall_s: float = 0.0


class Bench:
    """A `Kassa` on a fresh database, a product, and the two things being compared."""

    def __init__(self, url: str, seed: int) -> None:
        self.recorder = DelayRecorder()
        self.timed = TimedProvider()
        self.kassa = Kassa(
            Settings(database_url=url),
            sleep=self.recorder,
            rng=random.Random(seed),
            extra_providers={TimedProvider.name: self.timed},
        )
        self.timed.bind(self.kassa.mock)
        self.ctx = RequestContext.system("bench")
        self.kassa.catalogue.create(
            self.ctx, NewProduct(SKU, "Bench item", UNIT_AMOUNT, CURRENCY, stock=None)
        )
        self._direct = 0

    def close(self) -> None:
        self.kassa.close()

    def new_order(self) -> str:
        order = self.kassa.orders.create(
            self.ctx,
            NewOrder(currency=CURRENCY, lines=[LineRequest(SKU, 1)], email="bench@example.com"),
        )
        return order.id

    def pay(self, order_id: str, payment_method: str) -> tuple[PaymentView, float, float]:
        """(the payment, pay() wall ms, ms spent inside provider calls)."""
        provider_before = self.timed.elapsed_s
        t0 = time.perf_counter()
        view = self.kassa.payments.pay(
            self.ctx, order_id, provider="mock", payment_method=payment_method
        )
        pay_ms = (time.perf_counter() - t0) * 1000
        return view, pay_ms, (self.timed.elapsed_s - provider_before) * 1000

    def direct(self) -> float:
        """create_intent + confirm_intent straight at the mock; wall ms for the pair."""
        self._direct += 1
        reference = f"bench_direct_{self._direct}"
        request = IntentRequest(
            amount=UNIT_AMOUNT, currency=CURRENCY, reference=reference, payment_method=CARD
        )
        mock = self.kassa.mock
        t0 = time.perf_counter()
        intent = mock.create_intent(request, idempotency_key=f"{reference}:create")
        confirmed = mock.confirm_intent(intent.id, idempotency_key=f"{reference}:confirm")
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if confirmed.status.value != "succeeded":
            raise RuntimeError(f"direct confirm ended {confirmed.status.value}")
        return elapsed_ms


def warm_up(bench: Bench) -> None:
    for _ in range(WARMUP):
        view, _pay_ms, _provider_ms = bench.pay(bench.new_order(), CARD)
        if view.status != "succeeded":
            raise RuntimeError(f"a clean warm-up payment ended {view.status}")
        bench.direct()


def measured_payment(bench: Bench, plan: FaultPlan, run: Run) -> None:
    order_id = bench.new_order()
    try:
        view, pay_ms, provider_ms = bench.pay(order_id, plan.payment_method)
    except Exception as exc:
        run.crashed += 1
        if len(run.errors) < MAX_ERROR_SAMPLES:
            run.errors.append(f"{plan.payment_method} on {order_id}: {type(exc).__name__}: {exc}")
        return
    run.records.append(
        Record(
            plan=plan,
            order_id=order_id,
            status=view.status,
            retry_count=view.retry_count,
            recovered_by_retry=view.recovered_by_retry,
            no_retry_reason=view.no_retry_reason,
            pay_ms=pay_ms,
            provider_ms=provider_ms,
        )
    )


def measured_direct(bench: Bench, run: Run) -> None:
    try:
        run.direct_ms.append(bench.direct())
    except Exception as exc:
        run.direct_failed += 1
        if len(run.errors) < MAX_ERROR_SAMPLES:
            run.errors.append(f"direct call: {type(exc).__name__}: {exc}")


def run_payments(bench: Bench, params: Params) -> Run:
    """Pay `params.payments` orders, each beside one direct provider call; the two swap
    order every iteration so neither always runs on a warmer cache."""
    plans = random.Random(params.seed)
    run = Run()
    step = max(1, params.payments // 10)
    began = time.perf_counter()
    deadline = time.monotonic() + params.time_limit_s
    for i in range(params.payments):
        if time.monotonic() > deadline:
            run.timed_out = True
            break
        plan = draw_plan(plans, params.fault_rate)
        if i % 2:
            measured_payment(bench, plan, run)
            measured_direct(bench, run)
        else:
            measured_direct(bench, run)
            measured_payment(bench, plan, run)
        if (i + 1) % step == 0:
            elapsed = time.perf_counter() - began
            print(f"  {i + 1:>6} payments, {elapsed:6.1f} s", flush=True)
    run.wall_s = time.perf_counter() - began
    return run


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Ledger:
    """What the mock's own books and kassa's orders say after the run."""

    double_charged_orders: list[str]
    charged_failed_orders: list[str]
    succeeded_uncharged_orders: list[str]
    paid_orders: int
    direct_charges: int


def read_ledger(bench: Bench, run: Run) -> Ledger:
    with bench.kassa.db.transaction(read_only=True) as session:
        charges: dict[str, int] = {
            ref: count
            for ref, count in session.execute(
                select(MockCharge.order_ref, func.count())
                .where(MockCharge.order_ref.is_not(None))
                .group_by(MockCharge.order_ref)
            )
            if ref is not None
        }
        direct_charges = session.scalar(
            select(func.count()).select_from(MockCharge).where(MockCharge.order_ref.is_(None))
        )
        paid_orders = session.scalar(
            select(func.count()).select_from(Order).where(Order.status == "paid")
        )
    failed = {r.order_id for r in run.records if r.status != "succeeded"}
    succeeded = {r.order_id for r in run.records if r.status == "succeeded"}
    return Ledger(
        double_charged_orders=sorted(ref for ref, count in charges.items() if count > 1),
        charged_failed_orders=sorted(failed & charges.keys()),
        succeeded_uncharged_orders=sorted(succeeded - charges.keys()),
        paid_orders=paid_orders or 0,
        direct_charges=direct_charges or 0,
    )


# --------------------------------------------------------------------------- report


def _latency(values: list[float]) -> dict[str, float]:
    """p50 and p99 of `values` (ms)."""
    return {"p50": round(percentile(values, 50), 3), "p99": round(percentile(values, 99), 3)}


def _ratios(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """p50 over p50 and p99 over p99."""
    return {
        f"p{pct}": round(ratio(percentile(numerator, pct), percentile(denominator, pct)), 3)
        for pct in (50, 99)
    }


def summarize(params: Params, run: Run, ledger: Ledger, delays_ms: list[float]) -> dict[str, Any]:
    records = run.records
    made = len(records) + run.crashed
    succeeded = sum(1 for r in records if r.status == "succeeded")
    retried = [r for r in records if r.retry_count > 0]
    recovered = sum(1 for r in records if r.recovered_by_retry)
    clean = [r for r in records if r.plan.first is None]
    simple, exact = theory(params.fault_rate)
    pay_all = [r.pay_ms for r in records]
    pay_clean = [r.pay_ms for r in clean]
    direct = run.direct_ms
    unexpected = [r for r in records if not r.as_expected]
    return {
        "payments": made,
        "succeeded": succeeded,
        "success_rate_pct": round(100 * succeeded / made, 3) if made else None,
        "theory_pct": round(100 * simple, 3),
        "theory_exact_pct": round(100 * exact, 3),
        "hit_a_fault": sum(1 for r in records if r.plan.first is not None),
        "faults_by_kind": dict(
            sorted(Counter(k for r in records for k in (r.plan.first, r.plan.retry) if k).items())
        ),
        "retried": len(retried),
        "recovered_by_retry": recovered,
        "recovered_pct": round(100 * recovered / len(retried), 3) if retried else None,
        "resolved_by_lookup": sum(1 for r in records if r.plan.first == RESOLVED_BY_LOOKUP),
        "failures_by_no_retry_reason": dict(
            sorted(
                Counter(
                    r.no_retry_reason or "none" for r in records if r.status != "succeeded"
                ).items()
            )
        ),
        "unexpected_outcomes": len(unexpected),
        "unexpected_samples": [
            f"{r.plan.payment_method}: {r.status}, retries {r.retry_count}" for r in unexpected
        ][:MAX_ERROR_SAMPLES],
        "crashed": run.crashed,
        "error_samples": run.errors,
        "double_charges": len(ledger.double_charged_orders),
        "double_charged_samples": ledger.double_charged_orders[:MAX_ERROR_SAMPLES],
        "charges_for_failed_payments": len(ledger.charged_failed_orders),
        "succeeded_without_charge": len(ledger.succeeded_uncharged_orders),
        "paid_orders_in_db": ledger.paid_orders,
        "paid_orders_expected": succeeded + WARMUP,
        "direct_charges_in_db": ledger.direct_charges,
        "direct_charges_expected": len(direct) + WARMUP,
        "delays": {
            "note": "requested by the retry policy, recorded but not slept",
            "count": len(delays_ms),
            "sum_ms": round(sum(delays_ms), 1),
            "max_ms": round(max(delays_ms), 1) if delays_ms else 0.0,
            "at_or_over_3000_ms": sum(1 for d in delays_ms if d >= DELAY_LIMIT_MS),
        },
        "direct_calls": len(direct),
        "direct_failed": run.direct_failed,
        "timing_ms": {
            "pay_all": _latency(pay_all),
            "pay_clean": _latency(pay_clean),
            "provider_in_pay": _latency([r.provider_ms for r in records]),
            "overhead_all": _latency([r.overhead_ms for r in records]),
            "overhead_clean": _latency([r.overhead_ms for r in clean]),
            "direct": _latency(direct),
        },
        "ratio_pay_over_direct": {
            "all": _ratios(pay_all, direct),
            "clean": _ratios(pay_clean, direct),
        },
        "wall_s": round(run.wall_s, 2),
        "timed_out": run.timed_out,
    }


def problems(summary: dict[str, Any]) -> list[str]:
    """What makes the run fail (non-zero exit)."""
    found = []
    if summary["double_charges"]:
        found.append(f"{summary['double_charges']} orders charged more than once")
    if summary["delays"]["at_or_over_3000_ms"]:
        found.append(f"{summary['delays']['at_or_over_3000_ms']} retry delays of 3 s or more")
    if summary["charges_for_failed_payments"]:
        found.append(f"{summary['charges_for_failed_payments']} failed payments were charged")
    if summary["succeeded_without_charge"]:
        found.append(f"{summary['succeeded_without_charge']} succeeded payments have no charge")
    if summary["paid_orders_in_db"] != summary["paid_orders_expected"]:
        found.append(
            f"{summary['paid_orders_in_db']} paid orders in the database, "
            f"{summary['paid_orders_expected']} expected"
        )
    if summary["direct_charges_in_db"] != summary["direct_charges_expected"]:
        found.append(
            f"{summary['direct_charges_in_db']} direct charges in the database, "
            f"{summary['direct_charges_expected']} expected"
        )
    if summary["crashed"]:
        found.append(f"pay() raised {summary['crashed']} times")
    if summary["direct_failed"]:
        found.append(f"{summary['direct_failed']} direct provider calls failed")
    if summary["unexpected_outcomes"]:
        found.append(f"{summary['unexpected_outcomes']} payments ended other than their script")
    if summary["timed_out"]:
        found.append("stopped by the time limit")
    return found


def _row(label: str, figures: dict[str, float]) -> str:
    return f"  {label:<34}{figures['p50']:>10.2f}{figures['p99']:>10.2f}"


def render(params: Params, host: dict[str, Any], s: dict[str, Any]) -> str:
    t = s["timing_ms"]
    r = s["ratio_pay_over_direct"]
    d = s["delays"]
    pct = "n/a" if s["recovered_pct"] is None else f"{s['recovered_pct']:.2f} %"
    reasons = ", ".join(f"{k} {v}" for k, v in s["failures_by_no_retry_reason"].items()) or "none"
    lines = [
        f"kassa payment orchestrator vs the mock gateway: {s['payments']} payments, "
        f"fault rate {params.fault_rate:.0%}, seed {params.seed}, {params.database}; "
        f"{describe(host)}",
        "fault model: the first provider call fails with p; a retried call fails again with p;",
        "  kinds uniform over the six transient ones; timeout_after_send is looked up, not retried",
        "retry delays are recorded, not slept: this measures the orchestrator, not the waiting",
        "",
        f"  {'succeeded':<34}{s['succeeded']:>10}",
        f"  {'success rate':<34}{s['success_rate_pct']:>9.2f} %",
        f"  {'theory, one retry (1 - p^2)':<34}{s['theory_pct']:>9.2f} %",
        f"  {'  exact for this model':<34}{s['theory_exact_pct']:>9.2f} %",
        f"  {'hit a fault':<34}{s['hit_a_fault']:>10}",
        f"  {'  resolved by look-up (no retry)':<34}{s['resolved_by_lookup']:>10}",
        f"  {'retried (retry_count > 0)':<34}{s['retried']:>10}",
        f"  {'recovered by retry':<34}{s['recovered_by_retry']:>10}  ({pct})",
        f"  {'failures by no_retry_reason':<34}{reasons:>10}",
        f"  {'DOUBLE CHARGES (must be 0)':<34}{s['double_charges']:>10}",
        f"  {'charged but failed (must be 0)':<34}{s['charges_for_failed_payments']:>10}",
        f"  {'succeeded, no charge (must be 0)':<34}{s['succeeded_without_charge']:>10}",
        f"  {'retry delays requested':<34}{d['count']:>10}  "
        f"(sum {d['sum_ms']:.0f} ms, max {d['max_ms']:.0f} ms, limit < 3000 ms)",
        "",
        f"  {'per payment, ms':<34}{'p50':>10}{'p99':>10}",
        _row("pay(), all payments", t["pay_all"]),
        _row("pay(), clean payments", t["pay_clean"]),
        _row("  inside provider calls", t["provider_in_pay"]),
        _row("  orchestrator overhead (all)", t["overhead_all"]),
        _row("  orchestrator overhead (clean)", t["overhead_clean"]),
        _row("direct create + confirm", t["direct"]),
        _row("ratio pay() / direct, all", r["all"]),
        _row("ratio pay() / direct, clean", r["clean"]),
        "",
        f"  wall {s['wall_s']:.1f} s for {s['payments']} payments and {s['direct_calls']} "
        "direct calls, interleaved",
    ]
    if s["unexpected_samples"]:
        lines.append("  payments that ended other than their script, e.g.:")
        lines.extend(f"    {u}" for u in s["unexpected_samples"])
    if s["error_samples"]:
        lines.append("  errors, e.g.:")
        lines.extend(f"    {e}" for e in s["error_samples"])
    if s["double_charged_samples"]:
        lines.append(f"  double-charged orders, e.g.: {', '.join(s['double_charged_samples'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def bench_once(params: Params, workdir: Path) -> dict[str, Any]:
    with scratch_database(params.database, workdir, params.postgres_url) as target:
        bench = Bench(target.url, params.seed)
        try:
            warm_up(bench)
            print(
                f"[{params.database}] {params.payments} payments, fault rate "
                f"{params.fault_rate:.0%}, each beside a direct provider call",
                flush=True,
            )
            run = run_payments(bench, params)
            ledger = read_ledger(bench, run)
            return summarize(params, run, ledger, bench.recorder.delays_ms)
        finally:
            bench.close()


def document(params: Params, host: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": recorded_params(params),
        "machine": host,
        "warmup_payments": WARMUP,
        "result": summary,
    }


def passed(summary: dict[str, Any]) -> bool:
    found = problems(summary)
    for problem in found:
        print(f"FAIL: {problem}", file=sys.stderr)
    return not found


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("orchestrator", parse_args(argv), bench_once, render, document, passed)


if __name__ == "__main__":
    sys.exit(main())
