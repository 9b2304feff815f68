"""Lark, regular expressions and choices in GBNF: xgrammar (which reads GBNF as its EBNF) must
accept exactly what Python's ``re`` and lark accept."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import lark
import numpy as np
import pytest

from orchestrator.constrain import (
    GbnfError,
    choice_to_gbnf,
    lark_to_gbnf,
    regex_grammar,
    regex_to_gbnf,
)

_RULE_LINE = re.compile(r"[a-zA-Z0-9-]+ ::= \S.*")
_CHARS = [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t", "\x01", "é", "€", "😀"]


class _Xgr:
    """xgrammar over a vocabulary of single characters: acceptance and random sentences."""

    def __init__(self, xgr: Any) -> None:
        self.xgr = xgr
        self.stop = len(_CHARS)
        self.size = self.stop + 1
        info = xgr.TokenizerInfo(
            [c.encode() for c in _CHARS] + [b"</s>"], xgr.VocabType.RAW, stop_token_ids=[self.stop]
        )
        self.compiler = xgr.GrammarCompiler(info)

    def compile(self, gbnf: str) -> Any:
        for line in gbnf.splitlines():
            assert _RULE_LINE.fullmatch(line), line
        return self.compiler.compile_grammar(self.xgr.Grammar.from_ebnf(gbnf))

    def accepts(self, compiled: Any, text: str) -> bool:
        m = self.xgr.GrammarMatcher(compiled)
        return bool(m.accept_string(text) and m.is_completed())

    def sample(self, compiled: Any, rng: random.Random, max_steps: int = 40) -> str | None:
        m = self.xgr.GrammarMatcher(compiled)
        mask = np.zeros((1, (self.size + 31) // 32), dtype=np.int32)
        out = []
        for _ in range(max_steps):
            m.fill_next_token_bitmask(mask)
            allowed = np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.size]
            ids = np.flatnonzero(allowed)
            if allowed[self.stop] and (len(ids) == 1 or rng.random() < 0.25):
                return "".join(out)
            ids = ids[ids != self.stop]
            token = int(ids[rng.randrange(len(ids))])
            assert m.accept_token(token)
            out.append(_CHARS[token])
        return None


@pytest.fixture(scope="module")
def xg() -> _Xgr:
    return _Xgr(pytest.importorskip("xgrammar"))


def _mutations(text: str, alphabet: str, rng: random.Random) -> Iterator[str]:
    for _ in range(4):
        i = rng.randrange(len(text) + 1)
        c = rng.choice(alphabet)
        yield text[:i] + c + text[i:]
        if text:
            j = rng.randrange(len(text))
            yield text[:j] + text[j + 1 :]
            yield text[:j] + c + text[j + 1 :]


# ---------------------------------------------------------------------------------------------
# Regular expressions
# ---------------------------------------------------------------------------------------------

REGEXES = [
    r"[a-z]+",
    r"\d{3}-\d{4}",
    r"(ab|cd)*e?",
    r'"([^"\\]|\\.)*"',
    r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?",
    r"\w+@\w+\.(com|org)",
    r"(?i)hello( world)?",
    r"a{2,4}b{3}c{1,}",
    r"[\s\S]{0,3}x",
    r".\..",
    r"(?s:a.b)",
    r"[^a-c\d]+",
    r"x*?y+?z??",
    r"[\]\[\-^]+",
    r"[\^a]|\^",
    r"(?P<year>\d{4})-(?:0[1-9]|1[0-2])",
    "é1\x01A[\x00-\x1f]b",
    r"(?x) a b  # a comment",
    r"(|a)b",
    r"[\W\d]+",
    r"[^\W_]+",
    r"(?i)[a-c]x[^d]",
    r"[0-9a-f\xe9]{2}",
    r"[^\n]*\n",
    r"\u20ac\U0001F600?",
    r"(\\(n|u[0-9a-f]{2})|[^\\])*",
    r"(a?b?)+c",
    r"(x(y|z)?)*",
    r"(a|)+b",
    r"((a|b)(c|d)(e|f)(g|h)(i|j))*",
]
CRAFTED = {
    r"\d{3}-\d{4}": ["555-1234", "5551234", "555-12345", "55-1234"],
    r'"([^"\\]|\\.)*"': ['""', '"a\\"b"', '"a"b"', '"\\"', '"\\\\"'],
    r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?": ["0", "-0.5e+3", "01", "1.", "1e", "-12E5"],
    r"\w+@\w+\.(com|org)": ["a@b.com", "a_1@x9.org", "a@b.net", "@b.com", "é@b.com"],
    r"(?i)hello( world)?": ["HeLLo", "hello WORLD", "hello  world", "hellO world!"],
    r"a{2,4}b{3}c{1,}": ["aabbbc", "aaaabbbccc", "abbbc", "aaaaabbbc", "aabbb"],
    r".\..": ["a.b", "\n.a", "a.\n", "é.€"],
    r"(?s:a.b)": ["a\nb", "ab", "a€b"],
    r"[\]\[\-^]+": ["[]-^", "^", "a", "-"],
    r"[\^a]|\^": ["^", "a", "b", "^^"],
    "é1\x01A[\x00-\x1f]b": ["é1\x01A\x01b", "é1\x01A\nb", "é1\x01Aab", "e1\x01A\x01b"],
    r"[0-9a-f\xe9]{2}": ["0é", "éa", "af", "g0", "éé"],
    r"(?i)[a-c]x[^d]": ["AXe", "bxD", "cxd", "dxe"],
    r"\u20ac\U0001F600?": ["€", "€😀", "😀"],
}


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_grammar_accepts_exactly_what_re_fullmatch_does(xg: _Xgr, pattern: str) -> None:
    compiled = xg.compile(regex_grammar(pattern))
    rng = random.Random(pattern)
    alphabet = "".join(sorted(set(pattern) | set("a0 -.\né\x01")))
    drawn = [s for s in (xg.sample(compiled, rng) for _ in range(40)) if s is not None]
    assert drawn
    for s in drawn:  # what the mask lets a model write matches the regex
        assert re.fullmatch(pattern, s, re.ASCII), (pattern, s)
    candidates = list(CRAFTED.get(pattern, []))
    for s in drawn[:15]:
        candidates += _mutations(s, alphabet, rng)
    candidates += ["".join(rng.choices(alphabet, k=rng.randrange(8))) for _ in range(60)]
    for s in candidates:
        expected = re.fullmatch(pattern, s, re.ASCII) is not None
        assert xg.accepts(compiled, s) == expected, (pattern, s, regex_to_gbnf(pattern))


def test_regex_flags_argument(xg: _Xgr) -> None:
    compiled = xg.compile(regex_grammar("ab.", flags=re.IGNORECASE | re.DOTALL))
    assert xg.accepts(compiled, "AB\n") and xg.accepts(compiled, "aBc")
    assert not xg.accepts(compiled, "ac\n")


@pytest.mark.parametrize(
    ("pattern", "texts"),
    [
        (r"^[a-z]+$", ["abc", "", "ab1", "abc\n"]),
        (r"\Aa\Z", ["a", "aZ", "", "a\n"]),
        (r"^a|b$", ["a", "b", "ab", ""]),
        (r"(?m)^(a|^b)$", ["a", "b", "a\n", "\nb"]),
        (r"(^x\Z)", ["x", "xZ"]),
        (r"^$", ["", "a", "\n"]),
    ],
)
def test_a_whole_regex_takes_anchors_at_its_edges(xg: _Xgr, pattern: str, texts: list[str]) -> None:
    """Under a full match, ^ and \\A at the start and $ and \\Z at the end always hold."""
    compiled = xg.compile(regex_grammar(pattern))
    for s in texts:
        assert xg.accepts(compiled, s) == (re.fullmatch(pattern, s) is not None), (pattern, s)


@pytest.mark.parametrize("pattern", [r"a^b", r"a$b", r"(a$)?b", r"a\Zb|c", r"a\b"])
def test_anchors_inside_a_whole_regex_are_still_refused(pattern: str) -> None:
    with pytest.raises(GbnfError, match="anchor"):
        regex_grammar(pattern)


def test_regex_translation_is_readable() -> None:
    assert regex_to_gbnf(r"[a-z]+") == "[a-z]+"
    assert regex_to_gbnf(r"(ab|cd)*") == '( "ab" | "cd" )*'
    assert regex_to_gbnf(r"a{2,}b{3}c{1,4}") == '"a"{2,} "b"{3} "c"{1,4}'
    assert regex_to_gbnf(r'[^"\\]') == '[^\\"\\\\]'
    assert regex_to_gbnf(r"(a+)?") == '( "a"+ )?'
    assert regex_grammar("x") == 'root ::= "x"\n'


def test_loop_bodies_are_flattened() -> None:
    """xgrammar takes milliseconds a token on a loop whose body holds an inner alternation or
    optional, microseconds on flat alternatives: the translation distributes them."""
    assert regex_to_gbnf(r"(\\(n|u[0-9a-f]{2})|[^\\])*") == (
        '( "\\\\n" | "\\\\u" [0-9a-f]{2} | [^\\\\] )*'
    )
    assert regex_to_gbnf(r"(a|)+b") == '"a"* "b"'
    assert regex_to_gbnf(r"(a?b?)+c") == '( "b" | "a" | "ab" )* "c"'
    text = 'start: (WS? ITEM)*\nITEM: "i"\n%import common.WS\n'
    assert lark_to_gbnf(text).startswith("root ::= ( item | ws item )*\n")
    # Past 16 alternatives the body is kept as written.
    assert regex_to_gbnf("((a|b)(c|d)(e|f)(g|h)(i|j))*") == "( [ab] [cd] [ef] [gh] [ij] )*"
    assert regex_to_gbnf("((ab|b)(cd|d)(ef|f)(gh|h)(ij|j))*").count("|") == 5


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"^a", "anchor"),
        (r"a$", "anchor"),
        (r"\bx", "boundary"),
        (r"\Ax", "anchor"),
        (r"(?=a)a", "lookahead"),
        (r"a(?!b)", "lookahead"),
        (r"(?<=a)b", "lookbehind"),
        (r"(?<!a)b", "lookbehind"),
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"(?>ab)", "atomic"),
        (r"a*+", "possessive"),
        (r"[", "invalid"),
        (r"[^\s\S]", "no character"),
    ],
)
def test_regexes_gbnf_cannot_express_are_refused(pattern: str, feature: str) -> None:
    with pytest.raises(GbnfError, match=feature):
        regex_to_gbnf(pattern)


# ---------------------------------------------------------------------------------------------
# Choices
# ---------------------------------------------------------------------------------------------


def test_choice_grammar_accepts_exactly_the_options(xg: _Xgr) -> None:
    options = ["yes", "no", 'say "hi"', "back\\slash", "two\nlines", "", "é1", "\x01A", "€😀"]
    compiled = xg.compile(choice_to_gbnf(options))
    for option in options:
        assert xg.accepts(compiled, option), option
    for other in ["ye", "yesno", "No", 'say "hi', "é", "\x01", "two\\nlines", " "]:
        assert not xg.accepts(compiled, other), other
    assert choice_to_gbnf(["a", "b", "a"]) == 'root ::= "a" | "b"\n'


@pytest.mark.parametrize("options", [[], "ab", [1, 2]])
def test_choice_needs_strings(options: Any) -> None:
    with pytest.raises(GbnfError):
        choice_to_gbnf(options)


# ---------------------------------------------------------------------------------------------
# Lark grammars
# ---------------------------------------------------------------------------------------------

FEATURES = r"""
start: greeting (", " item)* [";" NUMBER] end_
?greeting: "hello"i -> hi
         | "bye"
