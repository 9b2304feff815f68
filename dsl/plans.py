"""LLMCompiler plans: the plan language, its grammar built from a tool registry, a sans-I/O
parser that turns a streamed plan into tasks, and ``dsl.plan``.

A plan (Kim et al., "An LLM Compiler for Parallel Function Calling") is one task per line::

    1. search("Legato")
    2. search("Parrot")
    3. compare($1, $2)
    4. join()
    <END_OF_PLAN>

``$n`` as an argument is task ``n``'s output, passed as the value itself (typed, not text);
inside a string (``"$1 + 3"``) it is spliced in as text, where ``n`` is an earlier task (else it
is text: ``"convert $100 to EUR"``). The grammar made by ``plan_grammar``
allows only the registry's tools, each with its own number of arguments of its own literal
types, tasks numbered from 1, ``$n`` only for earlier tasks, and ``join()`` last, so an engine
that takes grammars cannot write a plan the runtime cannot run. ``PlanParser`` checks the same
things for engines that do not (and names the line at fault).
"""

from __future__ import annotations

import inspect
import json
import math
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from dsl import _template
from dsl._builder import current_builder
from dsl._graph import PlanNode, SamplingParams
from dsl._tools import Tool
from dsl._variables import Var
from dsl.errors import ProgramError

__all__ = [
    "ARITHMETIC_WORDS",
    "CONNECTIVES",
    "FUNCTION_WORDS",
    "DEFAULT_JOINER",
    "DEFAULT_PLANNER",
    "END_OF_PLAN",
    "Expression",
    "JoinLine",
    "PlanError",
    "PlanParser",
    "TaskLine",
    "TaskRef",
    "TextWithRefs",
    "ToolSignature",
    "describe_tools",
    "grounding_runs",
    "joiner_grammar",
    "parse_verdict",
    "plan",
    "plan_grammar",
    "question_lists",
    "question_names",
    "tool_words",
]

END_OF_PLAN = "<END_OF_PLAN>"

DEFAULT_PLANNER = """Answer the question with a plan of tool calls, one per line, numbered from 1:
N. tool(arguments)
Arguments are literals (strings in double quotes, numbers, true, false, null, [lists]) or $K,
the result of an earlier task K. Tasks that do not depend on each other run in parallel.
After the last task write "N. join()" and then <END_OF_PLAN> on its own line.

Tools:
{{tools}}
{{context}}
Question: {{question}}"""

DEFAULT_JOINER = """Question: {{question}}

Plan and results:
{{results}}

If the results answer the question, write Finish(the answer). If they do not, write
Replan(what is missing)."""

ArgKind = Literal["str", "expr", "int", "float", "bool", "list", "any"]
"""A parameter's literal kind in a plan; ``expr`` is a string of arithmetic (``Expression``)."""

_ARITHMETIC = "legato: arithmetic over numbers and $k"

Expression = Annotated[str, _ARITHMETIC]
"""The annotation of a tool parameter that takes arithmetic over numbers and ``$k``
(``"($1 + $2) / 2"``, ``"max($1, $2) - min($1, $2)"``, with ``ARITHMETIC_WORDS``): a plan's
grammar holds such an argument to arithmetic over earlier tasks, so a planner cannot pass it a
name (``math("Prague")``), and the runtime passes it a ``str``. ``def math(expression:
dsl.Expression) -> str``."""


@dataclass(frozen=True, slots=True)
class ToolSignature:
    """What a plan may pass to one tool: its parameters' literal kinds, in order, and how many
    are required."""

    name: str
    params: tuple[tuple[str, ArgKind], ...]
    required: int
    summary: str = ""

    @classmethod
    def of(cls, tool: Tool[Any]) -> ToolSignature:
        """The signature of a ``@dsl.tool`` (positional parameters; annotations give kinds)."""
        try:
            hints = typing.get_type_hints(tool.fn, include_extras=True)
        except Exception:
            hints = {}
        params: list[tuple[str, ArgKind]] = []
        required = 0
        for p in tool.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY):
                continue
            params.append((p.name, _kind(hints.get(p.name, Any))))
            if p.default is inspect.Parameter.empty:
                required += 1
        doc = (tool.fn.__doc__ or "").strip().splitlines()
        return cls(tool.name, tuple(params), required, doc[0] if doc else "")

    def describe(self) -> str:
        """``name(a: str, b: int = ...)  summary`` for the planner's prompt (an ``Expression``
        shows as ``str``: the summary says what it holds)."""
        args = ", ".join(
            f"{n}: {'str' if k == 'expr' else k}" + ("" if i < self.required else " = optional")
            for i, (n, k) in enumerate(self.params)
        )
        return f"{self.name}({args})" + (f": {self.summary}" if self.summary else "")


def _kind(annotation: Any) -> ArgKind:
    if typing.get_origin(annotation) is Annotated:
        if _ARITHMETIC in annotation.__metadata__:
            return "expr"
        return _kind(annotation.__origin__)
    origin = typing.get_origin(annotation) or annotation
    if origin is str:
        return "str"
    if origin is bool:
        return "bool"
    if origin is int:
        return "int"
    if origin is float:
        return "float"
    if origin in (list, tuple, Sequence):
        return "list"
    return "any"


def describe_tools(signatures: Iterable[ToolSignature]) -> str:
    """The tool list the planner sees, one per line."""
    return "\n".join(f"- {s.describe()}" for s in signatures)


# -- the grammar ------------------------------------------------------------------------------

