"""The engine's batch policies step by step: views in, a decision out."""

from __future__ import annotations

import pytest

from orchestrator.scheduler import (
    PLAS,
    Adaptive,
    BatchDecision,
    PolicyBatch,
    PriorityBatch,
    ProgramFCFS,
    QueueConfig,
    SeqView,
    batch_policy_for,
)


def seq(id: str, priority: int, arrival: float = 0.0) -> SeqView:
    return SeqView(id=id, priority=priority, arrival=arrival, program=None, blocks_needed=1)


def decide(
    policy: PriorityBatch, head_priority: int, running_priority: int = 1_000_005
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    running = [seq("old-run", running_priority)]
    d = policy.schedule(
        [seq("head", head_priority, 1.0)], running, free_blocks=8, max_batch=1, now=2.0
    )
    return d.admit, tuple(v for v, _ in d.preempt)


def test_any_better_priority_preempts_by_default() -> None:
    assert decide(PriorityBatch(), 1_000_001) == (("head",), ("old-run",))
    assert decide(PriorityBatch(), 1_000_005) == ((), ())  # equal: no preemption


def test_threshold_lets_only_a_better_class_preempt() -> None:
    policy = PriorityBatch(preempt_threshold=10**9 // 2)
    run = 2 * 10**9 + 5  # hints as class * 10**9 + rank
    assert decide(policy, 2 * 10**9 + 1, run) == ((), ())  # same class, older: waits its turn
    assert decide(policy, 10**9 + 900, run) == (("head",), ("old-run",))  # a better class


def test_adaptive_hints_never_preempt() -> None:
    policy = PriorityBatch(preempt_threshold=Adaptive.preempt_threshold)
    assert not policy.preempts
    assert decide(policy, 0, 99 * 10**9 + 5) == ((), ())  # a far better class waits too


def test_program_fcfs_hints_never_preempt_for_age() -> None:
    policy = PriorityBatch(preempt_threshold=ProgramFCFS.preempt_threshold)
    assert decide(policy, 0) == ((), ())  # the oldest program waits for a free slot
    free = policy.schedule([seq("head", 0)], [], free_blocks=8, max_batch=1, now=2.0)
    assert free.admit == ("head",)


def test_negative_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="preempt_threshold"):
        PriorityBatch(preempt_threshold=-1)


def call(id: str, program: str, arrival: float) -> SeqView:
    return SeqView(id=id, priority=0, arrival=arrival, program=program, blocks_needed=1)


def older_program_arrives(policy: PolicyBatch) -> BatchDecision:
    """Program A's first call runs and ends; program B's call runs; A's second call arrives."""
    a1, b1, a2 = call("a1", "A", 0.0), call("b1", "B", 1.0), call("a2", "A", 2.0)
    assert policy.schedule([a1], [], free_blocks=8, max_batch=1, now=0.0).admit == ("a1",)
    policy.on_finish(a1, 0.5, 0.5)
    assert policy.schedule([b1], [], free_blocks=8, max_batch=1, now=1.0).admit == ("b1",)
    return policy.schedule([a2], [b1], free_blocks=8, max_batch=1, now=2.0)


def test_a_policy_inside_the_batcher_preempts_as_its_hints_would() -> None:
    # program-level FCFS orders admissions by age but never preempts for it
    inside = PolicyBatch(ProgramFCFS())
    assert not inside.preempts
    assert older_program_arrives(inside) == BatchDecision()
    # adaptive: an older program of the same Gittins class waits for a slot
    assert older_program_arrives(PolicyBatch(Adaptive())) == BatchDecision()
    # PLAS: A has attained service, B has none, so B keeps its slot
    plas = PolicyBatch(PLAS(config=QueueConfig(thresholds=(0.1, 10.0))))
    assert older_program_arrives(plas) == BatchDecision()


def test_plas_inside_the_batcher_preempts_for_a_better_queue() -> None:
    plas = PolicyBatch(PLAS(config=QueueConfig(thresholds=(0.1, 10.0))))
    a1, a2, b1 = call("a1", "A", 0.0), call("a2", "A", 1.0), call("b1", "B", 2.0)
    plas.schedule([a1], [], free_blocks=8, max_batch=1, now=0.0)
    plas.on_finish(a1, 0.5, 0.5)
    plas.schedule([a2], [], free_blocks=8, max_batch=1, now=1.0)
    d = plas.schedule([b1], [a2], free_blocks=8, max_batch=1, now=2.0)
    assert d == BatchDecision(admit=("b1",), preempt=(("a2", "recompute"),))


def test_batch_policy_for_carries_each_policy_s_threshold() -> None:
    assert batch_policy_for(ProgramFCFS).preempts is False
    assert batch_policy_for(Adaptive()).preempt_threshold == Adaptive.preempt_threshold
    assert batch_policy_for(PLAS()).preempt_threshold == 0


def test_a_program_unseen_for_forget_after_is_forgotten() -> None:
    """An HTTP client never says a program ended: the batcher forgets one whose sequences it
    has not seen for ``forget_after`` seconds, so a long-lived server's state stays bounded."""
    plas = PolicyBatch(PLAS(), forget_after=60.0)
    a1 = call("a1", "A", 0.0)
    plas.schedule([a1], [], free_blocks=8, max_batch=4, now=0.0)
    plas.on_finish(a1, 1.0, 1.0)
    assert plas.programs == 1 and "A" in plas.policy.programs  # type: ignore[attr-defined]
    b1 = call("b1", "B", 30.0)
    plas.schedule([b1], [], free_blocks=8, max_batch=4, now=30.0)  # A was seen 30 s ago
    assert plas.programs == 2
    b2 = call("b2", "B", 61.0)
    plas.schedule([b2], [], free_blocks=8, max_batch=4, now=61.0)  # 61 s: A is gone, B stays
    assert plas.programs == 1 and "A" not in plas.policy.programs  # type: ignore[attr-defined]


def test_a_program_s_end_is_forgotten_at_once() -> None:
    plas = PolicyBatch(PLAS())
    a1 = call("a1", "A", 0.0)
    plas.schedule([a1], [], free_blocks=8, max_batch=4, now=0.0)
    plas.on_finish(a1, 1.0, 1.0)
    plas.on_program_end("A", 1.0)
    plas.on_program_end("A", 1.0)  # twice, or a program never seen: nothing happens
    plas.on_program_end("never", 1.0)
    assert plas.programs == 0 and not plas.policy.programs  # type: ignore[attr-defined]


def test_a_sequence_finishing_after_its_program_ended_does_not_bring_it_back() -> None:
    """A call still running when its program is released finishes later: the policy does not
    learn from it, so the program is not recreated (where no sweep would remove it)."""
    plas = PolicyBatch(PLAS())
    a1 = call("a1", "A", 0.0)
    plas.schedule([a1], [], free_blocks=8, max_batch=4, now=0.0)
    plas.on_program_end("A", 1.0)
    plas.on_finish(a1, 2.0, 2.0)
    assert plas.programs == 0 and not plas.policy.programs  # type: ignore[attr-defined]


def test_forget_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="forget_after"):
        PolicyBatch(PLAS(), forget_after=0)
