"""Grammars on a real llama-server: the GBNF emitted from our Lark source holds its output to
what lark accepts, and a pydantic schema through its ``json_schema`` field yields valid
instances, all through the runtime (which re-parses every output)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest

import dsl
import grammars
import orchestrator
from integrations.llamacpp import LlamaServer
from orchestrator import constrain
from orchestrator.backends import OpenAICompatible

pytestmark = [pytest.mark.llamacpp, pytest.mark.http]


@pytest.fixture(scope="module")
def server(llama_server_binary: Path, tiny_gguf: Path) -> Iterator[LlamaServer]:
    with LlamaServer(tiny_gguf, ctx=4096, parallel=4, binary=llama_server_binary) as s:
        yield s


def run(server: LlamaServer, program: dsl.Program[Any], seed: int) -> Any:
    """Run ``program(seed)`` through the runtime on ``server`` (dialect llamacpp)."""

    async def go() -> Any:
        async with OpenAICompatible(server.url, dialect="llamacpp", model="tiny") as backend:
            return await orchestrator.arun(program, seed, backend=backend)

    return anyio.run(go)


# Bounded versions of the shipped shapes: random weights must finish within max_tokens.
PLAN = dsl.Grammar.lark(
    grammars.specialise(grammars.load("llmcompiler_plan"), {"tool_name": ["search", "math"]})
)
COMMAND = dsl.Grammar.lark(
    r"""
    start: verb " " object (", then " verb " " object)~0..2
    verb: "open" | "close" | "move"
    object: "the " ("door" | "window" | "box") | /[0-9]{1,3}/ " steps"
    """
)


class Reading(pydantic.BaseModel):
    sensor: str = pydantic.Field(max_length=12)
    value: int = pydantic.Field(ge=0, le=999)
    ok: bool


def test_gbnf_from_lark_holds_llama_server_to_the_grammar(server: LlamaServer) -> None:
    @dsl.program
    async def command(seed: int) -> str:
        return await dsl.gen(
            "Give a command", grammar=COMMAND, seed=seed, max_tokens=48, temperature=1.0
        )

    for seed in range(8):
        text = run(server, command, seed)
        constrain.check(COMMAND, text)  # the runtime checked it too; this is the lark verdict


def test_a_shipped_grammar_goes_through_gbnf(server: LlamaServer) -> None:
    gbnf = constrain.lark_to_gbnf(PLAN.source)
    assert gbnf.startswith("root ::=") or "root ::=" in gbnf

    @dsl.program
    async def plan(seed: int) -> str:
        return await dsl.gen("Plan", grammar=PLAN, seed=seed, max_tokens=400, temperature=1.0)

    done = 0
    for seed in range(6):
        try:
            text = run(server, plan, seed)
        except orchestrator.ConstraintViolation as exc:
            # Random weights may run out of tokens mid-plan: the runtime says so.
            cut = exc
        else:
            done += 1
            assert text.rstrip().endswith("<END_OF_PLAN>")
            continue
        assert "max_tokens ran out" in cut.reason, cut
    assert done >= 1


def test_pydantic_schema_through_json_schema_gives_instances(server: LlamaServer) -> None:
    @dsl.program
    async def reading(seed: int) -> Reading:
        return await dsl.gen(
            "A sensor reading as JSON", schema=Reading, seed=seed, max_tokens=64, temperature=1.0
        )

    for seed in range(6):
        out = run(server, reading, seed)
        assert isinstance(out, Reading) and 0 <= out.value <= 999
