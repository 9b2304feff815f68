"""``legato bench sched --micro``: how long one admission decision takes with many calls queued.

Each time a slot frees, the admission queue (a ``ReadyQueue``) re-keys the finished call's
program and takes the best waiting call. This measures that decision, per policy, with
``queued`` calls from ``programs`` programs waiting and some service history fed in first (the
median over ``repeats`` decisions), and, as the baseline in the same run, a full scan of the
queue for the smallest key. The aim (at most 100 us with 10,000 queued calls) is reported
against the worst policy.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from orchestrator.bench._report import Report, Target
from orchestrator.scheduler import POLICIES, CallInfo, ReadyQueue, make_policy

__all__ = ["measure_micro"]


def measure_micro(
    *, queued: int = 10_000, programs: int = 1_000, repeats: int = 200, seed: int = 0
) -> Report:
    """Time one decision per policy: a call of some program finishes (its keys change) and the
    best waiting call is taken from the ``ReadyQueue``; against a full scan of the queue (the
    baseline, measured in the same run)."""
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
        queue: ReadyQueue[int] = ReadyQueue(policy)
        for i, c in enumerate(calls):
            queue.push(c, i, 100.0)
        queue.pop(100.0)  # settle the first decision (an epoch change re-keys everything once)
        heap_us, scan_us = [], []
        for r in range(repeats):
            now = 100.0 + r * 0.01
            done = calls[rng.randrange(queued)]
            start = time.perf_counter()
            policy.on_finish(done, now, 0.5)
            queue.touched(done.program, now)
            queue.push(queue.pop(now)[0], r, now)  # type: ignore[index]
            heap_us.append((time.perf_counter() - start) * 1e6)
            if r < 10:
                start = time.perf_counter()
                min(calls, key=lambda c: policy.key(c, now))
                scan_us.append((time.perf_counter() - start) * 1e6)
        us = statistics.median(heap_us)
        scan = statistics.median(scan_us)
        worst = max(worst, us)
        rows.append(
            {
                "policy": name,
                "queued": queued,
                "decision_us": round(us, 1),
                "scan_us": round(scan, 1),
                "speedup": round(scan / us, 1),
            }
        )
    return Report(
        "sched-micro",
        {"queued": queued, "programs": programs, "repeats": repeats, "seed": seed},
        rows,
        {"decision_us_at_10k_queued": Target(worst, 100.0, "lower")},
    )


def main(args: Any) -> int:
    """``legato bench sched --micro``: print the table, write ``--json`` if asked; ``--seed``
    draws the queued calls and the service history."""
    from rich.console import Console

    seed = getattr(args, "seed", None)
    report = measure_micro(seed=0 if seed is None else seed)
    report.print(Console())
    if getattr(args, "json", None):
        report.write_json(args.json)
    return 0
