"""Mistakes that used to pass silently: a ``Var`` compared before it is awaited, a ``Var`` hidden
where the graph cannot see it, an un-awaited sub-program, a setting of the wrong type. Each is a
``ProgramError`` naming what is wrong, raised before any request is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

import dsl
import orchestrator
from dsl import ProgramError, VarMisuseError
from orchestrator.testing import ScriptedBackend

# -- comparing a Var ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compare", "op"),
    [
        (lambda v: v == "A", "=="),
        (lambda v: "A" == v, "=="),  # noqa: SIM300 - the reflected comparison
        (lambda v: v != "A", "!="),
        (lambda v: v in ["A", "B"], "=="),
        (lambda v: ["A", "B"].index(v), "=="),
        (lambda v: v < "B", "<"),
    ],
)
def test_comparing_an_unawaited_var_is_an_error(compare: Any, op: str) -> None:
    @dsl.program
    async def p() -> str:
        choice = dsl.select("pick", options=["A", "B"], name="choice")
        if compare(choice):
            return "A"
        return "B"

    with pytest.raises(VarMisuseError, match=rf"'choice' was compared with {op}.*`await` it"):
        p.trace()


def test_vars_still_hash_by_identity() -> None:
    seen: list[bool] = []

    @dsl.program
    async def p() -> None:
        a, b = dsl.gen("a"), dsl.gen("b")
        seen.extend([a in {a}, b in {a: 1}, len({a, b, a}) == 2, a in [a]])

    p.trace()
    assert seen == [True, False, True, True]


async def _run(program: Any, backend: ScriptedBackend, *args: Any) -> Any:
    return await orchestrator.arun(program, *args, backend=backend)


@pytest.mark.anyio
async def test_unawaited_comparison_fails_the_run_instead_of_taking_a_branch() -> None:
    @dsl.program
    async def route() -> str:
        choice = dsl.select("pick", options=["A", "B"])
        if choice == "A":
            return await dsl.gen("on A")
        return await dsl.gen("on B")

    backend = ScriptedBackend(default="A")
    with pytest.raises(VarMisuseError, match="await"):
        await _run(route, backend)


# -- a Var where the graph cannot see it ------------------------------------------------------


@dataclass
class Context:
    text: Any
    extra: int = 0


class Doc(BaseModel):
    body: Any


class Plain:
    def __init__(self, inner: Any) -> None:
        self.inner = inner


@pytest.mark.parametrize(
    ("wrap", "inside"),
    [
        (lambda v: {v}, "inside a set"),
        (lambda v: frozenset([v]), "inside a frozenset"),
        (lambda v: Context(v), "inside a Context object"),
        (lambda v: Context([v]), "inside a Context object"),
        (lambda v: Doc(body=v), "inside a Doc object"),
        (lambda v: Plain(v), "inside a Plain object"),
        (lambda v: {(v, 1)}, "inside a set"),
        (lambda v: {v: "x"}, "in a dict key"),
    ],
)
def test_var_inside_an_unwalked_container_is_an_error(wrap: Any, inside: str) -> None:
    @dsl.program
    async def p() -> str:
        draft = dsl.gen("draft", name="draft")
        return await dsl.gen("use {{ctx}}", ctx=wrap(draft))

    with pytest.raises(VarMisuseError, match=rf"input 'ctx' holds Var 'draft' {inside}") as info:
        p.trace()
    assert info.value.var == "draft"
    assert "list, tuple or dict" in str(info.value)


def test_var_inside_a_set_deep_in_a_list_names_where() -> None:
    @dsl.program
    async def p() -> None:
        draft = dsl.gen("draft", name="draft")
        dsl.gen("use {{ctx}}", ctx=[["a", {"k": {draft}}]])

    with pytest.raises(VarMisuseError, match=r"input 'ctx' at ctx\[0\]\[1\]\['k'\]"):
        p.trace()


def test_var_inside_a_set_as_a_tool_argument_is_an_error() -> None:
    @dsl.tool
    def count(items: Any) -> int:
        return len(items)

    @dsl.program
    async def p() -> None:
        draft = dsl.gen("draft", name="draft")
        count({draft, "x"})

    with pytest.raises(VarMisuseError, match=r"tool 'count'.*Var 'draft' inside a set"):
        p.trace()


def test_objects_without_vars_pass_through() -> None:
    @dsl.program
    async def p() -> None:
        dsl.gen("{{a}} {{b}} {{c}} {{d}}", a={"x"}, b=Context("t"), c=Doc(body=1), d=Plain(2))

    (node,) = p.trace().nodes
    assert node.deps == ()


@pytest.mark.anyio
async def test_var_in_a_set_fails_before_anything_is_sent() -> None:
    @dsl.program
    async def p() -> str:
        draft = dsl.gen("draft")
        return await dsl.gen("use {{ctx}}", ctx={draft})

    backend = ScriptedBackend(default="ok")
    with pytest.raises(VarMisuseError, match="inside a set"):
        await _run(p, backend)
    assert all("Var(" not in c.request.text for c in backend.calls)
    assert [c.request.node for c in backend.calls if c.request.node != "gen_1"] == []


# -- an un-awaited sub-program ------------------------------------------------------------------


@dsl.program
async def sub(q: str) -> str:
    return await dsl.gen("sub {{q}}", q=q, name="inner")


@dsl.program
async def forgets(q: str) -> str:
    return sub(q)  # type: ignore[return-value]


def test_returning_an_unawaited_sub_program_is_an_error_when_traced() -> None:
    with pytest.raises(ProgramError, match=r"'forgets' returned sub\(\.\.\.\) without awaiting"):
        forgets.trace("x")


@pytest.mark.anyio
async def test_returning_an_unawaited_sub_program_fails_the_run() -> None:
    backend = ScriptedBackend(default="ok")
    with pytest.raises(ProgramError, match=r"`return await sub\(\.\.\.\)`"):
        await _run(forgets, backend, "x")


@pytest.mark.anyio
async def test_an_unawaited_sub_program_in_a_list_or_from_a_sub_program_is_an_error() -> None:
    @dsl.program
    async def in_list() -> list[str]:
        return [sub("a"), await sub("b")]  # type: ignore[list-item]

    @dsl.program
    async def outer() -> str:
        return await forgets("x")

    backend = ScriptedBackend(default="ok")
    with pytest.raises(ProgramError, match="'in_list' returned sub"):
        await _run(in_list, backend)
    with pytest.raises(ProgramError, match="'forgets' returned sub"):
        await _run(outer, backend)


def test_an_unawaited_sub_program_as_an_input_is_an_error() -> None:
    @dsl.program
    async def p() -> str:
        return await dsl.gen("use {{a}}", a=sub("x"))

    with pytest.raises(ProgramError, match=r"input 'a' is an un-awaited call of sub\(\.\.\.\)"):
        p.trace()


def test_sub_program_arguments_are_checked_at_the_call() -> None:
    @dsl.program
    async def p() -> str:
        return await sub("x", "y")  # type: ignore[call-arg]

    with pytest.raises(ProgramError, match="program 'sub': bad arguments"):
        p.trace()


# -- settings of the wrong type ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": "0.5"}, "temperature must be a number, got '0.5'"),
        ({"top_p": "0.9"}, "top_p must be a number, got '0.9'"),
        ({"max_tokens": "5"}, "max_tokens must be an int, got '5'"),
        ({"max_tokens": True}, "max_tokens must be an int, got True"),
        ({"seed": "1"}, "seed must be an int, got '1'"),
        ({"timeout": "5"}, "timeout must be a number, got '5'"),
        ({"timeout": float("nan")}, "timeout must be positive"),
        ({"retries": "2"}, "retries must be an int, got '2'"),
        ({"stop": 5}, "stop must be a non-empty string or a list of them, got 5"),
        ({"stop": ["ok", 5]}, "stop must be a non-empty string"),
        ({"model": 5}, "model must be a str, got 5"),
        ({"system": 5}, "system must be a str, got 5"),
        ({"name": 5}, "name must be a str, got 5"),
        ({"chat": "yes"}, "chat must be True or False"),
        ({"tools": 5}, "tools must be a list of @dsl.tool functions, got 5"),
        ({"require": 5}, "require must be a list of non-empty strings, got 5"),
    ],
)
def test_gen_rejects_settings_of_the_wrong_type(kwargs: dict[str, object], message: str) -> None:
    @dsl.program
    async def p() -> None:
        dsl.gen("x", **kwargs)  # type: ignore[arg-type]

    with pytest.raises(ProgramError, match=message.replace("(", r"\(")):
        p.trace()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": "0.5"}, "temperature must be a number, got '0.5'"),
        ({"seed": 1.5}, "seed must be an int, got 1.5"),
        ({"timeout": "5"}, "timeout must be a number, got '5'"),
        ({"retries": 1.0}, "retries must be an int, got 1.0"),
        ({"options": 5}, "options must be a list of strings, got 5"),
        ({"model": 5}, "model must be a str, got 5"),
    ],
)
def test_select_rejects_settings_of_the_wrong_type(kwargs: dict[str, object], message: str) -> None:
    @dsl.program
    async def p() -> None:
        dsl.select("pick", **{"options": ["a", "b"], **kwargs})  # type: ignore[arg-type]

    with pytest.raises(ProgramError, match=message):
        p.trace()


def test_numeric_settings_of_other_number_types_are_taken() -> None:
    from fractions import Fraction

    @dsl.program
    async def p() -> None:
        dsl.gen("x", temperature=Fraction(1, 2), timeout=5, max_tokens=8, seed=0, stop="\n")

    (node,) = p.trace().nodes
    assert isinstance(node, dsl.LLMNode)
    assert node.params.temperature == 0.5 and isinstance(node.params.temperature, float)
    assert node.timeout == 5 and node.params.stop == ("\n",)


@pytest.mark.parametrize("name", ["get-weather", 'say "hi"', "1st", "two words"])
def test_a_tool_name_must_be_an_identifier(name: str) -> None:
    async def fetch(x: str) -> str:
        return x

    with pytest.raises(ProgramError, match="is not an identifier"):
        dsl.tool(name=name)(fetch)


def test_a_lambda_needs_a_name_to_be_a_tool() -> None:
    with pytest.raises(ProgramError, match="'<lambda>' is not an identifier"):
        dsl.tool(lambda x: x)
    assert dsl.tool(name="echo")(lambda x: x).name == "echo"


@pytest.mark.anyio
async def test_a_program_that_calls_itself_without_end_is_named() -> None:
    @dsl.program
    async def forever(n: int) -> str:
        return await forever(n + 1)

    async with orchestrator.Orchestrator(ScriptedBackend(default="x")) as orch:
        h = await orch.submit(forever, 0)
        with pytest.raises(ProgramError, match="'forever' reached Python's recursion limit"):
            await h.result()
