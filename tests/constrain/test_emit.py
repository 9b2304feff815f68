"""``emit``: each engine's request fields for a grammar."""

from __future__ import annotations

import lark
import pytest

from dsl import Grammar
from orchestrator import constrain

EXPR = 'expr: term ("+" term)*\nterm: /[0-9]+/ | "(" expr ")"\nunused: "u"'  # no final newline


def _parses(text: str, start: str, s: str) -> bool:
    try:
        lark.Lark(text, start=start, parser="earley", lexer="dynamic_complete").parse(s)
    except lark.exceptions.UnexpectedInput:
        return False
    return True


def test_legato_gets_a_start_rule_for_a_grammar_that_starts_elsewhere() -> None:
    """The Legato server reads structured_outputs.grammar from the rule 'start' and has no
    field for another start: the source sent gets one that is the grammar's start rule."""
    grammar = Grammar.lark(EXPR, start="expr")
    sent = constrain.emit("legato", grammar)["structured_outputs"]
    assert isinstance(sent, dict)
    source = sent["grammar"]
    assert source == EXPR + "\nstart: expr\n"
    Grammar.lark(source)  # what the server builds from it
    for s in ["1", "1+(2+3)", "(1", "u", "", "1+"]:
        assert _parses(source, "start", s) == _parses(EXPR, "expr", s), s
    other = Grammar.lark(EXPR + "\n", start="term")
    assert constrain.emit("legato", other) == {
        "structured_outputs": {"grammar": EXPR + "\nstart: term\n"}
    }


def test_legato_gets_the_source_as_it_is_for_a_start_rule() -> None:
    text = 'start: "a" b\nb: "b"\n'
    assert constrain.emit("legato", Grammar.lark(text)) == {"structured_outputs": {"grammar": text}}
    shipped = Grammar.lark("json")
    assert constrain.emit("legato", shipped) == {"structured_outputs": {"grammar": shipped.source}}


@pytest.mark.parametrize(
    "text",
    [
        'start: "a" b\nb: "b"\n',
        '?start: b\nb: "b"\n',
    ],
)
def test_legato_refuses_another_start_when_the_grammar_has_a_start_rule(text: str) -> None:
    with pytest.raises(constrain.Unsupported, match="rule 'start'") as info:
        constrain.emit("legato", Grammar.lark(text, start="b"))
    assert "'b'" in str(info.value)


def test_other_dialects_translate_from_the_start_rule() -> None:
    grammar = Grammar.lark(EXPR, start="expr")
    gbnf = constrain.emit("llamacpp", grammar)["grammar"]
    assert isinstance(gbnf, str) and gbnf.startswith("root ::= term")
