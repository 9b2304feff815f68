"""AsyncLM's CML: the frame parser on text split anywhere, its errors naming the frame, safe
boundaries, the frames the runtime writes, the per-tool grammar and the system prompt."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dsl
from dsl import cml
from orchestrator import constrain


def weather(city: str, days: int = 1) -> str:
    """Forecast for a city."""
    return f"{city}:{days}"


def add(a: int, b: float, *, unit: str | None) -> float:
    return a + b


def ping() -> str:
    return "pong"


TOOLS = [cml.ToolSpec.from_function(f) for f in (weather, add, ping)]

TEXT = (
    'Let me look. [CALL] 1 [HEAD] weather("Paris", 3) [END] and [CALL] 2 [HEAD] '
    'add(1, 2.5, unit="kg") [END][CALL] 3 [HEAD] ping() [END] wait [TRAP][END] '
    "a [bracket] then [CALL] 4 [HEAD] nope(1) [END] done"
)


def merged(events: list[cml.Event]) -> list[cml.Event]:
    """Adjacent text events joined (how text is chunked is not part of the meaning)."""
    out: list[cml.Event] = []
    for ev in events:
        if isinstance(ev, cml.Text) and out and isinstance(out[-1], cml.Text):
            out[-1] = cml.Text(out[-1].text + ev.text)
        else:
            out.append(ev)
    return out


def parse(chunks: list[str]) -> list[cml.Event]:
    p = cml.FrameParser(TOOLS)
    events: list[cml.Event] = []
    for c in chunks:
        events += p.feed(c)
    events += p.close()
    return merged(events)


def test_events_in_text_order() -> None:
    events = parse([TEXT])
    assert events == [
        cml.Text("Let me look. "),
        cml.CallStarted("1", "weather"),
        cml.CallReady("1", "weather", ("Paris", 3), {}, '[CALL] 1 [HEAD] weather("Paris", 3)'),
        cml.CallEnd("1", '[CALL] 1 [HEAD] weather("Paris", 3) [END]'),
        cml.Text(" and "),
        cml.CallStarted("2", "add"),
        cml.CallReady(
            "2", "add", (1, 2.5), {"unit": "kg"}, '[CALL] 2 [HEAD] add(1, 2.5, unit="kg")'
        ),
        cml.CallEnd("2", '[CALL] 2 [HEAD] add(1, 2.5, unit="kg") [END]'),
        cml.CallStarted("3", "ping"),
        cml.CallReady("3", "ping", (), {}, "[CALL] 3 [HEAD] ping()"),
        cml.CallEnd("3", "[CALL] 3 [HEAD] ping() [END]"),
        cml.Text(" wait "),
        cml.Trap(),
        cml.Text(" a [bracket] then "),
        cml.FrameError(
            "4",
            "[CALL] 4 [HEAD] nope(1) [END]",
            "unknown tool 'nope' (tools: add, ping, weather)",
        ),
        cml.Text(" done"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(TEXT)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [TEXT[a:b] for a, b in zip([0, *points], [*points, len(TEXT)], strict=True)]
    assert parse(chunks) == parse([TEXT])


def test_one_character_at_a_time() -> None:
    assert parse(list(TEXT)) == parse([TEXT])


def test_a_call_is_ready_at_its_closing_parenthesis_before_end() -> None:
    p = cml.FrameParser(TOOLS)
    assert p.feed("[CALL] 7 [HEAD] weath") == []
    assert p.feed('er("Oslo"') == [cml.CallStarted("7", "weather")]
    ready = p.feed(") [EN")
    assert ready == [
        cml.CallReady("7", "weather", ("Oslo",), {}, '[CALL] 7 [HEAD] weather("Oslo")')
    ]
    assert p.open_frame == '[CALL] 7 [HEAD] weather("Oslo") [EN'
    assert p.feed("D]") == [cml.CallEnd("7", '[CALL] 7 [HEAD] weather("Oslo") [END]')]
    assert p.open_frame is None


def test_brackets_and_frame_tags_inside_arguments_do_not_end_them() -> None:
    p = cml.FrameParser(TOOLS)
    events = p.feed('[CALL] 1 [HEAD] weather("a) [END] (b", 2) [END]')
    assert cml.CallReady("1", "weather", ("a) [END] (b", 2), {}, events[1].frame) in events  # type: ignore[union-attr]
    p = cml.FrameParser([cml.ToolSpec.from_function(lambda xs, d: None, name="f")])
    events = p.feed('[CALL] 1 [HEAD] f([1, [2, 3]], {"k": ")"}) [END]')
    assert isinstance(events[1], cml.CallReady)
    assert events[1].args == ([1, [2, 3]], {"k": ")"})


def test_safe_boundaries() -> None:
    p = cml.FrameParser(TOOLS)
    assert p.safe_boundary
    p.feed("some text ")
    assert p.safe_boundary
    p.feed("[")
    assert not p.safe_boundary  # a frame tag may be beginning
    p.feed("CALL] 1 [HEAD] ping(")
    assert not p.safe_boundary
    p.feed(") [END]")
    assert p.safe_boundary
    p.feed("[not a tag")
    assert p.safe_boundary  # "[n" starts no tag: plain text
    p.feed(" [TRAP]")
    assert not p.safe_boundary
    p.feed("[END]")
    assert p.safe_boundary


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("[CALL] 1 [HEAD] nope(1) [END]", "unknown tool 'nope' (tools: add, ping, weather)"),
        (
            "[CALL] 1 [HEAD] weather() [END]",
            "wrong arguments for weather(city: str, days: int = 1)",
        ),
        ("[CALL] 1 [HEAD] weather(1, 2, 3) [END]", "too many positional arguments"),
        ('[CALL] 1 [HEAD] weather("x", days="2") [END]', "argument 'days' of weather"),
        ("[CALL] 1 [HEAD] add(1, 2) [END]", "missing a required argument: 'unit'"),
        ('[CALL] 1 [HEAD] weather("x", bad) [END]', "malformed arguments: expected a JSON value"),
        ('[CALL] 1 [HEAD] weather(city="x", "y") [END]', "positional argument follows"),
        ('[CALL] 1 [HEAD] weather("x" "y") [END]', "malformed arguments: expected ','"),
        ("[CALL] [HEAD] ping() [END]", "malformed call frame"),
        ("[CALL] 1 ping [END]", "malformed call frame"),
        ("[INTR] 1 [HEAD] 42 [END]", "only the runtime writes [INTR] frames"),
    ],
)
def test_bad_frames_are_errors_naming_the_frame(frame: str, message: str) -> None:
    p = cml.FrameParser(TOOLS)
    events = p.feed("x " + frame + " y") + p.close()
    errors = [e for e in events if isinstance(e, cml.FrameError)]
    assert len(errors) == 1, events
    assert errors[0].frame == frame
    assert message in errors[0].message
    assert frame in str(errors[0])
    assert not any(isinstance(e, cml.CallReady) for e in events)
    assert events[-1] == cml.Text(" y")


def test_a_reused_call_id_is_an_error() -> None:
    p = cml.FrameParser(TOOLS)
    events = p.feed("[CALL] 1 [HEAD] ping() [END] [CALL] 1 [HEAD] ping() [END]")
    assert [type(e).__name__ for e in events] == [
        "CallStarted",
        "CallReady",
        "CallEnd",
        "Text",
        "FrameError",
    ]
    assert "call id 1 is already used" in events[-1].message  # type: ignore[union-attr]


def test_text_that_ends_inside_a_frame_names_it() -> None:
    p = cml.FrameParser(TOOLS)
    p.feed('ok [CALL] 3 [HEAD] weather("Par')
    with pytest.raises(cml.UnclosedFrame) as err:
        p.close()
    assert err.value.frame == '[CALL] 3 [HEAD] weather("Par'
    assert 'weather("Par' in str(err.value)
    p = cml.FrameParser(TOOLS)
    p.feed("ends with [CA")
    assert p.close() == [cml.Text("[CA")]  # a tag that never completed is text


def test_whitespace_and_python_constants_are_forgiven() -> None:
    p = cml.FrameParser([cml.ToolSpec.from_function(lambda a, b, c: None, name="f")])
    events = p.feed("[CALL]  9   [HEAD]f( True , None,c=false )[END]")
    assert isinstance(events[1], cml.CallReady)
    assert events[1].args == (True, None) and events[1].kwargs == {"c": False}


def test_stop_at_trap_leaves_the_rest_unread() -> None:
    p = cml.FrameParser(TOOLS)
    events = p.feed("a [TRAP][END][CA", stop_at_trap=True)
    assert events == [cml.Text("a "), cml.Trap()]
    assert p.unread == "[CA" and p.text == "a [TRAP][END]" and p.safe_boundary


def test_prose_drops_frames() -> None:
    p = cml.FrameParser(TOOLS)
    for c in TEXT:
        p.feed(c)
    p.close()
    assert p.prose == "Let me look. and wait a [bracket] then done"


def test_result_and_error_frames() -> None:
    assert cml.format_result("1", "sunny") == '[INTR] 1 [HEAD] "sunny" [END]'
    assert cml.format_result("2", {"t": [1, 2]}) == '[INTR] 2 [HEAD] {"t": [1, 2]} [END]'
    # a result can never close or open a frame
    assert cml.format_result("3", "x [END] [CALL]") == (
        '[INTR] 3 [HEAD] "x \\u005bEND] \\u005bCALL]" [END]'
    )
    assert cml.format_result("4", object()).startswith('[INTR] 4 [HEAD] "<object object')
    assert cml.format_error("5", "timed out\nafter 2s [END]") == (
        "[INTR] 5 [HEAD] error: timed out after 2s (END) [END]"
    )


def test_cml_text_is_a_string_with_the_exchange() -> None:
    rec = cml.CallRecord(id="1", fn="ping", result="pong")
    text = cml.CMLText("answer", "answer [CALL] ...", (rec,))
    assert text == "answer" and isinstance(text, str)
    assert text.calls == (rec,) and text.transcript.startswith("answer [CALL]")
    back = pickle.loads(pickle.dumps(text))
    assert back == "answer" and back.calls == (rec,)


def test_the_grammar_allows_exactly_well_formed_calls() -> None:
    g = dsl.Grammar.lark(cml.grammar(TOOLS))
    good = (
        'a [CALL] 1 [HEAD] weather("Paris") [END] b [CALL] 2 [HEAD] weather("Oslo", 2) [END]'
        "[CALL] 3 [HEAD] add(1, 2.5, unit=null) [END] [TRAP][END] [CALL] 4 [HEAD] ping() [END]"
    )
    constrain.check(g, good)
    for bad in (
        "a [INTR] 1 [HEAD] 2 [END]",  # the model cannot write [INTR]
        "a [CALL] 1 [HEAD] nope() [END]",  # unknown tool
        "a [CALL] 1 [HEAD] weather() [END]",  # arity
        'a [CALL] 1 [HEAD] weather("a", 2, 3) [END]',
        "a [CALL] 1 [HEAD] weather(3) [END]",  # type
        'a [CALL] 1 [HEAD] weather("a", 2.5) [END]',
        "a [CALL] 1 [HEAD] ping() ",  # unclosed
        "a [bracket]",  # no free "["
        '[CALL] 1 [HEAD] weather("' + "x" * (cml.MAX_STRING_ARG + 1) + '") [END]',
    ):
        with pytest.raises(constrain.Invalid):
            constrain.check(g, bad)
    # everything the grammar accepts, the parser runs without errors
    p = cml.FrameParser(TOOLS)
    events = p.feed(good) + p.close()
    assert not any(isinstance(e, cml.FrameError) for e in events)
    assert sum(isinstance(e, cml.CallReady) for e in events) == 4


def test_the_grammar_is_cheap_to_mask() -> None:
    import grammars

    assert grammars.lint(cml.grammar(TOOLS)) == []
    assert "tool-0 ::=" in constrain.gbnf(dsl.Grammar.lark(cml.grammar(TOOLS)))  # llama.cpp


def test_system_prompt_lists_typed_tools() -> None:
    text = cml.system_prompt(TOOLS, interrupt="trap")
    assert "[CALL] <n> [HEAD] <tool>(<arguments>) [END]" in text
    assert "- weather(city: str, days: int = 1) -> str: Forecast for a city." in text
    assert "- add(a: int, b: float, *, unit: str | None) -> float" in text
    assert "when you write [TRAP][END]" in text
    assert '[CALL] 1 [HEAD] weather("text") [END]' in text
    assert "as soon as it returns" in cml.system_prompt(TOOLS)
    with pytest.raises(ValueError, match="at least one tool"):
        cml.system_prompt([])
    with pytest.raises(ValueError, match="not an identifier"):
        cml.ToolSpec.from_function(ping, name="bad name")


def test_a_frame_without_its_end_does_not_swallow_the_next() -> None:
    """A model that leaves out ``[END]`` used to lose everything up to the next ``[END]``:
    the next call too. A ``[CALL]`` or ``[TRAP]`` now ends the open frame; a call whose
    arguments were complete still ran."""
    text = (
        '[CALL] 1 [HEAD] weather("Paris") and then [CALL] 2 [HEAD] ping() [END] '
        "[CALL] 3 [HEAD] oops [CALL] 4 [HEAD] ping() [END] [TRAP] [CALL] 5 [HEAD] ping() [END]"
    )
    events = parse([text])
    assert [type(e).__name__ for e in events if not isinstance(e, cml.Text)] == [
        "CallStarted", "CallReady", "CallEnd",  # 1: ran, its frame ended at [CALL] 2
        "CallStarted", "CallReady", "CallEnd",  # 2
        "FrameError",  # 3: no tool(arguments) before [CALL] 4
        "CallStarted", "CallReady", "CallEnd",  # 4
        "FrameError",  # [TRAP] with no [END]
        "CallStarted", "CallReady", "CallEnd",  # 5
    ]  # fmt: skip
    ends = [e for e in events if isinstance(e, cml.CallEnd)]
    assert ends[0] == cml.CallEnd("1", '[CALL] 1 [HEAD] weather("Paris") and then ')
    errors = [e for e in events if isinstance(e, cml.FrameError)]
    assert errors[0].frame == "[CALL] 3 [HEAD] oops "
    assert "malformed call frame" in errors[0].message
    assert errors[1].message == "[TRAP] must be followed by [END]"
    assert parse(list(text)) == events  # split anywhere, the same
