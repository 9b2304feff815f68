"""Asynchronous function calls (AsyncLM): tools start before their frame ends and run while the
model decodes, results come back as [INTR] frames per policy, failures become error frames, and
a frame left open is a clear error; on scripted models (injected in the sequence, or stop and
resume), on the embedded engine, and over real HTTP."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import anyio
import pytest
import trio.testing

import dsl
import orchestrator
from dsl import cml
from orchestrator.backends import Completion, LLMRequest, LocalBackend
from orchestrator.backends.local import SessionText
from orchestrator.errors import ConstraintViolation, GrammarUnsupported, ProgramError
from orchestrator.runtime._asynclm import render_prompt

pytestmark = pytest.mark.anyio

Part = str | Callable[[str], str]
Policy = Literal["each", "trap"]
_TOKEN = re.compile(r"\[|\]|\s+|[^\[\]\s]+")
_INTR = re.compile(r"\[INTR\] .*? \[END\]")


def tokens(text: str) -> list[str]:
    """Words, spaces and brackets: frames arrive split across many chunks."""
    return _TOKEN.findall(text)


class FakeModel:
    """Plays a model that writes ``script`` a token every ``token_s`` seconds. A part of the
    script may be a function of the context so far (to use injected results). As a session
    backend it pauses after a pause string and takes injected text; as a plain backend
    (``session=False``) it streams completions, continuing a prompt that holds its earlier
    output and the frames appended to it."""

    name = "fake-model"

    def __init__(
        self, script: Sequence[Part], *, token_s: float = 0.01, grammars: bool = True
    ) -> None:
        self.script = list(script)
        self.token_s = token_s
        self.grammars = grammars
        self.requests: list[LLMRequest] = []
        self.injected: list[tuple[float, int, str]] = []  # (time, after tokens, text)
        self.clock: list[tuple[float, str]] = []  # when each token was written

    # -- resume path: completions -----------------------------------------------------------
    async def complete(self, request: LLMRequest) -> Completion:  # pragma: no cover
        raise AssertionError("async calls stream")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        if request.grammar is not None and not self.grammars:
            raise GrammarUnsupported("no grammar field", backend=self.name)
        assert request.prompt is not None
        base = self.requests[0].prompt
        assert base is not None and request.prompt.startswith(base)
        context = request.prompt[len(base) :]
        written = _INTR.sub("", context)
        text = "".join(p if isinstance(p, str) else p(context) for p in self.script)
        assert text.startswith(written), (text, written)
        budget = request.max_tokens or 10**9
        for tok in tokens(text[len(written) :])[:budget]:
            await anyio.sleep(self.token_s)
            self.clock.append((anyio.current_time(), tok))
            yield tok

    async def aclose(self) -> None:
        pass


class SessionModel(FakeModel):
    """The same model on an engine that takes injected tokens."""

    @contextlib.asynccontextmanager
    async def session(
        self, request: LLMRequest, *, pause: Sequence[str] = ()
    ) -> AsyncIterator[_Session]:
        self.requests.append(request)
        yield _Session(self, tuple(pause), request.max_tokens or 10**9)


class _Session:
    def __init__(self, model: SessionModel, pause: tuple[str, ...], budget: int) -> None:
        self.model = model
        self.pause = pause
        self.budget = budget
        self.context = ""
        self.n = 0
        self.resumed = anyio.Event()
        self.paused = False
        self.completion: Completion | None = None

    async def __aiter__(self) -> AsyncIterator[SessionText]:
        for part in self.model.script:
            text = part if isinstance(part, str) else part(self.context)
            for tok in tokens(text):
                if self.n >= self.budget:
                    self.completion = Completion(text="", finish_reason="length")
                    return
                await anyio.sleep(self.model.token_s)
                self.n += 1
                self.context += tok
                self.model.clock.append((anyio.current_time(), tok))
                yield SessionText(tok, self.n)
                if any(self.context.endswith(p) for p in self.pause):
                    self.paused = True
                    self.resumed = anyio.Event()
                    await self.resumed.wait()

    async def inject(self, text: str, *, after: int | None = None) -> bool:
        if after is not None and after != self.n:
            return False
        assert not _INTR.sub("", text).strip(), f"only frames are injected: {text!r}"
        self.model.injected.append((anyio.current_time(), self.n, text))
        self.context += text
        self.paused = False
        self.resumed.set()
        return True


# -- tools ------------------------------------------------------------------------------------
LOG: list[tuple[str, str, float]] = []


@dsl.tool
async def lookup(key: str) -> str:
    """Look a key up (0.1 s)."""
    LOG.append(("start", key, anyio.current_time()))
    await anyio.sleep(0.1)
    LOG.append(("end", key, anyio.current_time()))
    return key.upper()


@dsl.tool
def double(n: int) -> int:
    """Twice n (a synchronous tool, run in a thread)."""
    return 2 * n


@dsl.tool(timeout=0.05)
async def stuck(n: int) -> int:
    """Never answers in time."""
    await anyio.sleep(10)
    return n


@dsl.tool
async def broken(n: int) -> int:
    """Raises."""
    raise ValueError(f"no {n}")


TOOLS: list[dsl.Tool[Any]] = [lookup, double, stuck, broken]


def program(interrupt: Policy = "each", max_tokens: int = 200) -> dsl.Program[..., str]:
    @dsl.program
    async def agent(q: str) -> str:
        return await dsl.gen(
            "Answer {{q}}",
            q=q,
            tools=TOOLS,
            async_calls=True,
            interrupt=interrupt,
            max_tokens=max_tokens,
            name="agent",
        )

    return agent


async def run(model: FakeModel, interrupt: Policy = "each", max_tokens: int = 200) -> cml.CMLText:
    LOG.clear()
    async with orchestrator.Orchestrator(model) as orch:
        h = await orch.submit(program(interrupt, max_tokens), "q")
        value = await h.result()
    assert isinstance(value, cml.CMLText)
    return value


def result_of(call_id: str) -> Callable[[str], str]:
    """A script part that quotes an injected result (the model "uses" it)."""

    def part(context: str) -> str:
        m = re.search(rf"\[INTR\] {call_id} \[HEAD\] (.*?) \[END\]", context)
        return f" got {m.group(1) if m else 'nothing'}."

    return part


CALL_THEN_TALK: list[Part] = [
    'Looking. [CALL] 1 [HEAD] lookup("a") [END] ',
    "meanwhile " * 20,
    "[TRAP][END]",
    result_of("1"),
]


@pytest.fixture(params=["session", "resume"])
def model_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(kind: str, script: Sequence[Part], **kw: object) -> FakeModel:
    cls = SessionModel if kind == "session" else FakeModel
    return cls(script, **kw)  # type: ignore[arg-type]


async def test_tool_starts_before_end_and_runs_while_decoding(model_kind: str) -> None:
    model = make(model_kind, CALL_THEN_TALK)
    out = await run(model)
    (rec,) = out.calls
    assert rec.fn == "lookup" and rec.args == ("a",) and rec.result == "A"
    assert rec.started is not None and rec.frame_end is not None and rec.ended is not None
    # Conveyor: the tool started at ")" and the model still had " [END]" to write
    assert rec.started < rec.frame_end
    # it ran while the model wrote: tokens were decoded between its start and its end
    during = [t for t, _ in model.clock if rec.started < t < rec.ended]
    assert len(during) >= 3  # ~10 at 10 ms a token, fewer on a loaded machine
    # "each": injected as it returned, mid-text, before the trap
    assert rec.delivered is not None and rec.delivered >= rec.ended
    assert out.transcript.index("[INTR] 1 [HEAD]") < out.transcript.index("[TRAP][END]")
    assert out.endswith('got "A".')
    assert "[" not in out and out.startswith("Looking. meanwhile")


async def test_trap_policy_delivers_at_the_trap(model_kind: str) -> None:
    model = make(model_kind, CALL_THEN_TALK)
    out = await run(model, interrupt="trap")
    (rec,) = out.calls
    assert out.transcript.index("[TRAP][END]") < out.transcript.index("[INTR] 1 [HEAD]")
    assert out.transcript.endswith('[TRAP][END][INTR] 1 [HEAD] "A" [END] got "A".')
    assert rec.delivered is not None and rec.ended is not None and rec.delivered >= rec.ended


async def test_a_trap_waits_for_every_pending_call(model_kind: str) -> None:
    script: list[Part] = [
        'Both. [CALL] 1 [HEAD] lookup("x") [END] [CALL] 2 [HEAD] double(21) [END] ',
        "[TRAP][END]",
        result_of("1"),
        result_of("2"),
    ]
    model = make(model_kind, script, token_s=0.001)
    out = await run(model, interrupt="trap")
    assert [c.result for c in out.calls] == ["X", 42]
    assert out.endswith('got "X". got 42.')
    # the model went on only once the slow tool had returned, with both results at once
    lookup_end = max(t for kind, _, t in LOG if kind == "end")
    assert all(c.delivered is not None and c.delivered >= lookup_end for c in out.calls)
    # (the first "got" of the final text; a closed stream may have written dropped ones before)
    got_at = [t for t, tok in model.clock if tok == "got"][-2]
    assert got_at > lookup_end
    assert out.transcript.endswith(
        '[TRAP][END][INTR] 2 [HEAD] 42 [END][INTR] 1 [HEAD] "X" [END] got "X". got 42.'
    )


@pytest.mark.parametrize("kind", ["session", "resume"])
def test_async_is_faster_than_synchronous_calling(kind: str) -> None:
    # in virtual time (trio's mock clock), so that the figures are exact whatever the load
    calls = [f'[CALL] {i} [HEAD] lookup("k{i}") [END] ' for i in range(1, 4)]
    sync_script: list[Part] = [*(part for c in calls for part in (c, "[TRAP][END] ")), "ok"]

    async def timed(script: list[Part]) -> tuple[float, cml.CMLText]:
        start = anyio.current_time()
        out = await run(make(kind, script, token_s=0.001), interrupt="trap")
        return anyio.current_time() - start, out

    def virtual(script: list[Part]) -> tuple[float, cml.CMLText]:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result: tuple[float, cml.CMLText] = anyio.run(
            timed, script, backend="trio", backend_options={"clock": clock}
        )
        return result

    async_script: list[Part] = [*calls, "[TRAP][END] ", "ok"]
    sync_s, sync = virtual(sync_script)
    async_s, asynchronous = virtual(async_script)
    assert [c.result for c in sync.calls] == [c.result for c in asynchronous.calls]
    decode = 0.001 * len(tokens("".join(str(p) for p in sync_script)))  # 1 ms a token
    # synchronous: each 0.1 s call waited for in turn, less what overlaps " [END] [TRAP][END]"
    # (the call starts at its ")": Conveyor)
    assert sync_s == pytest.approx(decode + 3 * (0.1 - 0.001 * len(tokens(" [END] [TRAP][END]"))))
    # asynchronous: the three calls overlap the decoding of the later frames and each other;
    # the trap waits only for what is left of the last one
    async_decode = 0.001 * len(tokens("".join(str(p) for p in async_script)))
    assert async_s == pytest.approx(async_decode + 0.1 - 0.001 * len(tokens(" [END] [TRAP][END]")))
    assert async_s < sync_s - 0.15


async def test_failures_become_error_frames_and_the_text_goes_on(model_kind: str) -> None:
    script = [
        "[CALL] 1 [HEAD] stuck(1) [END] [CALL] 2 [HEAD] broken(2) [END] ",
        "[CALL] 3 [HEAD] nope(3) [END] [CALL] 4 [HEAD] double(1, 2) [END] ",
        "[TRAP][END]",
        " still here",
    ]
    out = await run(make(model_kind, script), interrupt="trap")
    by_id = {c.id: c for c in out.calls}
    assert "timed out" in (by_id["1"].error or "")
    assert "ValueError: no 2" in (by_id["2"].error or "")
    assert "unknown tool 'nope'" in (by_id["3"].error or "")
    assert "[CALL] 3 [HEAD] nope(3) [END]" in (by_id["3"].error or "")
    assert "too many positional arguments" in (by_id["4"].error or "")
    assert by_id["3"].started is None and by_id["4"].started is None
    assert "[INTR] 1 [HEAD] error: timed out after 0.05s [END]" in out.transcript
    assert "[INTR] 2 [HEAD] error: ValueError: no 2 [END]" in out.transcript
    assert "[INTR] 3 [HEAD] error: unknown tool 'nope'" in out.transcript
    assert out.endswith("still here")


async def test_a_frame_never_closed_is_a_clear_error(model_kind: str) -> None:
    model = make(model_kind, ["fine [CALL] 1 [HEAD] lookup(", '"a' + " b" * 300])
    with pytest.raises(ConstraintViolation) as err:
        await run(model, max_tokens=40)
    assert "never closed" in str(err.value)
    assert "[CALL] 1 [HEAD] lookup(" in err.value.reason and "max_tokens=40" in err.value.reason


async def test_results_are_never_injected_inside_a_frame() -> None:
    # a result returns while the model is half-way through another frame: it waits for [END]
    script = [
        "[CALL] 1 [HEAD] double(2) [END] ",
        "[CALL] 2 [HEAD] lookup(",
        '"' + "x" * 40 + '"',
        ") [END] after",
    ]
    model = SessionModel(script, token_s=0.01)
    out = await run(model)
    (_, after, text) = model.injected[0]
    assert text == "[INTR] 1 [HEAD] 4 [END]"
    written = "".join(tok for _, tok in model.clock[:after])
    assert written.endswith("[END]") or written.endswith(" ")
    assert cml.FrameParser([cml.ToolSpec.from_tool(t) for t in TOOLS]).feed(written) is not None
    assert out.transcript.index("[INTR] 1") > out.transcript.index(") [END]")


async def test_resume_requests_continue_the_same_prompt() -> None:
    model = FakeModel(CALL_THEN_TALK, token_s=0.001)
    out = await run(model, interrupt="trap")
    first, *rest = model.requests
    assert first.prompt is not None and first.messages is None
    assert first.prompt.startswith("system: You can call tools while you write")
    assert first.prompt.endswith("user: Answer q\nassistant:")
    assert first.grammar is not None and first.grammar.kind == "lark"
    (resumed,) = rest
    assert resumed.prompt == first.prompt + out.transcript[: -len(' got "A".')]
    assert resumed.max_tokens is not None and first.max_tokens == 200
    assert resumed.max_tokens < 200  # the budget spans the resumed requests


async def test_without_a_grammar_field_the_parser_still_guards() -> None:
    script: list[Part] = ["[CALL] 1 [HEAD] double(4) [END] [TRAP][END]", result_of("1")]
    model = FakeModel(script)
    model.grammars = False
    async with orchestrator.Orchestrator(model) as orch:
        h = await orch.submit(program("trap"), "q")
        out = await h.result()
        stats = h.stats["agent"]
    assert out.endswith("got 8.") and stats.degraded
    assert model.requests[0].grammar is not None and model.requests[1].grammar is None


async def test_async_calls_reject_a_grammar() -> None:
    @dsl.program
    async def bad() -> object:
        return await dsl.gen(
            "x", tools=[double], async_calls=True, grammar=dsl.Grammar.regex("[a-z]+")
        )

    with pytest.raises(ProgramError, match="cannot take a grammar or schema"):
        bad.trace()  # caught when the program is traced, before anything is sent


def test_render_prompt() -> None:
    from orchestrator.backends import Message

    msgs = (Message("system", "S"), Message("user", "U"))
    assert render_prompt(msgs) == "system: S\nuser: U\nassistant:"


# -- the embedded engine -------------------------------------------------------------------------
@dsl.tool
def add(a: int, b: int) -> int:
    """a + b"""
    return a + b


@dsl.tool
async def slow(n: int) -> int:
    """2n, after a while"""
    await anyio.sleep(0.05)
    return 2 * n


@dsl.program
async def random_agent(seed: int, interrupt: Policy) -> str:
    return await dsl.gen(
        "Question: sum",
        tools=[add, slow],
        async_calls=True,
        interrupt=interrupt,
        max_tokens=200,
        seed=seed,
        temperature=1.0,
        name="agent",
    )


async def finished(handle: orchestrator.ProgramHandle[str]) -> cml.CMLText | None:
    """The program's value, or None if the model ran out of tokens inside a frame (a random
    model may; the error must say so)."""
    try:
        out = await handle.result()
    except ConstraintViolation as exc:
        if "never closed" not in exc.reason:
            raise
        return None
    assert isinstance(out, cml.CMLText)
    return out


# Seeds at which the random-weight "tiny" model writes calls (and, for 107, a trap whose last
# token also begins the next frame); what it writes is checked whatever it is.
ENGINE_SEEDS = [22, 97, 107]


@pytest.mark.parametrize("interrupt", ["each", "trap"])
async def test_on_the_embedded_engine_frames_are_well_formed(
    anyio_backend: str, interrupt: Policy
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the engine is the same on both loops; once is enough")
    specs = [cml.ToolSpec.from_tool(t) for t in (add, slow)]
    called = 0
    async with orchestrator.Orchestrator(LocalBackend("tiny")) as orch:
        for seed in ENGINE_SEEDS:
            out = await finished(await orch.submit(random_agent, seed, interrupt))
            if out is None:
                continue
            # the model's own text: the transcript without the injected frames
            injected = _INTR.findall(out.transcript)
            written = _INTR.sub("", out.transcript)
            assert "[INTR]" not in written  # only the runtime writes [INTR]
            parser = cml.FrameParser(specs)
            events = parser.feed(written) + parser.close()
            assert not [e for e in events if isinstance(e, cml.FrameError)]
            ready = [e for e in events if isinstance(e, cml.CallReady)]
            assert [(c.fn, c.args) for c in out.calls] == [(e.fn, e.args) for e in ready]
            for rec in out.calls:  # every call ran, and got its answer
                expected = rec.args[0] + rec.args[1] if rec.fn == "add" else 2 * rec.args[0]
                assert rec.result == expected and rec.error is None
                if rec.delivered is not None:
                    assert cml.format_result(rec.id, expected) in injected
            assert len(injected) == sum(1 for c in out.calls if c.delivered is not None)
            called += len(out.calls)
    assert called >= 3


# -- over HTTP -------------------------------------------------------------------------------------
@pytest.mark.http
async def test_over_http_the_engine_server_resumes_after_traps(anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("one loop is enough for a real server")
    from orchestrator.backends import OpenAICompatible
    from orchestrator.testing import EngineServer

    specs = [cml.ToolSpec.from_tool(t) for t in (add, slow)]
    resumed = 0
    with EngineServer("tiny") as server:
        backend = OpenAICompatible(server.url)
        async with backend, orchestrator.Orchestrator(backend) as orch:
            # seeds at which the random model calls tools and traps over this rendering
            for seed, interrupt in [(13, "each"), (22, "each"), (38, "trap"), (23, "trap")]:
                out = await finished(await orch.submit(random_agent, seed, interrupt))
                if out is None:
                    continue
                written = _INTR.sub("", out.transcript)
                assert "[INTR]" not in written
                parser = cml.FrameParser(specs)
                events = parser.feed(written) + parser.close()
                assert not [e for e in events if isinstance(e, cml.FrameError)]
                for rec in out.calls:
                    assert rec.error is None and rec.result is not None
                    if rec.delivered is not None:
                        assert cml.format_result(rec.id, rec.result) in out.transcript
                traps = sum(isinstance(e, cml.Trap) for e in events)
                # each trap and each delivery ended a request and resumed it
                resumed += traps + sum(c.delivered is not None for c in out.calls)
    assert resumed >= 3
