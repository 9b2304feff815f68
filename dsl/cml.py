"""AsyncLM's CML, the text protocol of asynchronous function calls: the system prompt that teaches
it, the grammar that keeps it well-formed, a sans-I/O frame parser and the frames the runtime
writes back.

The model calls tools from its own text without waiting for them (Gim et al., "Asynchronous LLM
Function Calling", 2024)::

    Both at once. [CALL] 1 [HEAD] weather("Paris") [END] [CALL] 2 [HEAD] weather("Oslo") [END]
    [TRAP][END]

``[CALL] id [HEAD] fn(args) [END]`` starts a call and the model keeps decoding; ``[TRAP][END]``
waits for the pending calls. The runtime answers each call with ``[INTR] id [HEAD] result [END]``
(``format_result``; ``format_error`` for a failed call), injected only where ``FrameParser``
says the text is at a ``safe_boundary`` (never inside a half-written frame). Conveyor (Xu et
al., 2024) adds that a call may start the moment its arguments are complete, before its ``[END]``
is decoded: the parser reports ``CallReady`` at the closing parenthesis.

Everything here is pure: the parser takes text and returns events; the runtime
(``orchestrator.runtime``) runs the tools and talks to engines.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import grammars

__all__ = [
    "CALL",
    "END",
    "CMLText",
    "CallRecord",
    "HEAD",
    "INTR",
    "MAX_STRING_ARG",
    "TRAP",
    "TRAP_FRAME",
    "CallEnd",
    "CallReady",
    "CallStarted",
    "Event",
    "FrameError",
    "FrameParser",
    "Text",
    "ToolSpec",
    "Trap",
    "UnclosedFrame",
    "format_error",
    "format_result",
    "grammar",
    "json_text",
    "render_value",
    "system_prompt",
]

CALL: typing.Final = "[CALL]"
HEAD: typing.Final = "[HEAD]"
END: typing.Final = "[END]"
TRAP: typing.Final = "[TRAP]"
INTR: typing.Final = "[INTR]"
TRAP_FRAME: typing.Final = TRAP + END
"""The whole trap frame, as the grammar makes the model write it."""

_TAGS = (CALL, TRAP, INTR)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEAD_RE = re.compile(r"\s*([A-Za-z0-9_]+)\s*\[HEAD\]\s*([A-Za-z_][A-Za-z0-9_]*)\s*\Z")
_KWARG_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)\s*")
_PY_CONSTANTS = {"True": True, "False": False, "None": None}
_JSON = json.JSONDecoder()

MAX_STRING_ARG = 128
"""Characters an argument string may hold under ``grammar()`` (so that a model cannot stay
inside a string until ``max_tokens`` runs out)."""


# -- tools ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the protocol needs to know of one tool: its name, its signature (annotations
    resolved to types where they can be) and the first line of its docstring."""

    name: str
    signature: inspect.Signature
    doc: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"tool name {self.name!r} is not an identifier")

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None) -> ToolSpec:
        """The spec of a plain function (or a ``dsl.Tool``'s ``fn``)."""
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        sig = sig.replace(
            parameters=[
                p.replace(annotation=hints.get(p.name, p.annotation))
                for p in sig.parameters.values()
            ],
            return_annotation=hints.get("return", sig.return_annotation),
        )
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        return cls(name or str(getattr(fn, "__name__", "tool")), sig, doc[0] if doc else "")

    @classmethod
    def from_tool(cls, tool: Any) -> ToolSpec:
        """The spec of a ``dsl.Tool`` (its ``name`` and ``fn``)."""
        return cls.from_function(tool.fn, name=tool.name)

    def describe(self) -> str:
        """``name(param: type = default) -> type: first line of the docstring``."""
        text = f"{self.name}{_format_signature(self.signature)}"
        return f"{text}: {self.doc}" if self.doc else text

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        """Why ``name(*args, **kwargs)`` is not a valid call of this tool, or None."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            return f"wrong arguments for {self.describe_short()}: {exc}"
        for pname, value in bound.arguments.items():
            param = self.signature.parameters[pname]
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            want = _type_name(param.annotation, value)
            if want is not None:
                return (
                    f"argument {pname!r} of {self.describe_short()} must be {want}, "
                    f"got {json.dumps(value, default=str)}"
                )
        return None

    def describe_short(self) -> str:
        """``name(params)`` without the docstring."""
        return f"{self.name}{_format_signature(self.signature)}"


def _format_signature(sig: inspect.Signature) -> str:
    text = str(sig)
    return text.replace("typing.", "").replace("NoneType", "None")


def _type_name(annotation: Any, value: Any) -> str | None:
    """The type ``value`` should have had under ``annotation`` if it does not fit, else None.
    Only JSON's own types are checked (str, int, float, bool, list, dict, None and unions of
    them); anything else is the tool's to check."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        checks = [_type_name(a, value) for a in options]
        if any(c is None for c in checks):
            return None
        return " or ".join(str(c) for c in checks)
    if annotation is None or annotation is type(None):
        return None if value is None else "null"
    base = origin if origin is not None else annotation
    if base is bool:
        return None if isinstance(value, bool) else "a boolean"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "a number"
    if base is str:
        return None if isinstance(value, str) else "a string"
    if base in (list, tuple, Sequence):
        return None if isinstance(value, list) else "a list"
    if base in (dict, Mapping):
        return None if isinstance(value, dict) else "an object"
    return None