item: _word
    | pair
    | QUOTED
    | COMMENT
    | letters ~ 2
    | digits ~ 1..3
    | "<" ESC ">"
    | FLOAT_TAIL
_word: WORD
pair: "(" item " " item ")"
letters: "a".."c"
!digits: DIGIT
end_: "." | "!"
ESC: /\\[nt"]/ | /\x01/ "A"
FLOAT_TAIL: /[0-9]+e[+-]?[0-9]+/i
%import common.WORD
%import common.NUMBER
%import common.DIGIT
%import common.ESCAPED_STRING -> QUOTED
%import common.C_COMMENT -> COMMENT
%extend end_: "?"
%override letters: "a".."c" | "x"
"""


def test_lark_features_translate_to_the_same_language(xg: _Xgr) -> None:
    """The same language as lark's Earley parser with terminals of any length in context (the
    default lexer takes each terminal at its longest: "49." is one NUMBER there)."""
    gbnf = lark_to_gbnf(FEATURES)
    compiled = xg.compile(gbnf)
    parser = lark.Lark(FEATURES, parser="earley", lexer="dynamic_complete")
    rng = random.Random(3)
    drawn = [s for s in (xg.sample(compiled, rng, 60) for _ in range(300)) if s is not None]
    assert len(drawn) > 100
    alphabet = 'helobyHELO, ();.!?abcx019e+-"\\/*<>\x01A\nt'
    candidates = [
        "hello.",
        "HeLLo, word!",
        "bye, (a b)?",
        'hello, "a\\"b", /* c */.',
        "hello, /* a */ b */.",
        "hello, ab, 12, 123, 1234.",
        "hello, <\\n>, <\x01A>;1.5e3.",
        "hello, 3E+4.",
        "bye;-1.",
    ]
    for s in drawn[:80]:
        candidates += _mutations(s, alphabet, rng)
    for s in drawn + candidates:
        try:
            parser.parse(s)
            expected = True
        except lark.exceptions.UnexpectedInput:
            expected = False
        assert xg.accepts(compiled, s) == expected, (s, gbnf)


def test_names_become_gbnf_names_without_clashes(xg: _Xgr) -> None:
    text = 'start: root foo_bar FOO_BAR _foo_bar\nroot: "r"\nfoo_bar: "a"\nFOO_BAR: "b"\n'
    text += '_foo_bar: "c"\n'
    gbnf = lark_to_gbnf(text)
    names = [line.split(" ::= ")[0] for line in gbnf.splitlines()]
    assert names[0] == "root"
    assert len(set(names)) == len(names) == 5
    assert {"root-2", "foo-bar"} <= set(names)
    assert xg.accepts(xg.compile(gbnf), "rabc")


def test_other_start_rules_and_unreachable_rules(xg: _Xgr) -> None:
    text = 'start: "a" other\nother: "b"\nunused: "c"\n'
    assert "unused" not in lark_to_gbnf(text)
    compiled = xg.compile(lark_to_gbnf(text, start="other"))
    assert xg.accepts(compiled, "b") and not xg.accepts(compiled, "ab")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('start: NAME\nNAME: /[a-z]+/\n%ignore " "\n', ["%ignore", "anonymous"]),
        ("start: NAME\n%import common.CNAME -> NAME\n%import common.WS\n%ignore WS\n", ["WS"]),
        ("start: item\nitem: A\nA: /(?=x)x/\n", ["terminal A", "lookahead"]),
        ("start: item\nitem: /(?<!x)y/\n", ["rule item", "lookbehind"]),
        ("start: item\nitem: /(a)\\1/\n", ["rule item", "backreference"]),
        ("start: item\nitem: /^a/\n", ["rule item", "anchor"]),
        ("start: item\nitem: X\n%declare X\n", ["terminal X", "%declare"]),
        ('start: pair{"a"}\npair{x}: x x\n', ["rule start", "template", "pair"]),
        ('start: item\nitem.2: "a"\n', ["rule item", "priority"]),
        ('start: A\nA.3: "a"\n', ["terminal A", "priority"]),
        ("start: item\n", ["item"]),
        ('begin: "a"\n', ["start"]),
        ("start: (\n", ["invalid"]),
    ],
)
def test_features_gbnf_cannot_express_name_the_rule(text: str, names: list[str]) -> None:
    with pytest.raises(GbnfError) as info:
        lark_to_gbnf(text)
    for name in names:
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def _lark_accepts(text: str, s: str) -> bool:
    try:
        lark.Lark(text, parser="earley", lexer="dynamic_complete").parse(s)
    except lark.exceptions.UnexpectedInput:
        return False
    return True


@pytest.mark.parametrize(
    ("text", "where", "op", "sample"),
    [
        ("start: NAME\nNAME: /[a-z]+?/\n", "terminal NAME", "+?", "abc"),
        ("start: A\nA: /a.*?b/\n", "terminal A", "*?", "axbyb"),
        ('start: A "c"\nA: /ab??/\n', "terminal A", "??", "abc"),
        ("start: A\nA: /x[a-z]{1,3}?/\n", "terminal A", "{1,3}?", "xab"),
        ("start: A\nA: /x[a-z]{2,}?/\n", "terminal A", "{2,}?", "xabc"),
        ("start: item\nitem: /a+?/ /b/\n", "rule item", "+?", None),
        ('start: A\nA: "x" B\nB: /b*?c/\n', "terminal A", "*?", None),  # B written in A
    ],
)
def test_lazy_quantifiers_in_lark_terminals_are_refused(
    text: str, where: str, op: str, sample: str | None
) -> None:
    """Lark's lexer takes a lazy regex's first (shortest) match; a mask would allow any."""
    if sample is not None:  # what a greedy reading would wrongly accept
        assert not _lark_accepts(text, sample)
        greedy = text.replace(op, op[:-1])
        assert _lark_accepts(greedy, sample), greedy
    with pytest.raises(GbnfError) as info:
        lark_to_gbnf(text)
    message = str(info.value)
    assert where in message and "lazy quantifier" in message and f"({op})" in message, message


def test_a_lazy_ignored_terminal_is_refused_as_lazy() -> None:
    """xgrammar's Lark reader, the fallback for %ignore, would read it as greedy."""
    text = 'start: "a" "b"\n%ignore /#.*?#/\n'
    with pytest.raises(GbnfError, match="lazy quantifier") as info:
        lark_to_gbnf(text)
    assert "%ignore" in str(info.value)
    with pytest.raises(GbnfError, match="ignored terminals"):
        lark_to_gbnf('start: "a" "b"\n%ignore /#[^#]*#/\n')


