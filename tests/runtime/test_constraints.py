"""Constrained calls in the runtime: every output validated; engines that cannot enforce a
grammar get validate-and-retry, marked degraded."""

from __future__ import annotations

import pydantic
import pytest

import dsl
import orchestrator
from orchestrator.errors import ConstraintViolation
from orchestrator.testing import ScriptedBackend

pytestmark = pytest.mark.anyio

DIGITS = dsl.Grammar.regex("[0-9]+")


class Person(pydantic.BaseModel):
    name: str
    age: int


@dsl.program
async def number() -> str:
    return await dsl.gen("Give a number", grammar=DIGITS, name="n")


@dsl.program
async def person() -> Person:
    return await dsl.gen("Describe someone", schema=Person, name="who")


async def test_valid_output_passes_and_json_becomes_the_model() -> None:
    assert await orchestrator.arun(number, backend=ScriptedBackend(default="42")) == "42"
    backend = ScriptedBackend(default='{"name": "Ada", "age": 36}')
    out = await orchestrator.arun(person, backend=backend)
    assert out == Person(name="Ada", age=36)
    assert backend.calls[0].request.grammar == dsl.Grammar.json_schema(Person)


async def test_required_strings_reach_the_backend() -> None:
    @dsl.program
    async def ask() -> str:
        return await dsl.gen("Count the customers from Paris", require=["Paris"], name="sql")

    backend = ScriptedBackend(default="SELECT COUNT(*) FROM customers WHERE city = 'Paris'")
    await orchestrator.arun(ask, backend=backend)
    assert backend.calls[0].request.require == ("Paris",)


async def test_an_enforcing_engine_that_breaks_the_grammar_is_a_violation() -> None:
    with pytest.raises(ConstraintViolation, match="matched up to offset 2") as info:
        await orchestrator.arun(number, backend=ScriptedBackend(default="42x"))
    assert info.value.node == "n" and info.value.text == "42x" and info.value.position == 2


async def test_json_violation_names_the_field() -> None:
    backend = ScriptedBackend(default='{"name": "Ada", "age": "old"}')
    with pytest.raises(ConstraintViolation, match="at age"):
        await orchestrator.arun(person, backend=backend)


async def test_lark_violation_names_line_and_column() -> None:
    g = dsl.Grammar.lark('start: "a" "\\n" "b"+')

    @dsl.program
    async def p() -> str:
        return await dsl.gen("x", grammar=g)

    with pytest.raises(ConstraintViolation, match="line 2, column 3"):
        await orchestrator.arun(p, backend=ScriptedBackend(default="a\nbbc"))
    assert await orchestrator.arun(p, backend=ScriptedBackend(default="a\nbbb")) == "a\nbbb"


async def test_without_grammar_support_it_validates_and_retries_with_the_error() -> None:
    backend = ScriptedBackend({"number": ["many", "12 apples", "12"]}, grammars=False)
    async with orchestrator.Orchestrator(backend) as orch:
        h = await orch.submit(number)
        assert await h.result() == "12"
    stats = h.stats["n"]
    assert stats.degraded and stats.attempts == 4  # the refused one, then three answers
    requests = [c.request for c in backend.calls]
    assert requests[0].grammar == DIGITS and all(r.grammar is None for r in requests[1:])
    assert "/[0-9]+/" in requests[1].text  # the format is stated when it cannot be enforced
    retry = requests[2].messages
    assert retry is not None and retry[-2] == dsl_message("assistant", "many")
    assert "invalid" in retry[-1].content and "offset 0" in retry[-1].content


def dsl_message(role: str, content: str) -> object:
    from orchestrator.backends import Message

    return Message(role, content)  # type: ignore[arg-type]


async def test_degraded_attempts_are_bounded() -> None:
    backend = ScriptedBackend(default="never digits", grammars=False)
    async with orchestrator.Orchestrator(backend, constraint_attempts=2) as orch:
        h = await orch.submit(number)
        with pytest.raises(ConstraintViolation, match="2 attempts were validated"):
            await h.result()
    assert len(backend.calls) == 3


async def test_select_without_grammar_support_still_matches_an_option() -> None:
    @dsl.program
    async def pick() -> str:
        return await dsl.select("Pick", options=["red", "green"], name="c")

    backend = ScriptedBackend(default="Green!", grammars=False)
    async with orchestrator.Orchestrator(backend) as orch:
        h = await orch.submit(pick)
        assert await h.result() == "green"
    assert h.stats["c"].degraded


async def test_a_violation_after_max_tokens_says_the_budget_ran_out() -> None:
    from orchestrator.backends import Completion

    backend = ScriptedBackend(default=Completion(text="12a", finish_reason="length"))
    with pytest.raises(ConstraintViolation, match="max_tokens ran out"):
        await orchestrator.arun(number, backend=backend)


@pytest.mark.http
async def test_over_http_an_engine_without_the_field_is_validated_and_retried() -> None:
    from orchestrator.backends import OpenAICompatible
    from orchestrator.testing import FakeOpenAIServer

    # The OpenAI dialect has no field for a regex: nothing constrained is sent; the first
    # answer is invalid, the retry (which quotes the error) is valid.
    with FakeOpenAIServer({"invalid": "12", "Give a number": "many"}) as server:
        async with (
            OpenAICompatible(server.url, dialect="openai", model="legato-fake") as backend,
            orchestrator.Orchestrator(backend) as orch,
        ):
            h = await orch.submit(number)
            assert await h.result() == "12"
        assert h.stats["n"].degraded and h.stats["n"].attempts == 3
        last = server.last_request()["body"]
    assert "That output is invalid" in last["messages"][-1]["content"]
    assert last["messages"][-2] == {"role": "assistant", "content": "many"}
    assert not {"regex", "grammar", "structured_outputs", "response_format"} & set(last)


@pytest.mark.parametrize("grammars", [True, False])
async def test_a_select_option_with_outer_spaces_can_be_chosen(grammars: bool) -> None:
    @dsl.program
    async def pick() -> str:
        return await dsl.select("Pick", options=["Option A ", "Option B "], name="c")

    backend = ScriptedBackend(default="Option A ", grammars=grammars)
    assert await orchestrator.arun(pick, backend=backend) == "Option A "


def test_match_option_prefers_the_exact_option_then_strips_both_sides() -> None:
    from orchestrator.runtime import match_option

    options = ("A", "A ", " b", "Yes.")
    assert match_option("A", options) == "A"
    assert match_option("A ", options) == "A "  # exact wins over the stripped "A"
    assert match_option(" A\n", options) == "A"  # stripped: the first that matches
    assert match_option("b", options) == " b"  # the option's own spaces do not matter
    assert match_option("  B!", options) == " b"  # nor case and outer punctuation
    assert match_option("yes", options) == "Yes."
    assert match_option("Option A ", ("Option A ", "Option B ")) == "Option A "
    assert match_option("option b", ("Option A ", "Option B ")) == "Option B "
    assert match_option("neither", ("Option A ", "Option B ")) is None
    assert match_option("...", ("...", "x")) == "..."  # exact, though nothing is left loosely
    assert match_option("x y", ("...", "x")) == "x"  # an option of punctuation matches no text