def _example_value(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _example_value(options[0]) if options else None
    base = origin if origin is not None else annotation
    examples: dict[Any, Any] = {bool: True, int: 3, float: 2.5, list: [], dict: {}}
    return examples.get(base, "text")


# -- the prompt and the grammar ----------------------------------------------------------------
def system_prompt(tools: Sequence[ToolSpec], *, interrupt: Literal["each", "trap"] = "each") -> str:
    """The system-prompt text that explains the protocol and lists ``tools`` with their typed
    signatures, for a call whose results are delivered per ``interrupt``."""
    if not tools:
        raise ValueError("the protocol needs at least one tool")
    first = tools[0]
    params = [
        p
        for p in first.signature.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    example_args = ", ".join(json.dumps(_example_value(p.annotation)) for p in params)
    delivery = (
        "Each result is written into your text as soon as it returns, between your frames."
        if interrupt == "each"
        else "Results are written into your text when you write [TRAP][END]."
    )
    listing = "\n".join(f"- {t.describe()}" for t in tools)
    return (
        "You can call tools while you write, without waiting for them. To call a tool, write "
        "a call frame:\n"
        "[CALL] <n> [HEAD] <tool>(<arguments>) [END]\n"
        "where <n> is a new number for each call (1, 2, 3, ...) and the arguments are JSON "
        "values in the order of the tool's parameters (strings in double quotes, with no raw "
        '"[" inside: write \\u005b). The call runs while you keep writing. Its result comes '
        "back as\n"
        "[INTR] <n> [HEAD] <result as JSON> [END]\n"
        "or, if the call failed, [INTR] <n> [HEAD] error: <why> [END]. Never write [INTR] "
        f"yourself. {delivery} When you cannot go on without the results of your pending "
        'calls, write [TRAP][END]: you wait there until they have all returned. Write "[" '
        "only to start one of these frames.\n\n"
        f"Tools:\n{listing}\n\n"
        "Example:\n"
        f"Let me start that. [CALL] 1 [HEAD] {first.name}({example_args}) [END] [TRAP][END]"
    )


_STRING_BODY = r'([^"\\\[\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})'


def grammar(tools: Sequence[ToolSpec]) -> str:
    """Lark text for CML restricted to ``tools``: the shipped ``asynclm_cml`` grammar with each
    call frame spelled out per tool (its name, its positional arity, a literal of each
    parameter's JSON type), numeric call ids of up to four digits, argument numbers of up to 18
    digits and argument strings of up to ``MAX_STRING_ARG`` characters, so that every call
    frame a model writes under it names a tool, binds its signature and closes. Parameters
    with defaults may be left out from the right; keyword-only ones are written
    ``name=value``; ``*args`` and ``**kwargs`` are not offered. Parameters of other types
    (lists, objects, unannotated) take any JSON value and are not bounded."""
    if not tools:
        raise ValueError("the protocol needs at least one tool")
    text = grammars.specialise(grammars.load("asynclm_cml"), {"fn_name": [t.name for t in tools]})
    call_rule = re.compile(r"^call:.*$", re.MULTILINE)
    if not call_rule.search(text):  # pragma: no cover - the shipped grammar has one
        raise LookupError("asynclm_cml has no `call` rule to specialise")
    alternatives = " | ".join(f"tool_{i}" for i in range(len(tools)))
    text = call_rule.sub(
        lambda _: (
            f'call: "[CALL] " CALL_NUM " [HEAD] " tool_call " [END]"\ntool_call: {alternatives}'
        ),
        text,
        count=1,
    )
    rules = [f"tool_{i}: " + " | ".join(_tool_alternatives(t)) for i, t in enumerate(tools)]
    extra = [
        "CALL_NUM: /[1-9][0-9]{0,3}/",
        "ARG_INT: /-?(0|[1-9][0-9]{0,17})/",
        "ARG_NUMBER: /-?(0|[1-9][0-9]{0,17})(\\.[0-9]{1,17})?([eE][+-]?[0-9]{1,3})?/",
        f'ARG_STRING: /"{_STRING_BODY}{{0,{MAX_STRING_ARG}}}"/',
        'arg_bool: "true" | "false"',
    ]
    return text.rstrip("\n") + "\n\n// per-tool call frames\n" + "\n".join(rules + extra) + "\n"


def _arg_symbol(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        parts = dict.fromkeys('"null"' if a is type(None) else _arg_symbol(a) for a in options)
        return "(" + " | ".join(parts) + ")" if "value" not in parts else "value"
    base = origin if origin is not None else annotation
    symbols: dict[Any, str] = {
        str: "ARG_STRING",
        int: "ARG_INT",
        float: "ARG_NUMBER",
        bool: "arg_bool",
        list: "list",
        tuple: "list",
        dict: "object",
    }
    if annotation is None or annotation is type(None):
        return '"null"'
    return symbols.get(base, "value")


def _tool_alternatives(tool: ToolSpec) -> list[str]:
    positional = []
    required = 0
    keyword: list[str] = []
    for p in tool.signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(_arg_symbol(p.annotation))
            if p.default is inspect.Parameter.empty:
                required = len(positional)
        elif p.kind == p.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            keyword.append(f'"{p.name}=" {_arg_symbol(p.annotation)}')
    out = []
    for n in range(required, len(positional) + 1):
        parts = positional[:n] + keyword
        inner = ' ", " '.join(parts)
        head = grammars.literal(f"{tool.name}(")
        out.append(f'{head} {inner} ")"' if inner else f'{head} ")"')
    return out


# -- values in frames -----------------------------------------------------------------------
_TAG_IN_TEXT = re.compile(r"\[(CALL|HEAD|END|TRAP|INTR)\]")


def render_value(value: Any) -> str:
    """A tool result as the frames carry it: JSON (``str()`` for what JSON cannot hold, and
    ``json_text`` where even that fails), with any frame tag inside a string escaped
    (``\\u005bEND]``) so that a result can never end or open a frame."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        try:
            text = json.dumps(str(value), ensure_ascii=False)
        except Exception:  # str() failed too: an integer over Python's digit limit inside
            text = json_text(value)
    return _TAG_IN_TEXT.sub(lambda m: "\\u005b" + m.group(0)[1:], text)


_JSON_DEPTH = 64


def json_text(value: Any) -> str:
    """``value`` as JSON text, never raising: ``str()`` of what JSON cannot hold (its type's
    name in angle brackets where even that fails), an integer too long for Python's decimal
    conversion (``sys.get_int_max_str_digits``) as a number in scientific notation with 17
    significant digits (``1.0000000000000000e+5000``), and what is nested deeper than 64
    (or holds itself) cut to ``"..."``."""
    try:
        return json.dumps(value, ensure_ascii=False, default=_as_text)
    except (TypeError, ValueError, RecursionError):
        return _json_text(value, 0)


def _as_text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _json_text(value: Any, depth: int) -> str:
    if depth > _JSON_DEPTH:
        return '"..."'
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json_text(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_key(k, depth + 1)}: {_json_text(v, depth + 1)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(_as_text(value), ensure_ascii=False)


def _key(key: Any, depth: int) -> str:
    """A dict key as JSON writes it: always a string."""
    return json.dumps(key if isinstance(key, str) else _json_text(key, depth), ensure_ascii=False)


def _int_text(n: int) -> str:
    """``n`` in decimal, or in scientific notation past Python's digit limit."""
    try:
        return str(n)
    except ValueError:
        pass
    sign, n = ("-" if n < 0 else ""), abs(n)
    e = int((n.bit_length() - 1) * math.log10(2))  # 10**e <= n < 10**(e + 1), give or take one
    while 10 ** (e + 1) <= n:
        e += 1
    while 10**e > n:
        e -= 1
    lead = str(n // 10 ** (e - 16))  # 17 digits (e is in the thousands)
    return f"{sign}{lead[0]}.{lead[1:]}e+{e}"


def format_result(call_id: str, value: Any) -> str:
    """``[INTR] id [HEAD] <value as JSON> [END]``: a call's result, as the runtime injects it."""
    return f"{INTR} {call_id} {HEAD} {render_value(value)} {END}"


def format_error(call_id: str, message: str) -> str:
    """``[INTR] id [HEAD] error: <message> [END]``: a call that failed, timed out or was
    malformed (``id`` is ``?`` when the frame had none)."""
    clean = _TAG_IN_TEXT.sub(lambda m: "(" + m.group(1) + ")", " ".join(message.split()))
    return f"{INTR} {call_id} {HEAD} error: {clean} {END}"


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Text:
    """Text the model wrote outside any frame."""

    text: str


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call frame's head is complete: the call ``id`` and the tool ``fn`` are known."""

    id: str
    fn: str


@dataclass(frozen=True, slots=True)
class CallReady:
    """A call frame's arguments are complete (its closing parenthesis, before ``[END]``) and
    valid for the tool: the call may start now (Conveyor)."""

    id: str
    fn: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    frame: str = ""
    """The frame's text up to its closing parenthesis."""


@dataclass(frozen=True, slots=True)
class CallEnd:
    """A call frame's ``[END]``: the frame is complete (its ``CallReady`` came before)."""

    id: str
    frame: str


@dataclass(frozen=True, slots=True)
class Trap:
    """``[TRAP][END]``: the model waits for its pending calls."""


@dataclass(frozen=True, slots=True)
class FrameError:
    """A complete frame that cannot be run: an unknown tool, arguments that do not fit the
    tool's signature or do not parse, a reused call id, a frame the model may not write
    (``[INTR]``). ``id`` is the call id where the frame has one (the runtime answers it with
    an error frame), ``frame`` the frame's whole text."""

    id: str | None
    frame: str
    message: str

    def __str__(self) -> str:
        return f"frame {self.frame!r}: {self.message}"


Event: TypeAlias = Text | CallStarted | CallReady | CallEnd | Trap | FrameError
"""What ``FrameParser.feed`` reports, in text order."""


class UnclosedFrame(ValueError):
    """The text ended inside a frame. ``frame`` is the frame's text so far."""

    def __init__(self, frame: str) -> None:
        super().__init__(f"the text ended inside the frame {frame!r}, which was never closed")
        self.frame = frame


# -- what a call with asynchronous tools returns ---------------------------------------------
@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One call the model made from its text, and what became of it. Times are on the
    runtime's clock.

    Attributes:
        id, fn: the frame's call id and tool.
        args, kwargs: the arguments it was called with.
        frame: the call frame's text (up to its closing parenthesis when it ran).
        started: when the tool started (the moment the arguments were complete), or None if
            the frame could not be run.
        frame_end: when the model finished writing the frame's ``[END]``.
        ended: when the tool returned or failed.
        delivered: when its ``[INTR]`` frame was put before the model, or None if the
            model never saw it (it had finished writing).
        result: the tool's value.
        error: why the call failed (a timeout, the tool's exception, a malformed frame).
    """

    id: str
    fn: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    frame: str = ""
    started: float | None = None
    frame_end: float | None = None
    ended: float | None = None
    delivered: float | None = None
    result: Any = None
    error: str | None = None


class CMLText(str):
    """The value of ``dsl.gen(..., async_calls=True)``: the text the model wrote outside its
    frames (a ``str``), with the whole exchange attached.

    Attributes:
        transcript: the model's text with its ``[CALL]``/``[TRAP]`` frames and the ``[INTR]``
            frames the runtime injected, in the order the model saw them.
        calls: every call the model made, in the order it wrote them.
    """

    transcript: str
    calls: tuple[CallRecord, ...]

    def __new__(
        cls, prose: str = "", transcript: str = "", calls: tuple[CallRecord, ...] = ()
    ) -> CMLText:
        obj = super().__new__(cls, prose)
        obj.transcript = transcript
        obj.calls = tuple(calls)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.transcript, self.calls))


# -- the parser ----------------------------------------------------------------------------------
_Phase = Literal["text", "head", "args", "after", "trap", "skip"]


class FrameParser:
    """Reads CML text as it streams and says what happened, chunk by chunk; frames may be split
    across chunks anywhere.

    ::

        parser = FrameParser([ToolSpec.from_function(search)])
        for chunk in stream:
            for event in parser.feed(chunk):
                ...  # Text, CallStarted, CallReady, CallEnd, Trap, FrameError
            if parser.safe_boundary:
                ...  # an [INTR] frame may be injected here
        parser.close()  # UnclosedFrame if the text stopped inside a frame

    The parser follows the grammar's frames but forgives whitespace inside them (an engine
    without grammar support may space them differently); text between a call's closing
    parenthesis and its ``[END]`` is ignored. A ``[CALL]`` or ``[TRAP]`` before the open frame's
    ``[END]`` ends that frame (a model that leaves ``[END]`` out loses no later call; a call
    whose arguments were complete still runs, a frame that was not one is a ``FrameError``). A
    ``[`` that starts no frame tag is plain text.
    Argument values are JSON literals (``True``/``False``/``None`` are accepted too),
    positional or ``name=value``.
    """

    def __init__(self, tools: Iterable[ToolSpec]) -> None:
        self.tools: dict[str, ToolSpec] = {t.name: t for t in tools}
        self.text = ""
        """Everything fed so far."""
        self.ids: set[str] = set()
        """The call ids the model has used."""
        self.unread = ""
        """What the last ``feed(..., stop_at_trap=True)`` did not read."""
        self._phase: _Phase = "text"
        self._pending = ""  # text phase: a possible frame tag's beginning ("[CA")
        self._frame = ""  # the open frame's text
        self._pos = 0  # where in _frame scanning resumes
        self._id: str | None = None
        self._fn: str | None = None
        self._error: str | None = None
        self._args_start = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._prose: list[str] = []
        self._after_frame = False

    # -- state ------------------------------------------------------------------------------
    @property
    def safe_boundary(self) -> bool:
        """Whether the text so far ends outside any frame, with no possible frame tag begun:
        the only place where an ``[INTR]`` frame may be injected."""
        return self._phase == "text" and not self._pending

    @property
    def open_frame(self) -> str | None:
        """The text of the frame being written, or None outside frames."""
        return None if self._phase == "text" else self._frame

    @property
    def prose(self) -> str:
        """The model's text outside frames so far: each frame removed together with the
        whitespace after it when whitespace already comes before it."""
        return "".join(self._prose)

    # -- input ------------------------------------------------------------------------------
    def feed(self, chunk: str, *, stop_at_trap: bool = False) -> list[Event]:
        """Read ``chunk``; the events it completes, in order.

        With ``stop_at_trap``, reading stops right after a ``[TRAP][END]``: the rest of the
        chunk is not read and is left in ``unread`` (for a caller that cuts the output there
        and resumes it later).
        """
        self.text += chunk
        self.unread = ""
        out: list[Event] = []
        if self._phase == "text":
            self._pending += chunk
        else:
            self._frame += chunk
        while self._step(out):
            if stop_at_trap and out and isinstance(out[-1], Trap):
                self.unread, self._pending = self._pending, ""
                if self.unread:
                    self.text = self.text[: -len(self.unread)]
                break
        return out

    def close(self) -> list[Event]:
        """The text has ended: the events still held (a ``[`` that began no tag is text).

        Raises:
            UnclosedFrame: the text ended inside a frame.
        """
        if self._phase != "text":
            raise UnclosedFrame(self._frame)
        out: list[Event] = []
        if self._pending:
            self._emit_text(self._pending, out)
            self._pending = ""
        return out

    # -- the machine ------------------------------------------------------------------------
    def _emit_text(self, text: str, out: list[Event]) -> None:
        if not text:
            return
        if out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + text)
        else:
            out.append(Text(text))
        prose = text
        if self._after_frame:
            before = "".join(self._prose[-1:])
            if not before or before[-1].isspace():
                prose = prose.lstrip()
            if prose:
                self._after_frame = False
        if prose:
            self._prose.append(prose)

    def _open(self, tag: str, phase: _Phase) -> None:
        self._frame = self._pending
        self._pending = ""
        self._pos = len(tag)
        self._phase = phase
        self._id = self._fn = self._error = None

    def _close(self, end: int, event: Event, out: list[Event]) -> None:
        """The open frame ends at ``end`` (just after its ``[END]``): report ``event`` and go
        back to text with what follows."""
        rest = self._frame[end:]
        self._frame = self._frame[:end]
        if isinstance(event, FrameError):
            event = FrameError(event.id, self._frame, event.message)
        elif isinstance(event, CallEnd):
            event = CallEnd(event.id, self._frame)
        out.append(event)
        self._phase = "text"
        self._pending = rest
        self._frame = ""
        self._after_frame = True

    def _find_end(self) -> tuple[int, bool]:
        """Where the open frame ends from the scan position: just after its ``[END]`` (and
        True), or, if a ``[CALL]`` or ``[TRAP]`` comes first, just before that tag (and False:
        the model left out the ``[END]``, and the next frame must not be swallowed). ``(-1,
        False)`` if neither is there yet (the scan position then moves to where a split tag
        could begin)."""
        frame = self._frame
        found = [(i, tag) for tag in (END, CALL, TRAP) if (i := frame.find(tag, self._pos)) >= 0]
        if not found:
            self._pos = max(self._pos, len(frame) - len(CALL) + 1)
            return -1, False
        i, tag = min(found)
        return (i + len(END), True) if tag == END else (i, False)

    def _step(self, out: list[Event]) -> bool:
        """Advance as far as the text allows; True if it should be called again."""
        match self._phase:
            case "text":
                return self._step_text(out)
            case "head":
                return self._step_head(out)
            case "args":
                return self._step_args(out)
            case "after" | "trap" | "skip":
                end, ended = self._find_end()
                if end < 0:
                    return False
                event: Event
                if self._phase == "after":  # a call whose [END] is missing still ran
                    assert self._id is not None
                    event = CallEnd(self._id, "")
                elif self._phase == "trap" and ended:
                    event = Trap()
                else:
                    error = self._error or "malformed frame"
                    if self._phase == "trap":
                        error = "[TRAP] must be followed by [END]"
                    elif not ended:
                        error = f"{error}: [END] missing before the next frame"
                    event = FrameError(self._id, "", error)
                self._close(end, event, out)
                return True
        return False  # pragma: no cover

    def _step_text(self, out: list[Event]) -> bool:
        buf = self._pending
        i = buf.find("[")
        if i < 0:
            self._emit_text(buf, out)
            self._pending = ""
            return False
        self._emit_text(buf[:i], out)
        buf = self._pending = buf[i:]
        for tag in _TAGS:
            if buf.startswith(tag):
                if tag == CALL:
                    self._open(tag, "head")
                elif tag == TRAP:
                    self._open(tag, "trap")
                else:
                    self._open(tag, "skip")
                    self._error = "only the runtime writes [INTR] frames"
                return True
        if any(tag.startswith(buf) for tag in _TAGS):
            return False  # a tag may be beginning: wait for more text
        self._emit_text("[", out)
        self._pending = buf[1:]
        return True

    def _step_head(self, out: list[Event]) -> bool:
        frame = self._frame
        paren = frame.find("(", self._pos)
        end = frame.find(END, len(CALL))
        nxt = [i for tag in (CALL, TRAP) if (i := frame.find(tag, len(CALL))) >= 0]
        if nxt and all(min(nxt) < i for i in (paren, end) if i >= 0):
            # the next frame begins before this one's arguments or [END]: end it there
            message = "malformed call frame: expected [CALL] id [HEAD] tool(arguments)"
            self._close(min(nxt), FrameError(None, "", message), out)
            return True
        if paren < 0 or (0 <= end < paren):
            if end >= 0:
                self._phase = "skip"
                self._error = "malformed call frame: expected [CALL] id [HEAD] tool(arguments)"
                self._pos = len(CALL)
                return True
            self._pos = len(frame)
            return False
        m = _HEAD_RE.match(frame[len(CALL) : paren])
        if m is None:
            self._phase = "skip"
            self._error = "malformed call frame: expected [CALL] id [HEAD] tool(arguments)"
            self._pos = paren + 1
            return True
        call_id, fn = m.group(1), m.group(2)
        self._id = call_id
        self._fn = fn
        self._pos = self._args_start = paren + 1
        self._depth, self._in_string, self._escape = 0, False, False
        self._phase = "args"
        if fn not in self.tools:
            known = ", ".join(sorted(self.tools)) or "none"
            self._error = f"unknown tool {fn!r} (tools: {known})"
        elif call_id in self.ids:
            self._error = f"call id {call_id} is already used"
        else:
            out.append(CallStarted(call_id, fn))
        self.ids.add(call_id)
        return True

    def _step_args(self, out: list[Event]) -> bool:
        frame = self._frame
        i = self._pos
        n = len(frame)
        while i < n:
            c = frame[i]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif c == "\\":
                    self._escape = True
                elif c == '"':
                    self._in_string = False
            elif c == '"':
                self._in_string = True
            elif c in "([{":
                self._depth += 1
            elif c in ")]}":
                if self._depth == 0 and c == ")":
                    break
                self._depth -= 1
            i += 1
        if i >= n:
            self._pos = n
            return False
        assert self._id is not None and self._fn is not None
        args_text = frame[self._args_start : i]
        self._pos = i + 1
        if self._error is None:
            try:
                args, kwargs = _parse_args(args_text)
            except ValueError as exc:
                self._error = f"malformed arguments: {exc}"
            else:
                problem = self.tools[self._fn].check(args, kwargs)
                if problem is not None:
                    self._error = problem
                else:
                    out.append(CallReady(self._id, self._fn, args, kwargs, frame[: i + 1]))
        self._phase = "after" if self._error is None else "skip"
        return True


def _parse_args(text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments from ``a, b, name=c`` (JSON literal values)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    i, n = 0, len(text)

    def skip_ws(j: int) -> int:
        while j < n and text[j].isspace():
            j += 1
        return j

    i = skip_ws(i)
    if i == n:
        return (), {}
    while True:
        name = None
        m = _KWARG_RE.match(text, i)
        if m is not None:
            name = m.group(1)
            i = m.end()
        value, i = _parse_value(text, i)
        if name is None:
            if kwargs:
                raise ValueError("a positional argument follows a keyword argument")
            args.append(value)
        else:
            if name in kwargs:
                raise ValueError(f"argument {name!r} is given twice")
            kwargs[name] = value
        i = skip_ws(i)
        if i == n:
            return tuple(args), kwargs
        if text[i] != ",":
            raise ValueError(f"expected ',' at {text[i : i + 12]!r}")
        i = skip_ws(i + 1)


def _parse_value(text: str, i: int) -> tuple[Any, int]:
    for word, value in _PY_CONSTANTS.items():
        if text.startswith(word, i) and not _NAME.match(text, i + len(word)):
            return value, i + len(word)
    try:
        return _JSON.raw_decode(text, i)
    except json.JSONDecodeError:
        snippet = text[i : i + 12] or "the end"
        raise ValueError(f"expected a JSON value at {snippet!r}") from None
