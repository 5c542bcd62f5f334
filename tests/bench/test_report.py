"""The suite's table: ratios to the ceiling, measured in the same run (bench/suite.py)."""

from __future__ import annotations

from cpu import Cpu
from harness import LoadResult
from statements import Count
from suite import FULL, DatabaseResult, Measured, Outcome, Params, both, combined, render


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


def test_with_rounds_each_round_is_held_to_the_ceiling_beside_it_and_the_median_reported() -> None:
    # The machine slows down during the run: the ceiling costs 2, 3, then 4 ms.
    ceilings = [measured("ceiling", 100, cpu, 0.25) for cpu in (0.2, 0.3, 0.4)]
    rounds = [[measured("orders", 100, 0.5, 1.0)], [measured("orders", 100, 0.7, 1.0)]]
    result = DatabaseResult(
        "postgresql",
        [combined([r[0] for r in rounds]), combined(ceilings)],
        ceilings,
        [],
        {},
        problems=[],
        rounds=rounds,
    )
    # round 1: 5 ms ÷ 2.5 ms (the runs beside it: 2 and 3 ms) = 2.0; round 2: 7 ms ÷ 3.5 ms
    # = 2.0. Against all the ceiling's runs together (3 ms) they would be 1.67 and 2.33.
    assert result.round_ratios("orders") == [2.0, 2.0]
    assert result.cpu_x("orders") == 2.0
    assert result.cpu_x("ceiling") == 1.0
    table = render(PARAMS, {"nproc": 2, "python": "3.11"}, Outcome([result], None))
    assert "orders 2.00 [rounds 2.00, 2.00] (<= 2.5: met)" in table
    assert "median of the rounds" in table
