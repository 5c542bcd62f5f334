"""Two versions of kassa's code measured against each other, in rounds taken in turn, on
one PostgreSQL scratch database: CPU per operation of each, and the ratio B/A.

Why. On a shared 2-core host the same code's CPU per operation moves by 15 % between
runs (see README, "How far to trust one run"), as much as a change is meant to show. Here
the two versions run in alternating rounds (A B, then B A, ...), minutes apart, each on a
fresh `kassa serve` over the same database, so the machine's drift falls on both alike;
the ratio of the medians is the change.

A version is a source tree (its `src` folder): `--a` and `--b`, each given to `kassa serve`
as `PYTHONPATH` (it comes before the installed kassa). For a commit:

    mkdir -p /tmp/kassa-at && git archive <commit> src | tar -x -C /tmp/kassa-at
    .venv/bin/python bench/versus.py --a /tmp/kassa-at/src --b src --rounds 4

Both must run on this one schema: the database is migrated by the installed kassa, so
compare versions without a migration between them. The operations and their counting are
`suite.py`'s (orders, pay, browser; CPU quiet to quiet, background work included).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import suite
from cpu import CpuMeter
from harness import BenchParser, OpFactory, scratch_database
from probe import Probe
from shop import THREE_D_SECURE, Shop

OPERATIONS = ("orders", "pay", "browser")
COUNTS = {"orders": 600, "pay": 150, "browser": 150}
QUICK_COUNTS = {"orders": 40, "pay": 10, "browser": 10}


def parse_args(argv: list[str] | None = None) -> Any:
    parser = BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="version A: a kassa `src` folder")
    parser.add_argument("--b", required=True, help="version B: a kassa `src` folder")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each (default 4)")
    parser.add_argument(
        "--ops", default=",".join(OPERATIONS), help="operations (default orders,pay,browser)"
    )
    parser.add_quick("a smoke run: 1 round each, a few operations")
    parser.add_postgres_url()
    args = parser.parse(argv)
    for folder in (args.a, args.b):
        if not (Path(folder) / "kassa" / "__init__.py").is_file():
            parser.error(f"{folder} is not a kassa src folder (no kassa/__init__.py in it)")
    ops = tuple(op.strip() for op in args.ops.split(",") if op.strip())
    if not ops or set(ops) - set(OPERATIONS):
        parser.error(f"--ops takes some of {', '.join(OPERATIONS)}")
    return args, ops


def factory_for(bench: suite.Bench, shop: Shop, op: str, n: int) -> tuple[OpFactory, int]:
    """The operation's factory, and how many to warm up first."""
    if op == "browser":  # the 3-D Secure pays are made first, outside the measurement
        intents = suite.waiting_payments(bench, shop, n, THREE_D_SECURE)
        return shop.factory(shop.confirm(intents)), 0
    step: Callable[..., Any] = shop.order if op == "orders" else shop.order_and_pay
    return shop.factory(step), 2 * bench.params.clients


def main(argv: list[str] | None = None) -> int:
    args, ops = parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    counts = QUICK_COUNTS if args.quick else COUNTS
    params = suite.parse_args(["--databases", "postgresql", "--postgres-url", args.postgres_url])
    folders = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    measured: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kassa-versus-")))
        target = stack.enter_context(scratch_database("postgresql", workdir, params.postgres_url))
        secret = suite.prepare(target)
        probe = Probe(target)
        stack.callback(probe.close)
        meter = CpuMeter(postgres=probe.postgres_scope())
        meter.start()
        stack.callback(meter.close)
        bench = suite.Bench(params, target, workdir, secret, probe, meter)
        env_of = suite.kassa_env
        for n in range(rounds):
            for version in ("A", "B") if n % 2 == 0 else ("B", "A"):
                suite.kassa_env = lambda b, v=version: {**env_of(b), "PYTHONPATH": folders[v]}
                with suite.serving(bench, params.launch, f"{version}-{n}") as running:
                    shop = Shop(running.base_url, secret, bench.ledger)
                    for op in ops:
                        factory, warm = factory_for(bench, shop, op, counts[op])
                        bench.warm(factory, warm)
                        result = bench.measure(op, factory, counts[op])
                        if result.problems:
                            print(f"{version} {op}: {'; '.join(result.problems)}", flush=True)
                            return 1
                        measured.setdefault((op, version), []).append(result.cpu_ms())
                        print(f"round {n + 1} {version} {op}: {result.cpu_ms():.2f} ms", flush=True)
        suite.kassa_env = env_of
    print(f"\nA = {folders['A']}\nB = {folders['B']}\n")
    print(f"{'operation':10} {'A cpu ms (rounds)':32} {'B cpu ms (rounds)':32} B/A")
    for op in ops:
        a, b = measured[op, "A"], measured[op, "B"]
        ratio = statistics.median(b) / statistics.median(a)
        shown = [" ".join(f"{x:.2f}" for x in xs) for xs in (a, b)]
        print(f"{op:10} {shown[0]:32} {shown[1]:32} {ratio:.3f}")
    print("B/A: the ratio of the medians of the rounds (CPU per operation, quiet to quiet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
