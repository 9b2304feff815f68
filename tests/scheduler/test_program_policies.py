"""Program-level policies step by step, with ``now`` passed in: no clocks, no I/O."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.backends import Hints
from orchestrator.scheduler import (
    ATLAS,
    MLFQ,
    PLAS,
    POLICIES,
    SLO,
    Adaptive,
    CallInfo,
    QueueConfig,
    TTLPredictor,
    gittins_index,
    make_policy,
)

_seq = iter(range(10**9))


def call(
    program: str,
    arrival: float = 0.0,
    *,
    node: str | None = None,
    kind: str = "k",
    parents: tuple[str, ...] = (),
    expected: float = 0.1,
    remaining: float = 0.0,
    deadline: float | None = None,
    program_arrival: float = 0.0,
) -> CallInfo:
    seq = next(_seq)
    return CallInfo(
        call=f"{program}/{node or seq}",
        program=program,
        thread="t0",
        arrival=arrival,
        program_arrival=program_arrival,
        seq=seq,
        program_seq=0,
        kind=kind,
        parents=parents,
        expected_service=expected,
        remaining=remaining,
        deadline=deadline,
    )


def order(policy: object, calls: list[CallInfo], now: float) -> list[str]:
    return [c.program for c in sorted(calls, key=lambda c: policy.key(c, now))]  # type: ignore[attr-defined]


def test_plas_serves_the_program_with_least_attained_service() -> None:
    p = PLAS()
    for _ in range(3):  # program "long" has had 3 s of service
        c = call("long")
        p.on_admit(c, 0.0)
        p.on_finish(c, 1.0, 1.0)
    assert order(p, [call("long", 0.0), call("new", 5.0)], now=5.0) == ["new", "long"]
    assert p.priority(call("new"), 5.0) < p.priority(call("long"), 5.0)


def test_plas_is_fcfs_within_a_queue() -> None:
    p = PLAS()
    assert order(p, [call("b", 2.0), call("a", 1.0), call("c", 3.0)], now=4.0) == ["a", "b", "c"]


def test_anti_starvation_promotes_long_waiters() -> None:
    p = PLAS(config=QueueConfig(beta=2.0))
    c = call("long")
    p.on_admit(c, 0.0)
    p.on_finish(c, 10.0, 10.0)  # 10 s of service: a low queue
    waiting = call("long", arrival=10.0)
    fresh = call("fresh", arrival=29.0)
    assert order(p, [waiting, fresh], now=29.0) == ["fresh", "long"]
    # after waiting 20 s = beta * service, it jumps to the top queue and is older
    assert order(p, [waiting, fresh], now=30.1) == ["long", "fresh"]


def test_time_queued_at_the_engine_counts_as_waiting() -> None:
    """A call held 5 s at the backend that ran 2 s of it (the engine's own figure) waited 3 s
    there; with only the slot's time (service = time held) it waited none."""
    p = PLAS()
    c = call("p")
    p.on_admit(c, 0.0)
    p.on_finish(c, 5.0, 2.0)
    assert p.programs["p"].waited == 3.0
    d = call("q")
    p.on_admit(d, 0.0)
    p.on_finish(d, 5.0, 5.0)
    assert p.programs["q"].waited == 0.0


@pytest.mark.parametrize("name", ["plas", "atlas", "mlfq", "adaptive"])
def test_promotion_says_when_a_call_at_the_engine_starves(name: str) -> None:
    """A call admitted at 12 after 2 s in the admission queue, of a program with 1 s of
    service (beta 4): 2 s of its 4 s allowance are spent, so if it still waits at the engine
    at 14 it is promoted to the top priority; before, its priority is the policy's own."""
    p = make_policy(name)
    if name == "adaptive":  # an order that can starve (by Gittins index, not oldest first)
        p = Adaptive(min_samples=2, predictable_cv=0.0)
        for h in ("h1", "h2"):
            _finish_program(p, h, "k", 1.0)
    first = call("p", node="a")
    p.on_admit(first, 0.0)
    p.on_finish(first, 1.0, 1.0)
    second = call("p", 10.0, node="b", expected=10.0)  # MLFQ: a long call, a low queue
    p.on_admit(second, 12.0)  # type: ignore[attr-defined]
    assert p.promotion(second, 12.0) == (2.0, 0)  # type: ignore[attr-defined]
    assert p.priority(second, 12.0) > 0  # not starved yet: its wait is not counted twice
    assert p.priority(second, 14.0) == 0
    assert p.promotion(second, 14.0) is None  # starved: its priority says so already


def _finish_program(a: Adaptive, program: str, kind: str, service: float) -> None:
    c = call(program, kind=kind)
    a.on_admit(c, 0.0)
    a.on_finish(c, service, service)
    a.on_program_end(program, kind, service)


def test_adaptive_does_not_promote_where_programs_run_oldest_first() -> None:
    """Alike programs run oldest first: a young program waits only behind older ones, which
    FCFS serves in turn, so it is not promoted over them (that only preempts). Once a kind
    whose order can starve it is in progress too, anti-starvation applies again."""
    a = Adaptive(min_samples=2)
    for h in ("h1", "h2"):
        _finish_program(a, h, "alike", 1.0)  # equal sizes: oldest first
    young = call("young", kind="alike", node="a")
    a.on_admit(young, 0.0)
    a.on_finish(young, 1.0, 1.0)
    waiting = call("young", arrival=1.0, kind="alike", node="b")
    assert a.key(waiting, 100.0)[0] == 1 and a.promotion(waiting, 1.0) is None
    for h, size in (("t1", 0.1), ("t2", 50.0)):
        _finish_program(a, h, "tails", size)  # varied sizes: by Gittins index
    epoch = a.epoch
    a.on_admit(call("t3", kind="tails"), 1.0)
    assert a.epoch > epoch  # a kind in progress: queued calls are keyed again
    assert a.key(waiting, 100.0)[0] == 0  # starved: waited 99 s, beta * service is 4 s
    assert a.promotion(waiting, 1.0) == (4.0, 0)


def test_a_program_without_service_starves_against_its_call_s_expected_service() -> None:
    """MLFQ's skip-join puts a long first call in a low queue; its program has no service yet.
    It used to wait forever behind a stream of short calls; now its wait is measured against
    the call's own expected service: after beta (4) times 10 s it goes first."""
    m = MLFQ()
    long = call("long", 0.0, expected=10.0)
    shorts = [call(f"s{i}", float(i), expected=0.1) for i in range(60)]
    assert order(m, [long, shorts[39]], now=39.0) == ["s39", "long"]
    assert m.promotion(long, 39.0) == (1.0, 0)
    assert order(m, [long, shorts[40]], now=40.0) == ["long", "s40"]
    unknown = call("unknown", 0.0, expected=0.0)  # no size known: no ratio to bound
    assert m.promotion(unknown, 1000.0) is None and m.key(unknown, 1000.0)[0] == 0


def test_slo_never_promotes() -> None:
    s = SLO()
    assert s.promotion(call("p", deadline=5.0, expected=1.0), 4.5) is None  # late: stays late
    assert s.promotion(call("q"), 1.0) is None


def test_slo_hints_rank_deadlines_not_the_slack_when_sent() -> None:
    """A call sent at 0 with 5 s of slack and one sent at 4 with 2 s: at 4 the first has 1 s
    left, so an engine holding both must serve it first. Slack-when-sent hints (50 and 20)
    put it second."""
    s = SLO()
    early = call("early", 0.0, deadline=5.1, expected=0.1)  # latest start 5
    later = call("later", 4.0, deadline=6.1, expected=0.1)  # latest start 6
    assert s.priority(early, 0.0) < s.priority(later, 4.0)


def test_atlas_counts_parallel_branches_once() -> None:
    a, p = ATLAS(), PLAS()
    root = call("dag", node="root")
    for pol in (a, p):
        pol.on_finish(root, 1.0, 0.4)
    for i in range(8):  # eight parallel branches of 0.4 s each, all children of root
        b = call("dag", node=f"b{i}", parents=("dag/root",))
        for pol in (a, p):
            pol.on_finish(b, 2.0, 0.4)
    assert a.programs["dag"].critical == pytest.approx(0.8)  # root + one branch
    assert p.programs["dag"].service == pytest.approx(3.6)  # PLAS adds them all
    other = call("chain", arrival=0.0)
    parent: tuple[str, ...] = ()
    for i in range(3):  # a chain of 3 x 0.4 = 1.2 s on its path
        a.on_finish(call("chain", node=f"c{i}", parents=parent), 1.0, 0.4)
        parent = (f"chain/c{i}",)
    # ATLAS prefers the wide DAG (0.8 s on its longest path) over the chain (1.2 s)
    assert order(a, [other, call("dag", arrival=1.0)], now=3.0) == ["dag", "chain"]


def test_mlfq_puts_long_requests_in_lower_queues() -> None:
    m = MLFQ()
    short, long = call("a", 1.0, expected=0.1), call("b", 0.0, expected=20.0)
    assert order(m, [long, short], now=2.0) == ["a", "b"]


def test_slo_serves_late_calls_after_those_that_can_still_make_it() -> None:
    s = SLO()
    late = call("late", 0.0, deadline=5.0, expected=1.0)  # latest start 4: late at 6
    ok = call("ok", 1.0, deadline=20.0, expected=1.0)
    assert order(s, [late, ok], now=3.0) == ["late", "ok"]  # still on time, least slack
    assert order(s, [late, ok], now=6.0) == ["ok", "late"]  # can no longer make it
    assert s.priority(late, 6.0) > s.priority(ok, 6.0)
    assert s.expires(late, 3.0) == 4.0


def test_slo_serves_least_slack_first_and_deadlines_before_none() -> None:
    s = SLO()
    tight = call("tight", 5.0, deadline=10.0, expected=4.0)  # slack 1
    loose = call("loose", 1.0, deadline=10.0, expected=1.0)  # slack 4
    none = call("none", 0.0)
    assert order(s, [none, loose, tight], now=5.0) == ["tight", "loose", "none"]
    assert s.priority(tight, 5.0) < s.priority(loose, 5.0) < s.priority(none, 5.0)


def test_gittins_index_on_heavy_tails_favours_new_programs() -> None:
    rng = random.Random(0)
    heavy = sorted(rng.paretovariate(1.2) for _ in range(400))
    assert gittins_index(heavy, 0.0) > gittins_index(heavy, 5.0)  # like least attained service


def test_gittins_index_on_equal_sizes_favours_programs_near_the_end() -> None:
    equal = [10.0] * 50
    assert gittins_index(equal, 9.0) > gittins_index(equal, 1.0)  # like shortest remaining
    assert gittins_index(equal, 11.0) == math.inf


def test_adaptive_learns_each_kind_and_orders_by_gittins() -> None:
    a = Adaptive(min_samples=4, predictable_cv=0.0)  # the Gittins path even for equal sizes
    for i in range(6):  # finished programs of kind "loop" all took 10 s
        prog = f"done{i}"
        c = call(prog, kind="loop")
        a.on_finish(c, 0.0, 10.0)
        a.on_program_end(prog, "loop", 0.0)
    a.on_finish(call("far", kind="loop"), 0.0, 8.0)  # 8 of 10 s done
    a.on_finish(call("near", kind="loop"), 0.0, 1.0)
    young, old = call("near", 5.0, kind="loop"), call("far", 6.0, kind="loop")
    assert order(a, [young, old], now=6.0) == ["far", "near"]  # finish what is almost done


def test_adaptive_runs_programs_oldest_first_without_history() -> None:
    a = Adaptive()
    a.on_finish(call("busy", kind="new"), 0.0, 5.0)
    old = call("busy", 1.0, kind="new", program_arrival=0.0)
    young = call("idle", 0.5, kind="new", program_arrival=0.5)
    assert order(a, [young, old], now=2.0) == ["busy", "idle"]


def test_adaptive_orders_alike_programs_by_age_and_heavy_tails_by_gittins() -> None:
    alike = Adaptive(min_samples=4)
    tails = Adaptive(min_samples=4)
    for i, size in enumerate([10.0, 10.5, 9.5, 10.0]):  # coefficient of variation ~0.04
        alike.on_finish(call(f"a{i}", kind="k"), 0.0, size)
        alike.on_program_end(f"a{i}", "k", 0.0)
    for i, size in enumerate([1.0, 1.0, 1.0, 100.0]):  # heavy tail: cv ~1.7
        tails.on_finish(call(f"t{i}", kind="k"), 0.0, size)
        tails.on_program_end(f"t{i}", "k", 0.0)
    for a in (alike, tails):
        a.on_finish(call("long", kind="k"), 0.0, 3.0)  # 3 s attained, the older program
    old = call("long", 5.0, kind="k", program_arrival=0.0)
    new = call("new", 4.0, kind="k", program_arrival=1.0)
    assert order(alike, [new, old], now=6.0) == ["long", "new"]  # alike: oldest first
    # heavy tail: past the short mass, "long" is probably a 100 s program: the new one first
    assert order(tails, [old, new], now=6.0) == ["new", "long"]


def _run_calls(a: Adaptive, program: str, kind: str, sizes: list[float], width: int = 1) -> None:
    """Admit and finish ``program``'s calls of ``sizes`` (``width`` at a time), then end it."""
    for i in range(0, len(sizes), width):
        batch = [call(program, kind=kind, expected=x) for x in sizes[i : i + width]]
        for c in batch:
            a.on_admit(c, 0.0)
        for c in batch:
            a.on_finish(c, 0.0, c.expected_service)
    a.on_program_end(program, kind, 0.0)


def test_adaptive_runs_the_shortest_call_first_in_chains_of_varied_sizes() -> None:
    a = Adaptive()
    epoch = a.epoch
    rng = random.Random(0)
    for i in range(10):  # one call at a time, sizes lognormal with sigma 1 (cv ~1.3)
        _run_calls(a, f"c{i}", "chat", [rng.lognormvariate(0.0, 1.0) for _ in range(4)])
    assert a.epoch > epoch  # the decision re-keys queued calls
    old_long = call("old", 1.0, kind="chat", expected=8.0, program_arrival=0.0)
    new_short = call("new", 2.0, kind="chat", expected=0.5, program_arrival=2.0)
    assert order(a, [old_long, new_short], now=3.0) == ["new", "old"]


@pytest.mark.parametrize(
    ("sizes", "width"),
    [([1.0, 1.1, 0.9, 1.0], 1), ([0.1, 5.0, 0.3, 9.0], 2)],
    ids=["alike-sizes", "parallel-calls"],
)
def test_adaptive_keeps_programs_together_unless_chains_of_varied_sizes(
    sizes: list[float], width: int
) -> None:
    a = Adaptive()
    for i in range(10):
        _run_calls(a, f"p{i}", "k", sizes, width)
    old_long = call("old", 1.0, kind="k", expected=8.0, program_arrival=0.0)
    new_short = call("new", 2.0, kind="k", expected=0.5, program_arrival=2.0)
    assert order(a, [new_short, old_long], now=3.0) == ["old", "new"]  # oldest program first


def test_adaptive_starts_a_fan_out_program_s_chain_before_an_older_program_s_last_level() -> None:
    a = Adaptive()
    for i in range(10):  # alike programs of parallel calls
        _run_calls(a, f"p{i}", "tree", [1.0] * 8, width=4)
    # the older program's last level (nothing after it) against a younger program's root, four
    # calls of work on its chain: 0.5 * (1 + 3) = 2 s counts; 1 s younger goes first ...
    leaf = call("old", 1.0, kind="tree", expected=1.0, remaining=0.0, program_arrival=0.0)
    root = call("young", 1.0, kind="tree", expected=1.0, remaining=3.0, program_arrival=1.0)
    assert order(a, [leaf, root], now=2.0) == ["young", "old"]
    assert a.priority(root, 2.0) < a.priority(leaf, 2.0)  # the engine sees the same order
    # ... 3 s younger does not: the shift is bounded by the work on the chain
    later = call("later", 1.0, kind="tree", expected=1.0, remaining=3.0, program_arrival=3.0)
    assert order(a, [later, leaf], now=2.0) == ["old", "later"]
    assert a.priority(leaf, 2.0) < a.priority(later, 2.0)
    # within a program, the call with the longer chain after it first (critical path first)
    deep = call("old", 1.0, kind="tree", expected=1.0, remaining=2.0, program_arrival=0.0)
    assert sorted([leaf, deep], key=lambda c: a.key(c, 2.0)) == [deep, leaf]


def test_adaptive_keeps_chains_of_alike_calls_in_program_order_whatever_remains() -> None:
    a = Adaptive()
    for i in range(10):  # one call at a time: no fan-out to overlap
        _run_calls(a, f"p{i}", "loop", [1.0, 1.1, 0.9, 1.0])
    old = call("old", 1.0, kind="loop", expected=1.0, remaining=0.0, program_arrival=0.0)
    young = call("young", 1.0, kind="loop", expected=1.0, remaining=30.0, program_arrival=0.5)
    assert order(a, [young, old], now=2.0) == ["old", "young"]


def test_adaptive_priority_ranks_keep_their_order_on_a_virtual_clock() -> None:
    a = Adaptive()
    for i in range(10):
        _run_calls(a, f"p{i}", "tree", [1.0] * 8, width=4)
    # a virtual clock starts at 0: shifted moments are negative and must still rank in order
    early = call("a", 0.0, kind="tree", expected=1.0, remaining=8.0, program_arrival=0.0)
    late = call("b", 0.0, kind="tree", expected=1.0, remaining=0.0, program_arrival=0.01)
    assert a.key(early, 0.0)[2] < 0.0
    assert 0 < a.priority(early, 0.0) < a.priority(late, 0.0)


def test_adaptive_priority_ranks_count_from_the_policy_s_first_call() -> None:
    """On a monotonic clock that starts at boot, a machine up for 60 days must still rank an
    older program before a newer one (ranks from the clock's zero wrapped after 58 days)."""
    a = Adaptive()
    day = 86_400.0
    now = 60 * day
    old = call("old", now, program_arrival=now)
    new = call("new", now + 1.0, program_arrival=now + 1.0)
    assert a.priority(old, now) < a.priority(new, now + 1.0)
    # far from the first call, ranks stop at the class's edge: order is lost, never inverted
    far = call("far", now + 100 * day, program_arrival=now + 100 * day)
    farther = call("farther", now + 101 * day, program_arrival=now + 101 * day)
    assert a.priority(far, now + 100 * day) == a.priority(farther, now + 101 * day)
    assert a.priority(new, now + 1.0) < a.priority(far, now + 100 * day)


def test_adaptive_gittins_index_follows_a_full_window() -> None:
    """Once a kind's history window is full its length stops changing; a cached index must
    still follow the refreshed distribution (it used to keep the first one for good)."""
    a = Adaptive(min_samples=2, window=10, predictable_cv=0.0)
    for i in range(10):
        _finish_program(a, f"a{i}", "k", 1.0 if i % 2 else 100.0)
    first = a._gittins("\0start", "k", 0.0)
    for i in range(20):  # the window now holds only short programs
        _finish_program(a, f"b{i}", "k", 1.0 if i % 2 else 2.0)
    samples = a._sorted["k"]
    assert len(samples) == 10 and max(samples) == 2.0
    assert a._gittins("\0start", "k", 0.0) == gittins_index(samples, 0.0) != first


def test_adaptive_places_a_kind_without_history_by_every_kind_s_history() -> None:
    a = Adaptive(min_samples=4)
    for i, size in enumerate([1.0, 1.0, 1.0, 100.0]):  # heavy tail, another kind
        _run_calls(a, f"t{i}", "known", [size])
    a.on_finish(call("long", kind="fresh"), 0.0, 3.0)  # 3 s attained: past the short mass
    old = call("long", 5.0, kind="fresh", program_arrival=0.0)
    new = call("new", 4.0, kind="fresh", program_arrival=1.0)
    assert order(a, [old, new], now=6.0) == ["new", "long"]


@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=40), st.sampled_from(sorted(POLICIES)))
def test_every_policy_keeps_fcfs_among_identical_calls(arrivals: list[float], name: str) -> None:
    policy = make_policy(name)
    calls = [call("same", a) for a in sorted(arrivals)]
    shuffled = calls[1::2] + calls[0::2]
    ordered = sorted(shuffled, key=lambda c: policy.key(c, now=200.0))
    assert [c.seq for c in ordered] == [c.seq for c in calls]


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_priority_direction_per_dialect(a: int, b: int) -> None:
    from orchestrator.backends.openai_compat import _dialect_extras

    ha, hb = Hints(program="p", thread="t", priority=a), Hints(program="p", thread="t", priority=b)
    vllm_a = int(_dialect_extras("vllm", ha, None, "x")[0]["X-Vllm-Priority"])
    vllm_b = int(_dialect_extras("vllm", hb, None, "x")[0]["X-Vllm-Priority"])
    sglang_a = _dialect_extras("sglang", ha, None, "x")[1]["priority"]
    sglang_b = _dialect_extras("sglang", hb, None, "x")[1]["priority"]
    if a < b:  # a is sooner: vLLM lower value, SGLang higher value
        assert vllm_a < vllm_b and sglang_a > sglang_b  # type: ignore[operator]


