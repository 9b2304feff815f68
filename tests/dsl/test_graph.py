"""Tracing builds the static graph: ids, edges, threads, exports and analyses."""

from __future__ import annotations

import networkx as nx
import pytest

import dsl
from dsl import InputNode, LLMNode, SelectNode, ToolNode
from dsl.passes import critical_path, default_cost, remaining_work


@dsl.tool(expected_duration=1.0)
def search(query: str) -> list[str]:
    return [query]


@dsl.program
async def fan(topic: str, n: int = 3) -> str:
    questions = [dsl.gen("Question {{i}} on {{t}}", i=i, t=topic, max_tokens=10) for i in range(n)]
    hits = [search(q) for q in questions]
    summary = dsl.gen("Summarize {{hits}}", hits=hits, max_tokens=50, name="summary")
    verdict = dsl.select("Is {{s}} good?", s=summary, options=["yes", "no"])
    if await verdict == "yes":  # the trace stops here
        return await dsl.gen("never traced")
    return "no"


def test_trace_builds_fan_out_fan_in() -> None:
    g = fan.trace("cats")
    assert [n.id for n in g] == [
        "gen_1",
        "gen_2",
        "gen_3",
        "search_1",
        "search_2",
        "search_3",
        "summary",
        "select_1",
    ]
    assert isinstance(g.node("gen_1"), LLMNode)
    assert isinstance(g.node("search_2"), ToolNode)
    assert isinstance(g.node("select_1"), SelectNode)
    assert g.node("search_2").deps == ("gen_2",)
    assert g.node("summary").deps == ("search_1", "search_2", "search_3")
    assert set(g.edges) == {
        ("gen_1", "search_1"),
        ("gen_2", "search_2"),
        ("gen_3", "search_3"),
        ("search_1", "summary"),
        ("search_2", "summary"),
        ("search_3", "summary"),
        ("summary", "select_1"),
    }


def test_trace_is_deterministic() -> None:
    assert fan.trace("cats") == fan.trace("cats")
    assert fan.trace("cats").to_mermaid() == fan.trace("cats").to_mermaid()


def test_threads_follow_chains_and_fork_on_fan_out() -> None:
    g = fan.trace("cats")
    threads = {n.id: n.thread for n in g}
    assert len({threads["gen_1"], threads["gen_2"], threads["gen_3"]}) == 3
    assert threads["search_1"] == threads["gen_1"]
    assert threads["summary"] == threads["search_1"]
    assert threads["select_1"] == threads["summary"]


def test_missing_arguments_become_symbolic_inputs() -> None:
    g = fan.trace()
    topic = g.node("topic")
    assert isinstance(topic, InputNode)
    assert g.node("gen_1").deps == ("topic",)


def test_constant_inputs_are_kept_in_the_node() -> None:
    g = fan.trace("cats", n=1)
    node = g.node("gen_1")
    assert isinstance(node, LLMNode)
    assert dict(node.inputs) == {"i": 0, "t": "cats"}
    assert node.params.max_tokens == 10


def test_user_names_become_ids_and_repeat_with_suffixes() -> None:
    @dsl.program
    async def p() -> None:
        for _ in range(3):
            dsl.gen("x", name="step")

    assert [n.id for n in p.trace()] == ["step", "step_1", "step_2"]


def test_control_edges_after_await() -> None:
    @dsl.program
    async def seq() -> str:
        first = await dsl.gen("first")
        second = dsl.gen("second {{x}}", x=first)  # a plain value: no data edge
        return await second

    # trace stops at the first await; run-time growth is covered by the runtime tests
    g = seq.trace()
    assert [n.id for n in g] == ["gen_1"]


def test_to_networkx_has_kinds_and_edge_kinds() -> None:
    g = fan.trace("cats").to_networkx()
    assert isinstance(g, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(g)
    assert g.nodes["search_1"]["kind"] == "tool"
    assert g.edges["gen_1", "search_1"]["kind"] == "data"


def test_to_mermaid_lists_every_node_and_edge() -> None:
    g = fan.trace("cats")
    text = g.to_mermaid()
    assert text.startswith("flowchart TD\n")
    assert text.count("-->") == len(g.edges)
    for n in g:
        assert f"{n.id}:" in text


def test_critical_path_goes_through_the_costliest_branch() -> None:
    g = fan.trace("cats")
    cp = critical_path(g)
    assert cp.nodes[0].startswith("gen_")
    assert cp.nodes[1:] == (cp.nodes[1], "summary", "select_1")
    expected = sum(default_cost(g.node(n)) for n in cp.nodes)
    assert cp.length == pytest.approx(expected)


def test_remaining_work_counts_descendants() -> None:
    g = fan.trace("cats")
    rem = remaining_work(g)
    assert rem["select_1"].critical == 0.0 and rem["select_1"].total == 0.0
    tail = default_cost(g.node("summary")) + default_cost(g.node("select_1"))
    assert rem["search_1"].critical == pytest.approx(tail)
    assert rem["search_1"].total == pytest.approx(tail)
    # gen_1's descendants: search_1, summary, select_1 (not the other branches)
    assert rem["gen_1"].total == pytest.approx(1.0 + tail)
    assert rem["gen_1"].critical == pytest.approx(1.0 + tail)


def test_custom_cost_function() -> None:
    g = fan.trace("cats")
    cp = critical_path(g, cost=lambda n: 1.0)
    assert cp.length == 4.0  # gen -> search -> summary -> select
