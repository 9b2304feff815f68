"""Emitters: a ``Grammar`` in each engine's own request field (DESIGN.md section 4).

``emit`` returns the extra body fields for a dialect, or raises ``Unsupported`` when that engine
has no field that can hold the grammar (the runtime then validates and retries instead).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

import lark.exceptions
import lark.load_grammar

from dsl import Grammar
from orchestrator.constrain._gbnf import choice_to_gbnf, lark_to_gbnf, regex_grammar

__all__ = ["Dialect", "Unsupported", "emit", "gbnf"]

Dialect = Literal["legato", "vllm", "sglang", "llamacpp", "openai"]


class Unsupported(ValueError):
    """The engine cannot enforce this grammar: ask without it, validate and retry."""


def gbnf(grammar: Grammar) -> str:
    """The grammar in llama.cpp's GBNF (also what xgrammar-backed engines read as EBNF)."""
    match grammar.kind:
        case "lark":
            return lark_to_gbnf(grammar.source, start=grammar.start)
        case "regex":
            return regex_grammar(grammar.source)
        case "choice":
            return choice_to_gbnf(grammar.options)
        case "json_schema":
            raise Unsupported("a JSON schema has no GBNF form here: send it as a schema")


@functools.lru_cache(maxsize=256)
def _defines(source: str, name: str) -> bool:
    """Whether the Lark grammar ``source`` defines (or imports) a rule or terminal ``name``."""
    builder = lark.load_grammar.GrammarBuilder()
    try:
        builder.load_grammar(source, "<string>")
    except (lark.exceptions.LarkError, OSError) as e:  # pragma: no cover - Grammar.lark checked it
        raise Unsupported(f"invalid Lark grammar: {e}") from e
    definitions: dict[str, Any] = builder._definitions
    return name in definitions


def _legato_lark(grammar: Grammar) -> str:
    """The Lark source for the Legato server, which reads ``structured_outputs.grammar`` with
    the start rule ``start`` and has no field for another: a grammar that starts elsewhere gets
    a rule ``start`` that is its start rule (the same language), when it has none of its own."""
    if grammar.start == "start":
        return grammar.source
    if _defines(grammar.source, "start"):
        raise Unsupported(
            f"the Legato server parses a grammar from its rule 'start' and cannot be told "
            f"another: {grammar.describe()} starts at {grammar.start!r} and also has a rule "
            "'start'; rename one of them"
        )
    sep = "" if grammar.source.endswith("\n") else "\n"
    return f"{grammar.source}{sep}start: {grammar.start}\n"


def emit(dialect: Dialect, grammar: Grammar) -> dict[str, object]:
    """The body fields that carry ``grammar`` to an engine of ``dialect``."""
    match dialect, grammar.kind:
        case "legato", "lark":
            # Our own engine compiles Lark itself: send the source, not a translation.
            return {"structured_outputs": {"grammar": _legato_lark(grammar)}}
        case (("legato" | "vllm"), "regex"):
            return {"structured_outputs": {"regex": grammar.source}}
        case (("legato" | "vllm"), "json_schema"):
            return {"structured_outputs": {"json": grammar.schema}}
        case (("legato" | "vllm"), "choice"):
            return {"structured_outputs": {"choice": list(grammar.options)}}
        case "vllm", "lark":
            return {"structured_outputs": {"grammar": gbnf(grammar)}}
        case "sglang", "lark":
            return {"ebnf": gbnf(grammar)}
        case "sglang", "regex":
            return {"regex": grammar.source}
        case "sglang", "choice":
            return {"regex": "(" + "|".join(re.escape(o) for o in grammar.options) + ")"}
        case "sglang", "json_schema":
            return {"json_schema": grammar.source}
        case "llamacpp", "json_schema":
            return {"json_schema": grammar.schema}
        case "llamacpp", _:
            return {"grammar": gbnf(grammar)}
        case "openai", "json_schema":
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": grammar.model.__name__ if grammar.model else "output",
                        "schema": grammar.schema,
                        "strict": True,
                    },
                }
            }
        case "openai", _:
            raise Unsupported(f"the OpenAI API has no field for a {grammar.kind} grammar")
    raise Unsupported(f"{dialect} cannot carry a {grammar.kind} grammar")  # pragma: no cover