_LITERALS = r"""
STRING: /"([^"\\\x00-\x1f]|\\["\\\/bfnrt])*"/
INT: /-?(0|[1-9][0-9]*)/
FLOAT: /-?(0|[1-9][0-9]*)(\.[0-9]+)?/
BOOL: "true" | "false"
NULL: "null"
list: "[]" | "[" any_literal (", " any_literal)* "]"
?any_literal: STRING | FLOAT | BOOL | NULL | list
"""

_KIND_RULE: Mapping[ArgKind, str] = {  # "expr" is each line's own (see plan_grammar)
    "str": "STRING",
    "int": "INT",
    "float": "FLOAT",
    "bool": "BOOL",
    "list": "list",
    "any": "any_literal",
}


ARITHMETIC_WORDS: tuple[str, ...] = ("max", "min", "abs", "round", "sum")
"""Functions a grounded arithmetic argument may call (``"max($1, $2) - min($1, $2)"``)."""

_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*")

CONNECTIVES: tuple[str, ...] = ("of", "in", "for", "and", "to", "on", "at")
"""Words that join quoted runs in a grounded text argument: they tie a name to what is asked of
it (``"stock of Pro Camera"`` for "the difference in stock between Pro Camera and ...", whose
question has no "of") and cannot make up a name. Prepositions and conjunctions only: an article
joins nothing (``"Mini Drum the Smart Robot"`` is two quotes run together)."""


def grounding_runs(*texts: str) -> list[tuple[str, ...]]:
    """The runs of consecutive words of ``texts``, broken at any punctuation: a word is letters
    and digits, with inner hyphens or apostrophes (``ECHO-88`` is one word). A grounded plan's
    text arguments quote them (see ``plan_grammar``, which keeps names whole).

    A sentence's first word may or may not belong to a name after it (``"Compare Mini Drum"``,
    ``"Mini Drum is sold out"``): where a capitalised word follows it, the run without it is
    given too.

    ``"Price of Mini Drum, Eco Lamp."`` gives ``[("Price", "of", "Mini", "Drum"), ("Eco",
    "Lamp")]``."""
    runs: list[tuple[str, ...]] = []
    for text in texts:
        run: list[str] = []
        end = 0
        sentence = False  # the run begins a sentence
        for m in _WORD.finditer(text):
            gap = text[end : m.start()]
            if run and gap.strip():
                runs += _with_sentence_start(run, sentence)
                run = []
            if not run:
                sentence = end == 0 or any(c in gap for c in ".?!")
            run.append(m.group())
            end = m.end()
        if run:
            runs += _with_sentence_start(run, sentence)
    return list(dict.fromkeys(runs))


def question_names(question: str) -> tuple[str, ...]:
    """The names ``question`` writes, in its order: runs of consecutive words (never across
    punctuation) that begin with a capital letter or hold a digit, and the items of its lists
    of single words, even in lower case (``camel, kangaroo and bison``, ``lion or elk``; not
    when an item is a word such as ``the`` or ``then``, ``LIST_STOP_WORDS``), and a word
    after ``of`` that ends a clause (``the top speed of giraffe?``, ``the price of gold and
    ...``), unless a list comes before it in its clause (``history and open problems of
    railways``: a plan writes it once per item). A sentence's first word is left out (it is
    capitalised anyway), and so is a run of the one letter ``I``.

    ``"Compare the price of Mini Drum, PINE-8 and Eco Lamp."`` gives ``("Mini Drum", "PINE-8",
    "Eco Lamp")``; ``"Add the top speed of camel and elk."`` gives ``("camel", "elk")``.
    ``dsl.plan(..., names="in_order")`` asks the plan to write them all, in this order."""
    return tuple(dict.fromkeys(n for _, _, n in _names_at(question)))


def _names_at(question: str) -> list[tuple[int, int, str]]:
    """``question_names``'s names where the question writes them: (start, end, name), in the
    question's order, each time it writes one."""
    found: list[tuple[int, int, str]] = []  # start, end, name
    lists: list[int] = []  # where the lists end
    run: list[re.Match[str]] = []

    def close() -> None:
        if run:
            found.append((run[0].start(), run[-1].end(), " ".join(m.group() for m in run)))
            run.clear()

    end = 0
    for m in _WORD.finditer(question):
        gap = question[end : m.start()]
        word = m.group()
        first = end == 0 or any(c in gap for c in ".?!")
        if run and (gap.strip() or first or not _name_word(word)):
            close()
        if _name_word(word) and not first:
            run.append(m)
        end = m.end()
    close()
    for lst in _LIST.finditer(question):
        words = list(_WORD.finditer(question, lst.start(), lst.end()))
        items = words[:-2] + words[-1:]  # the second to last word is "and" or "or"
        if any(w.group().lower() in LIST_STOP_WORDS for w in items):
            continue
        lists.append(lst.end())
        for w in items:
            if not any(a <= w.start() < b for a, b, _ in found):
                found.append((w.start(), w.end(), w.group()))
    for m in _OF_LAST.finditer(question):
        # "A and open B of X": X is each item's, written once per item
        shared = any(e <= m.start() and not _CLAUSE.search(question, e, m.start()) for e in lists)
        if (
            not shared
            and m.group(1).lower() not in LIST_STOP_WORDS
            and not any(a <= m.start(1) < b for a, b, _ in found)
        ):
            found.append((m.start(1), m.end(1), m.group(1)))
    found.sort()
    return [f for f in found if f[2] != "I"]


_LIST_GAP = re.compile(r",? (?:and|or) |, ")
_AFTER_LIST = re.compile(r"\s*(?:[?.!,;]|$|([A-Za-z]+)\b)")