def test_ttl_follows_the_tool_duration_distribution() -> None:
    t = TTLPredictor()
    assert t.ttl("search", queue_delay=2.0, reload_cost=0.5) == 0.0  # no history: no pin
    for d in (0.5, 0.6, 0.7, 0.8, 0.9):
        t.observe("search", d)
    for d in (30.0, 40.0, 50.0):
        t.observe("compile", d)
    assert t.ttl("search", queue_delay=2.0, reload_cost=0.5) == pytest.approx(0.9)
    assert t.ttl("compile", queue_delay=2.0, reload_cost=0.5) == 0.0  # pinning costs more
    assert t.ttl("search", queue_delay=0.0, reload_cost=0.0) == 0.0  # misses are free


def test_adaptive_priority_is_an_int_for_every_index() -> None:
    a = Adaptive(min_samples=2, predictable_cv=0.0)  # the Gittins path even for equal sizes
    for i in range(3):
        a.on_finish(call(f"d{i}", kind="k"), 0.0, 1.0)
        a.on_program_end(f"d{i}", "k", 0.0)
    a.on_finish(call("past", kind="k"), 0.0, 5.0)  # beyond every sample: an infinite index
    # (both ready at 1.0: neither has waited, so neither is promoted for starving)
    for prog in ("past", "fresh"):
        value = a.priority(call(prog, 1.0, kind="k"), 1.0)
        assert isinstance(value, int) and 0 < value < 101 * 10**9
    past, fresh = call("past", 1.0, kind="k"), call("fresh", 1.0, kind="k")
    assert a.priority(past, 1.0) <= a.priority(fresh, 1.0)


