"""The graph IR: a closed set of frozen node types and the ``Graph`` that holds them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias, assert_never

import networkx as nx

from dsl._grammar import Grammar

__all__ = [
    "Graph",
    "InputNode",
    "Interp",
    "LLMNode",
    "Node",
    "PlanNode",
    "Ref",
    "SamplingParams",
    "SelectNode",
    "ToolNode",
    "refs_in",
    "substitute",
]


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to the output of node ``node`` inside a node's inputs."""

    node: str


@dataclass(frozen=True, slots=True)
class Interp:
    """Text with node outputs spliced in (a plan's ``"$1 + $2"``): ``parts`` are strings and
    ``Ref``s, joined as text once the referenced nodes are done."""

    parts: tuple[str | Ref, ...]


def refs_in(value: Any) -> tuple[str, ...]:
    """Ids of the nodes referenced anywhere in ``value`` (lists, tuples, dicts), in order."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, Ref):
            if v.node not in found:
                found.append(v.node)
        elif isinstance(v, Interp):
            walk(v.parts)
        elif isinstance(v, list | tuple):
            for item in v:
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)

    walk(value)
    return tuple(found)


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with every ``Ref`` replaced by the value of the node it names."""
    if isinstance(value, Ref):
        return values[value.node]
    if isinstance(value, Interp):
        return "".join(p if isinstance(p, str) else str(values[p.node]) for p in value.parts)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, values) for v in value)
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """Sampling settings of one LLM call; ``None`` leaves the engine's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _NodeBase:
    id: str
    deps: tuple[str, ...] = ()
    """Nodes whose outputs this node reads: it cannot start before they finish."""
    after: tuple[str, ...] = ()
    """Nodes the program awaited before creating this one (control order, not data)."""
    thread: str = "t0"
    """The sequential chain of calls this node belongs to (Autellix's thread)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputNode(_NodeBase):
    """A program argument left symbolic by ``Program.trace``."""

    kind: ClassVar[str] = "input"

    param: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMNode(_NodeBase):
    """One LLM generation: a template rendered from its inputs, sent to a backend."""

    kind: ClassVar[str] = "gen"

    template: str
    inputs: tuple[tuple[str, Any], ...] = ()
    params: SamplingParams = field(default_factory=SamplingParams)
    model: str | None = None
    system: str | None = None
    chat: bool = True
    timeout: float | None = None
    retries: int | None = None
    grammar: Grammar | None = None
    """What the output must match (its value is then the parsed output), or None."""
    tools: tuple[str, ...] = ()
    """Tools the model may call from its text (AsyncLM's CML frames), by name."""
    async_calls: bool = False
    """Calls run while the model keeps decoding; results come back as interrupts."""
    interrupt: Literal["each", "trap"] = "each"
    """Deliver each result as it returns (``each``) or all at the model's ``[TRAP]``."""
    require: tuple[str, ...] = ()
    """Strings the output must each contain, where the engine can search for them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectNode(_NodeBase):
    """An LLM call whose answer must be one of ``options``."""

    kind: ClassVar[str] = "select"

    template: str
    options: tuple[str, ...]
    inputs: tuple[tuple[str, Any], ...] = ()
    params: SamplingParams = field(default_factory=SamplingParams)
    model: str | None = None
    system: str | None = None
    timeout: float | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolNode(_NodeBase):
    """A call of a ``@dsl.tool`` function with positional and keyword arguments."""

    kind: ClassVar[str] = "tool"

    tool: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    timeout: float | None = None
    retries: int | None = None
    expected_duration: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanNode(_NodeBase):
    """LLMCompiler: a planner writes a plan of tool calls that run as its lines arrive; a
    joiner answers from the results or asks for a new plan. Its value is the final answer."""

    kind: ClassVar[str] = "plan"

    inputs: tuple[tuple[str, Any], ...] = ()
    """The planner's and joiner's template inputs (``question`` among them)."""
    tools: tuple[str, ...]
    planner: str
    joiner: str
    max_replans: int = 1
    max_tasks: int = 8
    grounded: bool = False
    """String arguments only from the words of the question and previous rounds."""
    names: Literal["free", "all", "in_order"] = "free"
    """Whether the first plan must write every name of the question (``question_names``),
    and in its order."""
    params: SamplingParams = field(default_factory=SamplingParams)
    model: str | None = None
    timeout: float | None = None
    retries: int | None = None


Node: TypeAlias = InputNode | LLMNode | SelectNode | ToolNode | PlanNode
"""The closed set of node types; match on it with ``match`` and ``assert_never``."""


@dataclass(frozen=True)
class Graph:
    """A program's dataflow graph: nodes in creation order, edges from ``deps``.

    Graphs are values: analyses (``dsl.passes``) read them and never change them.
    """

    name: str
    nodes: tuple[Node, ...]
    _index: Mapping[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n.id: n for n in self.nodes})

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def node(self, node_id: str) -> Node:
        """The node with id ``node_id``; ``KeyError`` if there is none."""
        return self._index[node_id]

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Data edges ``(producer, consumer)``."""
        return tuple((d, n.id) for n in self.nodes for d in n.deps if d in self._index)

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph``; node attributes ``kind`` and ``node``, edge attribute ``kind``
        (``"data"`` or ``"control"``)."""
        g = nx.DiGraph(name=self.name)
        for n in self.nodes:
            g.add_node(n.id, kind=n.kind, node=n)
        for n in self.nodes:
            for d in n.deps:
                if d in self._index:
                    g.add_edge(d, n.id, kind="data")
            for a in n.after:
                if a in self._index and not g.has_edge(a, n.id):
                    g.add_edge(a, n.id, kind="control")
        return g

    def to_mermaid(self) -> str:
        """A mermaid ``flowchart`` of the graph: data edges solid, control edges dotted."""
        lines = ["flowchart TD"]
        ids = {n.id: f"n{i}" for i, n in enumerate(self.nodes)}
        for n in self.nodes:
            lines.append(f"    {ids[n.id]}{_mermaid_shape(n)}")
        for n in self.nodes:
            for d in n.deps:
                if d in ids:
                    lines.append(f"    {ids[d]} --> {ids[n.id]}")
            for a in n.after:
                if a in ids and a not in n.deps:
                    lines.append(f"    {ids[a]} -.-> {ids[n.id]}")
        return "\n".join(lines) + "\n"


def _mermaid_shape(node: Node) -> str:
    label = f"{node.id}: {_summary(node)}"
    text = label.replace('"', "#quot;").replace("\n", " ")
    match node:
        case InputNode():
            return f'[/"{text}"/]'
        case ToolNode():
            return f'[["{text}"]]'
        case SelectNode():
            return f'{{"{text}"}}'
        case LLMNode():
            return f'("{text}")'
        case PlanNode():
            return f'[("{text}")]'
        case _:
            assert_never(node)


def _summary(node: Node, width: int = 40) -> str:
    match node:
        case InputNode():
            s = f"input {node.param}"
        case LLMNode():
            s = f"gen {node.template}"
        case SelectNode():
            s = f"select {'|'.join(node.options)}"
        case ToolNode():
            s = f"tool {node.tool}()"
        case PlanNode():
            s = f"plan with {', '.join(node.tools)}"
        case _:
            assert_never(node)
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 3] + "..."
