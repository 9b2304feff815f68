"""``legato bench sched --micro``: how long one admission decision takes with many calls queued.

The admission queue asks the policy for the best waiting call each time a slot frees
(``Admission._release``). This measures that decision, per policy, with ``queued`` calls from
``programs`` programs waiting and some service history fed in first; the figure is the median
over ``repeats`` decisions. The aim (issue: a decision in at most 100 us with 10,000 queued
calls) is reported against the worst policy.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from orchestrator.bench._report import Report, Target
from orchestrator.scheduler import POLICIES, CallInfo, make_policy

__all__ = ["measure_micro"]


def measure_micro(
    *, queued: int = 10_000, programs: int = 1_000, repeats: int = 20, seed: int = 0
) -> Report:
    """Time one decision (the minimum of the policy's keys over the queue) per policy."""
    rng = random.Random(seed)
    calls = [
        CallInfo(
            call=f"p{i % programs}/c{i}",
            program=f"p{i % programs}",
            thread="t0",
            arrival=rng.uniform(0, 100),
            program_arrival=rng.uniform(0, 50),
            seq=i,
            program_seq=i % programs,
            kind=f"k{i % 3}",
            expected_service=rng.uniform(0, 2),
            remaining=rng.choice([0.0, rng.uniform(0, 10)]),
            deadline=rng.choice([None, rng.uniform(100, 200)]),
        )
        for i in range(queued)
    ]
    rows: list[dict[str, Any]] = []
    worst = 0.0
    for name in sorted(POLICIES):
        policy = make_policy(name)
        for c in calls[: programs * 2]:  # history: every program has had some service
            policy.on_admit(c, c.arrival)
            policy.on_finish(c, c.arrival + 1.0, rng.uniform(0.1, 5.0))
        for j in range(50):  # and some finished programs, for policies that learn from them
            policy.on_program_end(f"p{j}", f"k{j % 3}", 100.0)
        samples = []
        for r in range(repeats):
            now = 100.0 + r
            start = time.perf_counter()
            min(calls, key=lambda c: policy.key(c, now))
            samples.append((time.perf_counter() - start) * 1e6)
        us = statistics.median(samples)
        worst = max(worst, us)
        rows.append({"policy": name, "queued": queued, "decision_us": round(us, 1)})
    return Report(
        "sched-micro",
        {"queued": queued, "programs": programs, "repeats": repeats},
        rows,
        {"decision_us_at_10k_queued": Target(worst, 100.0, "lower")},
    )


def main(args: Any) -> int:
    """``legato bench sched --micro``: print the table, write ``--json`` if asked."""
    from rich.console import Console

    report = measure_micro()
    report.print(Console())
    if getattr(args, "json", None):
        report.write_json(args.json)
    return 0
