"""``EngineRequest.require``: an output about to end without one of its required strings (at an
end token, a complete grammar or ``max_tokens``) is rewound to the choice made by the smallest
margin, anywhere in it or the choice to end, and decoded again; its text is sent at the end."""

from __future__ import annotations

import numpy as np
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
from orchestrator.engine._engine import ALTERNATIVES, MAX_REWINDS, _begins, _choice

pytestmark = pytest.mark.anyio


@pytest.fixture
def engine(serving_engine: Engine) -> Engine:
    return serving_engine


# Three letters: random weights leave out a given letter in many walks.
THREE = dsl.Grammar.lark('start: L L L\nL: "x" | "y" | "z"')


async def walk(
    engine: Engine,
    seed: int,
    *,
    require: tuple[str, ...] = (),
    grammar: dsl.Grammar = THREE,
    max_tokens: int = 40,
    temperature: float = 1.0,
    require_order: bool = False,
    require_anywhere: tuple[str, ...] = (),
    alike: tuple[tuple[str, ...], ...] = (),
) -> tuple[list[TokenEvent], FinishEvent]:
    assert engine.tokenizer is not None
    req = EngineRequest(
        prompt=engine.tokenizer.encode(f"walk {seed}:"),
        params=SampleParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
        constraint=await engine.matcher(grammar),
        require=require,
        require_order=require_order,
        require_anywhere=require_anywhere,
        alike=alike,
    )
    return await engine.complete(req)


async def test_an_output_without_a_required_string_is_decoded_again(engine: Engine) -> None:
    plain = [(await walk(engine, seed))[1].text for seed in range(12)]
    assert any("z" not in t for t in plain), "every walk wrote z: the test would show nothing"
    for seed in range(12):
        events, fin = await walk(engine, seed, require=("z",))
        assert fin.reason == "stop" and len(fin.text) == 3 and "z" in fin.text, fin.text
        # nothing is sent before the end: a rewound output is never seen
        assert all(e.text == "" for e in events) and fin.tail == fin.text
    assert engine.counters["rewinds"] >= sum("z" not in t for t in plain)


async def test_the_search_turns_first_to_a_choice_that_begins_the_missing_string(
    engine: Engine,
) -> None:
    """Among the choices it could rewind, one whose alternative begins a word that writes the
    missing string comes first: one rewind per walk, which keeps the walk up to there and
    writes ``z`` in it."""
    words = dsl.Grammar.lark('start: L " " L " " L\nL: "x" | "y" | "z"')
    plain_texts = [(await walk(engine, seed, grammar=words))[1].text for seed in range(24)]
    assert sum("z" not in t for t in plain_texts) >= 3, "the test would show little"
    for seed, plain_text in enumerate(plain_texts):
        before = engine.counters["rewinds"]
        _, fin = await walk(engine, seed, grammar=words, require=("z",))
        at = fin.text.index("z")
        assert engine.counters["rewinds"] - before == ("z" not in plain_text)
        assert "z" in plain_text or (fin.text[:at] == plain_text[:at] and plain_text[at] != "z")


async def test_a_string_begun_by_a_rewind_is_written_on(engine: Engine) -> None:
    """Once a rewind begins the missing string, the tokens after it write the rest of it where
    the grammar allows: one rewind writes a string of four letters the walk never wrote."""
    words = dsl.Grammar.lark('start: W " " W " " W\nW: /[xyz]{1,5}/')
    for seed in range(8):
        _, plain = await walk(engine, seed, grammar=words, max_tokens=20)
        assert "zyzy" not in plain.text, "the walk wrote it: the test would show nothing"
        before = engine.counters["rewinds"]
        _, fin = await walk(engine, seed, grammar=words, max_tokens=20, require=("zyzy",))
        assert "zyzy" in fin.text and engine.counters["rewinds"] - before == 1, fin.text


async def test_an_output_with_its_strings_is_unchanged(engine: Engine) -> None:
    for seed in range(8):
        _, plain = await walk(engine, seed)
        _, kept = await walk(engine, seed, require=tuple(set(plain.text)))
        assert kept.text == plain.text
    assert engine.counters["rewinds"] == 0


async def test_the_choice_to_end_is_undone(engine: Engine) -> None:
    """``"x"`` may end or go on to ``"xz"``: only the end token can be rewound, and it is."""
    optional = dsl.Grammar.lark('start: "x" "z"?')
    plain = [(await walk(engine, s, grammar=optional))[1].text for s in range(16)]
    assert "x" in plain, "no walk ended after x: the test would show nothing"
    for seed in range(16):
        _, fin = await walk(engine, seed, grammar=optional, require=("z",))
        assert fin.reason == "stop" and fin.text == "xz"