def question_lists(question: str) -> tuple[tuple[str, ...], ...]:
    """The lists of names ``question`` writes, each in its order: two or more of
    ``question_names``'s names in a row, one ``", "``, ``" and "`` or ``" or "`` (``", and "``,
    ``", or "``) apart, that end a clause or are followed by a function word other than
    ``of`` (``"among camel and elk than ..."``). Not when ``of`` or another word follows: the
    items are then what is asked of a shared thing (``"history and open problems of
    railways"``), or the last is cut short.

    A plan for a question asks the same of each item of a list, one task each, on consecutive
    lines in the list's order (``search("price of Eco Lamp")`` then ``search("price of Mini
    Drum")``); ``dsl.plan(..., names="in_order")`` holds its lines to that (the engine's
    ``alike``). ``"Average the top speed of camel, elk and bison."`` gives ``(("camel", "elk",
    "bison"),)``; ``"the price of Eco Lamp and the stock of Mini Drum"`` gives ``()``."""
    runs: list[list[tuple[int, int, str]]] = []
    for start, end, name in _names_at(question):
        if runs and _LIST_GAP.fullmatch(question[runs[-1][-1][1] : start]):
            runs[-1].append((start, end, name))
        else:
            runs.append([(start, end, name)])
    lists: list[tuple[str, ...]] = []
    for run in runs:
        after = _AFTER_LIST.match(question, run[-1][1])
        word = after.group(1) if after else None
        if len(run) > 1 and after and (word is None or (word in FUNCTION_WORDS and word != "of")):
            lists.append(tuple(n for _, _, n in run))
    return tuple(lists)


def tool_words(question: str, tools: Iterable[str]) -> tuple[str, ...]:
    """The words of ``question`` that name one of ``tools``, in its order: a lower-case word
    that is a part of three letters or more of a tool's name split at ``_`` (``"stock"`` for
    ``get_stock`` in "the stock of Pro Camera"). A plan for the question writes each somewhere
    (calling that tool, or quoting it: ``search("stock of Pro Camera")``), not always in the
    question's order (the weather in the capital of a country looks up the capital first);
    ``dsl.plan(..., names=...)`` asks for them in any order."""
    parts = {p for name in tools for p in name.split("_") if len(p) >= 3}
    return tuple(dict.fromkeys(m.group() for m in _WORD.finditer(question) if m.group() in parts))


LIST_STOP_WORDS = frozenset(
    (
        "a", "an", "the", "this", "that", "these", "those", "its", "their", "his", "her", "my",
        "our", "your", "all", "each", "every", "both", "which", "what", "who", "how", "when",
        "where", "why", "then", "also", "is", "are", "was", "were", "be", "of", "in", "for",
        "to", "on", "at", "by", "from", "with", "than",
    )
)  # fmt: skip
"""Words that are never an item of a list in ``question_names`` (``the price and the stock``
is no list of names)."""
_W = _WORD.pattern
_LIST = re.compile(rf"\b{_W}(?:, {_W})*,? (?:and|or) {_W}\b")
_CLAUSE = re.compile(r"[,;.?!]")
_OF_LAST = re.compile(rf"\bof ({_W})(?=\s*(?:[?.!,;]|$|and\b|or\b))")


def _name_word(word: str) -> bool:
    return _capital(word) or any(c.isdigit() for c in word)


def _with_sentence_start(run: list[str], sentence: bool) -> list[tuple[str, ...]]:
    if sentence and len(run) > 1 and _capital(run[0]) and _capital(run[1]):
        return [tuple(run), tuple(run[1:])]
    return [tuple(run)]


def _capital(word: str) -> bool:
    return word[:1].isupper()


_SPAN_WORDS = 6
"""The most consecutive words one quote takes: a name is shorter, and the grammar grows with the
square of it (a 100-word replan context compiles in about half a second at 6)."""


def _span_terminals(runs: Sequence[Sequence[str]]) -> tuple[str | None, str | None]:
    """Two Lark terminals matching stretches of one to ``_SPAN_WORDS`` consecutive words of a
    run (one space apart) that keep names whole (they neither start nor end between two
    capitalised words: ``"Mini Drum"``, never ``"Mini"`` or ``"Drum"`` alone; a name longer
    than the cap may be cut at it) and end at the end of a name: those that end on a word that
    is no name nor one of ``FUNCTION_WORDS``, and those that end on a name (a word with a
    capital or a digit). None for a kind with no stretch."""
    ends: tuple[dict[str, None], dict[str, None]] = ({}, {})
    for run in runs:
        # glued[k]: word k continues a name begun before it
        glued = [k > 0 and _capital(run[k - 1]) and _capital(run[k]) for k in range(len(run))]
        for i in range(len(run)):
            if glued[i]:
                continue
            last = min(len(run), i + _SPAN_WORDS) - 1
            # a name ends the stretch: nothing but the rest of the name follows it
            last = next(
                (k for k in range(i, last) if _name_word(run[k]) and not glued[k + 1]), last
            )
            for kind, alts in enumerate(ends):
                stretch: str | None = None  # the stretches from word k on that may end
                for k in range(last, i - 1, -1):
                    word = json.dumps((" " if k > i else "") + run[k])
                    end = (
                        _name_word(run[k]) == bool(kind)
                        and (kind or run[k] not in FUNCTION_WORDS)
                        and (k == last or not glued[k + 1])
                    )
                    if stretch is None:
                        stretch = word if end else None
                    else:
                        stretch = f"{word} ({stretch})" + ("?" if end else "")
                if stretch is not None:
                    alts[stretch] = None
    return (" | ".join(ends[0]) or None, " | ".join(ends[1]) or None)


