"""``@dsl.tool``: Python functions that programs call like LLMs, as nodes of the graph."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, get_type_hints, overload

from dsl._builder import current_builder
from dsl._graph import ToolNode
from dsl._variables import Var
from dsl.errors import ProgramError

__all__ = ["Tool", "tool"]

R = TypeVar("R")


class Tool(Generic[R]):
    """A function wrapped by ``@dsl.tool``.

    Called inside a program with plain values or ``Var``s, it returns a ``Var`` of its return
    type at once; the runtime calls the function when the arguments resolve (sync functions in a
    worker thread). ``tool.fn`` is the plain function, for calling it outside a program.

    Attributes:
        name: the tool's name in graphs and errors (default: the function's name).
        timeout: seconds per attempt, or None.
        retries: extra attempts when the function raises (default 0: tools may have side
            effects, so only a tool that says it is safe to repeat is retried).
        expected_duration: seconds the tool usually takes, for the graph's cost estimates.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        timeout: float | None = None,
        retries: int = 0,
        expected_duration: float | None = None,
    ) -> None:
        if not callable(fn):
            raise ProgramError(f"@dsl.tool needs a function, got {fn!r}")
        if timeout is not None and timeout <= 0:
            raise ProgramError(f"@dsl.tool({getattr(fn, '__name__', fn)!r}): timeout must be > 0")
        if retries < 0:
            raise ProgramError(f"@dsl.tool({getattr(fn, '__name__', fn)!r}): retries must be >= 0")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "tool"))
        if not self.name.isidentifier():
            # Plans and call frames name tools as the model writes them: an identifier.
            raise ProgramError(
                f"@dsl.tool: the name {self.name!r} is not an identifier (letters, digits and _, "
                "not starting with a digit): plans and call frames could not name it; give "
                "one with @dsl.tool(name=...)"
            )
        self.timeout = timeout
        self.retries = retries
        self.expected_duration = expected_duration
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        try:
            self.return_type: Any = get_type_hints(fn).get("return", Any)
        except Exception:
            self.return_type = Any
        self.__doc__ = fn.__doc__
        self.__name__ = self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Var[R]:
        where = f"tool {self.name!r}"
        builder = current_builder(f"{where} (use {self.name}.fn(...) to call it directly)")
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ProgramError(f"{where}: bad arguments: {exc}") from None
        builder.register_tool(self)
        return builder.add(
            ToolNode,
            label=self.name,
            name=None,
            type=self.return_type,
            tool=self.name,
            args=builder.to_refs(tuple(args), where),
            kwargs=tuple((k, builder.to_refs(v, where)) for k, v in kwargs.items()),
            timeout=self.timeout,
            retries=self.retries,
            expected_duration=self.expected_duration,
        )

    async def invoke(self, *args: Any, **kwargs: Any) -> R:
        """Run the function with resolved arguments (async functions awaited directly; sync
        functions are the runtime's to move to a worker thread)."""
        if not self.is_async:
            raise TypeError(f"tool {self.name!r} is synchronous; call tool.fn in a thread")
        result: R = await self.fn(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<dsl.tool {self.name}>"


@overload
def tool(fn: Callable[..., Coroutine[Any, Any, R]], /) -> Tool[R]: ...
@overload
def tool(fn: Callable[..., R], /) -> Tool[R]: ...
@overload
def tool(
    *,
    name: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    expected_duration: float | None = None,
) -> Callable[[Callable[..., Any]], Tool[Any]]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    expected_duration: float | None = None,
) -> Any:
    """Make a sync or async function callable from programs as a graph node.

    Use bare (``@dsl.tool``) or with options (``@dsl.tool(timeout=5, retries=2)``).

    An async tool is cancelled when its timeout passes or its program is cancelled. A sync
    tool runs in a worker thread, which Python cannot stop: the program stops waiting for it
    (and a retry may start while it still runs), but the thread runs to its end. Write a tool
    that must stop, or must not run twice at once, as an ``async def``.
    """
    if fn is not None:
        return Tool(fn)

    def wrap(f: Callable[..., Any]) -> Tool[Any]:
        return Tool(
            f, name=name, timeout=timeout, retries=retries, expected_duration=expected_duration
        )

    return wrap