def test_demotion_by_quantum_is_off_by_default() -> None:
    p = PLAS()
    assert p.demotion(call("p"), 0.0) == ()


def test_plas_demotes_a_running_call_at_each_threshold_its_program_crosses() -> None:
    """The program has 0.7 s of service (queue 1: [0.5, 1)); its next call reaches 1 s after
    0.3 s of its own service (queue 2), 2 s after 1.3 s (queue 3), and so on to the last."""
    p = PLAS(config=QueueConfig(demote_running=True))
    first = call("p", node="a")
    p.on_admit(first, 0.0)
    p.on_finish(first, 0.7, 0.7)
    steps = p.demotion(call("p", 1.0, node="b"), 1.0)
    assert [to for _, to in steps] == [2, 3, 4, 5, 6, 7]
    assert [round(after, 6) for after, _ in steps] == [0.3, 1.3, 3.3, 7.3, 15.3, 31.3]


def test_atlas_demotion_counts_from_the_call_s_own_path() -> None:
    """Two parallel branches of 0.8 s each: the program's longest path is 0.8 s (queue 1).
    A call after one branch starts its path at 0.8 s: it reaches 1 s after 0.2 s of service.
    A call with no parent starts at 0 and needs 1 s of its own service to raise the path."""
    p = ATLAS(config=QueueConfig(demote_running=True))
    for node in ("a", "b"):
        c = call("p", node=node)
        p.on_admit(c, 0.0)
        p.on_finish(c, 0.8, 0.8)
    after_a = p.demotion(call("p", 1.0, node="c", parents=("p/a",)), 1.0)
    fresh = p.demotion(call("p", 1.0, node="d"), 1.0)
    assert round(after_a[0][0], 6) == 0.2 and after_a[0][1] == 2
    assert fresh[0] == (1.0, 2)