FUNCTION_WORDS = frozenset(
    (
        "a", "an", "the", "of", "in", "for", "and", "or", "to", "on", "at", "by", "from", "with",
        "than", "between", "among", "is", "are", "was", "were", "be", "do", "does", "what",
        "which", "who", "how", "when", "where", "why",
    )
)  # fmt: skip
"""Lower-case words a grounded quote never ends on (an article, a preposition, a conjunction, a
form of "be" or "do", a question word): a quote ending there is cut short
(``"top speed of"``, which a connective then runs on: ``"top speed of for coyote"``)."""


def _text(ref: str | None, *, words: bool, names: bool) -> str:
    """A grounded text: stretches (``GWORDS`` ending on a word that is no name, if ``words``)
    and ``ref``s joined by ``GCONN``, the last of which may be a stretch that ends on a name
    (``GNAME``, if ``names``): a name ends the quote (``"price of Mini Drum"``, never ``"Mini
    Drum in Eco Lamp"``). One of ``ref``, ``words`` and ``names`` must be given."""
    atoms = [a for a in ("GWORDS" if words else None, ref) if a]
    if not atoms:
        return "GNAME"
    atom = atoms[0] if len(atoms) == 1 else f"({' | '.join(atoms)})"
    last = ' (" " GCONN " " GNAME)? | GNAME' if names else ""
    return f'{atom} (" " GCONN " " {atom})*{last}'


def _arithmetic_rules() -> list[str]:
    """The pieces of arithmetic, shared by every line: a function call's head, one operator or
    bracket, a number."""
    fns = " | ".join(json.dumps(f) for f in ARITHMETIC_WORDS)
    return [
        f'GFN: ({fns}) "("',
        r"GOP: /[-+*\/(), ]/",
        r"GNUM: /[0-9]+(\.[0-9]+)?/",
        "GX: GFN | GOP | GNUM",
    ]


def _arithmetic(ref: str | None) -> str:
    """Arithmetic over numbers and the ``$k`` of terminal ``ref``; a ``$k`` is never followed by
    a digit (``$1`` then ``2`` would read ``$12``)."""
    if ref is None:
        return "GX+"
    return f"(GX | {ref} (GFN | GOP))+ {ref}? | {ref}"


def _grounded_rules(runs: Sequence[Sequence[str]]) -> tuple[list[str], bool, bool]:
    """The shared rules of grounded strings: ``GWORDS`` and ``GNAME`` (stretches of the runs'
    consecutive words, see ``_span_terminals``) and ``GCONN`` (``CONNECTIVES``); none without
    words. Also ``STRING``, a grounded string with any ``$k``, for strings inside lists. Then
    whether there are ``GWORDS`` and ``GNAME``."""
    runs = [[w for w in run if _WORD.fullmatch(w)] for run in runs]
    words, names = _span_terminals([r for r in runs if r])
    rules = [r"GREF: /\$[1-9][0-9]*/", f"GEXPR: {_arithmetic('GREF')}"]
    if words is None and names is None:
        return [*rules, 'STRING: "\\"" GEXPR "\\""'], False, False
    conns = " | ".join(json.dumps(w) for w in CONNECTIVES)
    rules += [f"GWORDS: {words}"] if words else []
    rules += [f"GNAME: {names}"] if names else []
    text = _text("GREF", words=words is not None, names=names is not None)
    rules += [f"GCONN: {conns}", f"GTEXT: {text}", 'STRING: "\\"" (GTEXT | GEXPR) "\\""']
    return rules, words is not None, names is not None


def _line_strings(
    i: int, *, expr: bool, grounded: bool, words: bool = False, names: bool = False
) -> list[str]:
    """Task ``i``'s own string terminals, whose ``$k`` are earlier tasks only: ``EXPR{i}``
    (an ``Expression``: arithmetic) when ``expr``, and when ``grounded`` ``STRING{i}``: a
    grounded text (``_text``: stretches of the runs, ``GWORDS`` and ``GNAME`` as there are,
    and ``$k`` joined by ``GCONN``), or arithmetic."""
    ref = f"GREF{i}" if i > 1 else None
    out = [f"{ref}: " + " | ".join(f'"${k}"' for k in range(1, i))] if ref else []
    out.append(f"GEXPR{i}: {_arithmetic(ref)}")
    if expr:
        out.append(f'EXPR{i}: "\\"" GEXPR{i} "\\""')
    if grounded and (words or names):
        out.append(f"GTEXT{i}: {_text(ref, words=words, names=names)}")
        out.append(f'STRING{i}: "\\"" (GTEXT{i} | GEXPR{i}) "\\""')
    elif grounded:
        out.append(f'STRING{i}: "\\"" GEXPR{i} "\\""')
    return out