async def test_an_output_cut_by_max_tokens_is_rewound(engine: Engine) -> None:
    endless = dsl.Grammar.lark('start: L+\nL: "x" | "y" | "z"')
    plain = [(await walk(engine, s, grammar=endless, max_tokens=3))[1].text for s in range(12)]
    assert any("z" not in t for t in plain)
    for seed in range(12):
        _, fin = await walk(engine, seed, grammar=endless, max_tokens=3, require=("z",))
        assert "z" in fin.text and len(fin.text) <= 3, fin.text  # may also end before 3
    reasons = {(await walk(engine, s, grammar=endless, max_tokens=3))[1].reason for s in range(12)}
    assert "length" in reasons, "no walk ran to max_tokens: the test would show nothing"


async def test_a_string_out_of_reach_ends_it_once_the_search_is_spent(engine: Engine) -> None:
    """No output has ``q``: it ends once the rewinds are spent or no choice is left."""
    for seed in range(4):
        before = engine.counters["rewinds"]
        _, fin = await walk(engine, seed, require=("q",))
        assert fin.reason == "stop" and len(fin.text) == 3 and "q" not in fin.text
        assert 0 < engine.counters["rewinds"] - before <= MAX_REWINDS


async def test_a_failed_search_ends_with_the_best_ending_it_saw(engine: Engine) -> None:
    """No output has ``q``: the search tries its rewinds, then ends with the best ending it
    saw, one that ended by itself before one cut by ``max_tokens``, the earliest of equals:
    the model's own output, if that ended by itself. A complete answer is never given up for
    a cut one."""
    endless = dsl.Grammar.lark('start: L+\nL: "x" | "y" | "z"')
    seen = set()
    for seed in range(16):
        _, plain = await walk(engine, seed, grammar=endless, max_tokens=3)
        before = engine.counters["rewinds"]
        _, fin = await walk(engine, seed, grammar=endless, max_tokens=3, require=("q",))
        assert engine.counters["rewinds"] > before
        seen.add(plain.reason)
        if plain.reason == "stop":
            assert (fin.reason, fin.text) == ("stop", plain.text)
        assert fin.tail == fin.text and "q" not in fin.text
    assert seen == {"stop", "length"}, "the walks all end one way: the test would show little"


async def test_required_strings_in_order(engine: Engine) -> None:
    """``y`` then ``x``: a walk that writes ``x`` before any ``y`` is rewound there at once, and
    one that ends without them in order is rewound at its end. The search never revisits a
    banned choice, so in a space this small it can run out (the walk then stands)."""
    assert engine.tokenizer is not None

    def in_order(t: str) -> bool:
        return "y" in t and "x" in t[t.index("y") :]

    plain = [(await walk(engine, s))[1].text for s in range(12)]
    found = [
        (await walk(engine, s, require=("y", "x"), require_order=True))[1].text for s in range(12)
    ]
    assert sum(map(in_order, plain)) <= 3, plain  # else the test would show little
    assert sum(map(in_order, found)) >= 10, found
    with pytest.raises(RequestRejected, match="require_order needs"):
        engine.check(EngineRequest(prompt=[1, 2], require_order=True))


async def test_strings_required_anywhere_next_to_strings_in_order(engine: Engine) -> None:
    """``y`` then ``x`` in order, and ``z`` anywhere: ``z`` may come before, between or after
    them, and a walk without it is searched for it as for any required string."""
    five = dsl.Grammar.lark('start: L L L L L\nL: "u" | "v" | "w" | "x" | "y" | "z"')

    async def run(seed: int, anywhere: tuple[str, ...]) -> str:
        _, fin = await walk(
            engine,
            seed,
            grammar=five,
            require=("y", "x"),
            require_order=True,
            require_anywhere=anywhere,
        )
        return fin.text

    def in_order(t: str) -> bool:
        return "y" in t and "x" in t[t.index("y") :]

    ordered = [await run(seed, ()) for seed in range(12)]
    found = [await run(seed, ("z",)) for seed in range(12)]
    assert sum(in_order(t) and "z" not in t for t in ordered) >= 3, ordered  # else it shows little
    assert sum(in_order(t) and "z" in t for t in found) >= 10, found
    assert any(t.index("z") < t.index("y") for t in found if "z" in t and "y" in t), found
    with pytest.raises(RequestRejected, match="require_anywhere holds an empty string"):
        engine.check(EngineRequest(prompt=[1, 2], require_anywhere=("",)))


