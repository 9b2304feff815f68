"""Grammar values: validated when made, before any request; carried by gen and select."""

from __future__ import annotations

import pydantic
import pytest

import dsl
from dsl import Grammar, GrammarError, GrammarWarning, LLMNode


def test_lark_text_and_shipped_names() -> None:
    g = Grammar.lark('start: "a" B\nB: /[0-9]+/')
    assert g.kind == "lark" and g.name is None
    shipped = Grammar.lark("json")
    assert shipped.name == "json" and "start" in shipped.source
    assert shipped == Grammar.lark("json") and shipped.key == Grammar.lark("json").key
    assert g.key != shipped.key


def test_malformed_lark_names_line_and_column() -> None:
    with pytest.raises(GrammarError, match=r"line 2, column \d+") as info:
        Grammar.lark('start: "a" b\nb: ((\n')
    assert info.value.line == 2 and info.value.column is not None
    assert isinstance(info.value, dsl.ProgramError)


def test_undefined_rule_points_at_the_rule_that_uses_it() -> None:
    with pytest.raises(GrammarError, match="line 2") as info:
        Grammar.lark('\nstart: "a" missing\n')
    assert info.value.line == 2


def test_unknown_shipped_name_lists_the_known_ones() -> None:
    with pytest.raises(GrammarError, match="sqlite_select"):
        Grammar.lark("no_such_grammar")


def test_regex_checks_syntax_and_what_a_mask_cannot_do() -> None:
    assert Grammar.regex(r"[0-9]{3}").source == "[0-9]{3}"
    with pytest.raises(GrammarError, match="column"):
        Grammar.regex("(ab")
    with pytest.raises(GrammarError, match="lookahead"):
        Grammar.regex("a(?=b)")
    with pytest.raises(GrammarError, match="backreference"):
        Grammar.regex(r"(a)\1")


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_json_schema_from_a_model_or_a_dict() -> None:
    g = Grammar.json_schema(Person)
    assert g.model is Person and g.schema["required"] == ["name", "age"]
    d = Grammar.json_schema({"type": "array", "items": {"type": "integer"}, "maxItems": 3})
    assert d.model is None and d.schema["maxItems"] == 3


def test_invalid_schema_is_a_grammar_error() -> None:
    with pytest.raises(GrammarError, match="invalid schema"):
        Grammar.json_schema({"type": "no-such-type"})
    with pytest.raises(GrammarError, match="pydantic"):
        Grammar.json_schema(42)  # type: ignore[arg-type]


def test_unenforceable_keywords_are_named_in_a_warning() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "multipleOf": 3}, "tags": {"uniqueItems": True}},
    }
    with pytest.warns(GrammarWarning, match="multipleOf") as record:
        Grammar.json_schema(schema)
    assert "/properties/tags:uniqueItems" in str(record[0].message)


def test_choice_needs_distinct_options() -> None:
    assert Grammar.choice(["a", "b"]).options == ("a", "b")
    with pytest.raises(GrammarError):
        Grammar.choice([])
    with pytest.raises(GrammarError, match="distinct"):
        Grammar.choice(["a", "a"])


def test_gen_carries_the_grammar_and_schema_types_the_var() -> None:
    @dsl.program
    async def p() -> object:
        a = dsl.gen("x", grammar=Grammar.regex("[a-z]+"), name="a")
        b = dsl.gen("y", schema=Person, name="b")
        return a, b

    graph = p.trace()
    a, b = graph.node("a"), graph.node("b")
    assert isinstance(a, LLMNode) and isinstance(b, LLMNode)
    assert a.grammar == Grammar.regex("[a-z]+")
    assert b.grammar is not None and b.grammar.model is Person


def test_gen_rejects_a_bad_grammar_argument_at_trace_time() -> None:
    @dsl.program
    async def both() -> object:
        return dsl.gen("x", grammar=Grammar.regex("a"), schema=Person)

    with pytest.raises(dsl.ProgramError, match="not both"):
        both.trace()

    @dsl.program
    async def text() -> object:
        return dsl.gen("x", grammar="start: 'a'")  # type: ignore[arg-type]

    with pytest.raises(dsl.ProgramError, match=r"dsl\.Grammar"):
        text.trace()

    @dsl.program
    async def malformed() -> object:
        return dsl.gen("x", grammar=Grammar.lark("start: ("))

    with pytest.raises(GrammarError, match="line 1"):
        malformed.trace()
