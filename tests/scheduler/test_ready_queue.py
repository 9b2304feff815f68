"""The ready queue's lazy heap gives the same decisions as scanning every waiting call."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.scheduler import CallInfo, ReadyQueue, make_policy


def info(i: int, program: int, arrival: float) -> CallInfo:
    return CallInfo(
        call=f"p{program}/c{i}",
        program=f"p{program}",
        thread="t",
        arrival=arrival,
        program_arrival=float(program),
        seq=i,
        program_seq=program,
        kind="k",
        expected_service=(i % 5) * 0.3,
        deadline=100.0 + (i * 7 % 11),
    )


@settings(max_examples=int(os.environ.get("LEGATO_HYPOTHESIS_EXAMPLES", "60")), deadline=None)
@given(
    name=st.sampled_from(["fcfs", "program_fcfs", "plas", "atlas", "mlfq", "slo", "adaptive"]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["push", "pop", "finish"]), st.integers(0, 5), st.floats(0.0, 3.0)
        ),
        max_size=60,
    ),
)
def test_heap_decisions_equal_a_full_scan(name: str, ops: list[tuple[str, int, float]]) -> None:
    policy = make_policy(name)
    queue: ReadyQueue[int] = ReadyQueue(policy)
    waiting: dict[str, CallInfo] = {}
    now = 0.0
    for i, (op, program, x) in enumerate(ops):
        now += 0.1
        if op == "push":
            c = info(i, program, now)
            waiting[c.call] = c
            queue.push(c, i, now)
        elif op == "finish":  # a call of this program ran: its state changes
            c = info(10_000 + i, program, now)
            policy.on_admit(c, now)
            policy.on_finish(c, now, x)
            queue.touched(c.program, now)
        elif waiting:
            expected = min(waiting.values(), key=lambda c: policy.key(c, now))
            got = queue.pop(now)
            assert got is not None
            assert policy.key(got[0], now) == policy.key(expected, now)
            del waiting[got[0].call]
    assert len(queue) == len(waiting)


def test_removed_calls_are_never_popped() -> None:
    q: ReadyQueue[str] = ReadyQueue(make_policy("fcfs"))
    a, b = info(1, 0, 1.0), info(2, 0, 2.0)
    q.push(a, "a", 1.0)
    q.push(b, "b", 2.0)
    q.remove(a)
    assert q.pop(3.0) == (b, "b")
    assert q.pop(3.0) is None


def test_a_call_that_has_already_starved_is_keyed_once() -> None:
    from orchestrator.scheduler import PLAS, QueueConfig

    policy = PLAS(config=QueueConfig(beta=1.0))
    busy = info(1, 0, 0.0)
    policy.on_admit(busy, 0.0)
    policy.on_finish(busy, 1.0, 1.0)
    q: ReadyQueue[str] = ReadyQueue(policy)
    late = info(2, 0, 0.0)  # waiting since 0 with 1 s of service: starved from t = 1
    q.push(late, "late", 50.0)
    q.push(info(3, 1, 49.0), "fresh", 50.0)
    assert q.pop(50.0) == (late, "late")  # promoted, and no endless re-keying


def test_re_keying_does_not_grow_the_heap_without_bound() -> None:
    policy = make_policy("plas")
    q: ReadyQueue[int] = ReadyQueue(policy)
    for i in range(10):
        q.push(info(i, i, float(i)), i, 10.0)
    for r in range(5000):
        q.touched(f"p{r % 10}", 10.0)
    assert len(q._heap) <= 4 * len(q) + 64 + 1


def test_starved_calls_are_not_re_keyed_at_every_later_decision() -> None:
    from orchestrator.scheduler import PLAS, QueueConfig

    class Counting(PLAS):
        keys = 0

        def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
            Counting.keys += 1
            return super().key(call, now)

    policy = Counting(config=QueueConfig(beta=1.0))
    q: ReadyQueue[int] = ReadyQueue(policy)
    for p in range(50):  # every program has 1 s of service and its call has waited since 0
        c = info(1000 + p, p, 0.0)
        policy.on_admit(c, 0.0)
        policy.on_finish(c, 1.0, 1.0)
        q.push(info(p, p, 0.0), p, 0.5)
    q.pop(2.0)  # all have starved by now: re-keyed once each
    before = Counting.keys
    for r in range(20):
        q.pop(3.0 + r)
    assert Counting.keys - before <= 20  # not 20 decisions x the whole queue


def test_a_call_popped_and_queued_again_is_popped_again() -> None:
    policy = make_policy("plas")
    a = info(1, 0, 1.0)
    policy.on_admit(info(9, 0, 0.0), 0.0)
    policy.on_finish(info(9, 0, 0.0), 1.0, 5.0)  # service: the call's starvation time is finite
    q: ReadyQueue[str] = ReadyQueue(policy)
    for r in range(3):  # its dead expiry entries tie with the new ones on time, seq and gen
        q.push(a, f"round {r}", 2.0)
        assert q.pop(2.0) == (a, f"round {r}")


@settings(max_examples=int(os.environ.get("LEGATO_HYPOTHESIS_EXAMPLES", "60")), deadline=None)
@given(
    name=st.sampled_from(["plas", "atlas", "mlfq", "adaptive"]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["push", "pop", "finish"]), st.integers(0, 4), st.floats(0.0, 3.0)
        ),
        max_size=80,
    ),
)
def test_no_call_overtakes_a_starved_call_that_arrived_before_it(
    name: str, ops: list[tuple[str, int, float]]
) -> None:
    """Anti-starvation as an invariant: once a call has waited ``beta`` times its program's
    service, no call that became ready after it is admitted before it, so its wait is bounded
    by the calls ahead of it when it starved."""
    policy = make_policy(name)
    queue: ReadyQueue[int] = ReadyQueue(policy)
    waiting: dict[str, CallInfo] = {}
    now = 0.0
    for i, (op, program, x) in enumerate(ops):
        now += 2.0  # long steps: calls starve within a few operations
        if op == "push":
            c = info(i, program, now)
            waiting[c.call] = c
            queue.push(c, i, now)
        elif op == "finish":
            c = info(10_000 + i, program, now)
            policy.on_admit(c, now)
            policy.on_finish(c, now, x)
            queue.touched(c.program, now)
        elif waiting:
            starved = [c for c in waiting.values() if policy._starved(c, now)]  # type: ignore[attr-defined]
            got = queue.pop(now)
            assert got is not None
            admitted = got[0]
            for s in starved:
                assert (admitted.arrival, admitted.seq) <= (s.arrival, s.seq), (admitted, s)
            del waiting[admitted.call]
            policy.on_admit(admitted, now)
            # as admission does: the program's wait grew, so its queued calls may starve sooner
            queue.touched(admitted.program, now)


def test_a_call_queued_twice_is_refused() -> None:
    q: ReadyQueue[str] = ReadyQueue(make_policy("fcfs"))
    a = info(1, 0, 1.0)
    q.push(a, "a", 1.0)
    with pytest.raises(ValueError, match="queued already"):
        q.push(a, "again", 2.0)
    assert q.pop(3.0) == (a, "a")
    assert q.pop(3.0) is None
