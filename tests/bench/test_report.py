"""The suite's table: ratios to the ceiling, measured in the same run (bench/suite.py)."""

from __future__ import annotations

from cpu import Cpu
from harness import LoadResult
from statements import Count
from suite import FULL, DatabaseResult, Measured, Outcome, Params, both, render


def measured(op: str, ops: int, cpu_s: float, wall_s: float) -> Measured:
    load = LoadResult(ops, 0, wall_s, [10.0] * ops, [], timed_out=False)
    cpu = Cpu(
        app_s=cpu_s * 0.75,
        database_s=cpu_s * 0.25,
        service_s=0.0,
        other_postgres_s=0.0,
        wall_s=wall_s,
    )
    return Measured(op, ops, cpu, load, quiet_waited_s=0.0, quiet_timed_out=False)


PARAMS = Params(
    clients=8,
    workers=1,
    sizes=FULL,
    databases=("postgresql",),
    scaling=(),
    statements=True,
    log_level=None,
    time_limit_s=60,
    quiet_timeout_s=60,
    postgres_url="",
    label=None,
)


def test_the_table_gives_cpu_and_rate_as_ratios_to_the_ceiling() -> None:
    ceilings = [measured("ceiling", 100, 0.2, 0.25), measured("ceiling", 100, 0.2, 0.25)]
    ceiling = both(*ceilings)
    assert (ceiling.ops, ceiling.per_second, ceiling.cpu_ms()) == (200, 400.0, 2.0)
    orders = measured("orders", 100, 1.0, 2.0)  # 10 ms a create, 50/s
    count = Count(ops=10, statements=110, transactions=10, by_keyword={}, claims=0)
    result = DatabaseResult(
        "postgresql", [orders, ceiling], ceilings, [], {"orders": count}, problems=[]
    )
    table = render(PARAMS, {"nproc": 2, "python": "3.11"}, Outcome([result], None))
    row = next(line for line in table.splitlines() if line.startswith("postgresql POST"))
    # ops, ops/s, the ceiling's rate over this, p50, p99, app, db, cpu, x ceiling, stmts, txns
    assert row.split()[-11:] == [
        "100",
        "50.0",
        "8.00",
        "10.0",
        "10.0",
        "7.50",
        "2.50",
        "10.00",
        "5.00",
        "11.0",
        "1.0",
    ]
    assert "orders 5.00 (<= 2.5: not met)" in table
    assert "PROBLEM" not in table
