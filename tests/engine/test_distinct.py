"""``EngineRequest.distinct_lines``: a line that ends as a repeat of an earlier one is rewound to
the token chosen by the smallest margin, that token is banned there, and decoding goes on; text
is sent a line at a time, so a rewound line is never seen."""

from __future__ import annotations

import pytest

import dsl
from orchestrator.engine import (
    Engine,
    EngineRequest,
    FinishEvent,
    RequestRejected,
    SampleParams,
    TokenEvent,
)
from orchestrator.engine._engine import line_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def engine(serving_engine: Engine) -> Engine:
    return serving_engine


# Three numbered lines of one letter each: random weights repeat a letter in most walks. (No
# space before the letter: the tiny vocabulary has " x" but not " y", so after "1. " only "x"
# would be a token of its own.)
LETTERS = dsl.Grammar.lark('start: "1." L "\\n2." L "\\n3." L "\\n"\nL: "x" | "y" | "z"')


async def letters(
    engine: Engine, seed: int, *, distinct: bool, grammar: dsl.Grammar = LETTERS
) -> tuple[list[TokenEvent], FinishEvent]:
    assert engine.tokenizer is not None
    req = EngineRequest(
        prompt=engine.tokenizer.encode(f"walk {seed}:"),
        params=SampleParams(max_tokens=40, temperature=1.0, seed=seed),
        constraint=await engine.matcher(grammar),
        distinct_lines=distinct,
    )
    return await engine.complete(req)


def test_line_key_drops_list_markers_and_space() -> None:
    assert line_key('2. search("a")') == 'search("a")'
    assert line_key("  10) x ") == "x"
    assert line_key("- item") == line_key("* item") == "item"
    assert line_key("2024 was") == "2024 was"  # a number is a marker only with its . or )


async def test_repeated_lines_are_decoded_again_until_all_differ(engine: Engine) -> None:
    plain = [(await letters(engine, seed, distinct=False))[1].text for seed in range(12)]
    repeats = [t for t in plain if len({line_key(x) for x in t.splitlines()}) < 3]
    assert repeats, "random walks should repeat a letter: the test would show nothing"
    for seed in range(12):
        events, fin = await letters(engine, seed, distinct=True)
        lines = fin.text.splitlines()
        assert fin.reason == "stop" and len(lines) == 3
        assert sorted(line_key(x) for x in lines) == ["x", "y", "z"], fin.text
        # whole lines only, in order, and nothing of a rewound line
        sent = [e.text for e in events if e.text]
        assert all(t.endswith("\n") for t in sent)
        assert "".join(sent) + fin.tail == fin.text
    assert engine.counters["rewinds"] >= len(repeats)


async def test_a_walk_without_repeats_is_unchanged(engine: Engine) -> None:
    for seed in range(12):
        _, plain = await letters(engine, seed, distinct=False)
        if len({line_key(x) for x in plain.text.splitlines()}) == 3:
            _, kept = await letters(engine, seed, distinct=True)
            assert kept.text == plain.text


async def test_a_repeat_the_grammar_forces_stands(engine: Engine) -> None:
    forced = dsl.Grammar.lark('start: "a\\n" "a\\n"')
    _, fin = await letters(engine, 0, distinct=True, grammar=forced)
    assert fin.reason == "stop" and fin.text == "a\na\n"


async def test_distinct_lines_with_pause_strings_is_refused(engine: Engine) -> None:
    with pytest.raises(RequestRejected, match="distinct_lines"):
        engine.check(EngineRequest(prompt=[1, 2], distinct_lines=True, pause=("[TRAP]",)))


def permutations_grammar() -> dsl.Grammar:
    """Exactly the outputs of ``LETTERS`` whose three letters differ."""
    orders = ["xyz", "xzy", "yxz", "yzx", "zxy", "zyx"]
    alts = " | ".join(f'"1.{a}\\n2.{b}\\n3.{c}\\n"' for a, b, c in orders)
    return dsl.Grammar.lark(f"start: {alts}")


async def test_greedy_rewinds_match_greedy_under_a_grammar_of_distinct_lines(
    engine: Engine,
) -> None:
    """Greedy decoding that rewinds repeats writes what greedy decoding writes when the grammar
    itself allows only distinct lines: the rewound KV cache and grammar state are right."""
    assert engine.tokenizer is not None
    exact = permutations_grammar()
    rewound = 0
    for seed in range(10):
        prompt = engine.tokenizer.encode(f"greedy walk {seed}:")
        outs = []
        for grammar, distinct in ((LETTERS, True), (exact, False)):
            req = EngineRequest(
                prompt=prompt,
                params=SampleParams(max_tokens=40, temperature=0.0),
                constraint=await engine.matcher(grammar),
                distinct_lines=distinct,
            )
            outs.append((await engine.complete(req))[1].text)
            rewound += engine.counters["rewinds"]
        assert outs[0] == outs[1], seed
    assert rewound, "no walk repeated a line: the test would show nothing"
