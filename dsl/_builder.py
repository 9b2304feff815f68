"""The graph builder behind a running (or tracing) program, and the ``Sink`` a runtime plugs in.

A program body finds its ``Builder`` in a ``ContextVar``. Each DSL call asks the builder for a new
node: the builder assigns the id (deterministic: the user's name or ``kind_N``), the data
dependencies (the ``Var``s in the inputs), the control dependencies (what the body awaited since
the previous call) and the thread, records the node, and hands it to the sink. The sink is the
only thing that runs anything: the runtime's sink starts the node when its inputs resolve; the
tracing sink stops the body at the first ``await``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

from dsl._graph import Graph, Node, Ref, refs_in
from dsl._variables import Var
from dsl.errors import ProgramError, VarMisuseError

if TYPE_CHECKING:
    from dsl._tools import Tool

__all__ = ["Builder", "Sink", "current_builder"]

N = TypeVar("N", bound=Node)

_current: ContextVar[Builder | None] = ContextVar("legato_builder", default=None)

# Values with nothing inside to look through.
_PLAIN = (str, bytes, int, float, complex, type(None))


def _members(value: Any) -> Iterable[Any]:
    """What ``value`` directly holds, for finding ``Var``s the graph cannot follow: the items of
    a list, tuple, set or dict (keys too), the fields of a dataclass, or an object's
    attributes (its ``__dict__``, as a pydantic model's fields are). Classes and modules hold
    nothing here."""
    if isinstance(value, list | tuple | set | frozenset):
        return value
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, type | ModuleType):
        return ()
    if dataclasses.is_dataclass(value):
        return [getattr(value, f.name, None) for f in dataclasses.fields(value)]
    try:
        attrs = getattr(value, "__dict__", None)
    except Exception:  # a proxy whose attribute lookup fails
        return ()
    return list(attrs.values()) if isinstance(attrs, dict) else ()


def _var_within(value: Any, depth: int) -> Var[Any] | None:
    """The first ``Var`` that is ``value`` or lies within it, looking ``depth`` levels down."""
    if isinstance(value, Var):
        return value
    if depth <= 0 or isinstance(value, _PLAIN):
        return None
    for item in _members(value):
        found = _var_within(item, depth - 1)
        if found is not None:
            return found
    return None


def _inside(value: Any) -> str:
    if isinstance(value, set | frozenset):
        return f"inside a {type(value).__name__}"
    return f"inside a {type(value).__name__} object"


def _unawaited(value: Any) -> str:
    """What to tell of an awaitable given where a value was due; closes it if a coroutine (the
    program fails here, so it would never run, and is not then reported as never awaited)."""
    if inspect.iscoroutine(value):
        name = value.__name__
        value.close()
        return (
            f"an un-awaited call of {name}(...), not its value: write `await {name}(...)` "
            "(a sub-program's or other coroutine's call must be awaited)"
        )
    return f"an awaitable {type(value).__name__} that was not awaited: `await` it first"


def _place(input: str | None, path: str) -> str:
    if input is None:
        return f"the input at {path}" if path else "an input"
    return f"input {input!r}" + (f" at {input}{path}" if path else "")


def _hidden(where: str, input: str | None, path: str, var: Var[Any], inside: str) -> NoReturn:
    raise VarMisuseError(
        f"{where}: {_place(input, path)} holds Var {var.id!r} {inside}, where the graph cannot "
        "see it: the call would not wait for it and would get the Var, not its value (a prompt "
        f"would show {var!r}). `await` it first (value = await var) and pass the value, or "
        "pass the Var in a list, tuple or dict (as a value), which the call looks through",
        var=var.id,
    )


class Sink(Protocol):
    """What a runtime provides to a builder: take each new node, and wait for a node's value."""

    def submit(self, node: Node) -> None:
        """Accept a new node; called synchronously as the program creates it."""

    async def wait(self, node_id: str) -> Any:
        """Return the value of node ``node_id`` once it is produced, or raise its error."""


def current_builder(what: str) -> Builder:
    """The builder of the program running in this context; ``ProgramError`` outside one."""
    builder = _current.get()
    if builder is None:
        raise ProgramError(
            f"{what} was called outside a @dsl.program; run the program with "
            "orchestrator.run(program, ...) or trace it with program.trace(...)"
        )
    return builder


class Builder:
    """Builds one program instance's graph as its body runs."""

    def __init__(self, name: str, sink: Sink) -> None:
        self.name = name
        self._sink = sink
        self._nodes: list[Node] = []
        self._ids: set[str] = set()
        self._counters: dict[str, int] = {}
        self._thread_of: dict[str, str] = {}
        self._thread_tail: dict[str, str] = {}
        self._awaited: list[str] = []
        self.tools: dict[str, Tool[Any]] = {}

    # -- context ---------------------------------------------------------------------------
    def activate(self) -> Callable[[], None]:
        """Make this the current builder in this context; returns a function that undoes it."""
        token = _current.set(self)
        return lambda: _current.reset(token)

    # -- ids, threads and references --------------------------------------------------------
    def _fresh_id(self, label: str, user_named: bool) -> str:
        if user_named and label not in self._ids:
            return label
        while True:
            n = self._counters.get(label, 0) + 1
            self._counters[label] = n
            candidate = f"{label}_{n}"
            if candidate not in self._ids:
                return candidate

    def _thread_for(self, node_id: str, parents: tuple[str, ...]) -> str:
        for p in parents:
            t = self._thread_of.get(p)
            if t is not None and self._thread_tail.get(t) == p:
                break
        else:
            t = f"t{len(self._thread_tail)}"
        self._thread_of[node_id] = t
        self._thread_tail[t] = node_id
        return t

    def to_refs(self, value: Any, where: str, *, input: str | None = None) -> Any:
        """``value`` with each ``Var`` replaced by a ``Ref`` (through lists, tuples, dicts).

        ``ProgramError`` where the graph could not follow a ``Var`` in ``value``: one inside a
        set, a dataclass or another object (a ``VarMisuseError``, found down to two levels), one
        from another program, or an un-awaited coroutine such as a sub-program's call.
        ``input`` names the value in those errors (an input's or argument's name).
        """
        return self._to_refs(value, where, input, "")

    def _to_refs(self, value: Any, where: str, input: str | None, path: str) -> Any:
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Var):
            if value._builder is not self:
                raise ProgramError(
                    f"{where}: Var {value.id!r} belongs to another program instance; "
                    "variables cannot cross programs"
                )
            return Ref(value.id)
        if isinstance(value, list):
            return [self._to_refs(v, where, input, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return tuple(
                self._to_refs(v, where, input, f"{path}[{i}]") for i, v in enumerate(value)
            )
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                hidden = _var_within(k, 2)
                if hidden is not None:
                    _hidden(where, input, path, hidden, "in a dict key")
                out[k] = self._to_refs(v, where, input, f"{path}[{k!r}]")
            return out
        if inspect.isawaitable(value):
            raise ProgramError(f"{where}: {_place(input, path)} is {_unawaited(value)}")
        hidden = _var_within(value, 2)
        if hidden is not None:
            _hidden(where, input, path, hidden, _inside(value))
        return value

    # -- nodes -----------------------------------------------------------------------------
    def add(
        self,
        make: Callable[..., N],
        *,
        label: str,
        name: str | None,
        type: Any,
        after: Sequence[str] | None = None,
        **fields: Any,
    ) -> Var[Any]:
        """Create a node with ``make(id=..., deps=..., after=..., thread=..., **fields)``,
        record it, hand it to the sink and return its ``Var``. Its control edges are what the
        body awaited since the last node, unless ``after`` says (nodes the runtime adds while
        the program runs, such as a plan's tasks)."""
        if name is not None and not name.isidentifier():
            raise ProgramError(f"node name {name!r} must be a Python identifier")
        node_id = self._fresh_id(name or label, user_named=name is not None)
        deps = refs_in(list(fields.values()))
        if after is None:
            after = tuple(a for a in dict.fromkeys(self._awaited) if a not in deps)
            self._awaited.clear()
        else:
            after = tuple(a for a in after if a not in deps)
        thread = self._thread_for(node_id, deps + after)
        node = make(id=node_id, deps=deps, after=after, thread=thread, **fields)
        self._ids.add(node_id)
        self._nodes.append(node)
        self._sink.submit(node)
        return Var(node_id, type, self)

    def register_tool(self, tool: Tool[Any]) -> None:
        """Remember ``tool`` under its name so the runtime can call it."""
        known = self.tools.get(tool.name)
        if known is not None and known is not tool:
            raise ProgramError(
                f"two different tools are named {tool.name!r} in program {self.name!r}; "
                "give one of them another name with @dsl.tool(name=...)"
            )
        self.tools[tool.name] = tool

    async def wait(self, var: Var[Any]) -> Any:
        """Wait for ``var``'s value through the sink (what ``await var`` does)."""
        self._awaited.append(var.id)
        return await self._sink.wait(var.id)

    def graph(self) -> Graph:
        """The graph built so far."""
        return Graph(self.name, tuple(self._nodes))
