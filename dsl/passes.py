"""Graph analyses: expected cost per node, the critical path, and the remaining work after a node.

Analyses read a ``Graph`` and return plain values; they never change it. Costs are expected
seconds on a reference engine. The default cost model is deliberately simple and documented so a
scheduler can replace it with measured figures (pass ``cost=``):

- an LLM call costs ``DECODE_S_PER_TOKEN`` per expected output token (``max_tokens`` if set,
  else ``DEFAULT_OUTPUT_TOKENS``) plus ``PREFILL_S_PER_CHAR`` per template character;
- a tool call costs its ``expected_duration`` if the tool declares one, else ``DEFAULT_TOOL_S``;
- a select costs the decode of its longest option; an input costs nothing;
- a plan costs a planner and a joiner call plus one default tool call.

Both analyses follow data and control edges: a call the program made after awaiting another
cannot start before it either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

import networkx as nx

from dsl._graph import Graph, InputNode, LLMNode, Node, PlanNode, SelectNode, ToolNode

__all__ = [
    "DECODE_S_PER_TOKEN",
    "DEFAULT_OUTPUT_TOKENS",
    "DEFAULT_TOOL_S",
    "PREFILL_S_PER_CHAR",
    "CriticalPath",
    "Remaining",
    "critical_path",
    "default_cost",
    "remaining_work",
]

DECODE_S_PER_TOKEN = 0.02
"""Reference decode time per output token (a mid-size model on one GPU under load)."""
PREFILL_S_PER_CHAR = 0.00005
"""Reference prefill time per prompt character (about 4 characters per token)."""
DEFAULT_OUTPUT_TOKENS = 128
DEFAULT_TOOL_S = 0.1

Cost = Callable[[Node], float]


def default_cost(node: Node) -> float:
    """Expected seconds for ``node`` under the reference cost model described above."""
    match node:
        case InputNode():
            return 0.0
        case LLMNode():
            tokens = node.params.max_tokens or DEFAULT_OUTPUT_TOKENS
            return tokens * DECODE_S_PER_TOKEN + len(node.template) * PREFILL_S_PER_CHAR
        case SelectNode():
            tokens = max(1, max(len(o) for o in node.options) // 4)
            return tokens * DECODE_S_PER_TOKEN + len(node.template) * PREFILL_S_PER_CHAR
        case ToolNode():
            return node.expected_duration if node.expected_duration is not None else DEFAULT_TOOL_S
        case PlanNode():
            # a planner and a joiner call; the tasks are unknown until the plan is written
            tokens = node.params.max_tokens or DEFAULT_OUTPUT_TOKENS
            return 2 * tokens * DECODE_S_PER_TOKEN + DEFAULT_TOOL_S
        case _:
            assert_never(node)


@dataclass(frozen=True, slots=True)
class CriticalPath:
    """The costliest chain of nodes: its total expected seconds and the node ids in order."""

    length: float
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Remaining:
    """Expected work still to do once a node finishes.

    Attributes:
        critical: seconds on the longest chain after the node (time to the end, with
            unlimited parallelism).
        total: seconds of all nodes that depend on it, directly or not (service still owed).
    """

    critical: float
    total: float


def _dag(graph: Graph) -> nx.DiGraph:
    g = graph.to_networkx()
    if not nx.is_directed_acyclic_graph(g):  # pragma: no cover - the builder cannot make cycles
        raise ValueError(f"graph {graph.name!r} has a cycle")
    return g


def critical_path(graph: Graph, cost: Cost = default_cost) -> CriticalPath:
    """The longest expected-cost chain through ``graph``."""
    g = _dag(graph)
    best: dict[str, tuple[float, str | None]] = {}
    for n in nx.topological_sort(g):
        own = cost(graph.node(n))
        prev = max(((best[p][0], p) for p in g.predecessors(n)), default=(0.0, None))
        best[n] = (prev[0] + own, prev[1])
    if not best:
        return CriticalPath(0.0, ())
    end = max(best, key=lambda k: best[k][0])
    path: list[str] = []
    cur: str | None = end
    while cur is not None:
        path.append(cur)
        cur = best[cur][1]
    return CriticalPath(best[end][0], tuple(reversed(path)))


def remaining_work(graph: Graph, cost: Cost = default_cost) -> dict[str, Remaining]:
    """For each node, the expected work after it (see ``Remaining``)."""
    g = _dag(graph)
    out: dict[str, Remaining] = {}
    tail: dict[str, float] = {}
    for n in reversed(list(nx.topological_sort(g))):
        succ = list(g.successors(n))
        critical = max((tail[s] for s in succ), default=0.0)
        tail[n] = critical + cost(graph.node(n))
        total = sum((cost(graph.node(d)) for d in nx.descendants(g, n)), 0.0)
        out[n] = Remaining(critical=critical, total=total)
    return out
