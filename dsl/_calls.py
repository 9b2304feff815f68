"""``dsl.gen`` and ``dsl.select``: LLM calls that return ``Var``s at once."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from dsl import _template
from dsl._builder import current_builder
from dsl._grammar import Grammar
from dsl._graph import LLMNode, SamplingParams, SelectNode
from dsl._tools import Tool
from dsl._variables import Var
from dsl.cml import CMLText
from dsl.errors import ProgramError

__all__ = ["gen", "select"]

M = TypeVar("M", bound=BaseModel)

_GEN_SETTINGS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "model",
        "name",
        "system",
        "chat",
        "timeout",
        "retries",
        "grammar",
        "schema",
        "tools",
        "async_calls",
        "interrupt",
        "require",
    }
)
_SELECT_SETTINGS = frozenset(
    {
        "options",
        "temperature",
        "seed",
        "model",
        "name",
        "system",
        "timeout",
        "retries",
    }
)


def _real(where: str, setting: str, value: object) -> float | None:
    """``value`` if it is a real number (numpy's too, as a float) or None; else ProgramError."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise ProgramError(f"{where}: {setting} must be a number, got {value!r}")


def _whole(where: str, setting: str, value: object) -> int | None:
    """``value`` if it is an int (numpy's too, as an int) or None; else ProgramError."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        return None if value is None else int(value)
    raise ProgramError(f"{where}: {setting} must be an int, got {value!r}")


def _strings(where: str, setting: str, value: object, what: str) -> tuple[object, ...]:
    """The items of a list-like setting; ProgramError for a str or a value that is not one."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ProgramError(f"{where}: {setting} must be a list of {what}, got {value!r}")
    return tuple(value)


def _params(
    where: str,
    max_tokens: object,
    temperature: object,
    top_p: object,
    stop: object,
    seed: object,
) -> SamplingParams:
    max_tokens = _whole(where, "max_tokens", max_tokens)
    temperature = _real(where, "temperature", temperature)
    top_p = _real(where, "top_p", top_p)
    seed = _whole(where, "seed", seed)
    if max_tokens is not None and max_tokens < 1:
        raise ProgramError(f"{where}: max_tokens must be a positive int, got {max_tokens!r}")
    if temperature is not None and not (0.0 <= temperature <= 2.0):
        raise ProgramError(f"{where}: temperature must be in [0, 2], got {temperature!r}")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise ProgramError(f"{where}: top_p must be in (0, 1], got {top_p!r}")
    if stop is None or isinstance(stop, str):
        stops: tuple[object, ...] = () if stop is None else (stop,)
    elif isinstance(stop, Iterable) and not isinstance(stop, bytes):
        stops = tuple(stop)
    else:
        stops = (stop,)
    if any(not isinstance(s, str) or not s for s in stops):
        raise ProgramError(
            f"{where}: stop must be a non-empty string or a list of them, got {stop!r}"
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(str(s) for s in stops),
        seed=seed,
    )


def _check_common(
    where: str,
    template: object,
    timeout: object,
    retries: object,
    texts: Mapping[str, object],
) -> tuple[float | None, int | None]:
    """Check what gen and select share; returns ``timeout`` and ``retries`` as checked."""
    if not isinstance(template, str):
        raise ProgramError(f"{where}: the template must be a str, got {type(template).__name__}")
    for setting, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise ProgramError(f"{where}: {setting} must be a str, got {value!r}")
    checked_timeout = _real(where, "timeout", timeout)
    checked_retries = _whole(where, "retries", retries)
    if checked_timeout is not None and not checked_timeout > 0:
        raise ProgramError(f"{where}: timeout must be positive, got {timeout!r}")
    if checked_retries is not None and checked_retries < 0:
        raise ProgramError(f"{where}: retries must be >= 0, got {retries!r}")
    return checked_timeout, checked_retries


@overload
def gen(
    template: str,
    /,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    system: str | None = None,
    chat: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
    tools: Sequence[Tool[Any]] = (),
    async_calls: Literal[False] = False,
    interrupt: Literal["each", "trap"] = "each",
    require: Sequence[str] = (),
    grammar: None = None,
    schema: None = None,
    **inputs: Any,
) -> Var[str]: ...


@overload
def gen(
    template: str,
    /,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    system: str | None = None,
    chat: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
    tools: Sequence[Tool[Any]] = (),
    async_calls: Literal[True],
    interrupt: Literal["each", "trap"] = "each",
    require: Sequence[str] = (),
    grammar: None = None,
    schema: None = None,
    **inputs: Any,
) -> Var[CMLText]: ...


@overload
def gen(
    template: str,
    /,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    system: str | None = None,
    chat: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
    tools: Sequence[Tool[Any]] = (),
    async_calls: bool = False,
    interrupt: Literal["each", "trap"] = "each",
    require: Sequence[str] = (),
    grammar: None = None,
    schema: type[M],
    **inputs: Any,
) -> Var[M]: ...


@overload
def gen(
    template: str,
    /,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    system: str | None = None,
    chat: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
    tools: Sequence[Tool[Any]] = (),
    async_calls: bool = False,
    interrupt: Literal["each", "trap"] = "each",
    require: Sequence[str] = (),
    grammar: Grammar | None = None,
    schema: Mapping[str, Any] | None = None,
    **inputs: Any,
) -> Var[Any]: ...


def gen(
    template: str,
    /,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    system: str | None = None,
    chat: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
    tools: Sequence[Tool[Any]] = (),
    async_calls: bool = False,
    interrupt: Literal["each", "trap"] = "each",
    require: Sequence[str] = (),
    grammar: Grammar | None = None,
    schema: type[BaseModel] | Mapping[str, Any] | None = None,
    **inputs: Any,
) -> Var[Any]:
    """Generate text from ``template``; returns a ``Var[str]`` at once.

    ``{{name}}`` placeholders in ``template`` are filled from the keyword ``inputs``: plain
    values, ``Var``s (the call then waits for them), or lists of either (one item per line).
    Every placeholder needs an input and every input a placeholder, checked here, before any
    request is sent.

    Args:
        template: the prompt, with ``{{name}}`` placeholders.
        max_tokens, temperature, top_p, stop, seed: sampling settings (engine default if unset).
        model: the model name sent to the engine (the backend's default if unset).
        name: the node's id in the graph (default ``gen_N``); also the name in error messages.
        system: an optional system message (chat mode).
        chat: send as a chat message (default) or, if False, as a raw completion prompt.
        timeout: seconds per attempt; retries: extra attempts on retryable errors.
        grammar: a ``dsl.Grammar`` the output must match (held token by token where the engine
            can, validated always); the ``Var`` then holds the checked text, or for a JSON
            schema the parsed value.
        schema: shorthand for ``grammar=Grammar.json_schema(schema)``: a pydantic model class
            (the ``Var`` holds an instance of it) or a JSON-schema dict.
        require: strings the output must each contain (a query's values from the question).
            The embedded engine searches for one that does: an output about to end without
            one is rewound to its closest alternative and decoded again, within a bound
            (``EngineRequest.require``); where none is found, the output is the best ending
            the search saw (one that ended by itself first). Other engines ignore it, and it
            is not checked: an output may still lack one where no search finds it.
        tools, async_calls, interrupt: AsyncLM. With ``async_calls=True`` the model may call
            ``tools`` from its text with ``[CALL] id [HEAD] fn(args) [END]`` frames; each call
            starts as soon as its frame is written and runs while the model keeps decoding;
            its result is injected as an ``[INTR]`` frame as it returns (``interrupt="each"``)
            or when the model writes ``[TRAP][END]`` (``"trap"``). The ``Var`` holds a
            ``dsl.cml.CMLText``: the text outside the frames, with ``.transcript`` and
            ``.calls`` (each call's arguments, result or error, and times).
        **inputs: the values for the placeholders.
    """
    where = f"dsl.gen(name={name!r})" if name else "dsl.gen"
    timeout, retries = _check_common(
        where, template, timeout, retries, {"name": name, "model": model, "system": system}
    )
    for setting, flag in (("chat", chat), ("async_calls", async_calls)):
        if not isinstance(flag, bool):
            raise ProgramError(f"{where}: {setting} must be True or False, got {flag!r}")
    tool_items = _strings(where, "tools", tools, "@dsl.tool functions")
    require_items = _strings(where, "require", require, "non-empty strings")
    if grammar is not None and schema is not None:
        raise ProgramError(f"{where}: pass grammar= or schema=, not both")
    if schema is not None:
        grammar = Grammar.json_schema(schema)
    if async_calls and (grammar is not None or schema is not None):
        raise ProgramError(
            f"{where}: async_calls=True holds the text to its call frames; it cannot take a "
            "grammar or schema too"
        )
    if async_calls and not tool_items:
        raise ProgramError(f"{where}: async_calls=True needs tools=[...]")
    if tool_items and not async_calls:
        raise ProgramError(f"{where}: tools= is for async_calls=True (use dsl.plan for plans)")
    if interrupt not in ("each", "trap"):
        raise ProgramError(f"{where}: interrupt must be 'each' or 'trap', got {interrupt!r}")
    for t in tool_items:
        if not isinstance(t, Tool):
            raise ProgramError(f"{where}: tools must be @dsl.tool functions, got {t!r}")
    tool_list = tuple(t for t in tool_items if isinstance(t, Tool))
    if grammar is not None and not isinstance(grammar, Grammar):
        raise ProgramError(
            f"{where}: grammar must be a dsl.Grammar (e.g. dsl.Grammar.lark(...)), "
            f"got {type(grammar).__name__}"
        )
    if any(not isinstance(r, str) or not r for r in require_items):
        raise ProgramError(f"{where}: require must be a list of non-empty strings, got {require!r}")
    required = tuple(r for r in require_items if isinstance(r, str))
    if async_calls and required:
        raise ProgramError(f"{where}: async_calls=True cannot take require= too")
    _template.check(template, inputs, reserved=_GEN_SETTINGS)
    builder = current_builder("dsl.gen()")
    for t in tool_list:
        builder.register_tool(t)
    params = _params(where, max_tokens, temperature, top_p, stop, seed)
    refs = tuple((k, builder.to_refs(v, where, input=k)) for k, v in inputs.items())
    out_type: type = str
    if grammar is not None and grammar.kind == "json_schema":
        out_type = grammar.model if grammar.model is not None else object
    return builder.add(
        LLMNode,
        label="gen",
        name=name,
        type=out_type,
        template=template,
        inputs=refs,
        params=params,
        model=model,
        system=system,
        chat=chat,
        timeout=timeout,
        retries=retries,
        grammar=grammar,
        tools=tuple(t.name for t in tool_list),
        async_calls=async_calls,
        interrupt=interrupt,
        require=required,
    )


def select(
    template: str,
    /,
    *,
    options: Sequence[str],
    temperature: float | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    system: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    **inputs: Any,
) -> Var[str]:
    """Ask the model to choose one of ``options``; returns a ``Var[str]`` holding that option.

    Where the engine takes a choice constraint it is sent one; otherwise the answer is matched to
    the options and a ``ConstraintViolation`` is raised if it names none of them.
    """
    where = f"dsl.select(name={name!r})" if name else "dsl.select"
    timeout, retries = _check_common(
        where, template, timeout, retries, {"name": name, "model": model, "system": system}
    )
    items = _strings(where, "options", options, "strings") if not isinstance(options, str) else ()
    if not items or any(not isinstance(o, str) or not o.strip() for o in items):
        raise ProgramError(
            f"{where}: options must be a non-empty list of non-empty strings, got {options!r}"
        )
    opts = tuple(o for o in items if isinstance(o, str))
    if len(set(opts)) != len(opts):
        raise ProgramError(f"{where}: options must be distinct, got {list(opts)!r}")
    _template.check(template, inputs, reserved=_SELECT_SETTINGS)
    builder = current_builder("dsl.select()")
    longest = max(len(o) for o in opts)
    params = _params(where, max(8, longest), temperature, None, None, seed)
    refs = tuple((k, builder.to_refs(v, where, input=k)) for k, v in inputs.items())
    return builder.add(
        SelectNode,
        label="select",
        name=name,
        type=str,
        template=template,
        options=opts,
        inputs=refs,
        params=params,
        model=model,
        system=system,
        timeout=timeout,
        retries=retries,
    )
