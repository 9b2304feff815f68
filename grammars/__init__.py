"""Grammar files (``*.lark``) shipped with Legato, loaded by name, and a lint for grammars that
would make a token mask slow.

Shipped grammars (``names()``):

- ``json``: JSON in ``json.dumps``' default layout (``", "`` and ``": "``, no other whitespace);
- ``sqlite_select``: one SQLite ``SELECT`` with uppercase keywords and single spaces; its
  ``table_name``, ``column_name``, ``table_alias``, ``column_alias``, ``string_literal`` and
  ``number`` rules are the ones to replace to specialise it for one database;
- ``llmcompiler_plan``: an LLMCompiler plan (numbered task lines, ``N. join()``,
  ``<END_OF_PLAN>``); ``tool_name`` is the rule to specialise;
- ``asynclm_cml``: AsyncLM's CML text, free text and ``[CALL] id [HEAD] fn(args) [END]`` /
  ``[TRAP][END]`` frames, where the model cannot write ``[INTR]``; ``fn_name`` is the rule to
  specialise;
- ``tool_call``: ``{"name": "<tool>", "arguments": {...}}``; ``tool_name`` is the rule to
  specialise.

Each file says at its top what it accepts and which rules to replace; ``specialise`` replaces
them (``specialise(load("sqlite_select"), {"table_name": ["singer", "concert"]})``).

Lark features a Legato grammar may use. Grammars reach engines in two ways: as Lark text (read by
xgrammar in the embedded engine) or translated to GBNF by ``orchestrator.constrain.lark_to_gbnf``
(llama.cpp, vLLM, SGLang, and xgrammar's EBNF reader), and every output is re-parsed by lark's
Earley parser. Supported everywhere: rules and terminals, string literals (with the ``i`` flag),
``"a".."z"`` ranges, regexps without lookarounds, backreferences or anchors, alternatives,
grouping, ``[x]``, ``x?``, ``x*``, ``x+``, ``x ~ n``, ``x ~ n..m``, aliases, ``?rule``, ``_rule``,
``!rule``, ``%import`` (``common.X`` and the like), ``%override``, ``%extend``. Not supported:
``%ignore`` (write separators into the rules instead), ``%declare``, templates, and rule or
terminal priorities (the Earley parser's language does not depend on them, and GBNF has none).

The lint (``lint``) flags the shapes that make xgrammar's per-token mask slow: measured here,
1-4 us per token at a 32k vocabulary for grammars with fixed separators, but 10-60 ms for a
grammar with an optional element before a rule inside a loop, the shape that ``%ignore WS``
produces between every two symbols (DESIGN.md, "XGrammar"). It also flags loops over several
parts inside a terminal (``NAME: (LETTER | "_")+``): xgrammar's own Lark reader makes each part
a rule and takes milliseconds a token inside such a loop (measured: 11 ms against 6 us for
``NAME: /[A-Za-z_]+/`` on a 32k BPE vocabulary); ``lark_to_gbnf`` writes terminals inline and
flattens loop bodies, so the GBNF route does not have that cost.
"""

from __future__ import annotations

import importlib.resources
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lark.load_grammar
from lark import Token, Tree
from lark.grammar import NonTerminal, Terminal

from grammars._specialise import literal, specialise

__all__ = ["LintFinding", "lint", "literal", "load", "names", "path", "specialise"]

_SUFFIX = ".lark"


def names() -> list[str]:
    """The names of the shipped grammars, sorted (each loads with ``load(name)``)."""
    files = importlib.resources.files(__name__)
    return sorted(
        f.name[: -len(_SUFFIX)] for f in files.iterdir() if f.is_file() and f.name.endswith(_SUFFIX)
    )


def _check(name: str) -> str:
    known = names()
    if name not in known:
        raise LookupError(f"no shipped grammar named {name!r}; known: {', '.join(known)}")
    return name + _SUFFIX


def load(name: str) -> str:
    """The Lark text of the shipped grammar ``name``.

    Raises:
        LookupError: there is no such grammar; the message lists the known names.
    """
    return importlib.resources.files(__name__).joinpath(_check(name)).read_text(encoding="utf-8")


