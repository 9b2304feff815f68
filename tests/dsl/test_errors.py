"""Mistakes in programs are caught before anything is sent, with errors naming what is wrong."""

from __future__ import annotations

import pytest

import dsl
from dsl import ProgramError, TemplateError, VarMisuseError


def test_var_in_fstring_names_the_variable_and_the_fix() -> None:
    @dsl.program
    async def bad() -> str:
        draft = dsl.gen("draft", name="draft")
        return await dsl.gen(f"improve {draft}")

    with pytest.raises(VarMisuseError, match=r"'draft'.*\{\{draft\}\}") as info:
        bad.trace()
    assert info.value.var == "draft"
    assert "f-string" in str(info.value)


def test_var_in_str_and_bool_are_errors() -> None:
    @dsl.program
    async def in_str() -> str:
        return str(dsl.gen("x"))

    @dsl.program
    async def in_if() -> None:
        if dsl.gen("x"):
            pass

    with pytest.raises(VarMisuseError, match=r"str\(\)"):
        in_str.trace()
    with pytest.raises(VarMisuseError, match="truth value"):
        in_if.trace()


def test_placeholder_without_input() -> None:
    @dsl.program
    async def p() -> None:
        dsl.gen("Hello {{name}} and {{other}}", other="x")

    with pytest.raises(TemplateError, match=r"\{\{name\}\}") as info:
        p.trace()
    assert info.value.name == "name"
    assert info.value.template == "Hello {{name}} and {{other}}"


def test_input_without_placeholder() -> None:
    @dsl.program
    async def p() -> None:
        dsl.gen("Hello {{who}}", who="Ada", whom="x", name="greeting")

    with pytest.raises(TemplateError, match="'whom' is not used") as info:
        p.trace()
    assert info.value.name == "whom"


def test_placeholder_named_like_a_setting() -> None:
    @dsl.program
    async def p() -> None:
        dsl.gen("Hello {{name}}", name="greeting")

    with pytest.raises(TemplateError, match="'name' is a setting of the call"):
        p.trace()


def test_gen_outside_a_program() -> None:
    with pytest.raises(ProgramError, match=r"outside a @dsl\.program"):
        dsl.gen("x")


def test_tool_outside_a_program_points_to_fn() -> None:
    @dsl.tool
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ProgramError, match=r"add\.fn"):
        add(1, 2)
    assert add.fn(1, 2) == 3


def test_tool_with_wrong_arguments() -> None:
    @dsl.tool
    def add(a: int, b: int) -> int:
        return a + b

    @dsl.program
    async def p() -> None:
        add(1)

    with pytest.raises(ProgramError, match="tool 'add': bad arguments"):
        p.trace()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"options": []}, "non-empty list"),
        ({"options": ["a", "a"]}, "distinct"),
        ({"options": "ab"}, "non-empty list"),
    ],
)
def test_select_rejects_bad_options(kwargs: dict[str, object], message: str) -> None:
    @dsl.program
    async def p() -> None:
        dsl.select("pick", **kwargs)  # type: ignore[arg-type]

    with pytest.raises(ProgramError, match=message):
        p.trace()


@dsl.tool
def _lookup(city: str) -> str:
    return city


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"stop": [""]}, "stop"),
        ({"timeout": 0}, "timeout"),
        ({"name": "not an identifier"}, "identifier"),
        ({"require": "Paris"}, "require must be a list of non-empty strings"),
        ({"require": ["Paris", ""]}, "require must be a list of non-empty strings"),
        ({"require": ["Paris"], "async_calls": True, "tools": [_lookup]}, "cannot take require"),
    ],
)
def test_gen_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    @dsl.program
    async def p() -> None:
        dsl.gen("x", **kwargs)  # type: ignore[arg-type]

    with pytest.raises(ProgramError, match=message):
        p.trace()


def test_program_must_be_async() -> None:
    def sync() -> None:
        pass

    with pytest.raises(ProgramError, match="async def"):
        dsl.program(sync)  # type: ignore[arg-type]


def test_program_arguments_are_checked() -> None:
    @dsl.program
    async def p(a: int) -> None:
        pass

    with pytest.raises(ProgramError, match="bad arguments"):
        p.trace(1, 2)


def test_var_from_another_program_instance() -> None:
    leaked: list[dsl.Var[str]] = []

    @dsl.program
    async def first() -> None:
        leaked.append(dsl.gen("x"))

    @dsl.program
    async def second() -> None:
        dsl.gen("{{v}}", v=leaked[0])

    first.trace()
    with pytest.raises(ProgramError, match="another program"):
        second.trace()