def plan_grammar(
    signatures: Sequence[ToolSignature],
    max_tasks: int = 8,
    *,
    runs: Sequence[Sequence[str]] | None = None,
) -> str:
    """A Lark grammar of the plans over ``signatures``: at most ``max_tasks`` tasks numbered
    from 1, each calling a known tool with an allowed number of arguments of its kinds or
    ``$k`` for an earlier task ``k``, then ``N. join()`` and ``<END_OF_PLAN>``. An
    ``Expression`` parameter takes arithmetic over numbers and earlier tasks' ``$k`` only.

    With ``runs`` (a grounded plan; see ``grounding_runs``), every string argument either
    quotes the runs' consecutive words and ``$k``, joined by ``CONNECTIVES``, a name (a
    capitalised word or one with a digit) coming last, or is arithmetic over numbers and ``$k``
    (with ``ARITHMETIC_WORDS``), each ``$k`` an earlier task's: the model cannot invent,
    misspell, repeat or run together names, nor write past the name it looks up (``"price of
    Mini Drum"``, never ``"Mini Drum in Eco Lamp"`` or ``"Mini Drum and Eco Lamp"``), nor end
    a stretch on one of ``FUNCTION_WORDS`` (``"top speed of for coyote"``)."""
    if not signatures:
        raise ProgramError("a plan needs at least one tool")
    kinds = {kind for sig in signatures for _, kind in sig.params}
    grounded = runs is not None and "str" in kinds
    shared, words, names = _grounded_rules(runs) if runs is not None else ([], False, False)
    lines = ["start: t1"]
    strings: list[str] = []
    for i in range(1, max_tasks + 1):
        nxt = f"t{i + 1} | j{i + 1}" if i < max_tasks else f"j{i + 1}"
        lines.append(f'j{i}: "{i}. join()\\n{END_OF_PLAN}"')
        lines.append(f't{i}: "{i}. " call{i} "\\n" ({nxt})')
        ref = " | ".join(f'"${k}"' for k in range(1, i))
        if ref:
            lines.append(f"ref{i}: {ref}")
        own = {"expr": f"EXPR{i}", "str": f"STRING{i}" if grounded else "STRING"}
        calls = []
        for sig in signatures:
            for arity in range(sig.required, len(sig.params) + 1):
                args = []
                for _, kind in sig.params[:arity]:
                    rule = own.get(kind) or _KIND_RULE[kind]
                    args.append(f"({rule} | ref{i})" if ref else rule)
                inner = ' ", " '.join(args)
                calls.append(f'"{sig.name}(" {inner} ")"' if args else f'"{sig.name}()"')
        lines.append(f"call{i}: " + "\n    | ".join(calls))
        if "expr" in kinds or grounded:
            strings += _line_strings(
                i, expr="expr" in kinds, grounded=grounded, words=words, names=names
            )
    lines.append(f"j{max_tasks + 1}: " + f'"{max_tasks + 1}. join()\\n{END_OF_PLAN}"')
    literals = _LITERALS
    if runs is not None:
        literals = "\n".join(
            line for line in _LITERALS.splitlines() if not line.startswith("STRING:")
        )
    pieces = _arithmetic_rules() if "expr" in kinds or runs is not None else []
    return "\n".join([*lines, literals, *pieces, *shared, *strings]) + "\n"


def joiner_grammar(*, may_replan: bool) -> str:
    """The joiner's answer: ``Finish(answer)``, or also ``Replan(reason)`` while replans
    remain."""
    alternatives = ['"Finish(" TEXT ")"'] + (['"Replan(" TEXT ")"'] if may_replan else [])
    return "start: " + " | ".join(alternatives) + "\nTEXT: /[^\\n]+/\n"


def parse_verdict(text: str) -> tuple[Literal["finish", "replan"], str]:
    """``("finish", answer)`` or ``("replan", reason)`` from the joiner's text; an answer
    without either marker is taken as the final answer."""
    t = text.strip()
    m = re.fullmatch(r"(Finish|Replan)\((.*)\)", t, re.DOTALL)
    if m is None:
        return "finish", t
    return ("finish" if m.group(1) == "Finish" else "replan"), m.group(2).strip()


# -- the streaming parser -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRef:
    """``$k`` as an argument: task ``k``'s output."""

    task: int


@dataclass(frozen=True, slots=True)
class TextWithRefs:
    """A string argument with ``$k`` inside: text and ``TaskRef``s, joined as text."""

    parts: tuple[str | TaskRef, ...]


@dataclass(frozen=True, slots=True)
class TaskLine:
    """A complete task line: its number, tool and arguments, and the tasks it reads."""

    index: int
    tool: str
    args: tuple[Any, ...]
    deps: tuple[int, ...]
    line: int


@dataclass(frozen=True, slots=True)
class JoinLine:
    """The ``N. join()`` line: the plan's tasks are all written."""

    index: int
    line: int


@dataclass(frozen=True, slots=True)
class PlanError:
    """A line the runtime cannot run: reachable where the engine ignores the grammar, or where
    the plan was cut short (``max_tokens``) inside a line or before its ``join()``."""

    line: int
    text: str
    message: str

    def __str__(self) -> str:
        text = self.text if len(self.text) <= _SHOWN else self.text[: _SHOWN - 3] + "..."
        return f"plan line {self.line} ({text!r}): {self.message}"


_SHOWN = 120
"""The most characters of a bad line a ``PlanError`` shows (a model may write a huge one)."""


PlanEvent = TaskLine | JoinLine | PlanError

_TASK = re.compile(r"\s*(\d+)\.\s*([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\s*(<END_OF_PLAN>)?\s*")
_REF_IN_TEXT = re.compile(r"\$(\d+)")

_MAX_TASK_DIGITS = 4
"""The most digits of a task number (``N.`` or ``$k``): a plan has at most 64 tasks, and a
model-written number of thousands of digits must not reach ``int()`` (Python refuses to convert
more than 4300)."""
_MAX_NUMBER = 64
"""The most characters of a number literal in a plan."""
_MAX_DEPTH = 16
"""The most nested lists in one argument (the reader recurses)."""
_CUT = "the plan stops there: was it cut short by max_tokens?"


