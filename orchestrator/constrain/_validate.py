"""Re-parsing a constrained output: every output is checked against its grammar before the
program sees it, whatever enforced the grammar while decoding (or nothing did)."""

from __future__ import annotations

import functools
import json
import re
import threading
from typing import Any

import lark.exceptions
import pydantic

from dsl import Grammar
from dsl._grammar import lark_parser

__all__ = ["Invalid", "check"]


class Invalid(ValueError):
    """An output that breaks its grammar: ``reason`` says what and ``position`` (0-based
    offset into the text) where, when known.

    A plain exception (not a frozen dataclass): raising machinery sets ``__traceback__``,
    ``__context__`` and notes on it, which a frozen one would refuse with a TypeError."""

    reason: str
    position: int | None

    def __init__(self, reason: str, position: int | None = None) -> None:
        super().__init__(reason, position)
        self.reason = reason
        self.position = position

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, position={self.position!r})"


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: max(0, line - 1)]) + max(0, column - 1)


def _check_lark(grammar: Grammar, text: str) -> str:
    problem = _lark_problem(grammar.source, grammar.start, text)
    if problem is not None:
        raise Invalid(*problem)
    return text


_LOCK = threading.Lock()


def _lark_problem(source: str, start: str, text: str) -> tuple[str, int | None] | None:
    """Why ``text`` breaks the Lark grammar (reason, offset), or None if it parses. One check
    at a time: checks run in worker threads, a shared parser is not promised to be
    thread-safe, and a text checked while an equal one is being parsed then finds the answer
    cached."""
    with _LOCK:
        return _parse_problem(source, start, text)


@functools.lru_cache(maxsize=1024)
def _parse_problem(source: str, start: str, text: str) -> tuple[str, int | None] | None:
    """``_lark_problem``'s answer, cached: an Earley parse of a large grammar takes a good part
    of a second, and the same text comes back often (self-consistency candidates that agree,
    retries)."""
    try:
        lark_parser(source, start).parse(text)
    except lark.exceptions.UnexpectedInput as e:
        line, column = getattr(e, "line", -1), getattr(e, "column", -1)
        if isinstance(e, lark.exceptions.UnexpectedEOF) or line is None or line < 0:
            return f"the text ends before the grammar allows (at offset {len(text)})", len(text)
        pos = _offset(text, line, column)
        near = text[pos : pos + 20]
        return f"unexpected {near!r} at line {line}, column {column}", pos
    except lark.exceptions.LarkError as e:  # e.g. an ambiguity lark cannot resolve
        return f"{type(e).__name__}: {e}", None
    return None


def _no_constant(name: str) -> Any:
    """Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity``; JSON has no such values."""
    raise Invalid(f"not JSON: {name} is not a JSON value")


def _check_json(grammar: Grammar, text: str) -> Any:
    import jsonschema

    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise Invalid(f"not JSON: {e.msg} at line {e.lineno}, column {e.colno}", e.pos) from e
    validator = jsonschema.Draft202012Validator(grammar.schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise Invalid(f"at {where}: {error.message}")
    if grammar.model is not None:
        try:
            return grammar.model.model_validate(value)
        except pydantic.ValidationError as e:
            raise Invalid(f"not a valid {grammar.model.__name__}: {e.errors()[0]['msg']}") from e
    return value


def check(grammar: Grammar, text: str) -> Any:
    """The value of ``text`` under ``grammar`` (the text itself; for JSON schemas the parsed
    value, or the pydantic model's instance); raises ``Invalid`` saying what is wrong and where."""
    match grammar.kind:
        case "lark":
            return _check_lark(grammar, text)
        case "regex":
            pattern = re.compile(grammar.source)
            if pattern.fullmatch(text) is None:
                m = pattern.match(text)
                end = m.end() if m else 0
                raise Invalid(
                    f"does not match /{grammar.source}/ (matched up to offset {end})", end
                )
            return text
        case "json_schema":
            return _check_json(grammar, text)
        case "choice":
            if text not in grammar.options:
                raise Invalid(f"is none of the choices {list(grammar.options)!r}")
            return text
