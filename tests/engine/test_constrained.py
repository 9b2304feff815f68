"""Grammars as hard token masks in the embedded engine: random-weight decoding under xgrammar
masks yields text that lark accepts, for every shipped grammar; stop strings; compile limits."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

import dsl
import grammars
from orchestrator import constrain
from orchestrator.engine import (
    Engine,
    EngineRequest,
    EngineTokenizer,
    RequestRejected,
    SampleParams,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(
    serve_tiny: Callable[..., AbstractAsyncContextManager[Engine]],
) -> AsyncIterator[Engine]:
    async with serve_tiny(num_blocks=256, context_length=2048) as e:
        yield e


CLOSERS = (
    "\"", "}", "]", ")", "'", "\n", " ", ",", ".", "(", "[END]", "<END_OF_PLAN>", "join()",
)  # fmt: skip


def closing_bias(
    tok: EngineTokenizer, closers: tuple[str, ...] = CLOSERS
) -> tuple[tuple[int, float], ...]:
    """Random weights rarely choose the token that closes a string or a bracket, so most walks
    would run out of budget mid-sentence; a bias toward closers and the end token makes most
    of them finish (the mask still decides what is allowed)."""
    ids = {i for c in closers for i in tok.encode(c)} | tok.stop_ids()
    return tuple((i, 6.0) for i in sorted(ids))


async def generate(
    engine: Engine, grammar: dsl.Grammar, seed: int, max_tokens: int = 200, **params: object
) -> tuple[str, str]:
    tok = engine.tokenizer
    assert tok is not None
    params.setdefault("logit_bias", closing_bias(tok))
    req = EngineRequest(
        prompt=tok.encode(f"request {seed}: write it"),
        params=SampleParams(max_tokens=max_tokens, temperature=1.0, seed=seed, **params),  # type: ignore[arg-type]
        constraint=await engine.matcher(grammar),
    )
    _, fin = await engine.complete(req)
    return fin.text, fin.reason


@pytest.mark.parametrize("name", grammars.names())
async def test_random_weights_under_the_mask_write_what_lark_accepts(
    engine: Engine, name: str
) -> None:
    grammar = dsl.Grammar.lark(name)
    finished = []

    async def one(seed: int) -> None:
        text, reason = await generate(engine, grammar, seed, max_tokens=400)
        if reason == "stop":  # "length": the budget ran out mid-sentence, nothing to check
            finished.append(text)
            constrain.check(grammar, text)  # raises if lark disagrees with the mask

    async with anyio.create_task_group() as tg:
        for seed in range(16):
            tg.start_soon(one, seed)
    # Plans rarely end on random weights (any name may be a tool, and numbers run on), so one
    # finished plan is the floor; the other grammars finish in most walks.
    assert finished, "no generation ended within budget"


SCHEMA = """
CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, country TEXT);
CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER, venue TEXT);
INSERT INTO singer VALUES (1, 'Ann', 31, 'France'), (2, 'Bo', 45, 'Chile');
INSERT INTO concert VALUES (1, 1, 2014, 'Arena'), (2, 2, 2015, 'Hall');
"""


async def test_sqlite_select_for_a_database_writes_queries_that_run(engine: Engine) -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    grammar = dsl.Grammar.lark(
        grammars.specialise(
            grammars.load("sqlite_select"),
            {
                "table_name": ["singer", "concert"],
                "column_name": ["id", "name", "age", "country", "singer_id", "year", "venue"],
                "table_alias": ["T1", "T2"],
                "column_alias": ["n", "total"],
                "string_literal": ["'Ann'", "'France'"],
            },
        )
    )
    assert engine.tokenizer is not None
    bias = closing_bias(engine.tokenizer, (")", " FROM", " LIMIT", "'"))
    finished = 0
    for seed in range(24):
        text, reason = await generate(engine, grammar, seed, logit_bias=bias)
        if reason != "stop":
            continue
        finished += 1
        try:
            db.execute(text).fetchall()
        except sqlite3.OperationalError as exc:
            # The grammar fixes the syntax and the names; it cannot know which table a column
            # belongs to, nor which alias a query defined.
            message = str(exc)
            assert message.startswith(("no such column", "ambiguous column")), (text, message)
    assert finished >= 8


async def test_a_stop_string_ends_the_text_only_where_the_grammar_may_end(engine: Engine) -> None:
    # ";" after "a" is content (the grammar needs "b" later); after "b" it may end the text
    grammar = dsl.Grammar.lark('start: ("a;")~1..3 "b" (";c")?')
    for seed in range(6):
        text, reason = await generate(engine, grammar, seed, stop=(";",))
        assert reason == "stop"
        assert text.endswith("b") and text.count("a;") >= 1, text
        constrain.check(grammar, text)


async def test_min_tokens_do_not_fight_the_grammar(engine: Engine) -> None:
    text, reason = await generate(engine, dsl.Grammar.choice(["yes"]), 0, min_tokens=5)
    assert (text, reason) == ("yes", "stop")


async def test_a_grammar_too_slow_to_compile_is_rejected_and_others_are_served(
    engine: Engine,
) -> None:
    words = [f"w{i}x{i * 7919 % 10007}" for i in range(3000)]
    slow = dsl.Grammar.lark("start: " + " | ".join(f'"{w}"' for w in words) + ' ("," start)?')
    with pytest.raises(RequestRejected, match="did not compile within"):
        await engine.matcher(slow, time_limit=1e-6)
    text, reason = await generate(engine, dsl.Grammar.regex("[0-9]{3}"), 1)
    assert reason == "stop" and len(text) == 3 and text.isdigit()


async def test_virtual_engines_refuse_grammars() -> None:
    from orchestrator.engine import virtual_engine

    engine = virtual_engine()
    with pytest.raises(RequestRejected, match="virtual-time"):
        await engine.matcher(dsl.Grammar.regex("a"))
