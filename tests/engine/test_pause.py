"""What AsyncLM needs from the engine: a sequence that pauses after a pause string until tokens
are appended, appends only where the caller saw the output end, no busy loop while paused, and
``LocalBackend.session`` on top."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import dsl
from orchestrator.backends import LLMRequest, LocalBackend
from orchestrator.engine import (
    Engine,
    EngineRequest,
    EngineTokenizer,
    FinishEvent,
    GGUFModel,
    LlamaModel,
    RequestRejected,
    SampleParams,
    TokenEvent,
)

pytestmark = pytest.mark.anyio

TEXT = "ok [TRAP][END] then more"
GREEDY_FEW = SampleParams(max_tokens=4, temperature=0.0, ignore_eos=True)


@asynccontextmanager
async def running(tiny: GGUFModel, tokenizer: EngineTokenizer) -> AsyncIterator[Engine]:
    model = LlamaModel(tiny, num_blocks=64, block_size=16)
    engine = Engine(model, tokenizer, num_blocks=64, block_size=16, context_length=256)
    async with anyio.create_task_group() as tg:
        await tg.start(engine.serve)
        yield engine
        tg.cancel_scope.cancel()


async def forced(engine: Engine, tokenizer: EngineTokenizer, **kw: object) -> EngineRequest:
    """A request whose output the grammar forces to be ``TEXT``."""
    matcher = await engine.matcher(dsl.Grammar.regex(r"ok \[TRAP\]\[END\] then more"))
    return EngineRequest(
        prompt=tokenizer.encode("hello"),
        params=SampleParams(max_tokens=40, temperature=0.0),
        constraint=matcher,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_paused_sequence_waits_for_appended_tokens(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    async with running(tiny, tokenizer) as engine:
        request = await forced(engine, tokenizer, pause=("[TRAP][END]",))
        sid = engine.new_seq_id()
        text, n = "", 0
        async with engine.open(request, seq_id=sid) as events:
            async for ev in events:
                if isinstance(ev, FinishEvent):
                    assert ev.text == TEXT  # the injected tokens are not output
                    break
                assert isinstance(ev, TokenEvent)
                text += ev.text
                n += 1
                if text.endswith("[TRAP][END]"):
                    steps = engine.counters["steps"]
                    await anyio.sleep(0.3)
                    # paused: at most the step computing its last token, and no busy loop
                    assert engine.counters["steps"] <= steps + 1
                    seq = engine._by_id[sid]
                    assert seq.held and len(seq.generated) == n
                    assert not engine.append_tokens(sid, [1], after=n - 1)
                    assert seq.held  # refused: the caller's view was stale
                    assert engine.append_tokens(sid, [], after=n)  # resumes with nothing added
        assert text == TEXT


async def test_append_tokens_checks_the_sequence_and_the_context(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    async with running(tiny, tokenizer) as engine:
        with pytest.raises(KeyError):
            engine.append_tokens("seq-nope", [1])
        request = EngineRequest(
            prompt=tokenizer.encode("hello"),
            params=SampleParams(max_tokens=20, temperature=0.0, ignore_eos=True),
        )
        sid = engine.new_seq_id()
        async with engine.open(request, seq_id=sid) as events:
            with pytest.raises(ValueError, match="in use"):
                async with engine.open(request, seq_id=sid):
                    pass  # pragma: no cover
            async for ev in events:
                with pytest.raises(RequestRejected, match="context length"):
                    engine.append_tokens(sid, [1] * 300)
                assert isinstance(ev, TokenEvent)
                break


async def test_local_session_injects_and_resumes(tiny: GGUFModel) -> None:
    async with LocalBackend("tiny") as backend:
        assert backend.engine is not None
        request = LLMRequest(
            prompt="hello",
            max_tokens=40,
            temperature=0.0,
            grammar=dsl.Grammar.regex(r"ok \[TRAP\]\[END\] then more"),
        )
        pieces = []
        async with backend.session(request, pause=["[TRAP][END]"]) as session:
            async for piece in session:
                pieces.append(piece)
                if "".join(p.text for p in pieces).endswith("[TRAP][END]"):
                    assert not await session.inject("[INTR] 1 [HEAD] 2 [END]", after=0)
                    assert await session.inject("[INTR] 1 [HEAD] 2 [END]", after=piece.tokens)
        assert "".join(p.text for p in pieces) == TEXT
        assert [p.tokens for p in pieces] == list(range(1, len(pieces) + 1))
        assert session.completion is not None and session.completion.text == TEXT
        assert not await session.inject("late", after=None)  # the generation has ended


async def test_a_paused_batch_waits_without_spinning(
    tiny: GGUFModel, tokenizer: EngineTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch full of a paused sequence, another request waiting: the step loop waits for a
    change instead of spinning (it ran ~10^5 empty steps a second, and under a mock clock
    time never passed)."""
    model = LlamaModel(tiny, num_blocks=64, block_size=16)
    engine = Engine(model, tokenizer, num_blocks=64, block_size=16, context_length=256, max_batch=1)
    steps = 0
    step = engine._step

    async def counted() -> None:
        nonlocal steps
        steps += 1
        await step()

    monkeypatch.setattr(engine, "_step", counted)
    async with anyio.create_task_group() as tg:
        await tg.start(engine.serve)
        request = await forced(engine, tokenizer, pause=("[TRAP][END]",))
        sid = engine.new_seq_id()
        async with engine.open(request, seq_id=sid) as events:
            text = ""
            async for ev in events:
                assert isinstance(ev, TokenEvent)
                text += ev.text
                if text.endswith("[TRAP][END]"):
                    break
            other = EngineRequest(prompt=tokenizer.encode("wait"), params=GREEDY_FEW)
            tg.start_soon(engine.complete, other)
            before = steps
            await anyio.sleep(0.3)
            assert steps - before < 100  # a 10 ms wait at most per empty step: ~30
            engine.append_tokens(sid, [])
        tg.cancel_scope.cancel()
