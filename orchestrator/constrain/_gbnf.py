"""Translation of Lark grammars, regular expressions and choices into llama.cpp's GBNF.

GBNF (llama.cpp ``grammars/README.md``) is the grammar field of ``llama-server`` and the EBNF that
xgrammar-backed engines read (``xgrammar.Grammar.from_ebnf``), so one translation serves every
engine that takes a grammar as text. The functions here are pure: they read Lark grammars with
lark's own grammar loader (imports, ``%override`` and ``%extend`` included) and regular
expressions with Python's own regex parser, and return text.

What ``lark_to_gbnf`` translates:

- rules and terminals, string literals (escapes, the ``i`` flag), ``"a".."z"`` ranges,
  alternatives, grouping, ``[x]``, ``x?``, ``x*``, ``x+``, ``x ~ n`` and ``x ~ n..m``, aliases
  (``-> name``, which only shape lark's tree), inlined and conditionally inlined rules
  (``_rule``, ``?rule``), ``!rule``, ``%import`` (``common.X`` and any other lark grammar, expanded
  to the imported definitions), ``%override`` and ``%extend``;
- regexp terminals, through ``regex_to_gbnf`` (see there for what a regex may use);
- lark's ``common.ESCAPED_STRING`` and ``common.C_COMMENT``, whose lark definitions use a
  lookbehind or a lazy loop, are written by hand with the same language;
- direct left recursion (``sum: sum "+" product | product``), which llama.cpp refuses, becomes
  a loop (``sum ::= product ( "+" product )*``). Indirect left recursion is written as it is:
  xgrammar takes it, llama.cpp refuses the grammar.

Inside a terminal, the terminals it refers to and its regexps are written in place, and the
body of any loop that holds inner alternatives or optionals is distributed into flat alternatives
(up to 16): ``( "a" ( "b" | "c" [0-9] )? )*`` becomes ``( "a" | "ab" | "ac" [0-9] )*``. Both keep
xgrammar's token mask fast: measured on a 32k BPE vocabulary, a JSON string's escape loop cost
14 ms a token as nested alternatives and 5 us flat.

What it refuses with ``GbnfError`` (naming the rule or terminal): ``%ignore`` (GBNF has no
skipped tokens: write the separators into the rules, which is also what keeps a token mask
fast), ``%declare``, templates, rule and terminal priorities, and regexps with lookarounds,
backreferences, anchors, atomic groups or possessive quantifiers, and lazy quantifiers
(``+?``, ``*?``, ``??``, ``{m,n}?``), which lark's lexer reads as their first (shortest) match
where a token mask would allow any.

One known difference remains (see ``lark_to_gbnf``): where a terminal regex's preferred branch
stops short of a longer match (``/a|ab/``), lark takes the shorter one only and the
translation takes both.

The text is a GBNF grammar whose root rule, ``root``, is the Lark start rule. Lark names become
GBNF names (``[a-zA-Z0-9-]``): underscores become dashes, terminals are lowercased, leading
underscores dropped, and a clash gets a numeric suffix.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import lark.exceptions
import lark.load_grammar
from lark import Token, Tree
from lark.grammar import NonTerminal, Terminal
from lark.lexer import Pattern, PatternRE, PatternStr

__all__ = ["GbnfError", "choice_to_gbnf", "lark_to_gbnf", "regex_grammar", "regex_to_gbnf"]


class GbnfError(ValueError):
    """A grammar or regular expression uses something GBNF cannot express (the message names the
    rule or terminal and the feature), or is not a valid grammar at all."""


class _LexerMismatch(GbnfError):
    """A Lark terminal that lark's lexer reads differently from any token mask (a lazy
    quantifier): no other translation (xgrammar's own Lark reader) is right either."""


# ---------------------------------------------------------------------------------------------
# Character sets and GBNF text
# ---------------------------------------------------------------------------------------------

_MAX_CP: Final = 0x10FFFF
_SURROGATES: Final = (0xD800, 0xDFFF)
_Ranges = tuple[tuple[int, int], ...]
_UNIVERSE: Final[_Ranges] = ((0, _SURROGATES[0] - 1), (_SURROGATES[1] + 1, _MAX_CP))
_HEX_DIGITS: Final = frozenset(map(ord, "0123456789abcdefABCDEF"))
_SHORT_ESCAPES: Final = {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", ord("\\"): "\\\\"}
# Characters that must not be written raw inside a class. A dash or a caret is written as a
# \u escape: llama.cpp knows no \- or \^, and a raw one would read as a range or a negation.
_CLASS_ESCAPES: Final = {ord("["): "\\[", ord("]"): "\\]", ord("-"): "\\u002D", ord("^"): "\\u005E"}

_Kind = Literal["atom", "rep", "seq", "alt"]
_Expr = tuple[str, _Kind]
"""A GBNF expression and how it binds: one element, a repeated element (which takes no second
operator without parentheses), a sequence, or alternatives."""


def _normalize(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    """Sorted, merged ranges with the surrogates (which no UTF-8 text holds) removed."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        for a, b in _clip_surrogates(lo, hi):
            if out and a <= out[-1][1] + 1:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
    return tuple((a, b) for a, b in out)


def _clip_surrogates(lo: int, hi: int) -> list[tuple[int, int]]:
    s_lo, s_hi = _SURROGATES
    if hi < s_lo or lo > s_hi:
        return [(lo, hi)]
    parts = []
    if lo < s_lo:
        parts.append((lo, s_lo - 1))
    if hi > s_hi:
        parts.append((s_hi + 1, hi))
    return parts


def _complement(ranges: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    for u_lo, u_hi in _UNIVERSE:
        cur = u_lo
        for lo, hi in ranges:
            if hi < u_lo or lo > u_hi:
                continue
            if lo > cur:
                out.append((cur, lo - 1))
            cur = max(cur, hi + 1)
        if cur <= u_hi:
            out.append((cur, u_hi))
    return _normalize(out)


def _case_closed(ranges: _Ranges) -> _Ranges:
    """``ranges`` plus the other case of each letter: ASCII letters always, other characters in
    ranges of up to 512 code points (simple one-character case mappings only)."""
    extra: list[tuple[int, int]] = []
    for lo, hi in ranges:
        for a, b, shift in ((0x41, 0x5A, 0x20), (0x61, 0x7A, -0x20)):
            s, e = max(lo, a), min(hi, b)
            if s <= e:
                extra.append((s + shift, e + shift))
        if hi - lo < 512:
            for cp in range(max(lo, 0x80), hi + 1):
                for other in {chr(cp).lower(), chr(cp).upper(), chr(cp).swapcase()}:
                    if len(other) == 1:
                        extra.append((ord(other), ord(other)))
    return _normalize((*ranges, *extra))


def _is_fragile(cp: int) -> bool:
    # xgrammar prints these code points as a variable-length \x escape when it re-reads a
    # grammar, so one followed by a hex digit would merge with it: such pairs are split.
    return cp < 0x20 or 0x7F <= cp <= 0xFF


def _escape(cp: int, *, in_class: bool) -> str:
    if cp in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[cp]
    if cp == ord('"'):
        return '\\"'
    if in_class and cp in _CLASS_ESCAPES:
        return _CLASS_ESCAPES[cp]
    ch = chr(cp)
    if cp < 0x20 or 0x7F <= cp <= 0x9F or not ch.isprintable() or (ch.isspace() and cp != 0x20):
        return f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"
    return ch


def _literal(text: str) -> _Expr:
    """``text`` as one GBNF string literal (or a few in a row, see ``_is_fragile``)."""
    if not text:
        return '""', "atom"
    parts: list[str] = []
    current = ""
    prev: int | None = None
    for ch in text:
        cp = ord(ch)
        if prev is not None and _is_fragile(prev) and cp in _HEX_DIGITS:
            parts.append(current)
            current = ""
        current += _escape(cp, in_class=False)
        prev = cp
    parts.append(current)
    return " ".join(f'"{p}"' for p in parts), "atom" if len(parts) == 1 else "seq"


def _class_items(ranges: _Ranges) -> list[str]:
    # Bridge the surrogate gap so that "any character" is one range.
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and merged[-1][1] == _SURROGATES[0] - 1 and lo == _SURROGATES[1] + 1:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    # Items that start with a raw hex digit go first, so that no fragile character (see
    # _is_fragile) is ever followed by one; a caret never goes first (it would negate).
    first = [r for r in merged if r[0] in _HEX_DIGITS]
    rest = [r for r in merged if r[0] not in _HEX_DIGITS]
    order = first + rest
    if order and order[0][0] == ord("^") and len(order) > 1:
        order = order[1:] + order[:1]
    items = []
    for lo, hi in order:
        a = _escape(lo, in_class=True)
        if lo == hi:
            items.append(a)
        elif hi == lo + 1:
            items.append(a + _escape(hi, in_class=True))
        else:
            items.append(f"{a}-{_escape(hi, in_class=True)}")
    return items


def _char_set(ranges: Iterable[tuple[int, int]], what: str) -> _Expr:
    """A GBNF element matching one character of the set: a literal, ``[...]`` or ``[^...]``."""
    ranges = _normalize(ranges)
    if not ranges:
        raise GbnfError(f"{what} matches no character")
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _literal(chr(ranges[0][0]))
    comp = _complement(ranges)
    if comp and len(comp) < len(ranges):
        return f"[^{''.join(_class_items(comp))}]", "atom"
    return f"[{''.join(_class_items(ranges))}]", "atom"


def _group(e: _Expr) -> str:
    """``e`` as one element that an operator can follow."""
    text, kind = e
    return text if kind == "atom" else f"( {text} )"


def _seq(items: Sequence[_Expr]) -> _Expr:
    if not items:
        return '""', "atom"
    if len(items) == 1:
        return items[0]
    return " ".join(text if kind != "alt" else f"( {text} )" for text, kind in items), "seq"


def _alt(options: Sequence[_Expr]) -> _Expr:
    if len(options) == 1:
        return options[0]
    return " | ".join(text for text, _ in options), "alt"


def _repeat(e: _Expr, lo: int, hi: int | None) -> _Expr:
    """``e`` repeated ``lo`` to ``hi`` times (``None``: no upper bound)."""
    if hi is not None and hi < lo:
        raise GbnfError(f"bad repeat range {lo}..{hi}")
    if hi == 0:
        return '""', "atom"
    if lo == hi == 1:
        return e
    match lo, hi:
        case 0, 1:
            op = "?"
        case 0, None:
            op = "*"
        case 1, None:
            op = "+"
        case _, None:
            op = f"{{{lo},}}"
        case _ if lo == hi:
            op = f"{{{lo}}}"
        case _:
            op = f"{{{lo},{hi}}}"
    return _group(e) + op, "rep"


# ---------------------------------------------------------------------------------------------
# A small tree of GBNF expressions, so that loop bodies can be flattened before they are written
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lit:
    text: str


@dataclass(frozen=True, slots=True)
class _Chars:
    ranges: _Ranges  # normalized, never one single character (that is a _Lit)


@dataclass(frozen=True, slots=True)
class _Ref:
    name: str  # a Lark symbol, renamed when the GBNF names are known


@dataclass(frozen=True, slots=True)
class _Raw:
    text: str  # hand-written GBNF


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Rep:
    item: _Node
    lo: int
    hi: int | None  # None: no upper bound


_Node = _Lit | _Chars | _Ref | _Raw | _Seq | _Alt | _Rep
_EMPTY: Final = _Lit("")
_MAX_FLAT_OPTIONS: Final = 16


def _chars(ranges: Iterable[tuple[int, int]], what: str) -> _Node:
    norm = _normalize(ranges)
    if not norm:
        raise GbnfError(f"{what} matches no character")
    if len(norm) == 1 and norm[0][0] == norm[0][1]:
        return _Lit(chr(norm[0][0]))
    return _Chars(norm)


def _sequence(items: Iterable[_Node]) -> _Node:
    """A sequence, with nested sequences spliced in and adjacent literals joined."""
    out: list[_Node] = []
    for item in items:
        for part in item.items if isinstance(item, _Seq) else (item,):
            if isinstance(part, _Lit) and out and isinstance(out[-1], _Lit):
                out[-1] = _Lit(out[-1].text + part.text)
            elif part != _EMPTY:
                out.append(part)
    if not out:
        return _EMPTY
    return out[0] if len(out) == 1 else _Seq(tuple(out))


def _choice(options: Iterable[_Node]) -> _Node:
    """Alternatives, with nested alternatives spliced in."""
    out: list[_Node] = []
    for option in options:
        out.extend(option.options if isinstance(option, _Alt) else (option,))
    return out[0] if len(out) == 1 else _Alt(tuple(out))


def _repetition(item: _Node, lo: int, hi: int | None) -> _Node:
    if hi is not None and hi < lo:
        raise GbnfError(f"bad repeat range {lo}..{hi}")
    if hi == 0 or item == _EMPTY:
        return _EMPTY
    if lo == hi == 1:
        return item
    if hi is None or hi > 1:
        # xgrammar's token mask is slow (milliseconds a token) on a loop whose body holds an
        # inner alternation or optional (it becomes a rule inside the loop), and fast on flat
        # alternatives: ( "\\" ( [bfnrt] | "u" hex ) )* costs 14 ms, ( "\\" [bfnrt] | "\\u"
        # hex )* 5 us, measured on a 32k BPE vocabulary. Distribute, when it stays small.
        flat = _flat_options(item)
        if flat is not None and len(flat) > 1:
            if () in flat:  # (x | "")* is x*: drop the empty option, which would loop
                flat = [o for o in flat if o]
                lo = 0
            item = _choice(_sequence(o) for o in flat)
    return _Rep(item, lo, hi)


def _flat_options(node: _Node) -> list[tuple[_Node, ...]] | None:
    """``node`` as alternatives of sequences with no inner alternation (None if too many)."""
    match node:
        case _Alt(options):
            out: list[tuple[_Node, ...]] = []
            for option in options:
                sub = _flat_options(option)
                if sub is None:
                    return None
                out.extend(sub)
        case _Seq(items):
            out = [()]
            for item in items:
                sub = _flat_options(item)
                if sub is None:
                    return None
                out = [a + b for a in out for b in sub]
                if len(out) > _MAX_FLAT_OPTIONS:
                    return None
        case _Rep(item, 0, 1):
            sub = _flat_options(item)
            if sub is None:
                return None
            out = [(), *sub]
        case _:
            return [()] if node == _EMPTY else [(node,)]
    return out if len(out) <= _MAX_FLAT_OPTIONS else None


def _emit(node: _Node) -> _Expr:
    match node:
        case _Lit(text):
            return _literal(text)
        case _Chars(ranges):
            return _char_set(ranges, "a character class")
        case _Ref(name):
            return f"\0{name}\0", "atom"  # a placeholder, renamed once names are known
        case _Raw(text):
            return text, "alt"
        case _Seq(items):
            return _seq([_emit(i) for i in items])
        case _Alt(options):
            return _alt([_emit(o) for o in options])
        case _Rep(item, lo, hi):
            return _repeat(_emit(item), lo, hi)
    raise AssertionError(node)


# ---------------------------------------------------------------------------------------------
# Regular expressions
# ---------------------------------------------------------------------------------------------

# re._parser is the parser that re.compile itself uses (the old sre_parse name warns on import).
_sre: Any = importlib.import_module("re._parser")
_sre_c: Any = importlib.import_module("re._constants")

_DIGIT: Final[_Ranges] = ((0x30, 0x39),)
_SPACE: Final[_Ranges] = ((0x09, 0x0D), (0x20, 0x20))
_WORD: Final[_Ranges] = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_CATEGORIES: Final[dict[str, tuple[_Ranges, bool]]] = {
    "CATEGORY_DIGIT": (_DIGIT, False),
    "CATEGORY_NOT_DIGIT": (_DIGIT, True),
    "CATEGORY_SPACE": (_SPACE, False),
    "CATEGORY_NOT_SPACE": (_SPACE, True),
    "CATEGORY_WORD": (_WORD, False),
    "CATEGORY_NOT_WORD": (_WORD, True),
}
_REFUSED_OPS: Final = {
    "AT": "an anchor or word boundary (^, $, \\A, \\Z, \\b, \\B)",
    "ASSERT": "a lookaround",
    "ASSERT_NOT": "a lookaround",
    "GROUPREF": "a backreference",
    "GROUPREF_EXISTS": "a conditional group (?(n)...)",
    "ATOMIC_GROUP": "an atomic group (?>...)",
    "POSSESSIVE_REPEAT": "a possessive quantifier",
    "FAILURE": "an always-failing pattern",
}


_AT_START: Final = frozenset({"AT_BEGINNING", "AT_BEGINNING_STRING"})  # ^ \A
_AT_END: Final = frozenset({"AT_END", "AT_END_STRING"})  # $ \Z


class _RegexTranslator:
    """Walks the parse of one pattern (``re._parser``) and builds the GBNF tree.

    ``in_lark``: the pattern is a Lark terminal's, whose lexer takes the pattern's first match
    (Python's backtracking order), not any match, so lazy quantifiers are refused there."""

    def __init__(self, pattern: str, *, in_lark: bool = False) -> None:
        self.pattern = pattern
        self.what = f"a character class in /{pattern}/"
        self.in_lark = in_lark

    def strip_edges(self, items: Any, start: bool, end: bool) -> list[Any]:
        """``items`` without the anchors that always hold when the whole text must match: ``^``
        and ``\\A`` where nothing can come before them, ``$`` and ``\\Z`` where nothing can
        come after (also inside the groups and alternatives at the pattern's edges)."""
        out = list(items)
        while start and out and out[0][0].name == "AT" and out[0][1].name in _AT_START:
            out.pop(0)
        while end and out and out[-1][0].name == "AT" and out[-1][1].name in _AT_END:
            out.pop()
        if len(out) == 1:
            out[0] = self.strip_item(out[0], start, end)
        elif out:
            out[0] = self.strip_item(out[0], start, False)
            out[-1] = self.strip_item(out[-1], False, end)
        return out

    def strip_item(self, item: Any, start: bool, end: bool) -> Any:
        op, av = item
        if op.name == "SUBPATTERN":
            group_id, add, remove, sub = av
            return op, (group_id, add, remove, self.strip_edges(sub, start, end))
        if op.name == "BRANCH":
            return op, (av[0], [self.strip_edges(b, start, end) for b in av[1]])
        return item

    def fail(self, feature: str) -> GbnfError:
        return GbnfError(f"regex /{self.pattern}/ uses {feature}, which GBNF cannot express")

    def seq(self, items: Any, flags: int) -> _Node:
        return _sequence(self.item(op.name, av, flags) for op, av in items)

    def item(self, name: str, av: Any, flags: int) -> _Node:
        if name in _REFUSED_OPS:
            what = _REFUSED_OPS[name]
            if name == "ASSERT" or name == "ASSERT_NOT":
                what = "a lookahead" if av[0] >= 0 else "a lookbehind"
            raise self.fail(what)
        match name:
            case "LITERAL":
                return self.chars(((av, av),), flags)
            case "NOT_LITERAL":
                return self.chars(((av, av),), flags, negate=True)
            case "ANY":
                return _chars(_UNIVERSE if flags & re.DOTALL else _complement(((10, 10),)), "'.'")
            case "IN":
                return self.char_class(av, flags)
            case "CATEGORY":
                return self.char_class([(_sre_c.CATEGORY, av)], flags)
            case "BRANCH":
                return _choice(self.seq(sub, flags) for sub in av[1])
            case "SUBPATTERN":
                _group_id, add, remove, sub = av
                return self.seq(sub, (flags | add) & ~remove)
            case "MAX_REPEAT" | "MIN_REPEAT":  # a lazy quantifier has the same full matches
                lo, hi, sub = av
                if name == "MIN_REPEAT" and self.in_lark:
                    raise self.lazy(lo, hi)
                return _repetition(self.seq(sub, flags), lo, None if hi == _sre_c.MAXREPEAT else hi)
        raise self.fail(f"the construct {name}")

    def lazy(self, lo: int, hi: int) -> GbnfError:
        match lo, hi:
            case 0, _sre_c.MAXREPEAT:
                op = "*?"
            case 1, _sre_c.MAXREPEAT:
                op = "+?"
            case 0, 1:
                op = "??"
            case _:
                op = f"{{{lo},{'' if hi == _sre_c.MAXREPEAT else hi}}}?"
        return _LexerMismatch(
            f"regex /{self.pattern}/ uses a lazy quantifier ({op}), which lark's lexer reads "
            "as its first (shortest) match where a token mask would allow any; use a greedy "
            "quantifier and end the terminal explicitly"
        )

    def char_class(self, items: Any, flags: int) -> _Node:
        ranges: list[tuple[int, int]] = []
        negate = False
        for op, av in items:
            match op.name:
                case "NEGATE":
                    negate = True
                case "LITERAL":
                    ranges.append((av, av))
                case "RANGE":
                    ranges.append((av[0], av[1]))
                case "CATEGORY":
                    if av.name not in _CATEGORIES:
                        raise self.fail(f"the class {av.name}")
                    cat, inverted = _CATEGORIES[av.name]
                    ranges.extend(_complement(cat) if inverted else cat)
                case other:
                    raise self.fail(f"the class item {other}")
        return self.chars(tuple(ranges), flags, negate=negate)

    def chars(self, ranges: _Ranges, flags: int, *, negate: bool = False) -> _Node:
        norm = _normalize(ranges)
        if flags & re.IGNORECASE:
            norm = _case_closed(norm)
        if negate:
            norm = _complement(norm)
        return _chars(norm, self.what)


def _regex_node(
    pattern: str, flags: int = 0, *, in_lark: bool = False, whole: bool = False
) -> _Node:
    """The tree of ``pattern``; ``in_lark``: a Lark terminal's (see ``_RegexTranslator``);
    ``whole``: the pattern is matched against the whole text, so anchors at its edges hold."""
    try:
        parsed = _sre.parse(pattern, int(flags))
    except re.error as e:
        raise GbnfError(f"invalid regex /{pattern}/: {e}") from e
    translator = _RegexTranslator(pattern, in_lark=in_lark)
    items = translator.strip_edges(parsed.data, True, True) if whole else parsed.data
    return translator.seq(items, int(parsed.state.flags))


def regex_to_gbnf(pattern: str, *, flags: int = 0) -> str:
    """A GBNF expression matching the strings that ``re.fullmatch(pattern, s, flags)`` matches.

    Supported: literals, character classes (negated, ranges, ``\\d \\w \\s`` and their negations,
    with ASCII meanings, as under ``re.ASCII``), ``.`` (no newline unless ``re.DOTALL``), groups
    of every kind that only group (``(...)``, ``(?:...)``, ``(?P<n>...)``, inline flags ``i``,
    ``s``, ``x``), alternation, ``? * + {m} {m,} {m,n}``; lazy quantifiers are read as greedy
    ones (the same set of whole matches). ``re.IGNORECASE`` adds the other case of letters
    (ASCII, and simple one-character mappings elsewhere).

    Raises:
        GbnfError: for anchors and word boundaries, lookarounds, backreferences, conditional
            and atomic groups, possessive quantifiers, or a pattern ``re`` rejects.
    """
    return _emit(_regex_node(pattern, flags))[0]


def regex_grammar(pattern: str, *, flags: int = 0) -> str:
    """A whole GBNF grammar (``root ::= ...``) for the strings that fully match ``pattern``
    (see ``regex_to_gbnf`` for what a pattern may use). Anchors that always hold for a whole
    match are also taken: ``^`` and ``\\A`` with nothing before them, ``$`` and ``\\Z`` with
    nothing after (``^(a|b)$``, ``^a|b\\Z``)."""
    return f"root ::= {_emit(_regex_node(pattern, flags, whole=True))[0]}\n"


def choice_to_gbnf(options: Sequence[str]) -> str:
    """A whole GBNF grammar whose sentences are exactly the given strings.

    Raises:
        GbnfError: when there are no options or one is not a string.
    """
    if isinstance(options, str):
        raise GbnfError("choice_to_gbnf expects a sequence of strings, not one string")
    unique: list[str] = []
    for option in options:
        if not isinstance(option, str):
            raise GbnfError(f"choice_to_gbnf: option {option!r} is not a string")
        if option not in unique:
            unique.append(option)
    if not unique:
        raise GbnfError("choice_to_gbnf needs at least one option")
    return f"root ::= {_emit(_choice(_Lit(o) for o in unique))[0]}\n"


# ---------------------------------------------------------------------------------------------
# Lark grammars
# ---------------------------------------------------------------------------------------------

# lark's own reading of a string or regexp literal token (escapes and flags exactly as lark).
_to_pattern: Callable[[Token], Pattern] = lark.load_grammar._literal_to_pattern
_LARK_FLAGS: Final = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}

# lark's common.lark terminals whose definitions GBNF cannot take as written: ESCAPED_STRING
# ends in a lookbehind, C_COMMENT in a lazy loop that stops at the first "*/".
_KNOWN_TERMINALS: Final = {
    "ESCAPED_STRING": '"\\"" ( [^"\\\\\\n] | "\\\\" [^\\n] )* "\\""',
    "C_COMMENT": '"/*" ( [^*] | "*"+ [^*/] )* "*"+ "/"',
}


@functools.cache
def _known_terminal_trees() -> tuple[tuple[Tree[Any], str], ...]:
    out = []
    for name, gbnf in _KNOWN_TERMINALS.items():
        builder = lark.load_grammar.GrammarBuilder()
        builder.load_grammar(f"%import common.{name}\n", "<string>")
        out.append((builder._definitions[name].tree, gbnf))
    return tuple(out)


class _LarkTranslator:
    """Builds the GBNF body of each Lark definition reachable from the start rule."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self.defs = definitions
        self.where = ""  # "rule x" or "terminal X", for error messages
        self.refs: list[str] = []  # the symbols the body being built refers to

    def fail(self, feature: str) -> GbnfError:
        return GbnfError(f"{self.where}: {feature} cannot be expressed in GBNF")

    def body(self, name: str) -> _Node:
        d = self.defs[name]
        self.where = f"{'terminal' if d.is_term else 'rule'} {name}"
        self.refs = []
        if d.tree is None:
            raise self.fail("%declare (a symbol with no definition)")
        if d.params:
            raise self.fail(f"a template (parameters {', '.join(map(str, d.params))})")
        if not d.is_term:
            if d.options is not None and d.options.priority is not None:
                raise self.fail(f"a rule priority (.{d.options.priority})")
            return self.rule_body(name, d.tree)
        if d.options != 0:
            raise self.fail(f"a terminal priority (.{d.options})")
        for tree, gbnf in _known_terminal_trees():
            if d.tree == tree:
                return _Raw(gbnf)
        return self.expr(d.tree)

    def rule_body(self, name: str, tree: Tree[Any]) -> _Node:
        """A rule's alternatives, with direct left recursion (``sum: sum "+" n | n``, which
        llama.cpp refuses) rewritten as a loop with the same language (``n ("+" n)*``)."""
        bases: list[_Node] = []
        tails: list[_Node] = []
        for alternative in tree.children:
            expansion = alternative.children[0] if alternative.data == "alias" else alternative
            items: list[Any] = expansion.children
            first = items[0].children[0] if items and items[0].data == "value" else None
            if isinstance(first, NonTerminal) and first.name == name:
                self.refs.append(name)
                if len(items) > 1:
                    tails.append(_sequence(self.expr(k) for k in items[1:]))
            else:
                bases.append(self.expr(expansion))
        if not tails:
            return _choice(bases)
        if not bases:
            raise self.fail("left recursion with no alternative to start from")
        return _sequence([_choice(bases), _repetition(_choice(tails), 0, None)])

    def expr(self, node: Any) -> _Node:
        if isinstance(node, Terminal | NonTerminal):
            self.refs.append(node.name)
            return _Ref(node.name)
        if not isinstance(node, Tree):
            raise self.fail(f"the element {node!r}")
        kids: list[Any] = node.children
        match node.data:
            case "expansions":
                return _choice(self.expr(k) for k in kids)
            case "alias":  # "-> name" only names lark's tree node
                return self.expr(kids[0])
            case "expansion":
                return _sequence(self.expr(k) for k in kids)
            case "value":
                return self.expr(kids[0])
            case "maybe":
                return _repetition(self.expr(kids[0]), 0, 1)
            case "expr":
                return self.repeat(kids)
            case "literal":
                return self.literal(kids[0])
            case "range":
                lo, hi = (_to_pattern(k).value for k in kids)
                if len(lo) != 1 or len(hi) != 1:
                    raise self.fail(f"the range {lo!r}..{hi!r} (not single characters)")
                return _chars(((ord(lo), ord(hi)),), f"{self.where}: range {lo!r}..{hi!r}")
            case "template_usage":
                raise self.fail(f"a template ({kids[0].name}{{...}})")
        raise self.fail(f"the construct {node.data!r}")

    def repeat(self, kids: list[Any]) -> _Node:
        inner = self.expr(kids[0])
        op = str(kids[1])
        if op == "~":
            lo = int(kids[2])
            hi = int(kids[3]) if len(kids) > 3 else lo
            if hi < lo:
                raise self.fail(f"the repeat range ~ {lo}..{hi}")
            return _repetition(inner, lo, hi)
        least, most = {"?": (0, 1), "*": (0, None), "+": (1, None)}[op]
        return _repetition(inner, least, most)

    def literal(self, token: Token) -> _Node:
        try:
            pattern = _to_pattern(token)
        except lark.exceptions.GrammarError as e:
            raise GbnfError(f"{self.where}: {e}") from e
        flags = 0
        for f in pattern.flags:
            flags |= _LARK_FLAGS.get(f, 0)
        if isinstance(pattern, PatternStr):
            if not flags & re.IGNORECASE:
                return _Lit(pattern.value)
            return _sequence(
                _chars(_case_closed(((ord(ch), ord(ch)),)), self.where) for ch in pattern.value
            )
        assert isinstance(pattern, PatternRE)
        try:
            return _regex_node(pattern.value, flags, in_lark=True)
        except GbnfError as e:
            raise type(e)(f"{self.where}: {e}") from e


def _gbnf_names(order: Sequence[str], defs: dict[str, Any], start: str) -> dict[str, str]:
    names = {start: "root"}
    taken = {"root"}
    # Rules first, so that a terminal (lowercased) yields its name to a rule of the same name.
    for name in sorted(order, key=lambda n: (bool(defs[n].is_term), order.index(n))):
        if name in names:
            continue
        base = re.sub(r"[^a-z0-9-]", "-", name.lstrip("_").replace("_", "-").lower()) or "r"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        names[name] = candidate
        taken.add(candidate)
    return names


def _refuse_lazy_ignored(
    translator: _LarkTranslator, ignored: list[str], seen: set[str], shown: str
) -> None:
    """Raise ``_LexerMismatch`` if an ignored terminal (or one it uses) has a lazy quantifier:
    xgrammar's Lark reader, which takes ``%ignore``, would read it as a greedy one."""
    todo = [n for n in ignored if n in translator.defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            translator.body(name)
        except _LexerMismatch as e:
            raise _LexerMismatch(f"%ignore {shown}: {e}") from e
        except GbnfError:
            continue  # refused for another reason: the %ignore refusal says enough
        todo.extend(translator.refs)


def lark_to_gbnf(text: str, *, start: str = "start") -> str:
    """Translate a Lark grammar into llama.cpp GBNF whose ``root`` is the rule ``start``.

    The result is the grammar's context-free language with terminals matched in context: it
    accepts a string when ``lark.Lark(text, parser="earley", lexer="dynamic_complete")`` parses
    it, and rejects it when lark does, with one known exception. Lark's lexer takes a terminal
    regex's first match (the one Python's backtracking ``re.match`` returns) and, in the complete
    mode, the first matches of that match's prefixes; the translation takes every match. They
    differ where the branch the regex engine tries first stops short of a longer match: an
    alternation whose earlier branch matches a prefix of a later one (``/a|ab/``: lark reads
    ``"ab"`` as ``"a"`` and then fails, the translation accepts it), or an optional that, taken,
    blocks a longer match (``/xa?(ab)?/`` on ``"xab"``). There the translation accepts more than
    lark (the re-parse then rejects the text); write the longer branch first (``/ab|a/``).
    Lazy quantifiers, with which lark always takes less than the translation, are refused.

    Lark's default Earley lexer (``"dynamic"``) does not try the prefixes, so it also rejects
    the few strings where a terminal stops short of its first match (``NUMBER`` then ``"."`` in
    ``"49."``); a grammar whose terminals are followed by fixed separators, like the shipped
    ones, means the same to both. Only definitions reachable from ``start`` (and the terminals
    of ``%ignore``, for the refusals above) are read. See the module docstring for the Lark
    features that translate and those that do not.

    Raises:
        GbnfError: the grammar is invalid, or uses a feature GBNF cannot express; the message
            names the rule or terminal and the feature.
    """
    builder = lark.load_grammar.GrammarBuilder()
    try:
        builder.load_grammar(text, "<string>")
    except (lark.exceptions.LarkError, OSError) as e:
        raise GbnfError(f"invalid Lark grammar: {e}") from e
    defs: dict[str, Any] = builder._definitions
    ignored: list[str] = list(builder._ignore_names)
    try:
        builder.validate()
    except lark.exceptions.LarkError as e:
        raise GbnfError(f"invalid Lark grammar: {e}") from e
    if start not in defs or defs[start].is_term:
        raise GbnfError(f"the grammar has no rule {start!r}")

    translator = _LarkTranslator(defs)
    order = [start]
    bodies: dict[str, str] = {}
    for name in order:  # grows while it is walked: a breadth-first walk from the start rule
        bodies[name] = _emit(translator.body(name))[0]
        for ref in translator.refs:
            if ref not in bodies and ref not in order:
                order.append(ref)
    if ignored:
        shown = ", ".join(
            n if not n.startswith("__IGNORE") else "an anonymous pattern" for n in ignored
        )
        _refuse_lazy_ignored(translator, ignored, set(order), shown)
        raise GbnfError(
            f"%ignore {shown}: ignored terminals cannot be expressed in GBNF; "
            "write the separators into the rules"
        )
    names = _gbnf_names(order, defs, start)
    lines = []
    for name in order:
        body = re.sub("\0([^\0]*)\0", lambda m: names[m.group(1)], bodies[name])
        lines.append(f"{names[name]} ::= {body}")
    return "\n".join(lines) + "\n"