class _Args:
    """A tiny reader of argument lists: JSON literals, lists, and ``$k``.

    A bare ``$k`` is always a task reference. Inside a string, ``$k`` is one only where ``k``
    is an earlier task (``1 <= k <= earlier``); otherwise it is text (``"convert $100 to
    EUR"`` in task 2 keeps its price; ``"the price in $1"`` reads task 1)."""

    def __init__(self, text: str, earlier: int) -> None:
        self.text = text
        self.pos = 0
        self.earlier = earlier

    def error(self, message: str) -> ValueError:
        return ValueError(f"{message} at column {self.pos + 1} of the arguments")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def _earlier(self, digits: str) -> bool:
        """Whether ``digits`` number an earlier task."""
        return len(digits) <= _MAX_TASK_DIGITS and 1 <= int(digits) <= self.earlier

    def task(self, digits: str) -> TaskRef:
        if len(digits) > _MAX_TASK_DIGITS:
            raise self.error(f"${digits[:_MAX_TASK_DIGITS]}... is no task number")
        return TaskRef(int(digits))

    def value(self, depth: int = 0) -> Any:
        self.skip()
        t = self.text[self.pos :]
        if t.startswith("$"):
            m = re.match(r"\$(\d+)", t)
            if m is None:
                raise self.error("'$' must be followed by a task number")
            ref = self.task(m.group(1))
            self.pos += m.end()
            return ref
        if t.startswith('"'):
            m = re.match(r'"(?:[^"\\]|\\.)*"', t)
            if m is None:
                raise self.error("unterminated string")
            self.pos += m.end()
            s: str = json.loads(m.group(0))
            refs = [r for r in _REF_IN_TEXT.finditer(s) if self._earlier(r.group(1))]
            if refs:
                parts: list[str | TaskRef] = []
                last = 0
                for r in refs:
                    parts += [s[last : r.start()], self.task(r.group(1))]
                    last = r.end()
                parts.append(s[last:])
                return TextWithRefs(tuple(p for p in parts if p != ""))
            return s
        if t.startswith("["):
            if depth == _MAX_DEPTH:
                raise self.error(f"lists nested more than {_MAX_DEPTH} deep")
            self.pos += 1
            items: list[Any] = []
            self.skip()
            if self.text[self.pos : self.pos + 1] == "]":
                self.pos += 1
                return items
            while True:
                items.append(self.value(depth + 1))
                self.skip()
                c = self.text[self.pos : self.pos + 1]
                self.pos += 1
                if c == "]":
                    return items
                if c != ",":
                    raise self.error("expected ',' or ']' in a list")
        for word, val in (("true", True), ("false", False), ("null", None)):
            if t.startswith(word):
                self.pos += len(word)
                return val
        m = re.match(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", t)
        if m is None:
            raise self.error(f"cannot read {t[:12]!r}")
        if m.end() > _MAX_NUMBER:
            raise self.error(f"a number of more than {_MAX_NUMBER} characters")
        number = float(m.group(0)) if (m.group(1) or m.group(2)) else int(m.group(0))
        if not math.isfinite(number):
            raise self.error(f"{m.group(0)} is out of range")
        self.pos += m.end()
        return number

    def all(self) -> list[Any]:
        self.skip()
        if self.pos == len(self.text):
            return []
        out = [self.value()]
        while True:
            self.skip()
            if self.pos == len(self.text):
                return out
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1
            out.append(self.value())


def _refs(value: Any) -> list[int]:
    if isinstance(value, TaskRef):
        return [value.task]
    if isinstance(value, TextWithRefs):
        return [p.task for p in value.parts if isinstance(p, TaskRef)]
    if isinstance(value, list):
        return [k for v in value for k in _refs(v)]
    return []


_ARITHMETIC_TEXT = re.compile(
    r"(?:(?:" + "|".join(ARITHMETIC_WORDS) + r")\(|[-+*/(), ]|[0-9]+(?:\.[0-9]+)?"
    r"|\$[1-9][0-9]*(?![0-9]))+"
)


def _arithmetic_arg(arg: Any) -> bool:
    """``arg`` may be passed as an ``Expression``: ``$k``, or arithmetic text (what the
    grammar's ``EXPR`` terminals allow)."""
    if isinstance(arg, TaskRef):
        return True
    if isinstance(arg, TextWithRefs):
        arg = "".join(p if isinstance(p, str) else f"${p.task}" for p in arg.parts)
    return isinstance(arg, str) and _ARITHMETIC_TEXT.fullmatch(arg) is not None


_KIND_WORDS: Mapping[ArgKind, str] = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
}


def _fits(kind: ArgKind, arg: Any) -> bool:
    """Whether ``arg`` is a literal the grammar's rule for ``kind`` allows (a ``$k`` fits every
    kind: its value is the task's output, typed at run time)."""
    if isinstance(arg, TaskRef) or kind in ("any", "expr"):
        return True
    if kind == "str":
        return isinstance(arg, str | TextWithRefs)
    if kind == "int":
        return type(arg) is int
    if kind == "float":
        return type(arg) in (int, float)
    if kind == "bool":
        return type(arg) is bool
    return isinstance(arg, list)


def _text_ref(arg: Any) -> str | None:
    """A ``$k`` that a string argument kept as text (no earlier task ``k``), if any."""
    parts = arg.parts if isinstance(arg, TextWithRefs) else (arg,)
    for p in parts:
        if isinstance(p, str) and (m := _REF_IN_TEXT.search(p)):
            return m.group(0)
    return None