def path(name: str) -> pathlib.Path:
    """The file of the shipped grammar ``name`` (for tools that want a path, e.g. ``lark.Lark.
    open``). The package must be installed as files, as pip installs it.

    Raises:
        LookupError: there is no such grammar; the message lists the known names.
    """
    resource = importlib.resources.files(__name__).joinpath(_check(name))
    if not isinstance(resource, pathlib.Path):
        raise LookupError(f"grammar {name!r} is not a file on disk here ({resource})")
    return resource


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One shape in a grammar that makes a token mask slow: where and why."""

    rule: str
    """The rule or terminal it is in (``"%ignore"`` for an ``%ignore`` directive)."""
    line: int
    """The 1-based line of the grammar text."""
    message: str
    """What is slow and what to write instead."""


# A definition at the start of a line: `name:`, `?name:`, `NAME.2:`, `name{x}:`, `%override ...`.
_DEFINITION = re.compile(
    r"^[ \t]*(?:%(?:override|extend)[ \t]+)?[!?]*(_?[A-Za-z][_A-Za-z0-9]*)"
    r"[ \t]*(?:\{[^}\n]*\})?[ \t]*(?:\.[ \t]*-?\d+)?[ \t]*:",
    re.MULTILINE,
)
_IGNORE = re.compile(r"^[ \t]*%ignore\b[ \t]*(.*)$", re.MULTILINE)


def lint(text: str) -> list[LintFinding]:
    """The shapes in Lark grammar ``text`` that make xgrammar's token mask slow, in line order.

    Flags every ``%ignore`` directive, and every loop (``x*``, ``x+``, ``x ~ n..m``, or a rule
    that refers to itself) whose body starts with an optional element (``x?``, ``[x]``, ``x*``,
    or a group that may be empty) followed by a rule or terminal reference, like
    ``items: (WS? item)*``. Write a fixed separator instead: ``items: item (" " item)*``.
    Also flags, inside a terminal, a loop over anything but one literal, regexp or range
    (``NAME: (LETTER | "_")+``): write such a terminal as one regexp (``NAME: /[A-Za-z_]+/``).
    Only the definitions written in ``text`` are checked, not imported ones.

    Raises:
        lark.exceptions.GrammarError: ``text`` is not a Lark grammar.
    """
    findings: list[LintFinding] = []
    for m in _IGNORE.finditer(text):
        findings.append(
            LintFinding(
                "%ignore",
                _line_of(text, m.start()),
                f"%ignore {m.group(1).strip()}: xgrammar allows the ignored terminal before "
                "every symbol, an optional element before a rule in a loop (10-60 ms per "
                "token); write the separators into the rules",
            )
        )
    builder = lark.load_grammar.GrammarBuilder()
    builder.load_grammar(text, "<string>")
    lines: dict[str, int] = {}
    for m in _DEFINITION.finditer(text):
        lines.setdefault(m.group(1), _line_of(text, m.start(1)))
    for name, definition in builder._definitions.items():
        if name not in lines or definition.tree is None:
            continue  # imported, or declared
        findings.extend(
            _lint_definition(str(name), lines[name], definition.tree, is_term=definition.is_term)
        )
    return sorted(findings, key=lambda f: (f.line, f.rule))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _lint_definition(
    name: str, line: int, tree: Tree[Any], *, is_term: bool
) -> Iterator[LintFinding]:
    for node in _own_subtrees(tree):
        if node.data != "expr" or not _is_loop(node.children):
            continue
        if _slow_body(node.children[0]):
            yield LintFinding(
                name,
                _first_line(node, line),
                f"{name}: a loop whose body starts with an optional element before a rule "
                "(10-60 ms per token in xgrammar); use a fixed separator",
            )
        elif is_term and not _single_pattern(node.children[0]):
            yield LintFinding(
                name,
                _first_line(node, line),
                f"{name}: a loop over alternatives or several parts inside a terminal "
                "(xgrammar's Lark reader makes each part a rule: milliseconds per token, against "
                "microseconds for one regexp); write the terminal as one regexp",
            )
    # A rule that loops through itself: `items: [sep] item items | ...` or
    # `items: items [sep] item | ...`.
    for alternative in tree.children:
        expansion = alternative.children[0] if alternative.data == "alias" else alternative
        refers_to_itself = any(
            isinstance(v, NonTerminal) and v.name == name
            for item in expansion.children
            if isinstance(item, Tree) and item.data == "value"
            for v in item.children
        )
        items = expansion.children
        if items and items[0].data == "value" and items[0].children[0] == NonTerminal(name):
            items = items[1:]  # left recursion: the rest is the loop body
        if refers_to_itself and _slow_sequence(items):
            yield LintFinding(
                name,
                _first_line(expansion, line),
                f"{name}: a recursive alternative that starts with an optional element before "
                "a rule (10-60 ms per token in xgrammar); use a fixed separator",
            )


def _own_subtrees(tree: Tree[Any]) -> Iterator[Tree[Any]]:
    """The subtrees of a definition, not entering the terminals it refers to (lark has already
    replaced a terminal's references to other terminals by their definitions)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not _is_inlined_terminal(node):
            stack.extend(c for c in reversed(node.children) if isinstance(c, Tree))


def _single_pattern(node: Any) -> bool:
    """Whether ``node`` is one literal, regexp or range (through groups of one element)."""
    if not isinstance(node, Tree):
        return False
    kids: list[Any] = node.children
    match node.data:
        case "literal" | "range":
            return True
        case "value" | "alias":
            return _single_pattern(kids[0])
        case "expansions" | "expansion":
            return len(kids) == 1 and _single_pattern(kids[0])
    return False


def _is_loop(children: list[Any]) -> bool:
    op = str(children[1])
    if op in ("*", "+"):
        return True
    return op == "~" and int(children[-1]) > 1


def _first_line(node: Tree[Any], default: int) -> int:
    """The first line that ``node``'s own tokens are on (not those of inlined terminals)."""
    lines = []
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            if item.line:
                lines.append(item.line)
        elif isinstance(item, Tree) and not _is_inlined_terminal(item):
            stack.extend(item.children)
    return min(lines, default=default)


def _is_inlined_terminal(node: Tree[Any]) -> bool:
    # A terminal's reference to another terminal is already replaced by its definition.
    kid = node.children[0] if node.data == "value" and node.children else None
    return isinstance(kid, Tree) and kid.data == "expansions"


def _nullable(node: Any) -> bool:
    if not isinstance(node, Tree):
        return False
    kids: list[Any] = node.children
    match node.data:
        case "maybe":
            return True
        case "expr":
            op = str(kids[1])
            if op in ("?", "*"):
                return True
            if op == "~":
                return int(kids[2]) == 0 or _nullable(kids[0])
            return _nullable(kids[0])
        case "expansions":
            return any(_nullable(k) for k in kids)
        case "alias":
            return _nullable(kids[0])
        case "expansion":
            return all(_nullable(k) for k in kids)
    return False


def _starts_with_ref(node: Any) -> bool:
    if isinstance(node, Terminal | NonTerminal):
        return True
    if not isinstance(node, Tree):
        return False
    kids: list[Any] = node.children
    match node.data:
        case "value":
            return _is_inlined_terminal(node) or _starts_with_ref(kids[0])
        case "expr" | "maybe" | "alias":
            return _starts_with_ref(kids[0])
        case "expansions":
            return any(_starts_with_ref(k) for k in kids)
        case "expansion":
            for k in kids:
                if _starts_with_ref(k):
                    return True
                if not _nullable(k):
                    return False
    return False


def _slow_sequence(items: list[Any]) -> bool:
    """Whether ``items`` starts with optional elements followed by a reference."""
    i = 0
    while i < len(items) and _nullable(items[i]):
        i += 1
    return 0 < i < len(items) and _starts_with_ref(items[i])


def _slow_body(node: Any) -> bool:
    if not isinstance(node, Tree):
        return False
    match node.data:
        case "expansions":
            return any(_slow_body(k) for k in node.children)
        case "alias":
            return _slow_body(node.children[0])
        case "expansion":
            return _slow_sequence(node.children)
    return False