def test_mlfq_demotes_a_call_by_its_own_service_from_its_skip_join_queue() -> None:
    p = MLFQ(config=QueueConfig(demote_running=True))
    steps = p.demotion(call("p", expected=3.0), 0.0)  # queue 3: [2, 4)
    assert steps[0] == (4.0, 4)


def test_a_starving_program_is_not_demoted() -> None:
    p = PLAS(config=QueueConfig(demote_running=True))
    first = call("p", node="a")
    p.on_admit(first, 0.0)
    p.on_finish(first, 1.0, 1.0)
    late = call("p", 1.0, node="b")
    assert p.demotion(late, 2.0) != ()
    assert p.demotion(late, 10.0) == ()  # waited 9 s >= 4 x 1 s: the top queue keeps it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": ()}, "thresholds must be seconds > 0"),
        ({"thresholds": (0.0, 1.0)}, "thresholds must be seconds > 0"),
        ({"thresholds": (1.0, math.nan)}, "thresholds must be seconds > 0"),
        ({"thresholds": (1.0, 1.0)}, "thresholds must increase"),
        ({"thresholds": (2.0, 1.0)}, "thresholds must increase"),
        ({"beta": 0.0}, "beta must be > 0"),
        ({"beta": math.inf}, "beta must be > 0"),
    ],
)
def test_a_queue_config_that_cannot_order_is_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        QueueConfig(**kwargs)  # type: ignore[arg-type]