@dataclass
class PlanParser:
    """Turns a plan's text, fed in chunks of any size, into ``TaskLine``s the moment each line
    is complete (so a task can start before the plan is finished), then a ``JoinLine``.
    Sans-I/O: ``feed`` and ``close`` return events; nothing else happens.

    Checks each line: numbering from 1 without gaps, a known tool, the number of arguments,
    arithmetic for an ``Expression``, ``$k`` only for an earlier task, and bounds on what a
    model may write (task numbers of at most four digits, numbers of at most 64 characters,
    lists nested at most 16 deep), so any text gives events, never an exception. A line that
    fails gives a ``PlanError`` naming it, and the parser stops (``done``): no task after it
    comes out. The tasks of the lines before it have come out already, and a runtime that
    starts each as it comes (``dsl.plan``) may have started them: a bad line does not undo
    them.
    """

    tools: Mapping[str, ToolSignature]
    max_tasks: int = 8
    done: bool = False
    joined: bool = False
    _buffer: str = ""
    _line: int = 0
    _tasks: int = 0
    _events: list[PlanEvent] = field(default_factory=list)

    def feed(self, text: str) -> list[PlanEvent]:
        """Read ``text``; the events of the lines it completes."""
        if self.done:
            return []
        self._buffer += text
        out: list[PlanEvent] = []
        while "\n" in self._buffer and not self.done:
            line, self._buffer = self._buffer.split("\n", 1)
            out += self._read(line)
        return out

    def close(self) -> list[PlanEvent]:
        """The stream has ended: the last line's events, and an error if no ``join()`` came
        (an error in a last line with no newline, or a missing ``join()``, says that the plan
        may have been cut short)."""
        out: list[PlanEvent] = []
        if not self.done and self._buffer.strip():
            out += [
                replace(e, message=f"{e.message} ({_CUT})") if isinstance(e, PlanError) else e
                for e in self._read(self._buffer)
            ]
        self._buffer = ""
        if not self.joined and not any(isinstance(e, PlanError) for e in out) and not self.done:
            out.append(PlanError(self._line, "", f"the plan ended without a join() line ({_CUT})"))
        self.done = True
        return out

    def _fail(self, text: str, message: str) -> list[PlanEvent]:
        self.done = True
        return [PlanError(self._line, text, message)]

    def _read(self, raw: str) -> list[PlanEvent]:
        self._line += 1
        text = raw.strip()
        if not text or text.startswith("Thought:"):
            return []
        if text == END_OF_PLAN:
            if not self.joined:
                return self._fail(text, f"{END_OF_PLAN} before join()")
            self.done = True
            return []
        if self.joined:
            return self._fail(text, "a line after join()")
        m = _TASK.fullmatch(text)
        if m is None:
            return self._fail(text, "not a task line 'N. tool(arguments)'")
        digits, tool, args_text, end = m.group(1), m.group(2), m.group(3), m.group(4)
        if len(digits) > _MAX_TASK_DIGITS:
            return self._fail(
                text, f"a task number of {len(digits)} digits, expected {self._tasks + 1}"
            )
        index = int(digits)
        if index != self._tasks + 1:
            return self._fail(text, f"task number {index}, expected {self._tasks + 1}")
        if tool == "join":
            if args_text.strip():
                return self._fail(text, "join() takes no arguments")
            self.joined = True
            self.done = bool(end)
            return [JoinLine(index, self._line)]
        if index > self.max_tasks:
            return self._fail(text, f"more than {self.max_tasks} tasks")
        sig = self.tools.get(tool)
        if sig is None:
            known = ", ".join(sorted(self.tools))
            return self._fail(text, f"unknown tool {tool!r} (tools: {known})")
        try:
            args = _Args(args_text, earlier=index - 1).all()
        except ValueError as exc:
            return self._fail(text, str(exc))
        if not sig.required <= len(args) <= len(sig.params):
            want = (
                str(sig.required)
                if sig.required == len(sig.params)
                else f"{sig.required} to {len(sig.params)}"
            )
            return self._fail(text, f"{tool} takes {want} arguments, got {len(args)}")
        for (param, kind), arg in zip(sig.params, args, strict=False):
            if kind == "expr" and (ref := _text_ref(arg)):  # arithmetic has no "$" of its own
                return self._fail(text, f"{ref[:12]} does not refer to an earlier task")
            if not _fits(kind, arg):
                got = repr(arg) if len(repr(arg)) <= 40 else repr(arg)[:37] + "..."
                return self._fail(text, f"{tool}'s {param} takes {_KIND_WORDS[kind]}, got {got}")
            if kind == "expr" and not _arithmetic_arg(arg):
                return self._fail(
                    text, f"{tool}'s {param} takes arithmetic over numbers and $k, got {arg!r}"
                )
        deps = sorted({k for a in args for k in _refs(a)})
        bad = [k for k in deps if not 1 <= k < index]
        if bad:
            return self._fail(text, f"${bad[0]} does not refer to an earlier task")
        self._tasks = index
        return [TaskLine(index, tool, tuple(args), tuple(deps), self._line)]


# -- the DSL call ---------------------------------------------------------------------------

_PLAN_SETTINGS = frozenset(
    {
        "tools", "planner", "joiner", "max_replans", "max_tasks", "max_tokens", "temperature",
        "seed", "model", "name", "timeout", "retries", "grounded", "names",
    }
)  # fmt: skip