def test_lazy_quantifiers_in_a_whole_regex_are_kept() -> None:
    # re.fullmatch has the same matches with lazy and greedy quantifiers.
    assert regex_to_gbnf(r"a+?b*?c??") == regex_to_gbnf(r"a+b*c?")


def test_an_earlier_branch_that_is_a_prefix_is_the_known_difference(xg: _Xgr) -> None:
    """Documented: lark's lexer takes /a|ab/'s first match, "a", so "ab" is no A to lark, and
    the translation accepts it; written longest first, both agree."""
    text = "start: A\nA: /a|ab/\n"
    assert not _lark_accepts(text, "ab")
    assert xg.accepts(xg.compile(lark_to_gbnf(text)), "ab")
    longest_first = "start: A\nA: /ab|a/\n"
    compiled = xg.compile(lark_to_gbnf(longest_first))
    for s in ["a", "ab", "b", "aab"]:
        assert xg.accepts(compiled, s) == _lark_accepts(longest_first, s), s


def test_escaping_survives_xgrammar(xg: _Xgr) -> None:
    # Characters xgrammar re-prints as \x escapes are kept apart from a following hex digit.
    text = r'start: "é1" | "\x01a" | "q\"\\" | /[\x01é]0/ | "\n\t" | "^" | /[\^-]x/' + "\n"
    compiled = xg.compile(lark_to_gbnf(text))
    for s in ["é1", "\x01a", 'q"\\', "\x010", "é0", "\n\t", "^", "^x", "-x"]:
        assert xg.accepts(compiled, s), s
    for s in ["\u0e91", "\u01a0", "ét", "\\x"]:
        assert not xg.accepts(compiled, s), s


