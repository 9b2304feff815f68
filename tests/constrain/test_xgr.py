"""The embedded engine's masks (``GrammarCompiler``) read grammars as ``constrain.check`` does."""

from __future__ import annotations

import pytest

from dsl import Grammar
from orchestrator import constrain

_CHARS = [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t", "é"]


@pytest.fixture(scope="module")
def compiler() -> constrain.GrammarCompiler:
    pytest.importorskip("xgrammar")
    vocab = [c.encode() for c in _CHARS] + [b""]  # one character a token, then the stop token
    return constrain.GrammarCompiler(vocab, [len(_CHARS)])


def _mask_accepts(compiler: constrain.GrammarCompiler, grammar: Grammar, text: str) -> bool:
    m = compiler.compile(grammar).matcher()
    return m.accept_text(text) and m.complete


def _check_accepts(grammar: Grammar, text: str) -> bool:
    try:
        constrain.check(grammar, text)
    except constrain.Invalid:
        return False
    return True


@pytest.mark.parametrize(
    ("pattern", "texts"),
    [
        (r"a\Z", ["a", "aZ", "a\n"]),  # xgrammar's own reader takes \Z for a literal Z
        (r"\Aab", ["ab", "Aab"]),
        (r"a.b", ["axb", "a\nb", "aéb"]),  # xgrammar's '.' takes a newline
        (r"(?i)abc", ["abc", "AbC", "abd"]),  # inline flags: xgrammar cannot compile them
        (r"(?s:.)x", ["\nx", "ax", "x"]),
        (r"a{,2}", ["", "a", "aa", "aaa"]),  # {,n}: xgrammar cannot compile it
        (r"^(yes|no)$", ["yes", "no", "yesno", "no\n"]),
        (r"x*?y+?", ["y", "xxyy", "x"]),
    ],
)
def test_regex_masks_read_patterns_as_python_does(
    compiler: constrain.GrammarCompiler, pattern: str, texts: list[str]
) -> None:
    grammar = Grammar.regex(pattern)
    for text in texts:
        assert _mask_accepts(compiler, grammar, text) == _check_accepts(grammar, text), (
            pattern,
            text,
        )


def test_regexes_the_translation_refuses_go_to_xgrammar_or_are_refused(
    compiler: constrain.GrammarCompiler,
) -> None:
    # An anchor inside the pattern: xgrammar ignores it, a looser mask the re-parse corrects.
    loose = Grammar.regex(r"(a$)?b")
    assert _mask_accepts(compiler, loose, "b") and _check_accepts(loose, "b")
    # \Z inside: xgrammar would read a letter Z, so no mask at all.
    with pytest.raises(ValueError, match="cannot become a mask"):
        compiler.compile(Grammar.regex(r"a\Zb|c"))
    # Neither reader takes a word boundary.
    with pytest.raises(ValueError, match="xgrammar"):
        compiler.compile(Grammar.regex(r"a\bb"))


@pytest.mark.parametrize(
    "text",
    [
        "start: NAME\nNAME: /[a-z]+?/\n",
        'start: NAME+\nNAME: /[a-z]+?/\n%ignore " "\n',  # %ignore would go to xgrammar's reader
        'start: "a"+\n%ignore /#.*?#/\n',
    ],
)
def test_lark_lazy_quantifiers_get_no_mask(compiler: constrain.GrammarCompiler, text: str) -> None:
    """xgrammar's own Lark reader reads a lazy quantifier as greedy: it is not asked."""
    grammar = Grammar.lark(text)
    with pytest.raises(ValueError, match="lazy quantifier"):
        compiler.compile(grammar)


def test_an_ignore_grammar_still_goes_to_xgrammars_reader(
    compiler: constrain.GrammarCompiler,
) -> None:
    grammar = Grammar.lark('start: NAME+\nNAME: /[a-z]+/\n%ignore " "\n')
    assert _mask_accepts(compiler, grammar, "ab cd")