async def test_required_strings_with_distinct_lines(engine: Engine) -> None:
    """Both searches on one sequence: two distinct lines, one of them ``z``."""
    assert engine.tokenizer is not None
    lines = dsl.Grammar.lark('start: L "\\n" L "\\n"\nL: "w" | "x" | "y" | "z"')
    for seed in range(12):
        req = EngineRequest(
            prompt=engine.tokenizer.encode(f"lines {seed}:"),
            params=SampleParams(max_tokens=10, temperature=1.0, seed=seed),
            constraint=await engine.matcher(lines),
            distinct_lines=True,
            require=("z",),
        )
        _, fin = await engine.complete(req)
        first, second = fin.text.split("\n")[:2]
        assert first != second and "z" in (first, second), fin.text


# A list's first line, then two lines in its form or another: random weights mix the forms.
LISTED = dsl.Grammar.lark(
    'start: "- " F "(a, " X ")\\n" line line\n'
    'line: "- " F "(" W ", " X ")\\n"\n'
    'F: "f" | "g" | "h"\nW: "a" | "b" | "c"\nX: "x" | "y"'
)


async def test_a_lists_items_are_written_on_alike_lines(engine: Engine) -> None:
    """``alike``: once a line writes ``a``, the next lines are that line with ``b``, then
    ``c``. A line that goes another way is taken back to where it did and written in the
    form; the text is sent at the end."""
    plain = [(await walk(engine, seed, grammar=LISTED))[1].text for seed in range(12)]

    def alike(t: str) -> bool:
        first = t.split("\n")[0]
        return t == f"{first}\n{first.replace('a,', 'b,')}\n{first.replace('a,', 'c,')}\n"

    assert sum(not alike(t) for t in plain) >= 8, plain  # else the test shows little
    before = engine.counters["rewinds"]
    for seed in range(12):
        _, fin = await walk(engine, seed, grammar=LISTED, alike=(("a", "b", "c"),))
        assert fin.reason == "stop" and alike(fin.text), fin.text
        assert fin.tail == fin.text  # nothing sent before the end
        # the first line is the model's own: the form it chose is kept
        assert fin.text.split("\n")[0] == plain[seed].split("\n")[0]
    assert engine.counters["rewinds"] - before >= sum(not alike(t) for t in plain)


async def test_a_group_whose_first_string_is_not_written_asks_nothing(engine: Engine) -> None:
    for seed in range(4):
        _, plain = await walk(engine, seed, grammar=LISTED)
        _, fin = await walk(engine, seed, grammar=LISTED, alike=(("q", "b", "c"),))
        assert fin.text == plain.text


async def test_alike_is_refused_with_pause_or_a_short_group(engine: Engine) -> None:
    with pytest.raises(RequestRejected, match="alike cannot be combined with pause"):
        engine.check(EngineRequest(prompt=[1, 2], alike=(("a", "b"),), pause=("[TRAP]",)))
    for group in (("a",), ("a", "")):
        with pytest.raises(RequestRejected, match="needs two or more non-empty strings"):
            engine.check(EngineRequest(prompt=[1, 2], alike=(group,)))


async def test_require_is_refused_with_pause_or_an_empty_string(engine: Engine) -> None:
    with pytest.raises(RequestRejected, match="require"):
        engine.check(EngineRequest(prompt=[1, 2], require=("z",), pause=("[TRAP]",)))
    with pytest.raises(RequestRejected, match="empty"):
        engine.check(EngineRequest(prompt=[1, 2], require=("",)))


def test_a_choice_keeps_the_best_token_that_begins_each_required_string() -> None:
    """Besides the best ``ALTERNATIVES``, the best allowed token of each required string's
    beginnings is kept, however far down it ranks, so a rewind can begin the string there."""
    row = np.arange(64, dtype=np.float32)  # token t has logit t: 63 is the model's choice
    row[5] = -np.inf  # not allowed by the grammar
    starts = (np.array([3, 4, 5], dtype=np.int64), np.array([62], dtype=np.int64))
    chosen, alternatives = _choice(row, frozenset({61}), 63, starts)
    assert chosen == 63.0
    tokens = [t for t, _ in alternatives]
    # the best allowed, best first: 62, then 60 down (61 is banned)
    assert tokens[:ALTERNATIVES] == [62, *range(60, 60 - (ALTERNATIVES - 1), -1)]
    assert tokens[ALTERNATIVES:] == [4]  # 62 is among the best already; 5 is not allowed


@pytest.mark.parametrize(
    ("full", "text", "at"),
    [
        ('f("', "K", 3),  # begins a word that begins it
        ('f("', ' "K2', 5),  # spaces and punctuation before it aside
        ('f("K', "2", 3),  # goes on the word "K" to write it
        ('f("', "K2x", 3),  # writes it and more
        ('f("', "Kx", -1),
        ('f("A', "K", -1),  # "AK" does not begin it
        ('f("', '"', -1),  # no letter or digit: begins nothing yet
    ],
)
def test_where_a_token_would_begin_a_required_string(full: str, text: str, at: int) -> None:
    assert _begins(full, len(full), text, "K2") == at