LEFT_RECURSIVE = """
start: sum
?sum: sum " + " product -> add
    | sum " - " product -> sub
    | product
?product: product "*" atom
        | atom
        | product
atom: /[0-9]/ | "(" sum ")"
"""


def test_direct_left_recursion_becomes_a_loop(xg: _Xgr) -> None:
    gbnf = lark_to_gbnf(LEFT_RECURSIVE)
    assert 'sum ::= product ( " + " product | " - " product )*' in gbnf
    compiled = xg.compile(gbnf)
    parser = lark.Lark(LEFT_RECURSIVE, parser="earley")
    rng = random.Random(5)
    drawn = [s for s in (xg.sample(compiled, rng, 60) for _ in range(200)) if s is not None]
    candidates = list(drawn)
    for s in drawn[:60]:
        candidates += _mutations(s, "0 +-*()", rng)
    for s in candidates:
        try:
            parser.parse(s)
            expected = True
        except lark.exceptions.UnexpectedInput:
            expected = False
        assert xg.accepts(compiled, s) == expected, s
    with pytest.raises(GbnfError, match="left recursion"):
        lark_to_gbnf('start: start "a"\n')


@pytest.mark.http
@pytest.mark.llamacpp
def test_llama_server_takes_the_translations(tmp_path: Any) -> None:
    """llama.cpp's own GBNF parser reads every translation (it answers 400 to a grammar it
    cannot parse), and what it generates under them parses."""
    import os

    import httpx

    import grammars
    from integrations.llamacpp import LlamaServer, find
    from orchestrator.engine import make_model

    binary = find()
    if binary is None:
        if os.environ.get("LEGATO_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail("llama-server is not built: run `python3 -m integrations.llamacpp build`")
        pytest.skip("llama-server is not built: run `python3 -m integrations.llamacpp build`")
    model = make_model("tiny", seed=0, out=tmp_path)
    lark_texts = {name: grammars.load(name) for name in grammars.names()}
    lark_texts["left_recursive"] = LEFT_RECURSIVE
    with (
        LlamaServer(model.gguf, ctx=2048, parallel=1, threads=1, binary=binary) as server,
        httpx.Client(base_url=server.base, timeout=60) as http,
    ):

        def complete(gbnf: str, seed: int, n: int = 80) -> dict[str, Any]:
            body = {"prompt": "the cat", "n_predict": n, "grammar": gbnf, "seed": seed}
            reply = http.post("/completion", json={**body, "temperature": 1.0})
            assert reply.status_code == 200, (gbnf, reply.text)
            return dict(reply.json())

        assert http.post("/completion", json={"prompt": "x", "grammar": "root ::= nope"}).is_error
        for text in lark_texts.values():
            parser = lark.Lark(text, parser="earley")
            for seed in range(2):
                done = complete(lark_to_gbnf(text), seed)
                if done["stop_type"] == "eos":  # not cut off by n_predict
                    parser.parse(done["content"])
        for pattern in REGEXES:
            done = complete(regex_grammar(pattern), 0)
            if done["stop_type"] == "eos":
                assert re.fullmatch(pattern, done["content"], re.ASCII), pattern
        options = ["yes", 'say "hi"', "é1", "\x01A"]
        assert complete(choice_to_gbnf(options), 0)["content"] in options
