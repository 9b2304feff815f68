"""``@dsl.program``: an async function whose DSL calls build a graph, and its static trace."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, cast

from dsl._builder import Builder
from dsl._graph import Graph, InputNode, Node
from dsl._variables import Var
from dsl.errors import ProgramError

__all__ = ["Program", "program"]

P = ParamSpec("P")
R = TypeVar("R")


class _TraceStop(BaseException):
    """Raised into a traced body at its first ``await``; a BaseException so that user code's
    ``except Exception`` cannot swallow it."""


class _TraceSink:
    def submit(self, node: Node) -> None:
        pass

    async def wait(self, node_id: str) -> NoReturn:
        raise _TraceStop


class Program(Generic[P, R]):
    """An agent program: an ``async def`` whose DSL calls become nodes of a dataflow graph.

    Run it with ``orchestrator.run(program, *args)``; look at its graph with
    ``program.trace(*args)``. Calling it inside another program inlines it (its calls join the
    caller's graph): ``result = await sub_program(x)``. The call must be awaited: a body that
    returns ``sub_program(x)`` un-awaited raises ``ProgramError`` (its calls would never run).
    """

    def __init__(self, fn: Callable[P, Coroutine[Any, Any, R]], *, name: str | None = None):
        if not inspect.iscoroutinefunction(fn):
            raise ProgramError(
                f"@dsl.program needs an `async def` function, got {getattr(fn, '__name__', fn)!r}"
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        bound = self.bind(args, kwargs)
        coro = cast("CoroutineType[Any, Any, R]", self._inlined(bound.args, bound.kwargs))
        # Named as the body, so that "coroutine ... was never awaited" names the program.
        coro.__name__ = self.fn.__name__
        coro.__qualname__ = self.fn.__qualname__
        return coro

    async def _inlined(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        # The body's coroutine is made only once this one runs: closed un-awaited, this one
        # leaves no other behind.
        try:
            value = await self.fn(*args, **kwargs)
        except RecursionError:
            raise ProgramError(
                f"program {self.name!r} reached Python's recursion limit: does a program call "
                "itself (or another that calls it back) with no case that stops?"
            ) from None
        return self._checked(value)

    def _checked(self, value: R) -> R:
        """``value``, the body's return value; ``ProgramError`` if it is (or its list, tuple or
        dict holds) an awaitable other than a ``Var``, such as an un-awaited sub-program call,
        which is closed: it would never run, and the caller would get the call, not a value."""
        found = _awaitables(value)
        if not found:
            return value
        for extra in found[1:]:
            if inspect.iscoroutine(extra):
                extra.close()
        first = found[0]
        if inspect.iscoroutine(first):
            name = first.__name__
            first.close()
            raise ProgramError(
                f"program {self.name!r} returned {name}(...) without awaiting it, so it never "
                f"ran: write `return await {name}(...)`"
            )
        raise ProgramError(
            f"program {self.name!r} returned an awaitable {type(first).__name__} without "
            "awaiting it: `await` it and return its value"
        )

    def __repr__(self) -> str:
        return f"<dsl.program {self.name}>"

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        """Check ``args``/``kwargs`` against the signature; ``ProgramError`` if they don't fit."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ProgramError(f"program {self.name!r}: bad arguments: {exc}") from None
        bound.apply_defaults()
        return bound

    async def execute(self, builder: Builder, *args: Any, **kwargs: Any) -> R:
        """Run the body with ``builder`` as the current builder (what a runtime calls)."""
        bound = self.bind(args, kwargs)
        reset = builder.activate()
        try:
            return self._checked(await self.fn(*bound.args, **bound.kwargs))
        finally:
            reset()

    def trace(self, *args: Any, **kwargs: Any) -> Graph:
        """The static graph: the body run up to its first ``await``, nothing sent anywhere.

        Arguments given are used as they are; required parameters left out become symbolic
        inputs (``InputNode``s) that calls may take as inputs.
        """
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise ProgramError(f"program {self.name!r}: bad arguments: {exc}") from None
        builder = Builder(self.name, _TraceSink())
        for pname, param in self.signature.parameters.items():
            if pname in bound.arguments or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.default is not param.empty:
                bound.arguments[pname] = param.default
            else:
                bound.arguments[pname] = builder.add(
                    InputNode, label=pname, name=pname, type=Any, param=pname
                )
        reset = builder.activate()
        coro = self.fn(*bound.args, **bound.kwargs)
        try:
            coro.send(None)
        except StopIteration as stop:
            self._checked(stop.value)
        except _TraceStop:
            pass
        finally:
            coro.close()
            reset()
        return builder.graph()


def _awaitables(value: Any) -> list[Any]:
    """The awaitables other than ``Var``s in ``value`` and its lists, tuples and dicts (where a
    runtime looks for the ``Var``s of a return value)."""
    if isinstance(value, Var):
        return []
    if isinstance(value, list | tuple):
        return [a for v in value for a in _awaitables(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _awaitables(v)]
    return [value] if inspect.isawaitable(value) else []


def program(fn: Callable[P, Coroutine[Any, Any, R]]) -> Program[P, R]:
    """Mark an ``async def`` as a Legato program (see ``Program``)."""
    return Program(fn)
