"""The engine's batch policies step by step: views in, a decision out."""

from __future__ import annotations

import pytest

from orchestrator.scheduler import Adaptive, PriorityBatch, ProgramFCFS, SeqView


def seq(id: str, priority: int, arrival: float = 0.0) -> SeqView:
    return SeqView(id=id, priority=priority, arrival=arrival, program=None, blocks_needed=1)


def decide(policy: PriorityBatch, head_priority: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    running = [seq("old-run", 1_000_005)]
    d = policy.schedule(
        [seq("head", head_priority, 1.0)], running, free_blocks=8, max_batch=1, now=2.0
    )
    return d.admit, tuple(v for v, _ in d.preempt)


def test_any_better_priority_preempts_by_default() -> None:
    assert decide(PriorityBatch(), 1_000_001) == (("head",), ("old-run",))
    assert decide(PriorityBatch(), 1_000_005) == ((), ())  # equal: no preemption


def test_threshold_lets_only_a_better_class_preempt() -> None:
    policy = PriorityBatch(preempt_threshold=Adaptive.preempt_threshold)
    assert decide(policy, 1_000_001) == ((), ())  # same class, older program: waits its turn
    assert decide(policy, 1) == (("head",), ("old-run",))  # a better class preempts


def test_program_fcfs_hints_never_preempt_for_age() -> None:
    policy = PriorityBatch(preempt_threshold=ProgramFCFS.preempt_threshold)
    assert decide(policy, 0) == ((), ())  # the oldest program waits for a free slot
    free = policy.schedule([seq("head", 0)], [], free_blocks=8, max_batch=1, now=2.0)
    assert free.admit == ("head",)


def test_negative_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="preempt_threshold"):
        PriorityBatch(preempt_threshold=-1)
