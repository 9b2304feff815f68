"""The FCFS policies are pure: given calls and ``now``, their order and hints are fixed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.scheduler import FCFS, CallInfo, ProgramFCFS, make_policy


def call(seq: int, program_seq: int, arrival: float, program_arrival: float) -> CallInfo:
    return CallInfo(
        call=f"c{seq}",
        program=f"p{program_seq}",
        thread="t0",
        arrival=arrival,
        program_arrival=program_arrival,
        seq=seq,
        program_seq=program_seq,
    )


@given(st.lists(st.floats(0, 100), min_size=1, max_size=30))
def test_fcfs_keeps_arrival_order(arrivals: list[float]) -> None:
    calls = [call(i, 0, a, 0.0) for i, a in enumerate(sorted(arrivals))]
    policy = FCFS()
    shuffled = calls[1::2] + calls[0::2]
    ordered = sorted(shuffled, key=lambda c: policy.key(c, now=1000.0))
    assert [c.seq for c in ordered] == [c.seq for c in calls]
    assert all(policy.priority(c, 0.0) == 0 for c in calls)


def test_program_fcfs_prefers_older_programs_over_earlier_calls() -> None:
    policy = ProgramFCFS()
    old_program_late_call = call(seq=5, program_seq=0, arrival=9.0, program_arrival=0.0)
    new_program_early_call = call(seq=1, program_seq=1, arrival=2.0, program_arrival=1.0)
    ordered = sorted(
        [new_program_early_call, old_program_late_call], key=lambda c: policy.key(c, 10.0)
    )
    assert ordered == [old_program_late_call, new_program_early_call]
    assert policy.priority(old_program_late_call, 10.0) < policy.priority(
        new_program_early_call, 10.0
    )


def test_make_policy_by_name() -> None:
    assert make_policy("fcfs").name == "fcfs"
    assert make_policy("program_fcfs").name == "program_fcfs"