def plan(
    question: Any,
    /,
    *,
    tools: Sequence[Tool[Any]],
    planner: str = DEFAULT_PLANNER,
    joiner: str = DEFAULT_JOINER,
    max_replans: int = 1,
    max_tasks: int = 8,
    grounded: bool = False,
    names: Literal["free", "all", "in_order"] = "free",
    max_tokens: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    **inputs: Any,
) -> Var[str]:
    """Answer ``question`` with an LLMCompiler plan over ``tools``; returns a ``Var[str]`` with
    the final answer at once.

    The planner writes the plan under a grammar made from the tools' signatures; each task runs
    the moment its line is complete and the tasks it reads are done, while the plan is still
    being written (independent tasks in parallel). The tasks appear in the program's graph as
    tool nodes. The joiner then answers ``Finish(answer)`` or ``Replan(reason)``; a replan shows
    the planner the previous plan, its results and its errors (at most ``max_replans`` times;
    the last joiner may only finish). A failed task fails its dependants and is reported to the
    joiner; nothing waits forever.

    A plan with a line the runtime cannot run (where the engine ignores the grammar, or where
    ``max_tokens`` cut the plan short) is cut at that line, and the tasks of the lines before
    it have already started: they run to their end and the planner is asked again with their
    results and the error, or, when no replan is left, those still running are cancelled and
    the node fails with a ``ConstraintViolation`` naming the bad line (its ``error`` is the
    ``PlanError``) without asking the joiner. Whenever the node fails (a rejected last plan,
    the planner's stream breaking or timing out), the tasks it started that still run are
    cancelled (a sync tool's thread cannot be stopped: it runs to its end, its result dropped).
    ``timeout`` (else the orchestrator's) bounds each planner stream as a whole and each
    joiner attempt.

    Args:
        question: the question (a value or a ``Var``).
        tools: the ``@dsl.tool`` functions the plan may call.
        planner: the planner's template; ``{{question}}``, ``{{tools}}`` (the signatures) and
            ``{{context}}`` (previous rounds) are filled in, other placeholders from ``inputs``.
        joiner: the joiner's template with ``{{question}}`` and ``{{results}}``.
        max_replans: how many new plans the joiner may ask for.
        max_tasks: the most tasks in one plan (the grammar enforces it).
        grounded: string arguments quote the question and previous rounds (stretches of
            consecutive words, and ``$k``, joined by ``CONNECTIVES``, a name ending the quote:
            ``"price of Mini Drum"``)
            or are arithmetic over numbers and ``$k`` (``ARITHMETIC_WORDS``): a small model
            then cannot misspell a name it copies, cut it inside a word, repeat a word of it or
            write a name the question never had. Leave it off when a tool needs other words or
            punctuation.
        names: ``"all"``: the first plan must write every name of the question
            (``question_names``: capitalised runs, words with digits, items of lists of single
            words) and every word of it that names one of ``tools`` (``tool_words``: "stock"
            for ``get_stock``); ``"in_order"``: the names in the question's order (the tool
            words in any), and each list of names (``question_lists``) on consecutive task
            lines of one form (``LLMRequest.alike``: ``search("top speed of elk")`` after
            ``search("top speed of camel")``). The embedded engine searches for such a plan
            (``LLMRequest.require`` and ``require_order``): a name written before an earlier
            one is rewound at once, a plan that would end without one is rewound to its least
            sure choice, within a bound; it then holds the plan's text until its end, so tasks
            start once the plan is written, not line by line. Other engines ignore it. For
            small models on questions that name each thing the plan looks up.
        max_tokens, temperature, seed, model: settings of the planner and joiner calls.
        name, timeout, retries: as for ``dsl.gen``.
    """
    where = f"dsl.plan(name={name!r})" if name else "dsl.plan"
    tools = list(tools)
    if not tools or any(not isinstance(t, Tool) for t in tools):
        raise ProgramError(f"{where}: tools must be a non-empty list of @dsl.tool functions")
    if len({t.name for t in tools}) != len(tools):
        raise ProgramError(f"{where}: two tools share a name")
    if "join" in {t.name for t in tools}:
        raise ProgramError(f"{where}: 'join' is the plan's own last line; rename that tool")
    if names not in ("free", "all", "in_order"):
        raise ProgramError(f"{where}: names must be 'free', 'all' or 'in_order', got {names!r}")
    if max_replans < 0 or not 1 <= max_tasks <= 64:
        raise ProgramError(f"{where}: max_replans must be >= 0 and max_tasks in 1..64")
    clash = sorted(set(inputs) & (_PLAN_SETTINGS | {"question", "tools", "context", "results"}))
    if clash:
        raise ProgramError(f"{where}: {clash[0]!r} is filled in by the plan; rename that input")
    for label, template, own in (
        ("planner", planner, {"question", "tools", "context"}),
        ("joiner", joiner, {"question", "results"}),
    ):
        if not isinstance(template, str):
            raise ProgramError(f"{where}: the {label} template must be a str")
        unknown = [p for p in _template.placeholders(template) if p not in own | set(inputs)]
        if unknown:
            raise ProgramError(
                f"{where}: the {label} template's placeholder {{{{{unknown[0]}}}}} has no input"
            )
    unused = [
        k
        for k in inputs
        if k not in {*_template.placeholders(planner), *_template.placeholders(joiner)}
    ]
    if unused:
        raise ProgramError(f"{where}: input {unused[0]!r} is used by neither template")
    builder = current_builder("dsl.plan()")
    for t in tools:
        builder.register_tool(t)
    refs = tuple(
        (k, builder.to_refs(v, where)) for k, v in {"question": question, **inputs}.items()
    )
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    return builder.add(
        PlanNode,
        label="plan",
        name=name,
        type=str,
        inputs=refs,
        tools=tuple(t.name for t in tools),
        planner=planner,
        joiner=joiner,
        max_replans=max_replans,
        max_tasks=max_tasks,
        grounded=grounded,
        names=names,
        params=params,
        model=model,
        timeout=timeout,
        retries=retries,
    )
