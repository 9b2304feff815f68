"""The executor fires each node when its inputs resolve: independent nodes overlap, dependent
ones never do, and no node runs twice or before its inputs."""

from __future__ import annotations

import functools
import threading

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
import orchestrator
from orchestrator.backends import LLMRequest
from orchestrator.testing import ScriptedBackend

pytestmark = pytest.mark.anyio


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@dsl.program
async def diamond(topic: str) -> str:
    parts = [dsl.gen("part {{i}} of {{t}}", i=i, t=topic, name="part") for i in range(3)]
    return await dsl.gen("join {{parts}}", parts=parts, name="join")


async def test_independent_calls_overlap_and_dependent_ones_wait() -> None:
    backend = ScriptedBackend({"part": "p", "join": "done"}, latency=0.05)
    async with orchestrator.Orchestrator(backend) as orch:
        handle = await orch.submit(diamond, "x")
        assert await handle.result() == "done"
    stats = handle.stats
    intervals = {k: (s.start, s.end) for k, s in stats.items()}
    for a in ("part", "part_1", "part_2"):
        for b in ("part", "part_1", "part_2"):
            if a != b:
                assert overlaps(intervals[a], intervals[b]), (a, b, intervals)  # type: ignore[arg-type]
        assert stats["join"].start >= stats[a].end  # type: ignore[operator]
    # the backend saw the same: three concurrent calls, then one
    calls = backend.calls
    assert [c.request.node for c in calls[3:]] == ["join"]
    first3 = [(c.start, c.end) for c in calls[:3]]
    assert all(overlaps(first3[0], other) for other in first3[1:])
    assert calls[3].start >= max(end for _, end in first3)


async def test_join_receives_values_in_order() -> None:
    backend = ScriptedBackend(lambda r: r.text if r.text.startswith("join") else f"[{r.text}]")
    result = await orchestrator.arun(diamond, "x", backend=backend)
    assert result == "join [part 0 of x]\n[part 1 of x]\n[part 2 of x]"


async def test_sync_tools_run_in_a_worker_thread() -> None:
    seen: list[int] = []

    @dsl.tool
    def where() -> str:
        seen.append(threading.get_ident())
        return "ok"

    @dsl.program
    async def p() -> str:
        return await where()

    assert await orchestrator.arun(p, backend=ScriptedBackend()) == "ok"
    assert seen and seen[0] != threading.get_ident()


async def test_tools_take_vars_and_plain_values_and_lists() -> None:
    @dsl.tool
    async def combine(a: str, items: list[str], *, sep: str) -> str:
        return sep.join([a, *items])

    @dsl.program
    async def p() -> str:
        x = dsl.gen("x")
        y = dsl.gen("y")
        return await combine(x, [y, "z"], sep="+")

    backend = ScriptedBackend(lambda r: r.text.upper())
    assert await orchestrator.arun(p, backend=backend) == "X+Y+z"


async def test_graph_grows_past_awaits_with_control_edges() -> None:
    @dsl.program
    async def seq() -> str:
        first = await dsl.gen("first", name="first")
        if first == "go":
            return await dsl.gen("second {{x}}", x=first, name="second")
        return "stop"

    async with orchestrator.Orchestrator(ScriptedBackend({"first": "go", "second": "ok"})) as o:
        h = await o.submit(seq)
        assert await h.result() == "ok"
    g = h.graph
    assert [n.id for n in g] == ["first", "second"]
    assert g.node("second").after == ("first",)
    assert g.node("second").thread == g.node("first").thread
    assert g.to_networkx().edges["first", "second"]["kind"] == "control"


async def test_returned_vars_are_resolved() -> None:
    @dsl.program
    async def p() -> dict[str, object]:
        return {"a": dsl.gen("a"), "bs": [dsl.gen("b1"), dsl.gen("b2")], "c": 3}

    out = await orchestrator.arun(p, backend=ScriptedBackend(lambda r: r.text * 2))
    assert out == {"a": "aa", "bs": ["b1b1", "b2b2"], "c": 3}


async def test_select_matches_the_answer_to_an_option() -> None:
    @dsl.program
    async def p() -> str:
        return await dsl.select("Pick a color", options=["red", "green"])

    backend = ScriptedBackend({"color": "  Green."})
    assert await orchestrator.arun(p, backend=backend) == "green"
    assert backend.calls[0].request.grammar == dsl.Grammar.choice(["red", "green"])


async def test_requests_carry_program_and_thread_hints() -> None:
    backend = ScriptedBackend(default="ok")
    async with orchestrator.Orchestrator(backend) as orch:
        h1 = await orch.submit(diamond, "a")
        h2 = await orch.submit(diamond, "b")
        await h1.result()
        await h2.result()
    assert h1.id != h2.id
    by_program: dict[str, set[str]] = {}
    for c in backend.calls:
        by_program.setdefault(c.request.hints.program, set()).add(c.request.hints.thread)
    assert set(by_program) == {h1.id, h2.id}
    assert all(len(threads) == 3 for threads in by_program.values())


async def test_stats_record_tokens_and_attempts() -> None:
    backend = ScriptedBackend({"part": "one two", "join": "three"})
    async with orchestrator.Orchestrator(backend) as orch:
        h = await orch.submit(diamond, "x")
        await h.result()
    s = h.stats["join"]
    assert s.status == "ok" and s.attempts == 1 and s.retries == 0
    assert s.completion_tokens == 1 and s.prompt_tokens > 0
    assert s.ready is not None and s.start is not None and s.end is not None
    assert s.ready <= s.start <= s.end


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[bool, list[int]]]:
    """Random DAGs: node i is a tool or a gen and reads from a subset of nodes before it."""
    n = draw(st.integers(1, 10))
    return [
        (
            draw(st.booleans()),
            draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else [],
        )
        for i in range(n)
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags(), delays=st.lists(st.integers(0, 3), min_size=10, max_size=10))
def test_no_node_runs_before_its_inputs_or_twice(
    spec: list[tuple[bool, list[int]]], delays: list[int]
) -> None:
    events: list[tuple[str, int]] = []

    @dsl.tool
    async def step(i: int, *inputs: str) -> str:
        events.append(("start", i))
        await anyio.sleep(delays[i] / 1000)
        events.append(("end", i))
        return f"v{i}"

    async def reply(req: LLMRequest) -> str:
        i = int(req.node.split("_")[1])
        events.append(("start", i))
        await anyio.sleep(delays[i] / 1000)
        events.append(("end", i))
        return f"v{i}"

    @dsl.program
    async def p() -> list[str]:
        out: list[dsl.Var[str]] = []
        for i, (is_tool, deps) in enumerate(spec):
            if is_tool:
                out.append(step(i, *[out[d] for d in deps]))
            else:
                template = " ".join(["n"] + [f"{{{{d{d}}}}}" for d in deps])
                out.append(dsl.gen(template, name=f"n_{i}", **{f"d{d}": out[d] for d in deps}))
        return out  # type: ignore[return-value]

    result = anyio.run(functools.partial(orchestrator.arun, p, backend=ScriptedBackend(reply)))
    assert result == [f"v{i}" for i in range(len(spec))]
    starts = [i for kind, i in events if kind == "start"]
    assert sorted(starts) == list(range(len(spec)))  # each node ran exactly once
    position = {(kind, i): k for k, (kind, i) in enumerate(events)}
    for i, (_, deps) in enumerate(spec):
        for d in deps:
            assert position[("end", d)] < position[("start", i)]
