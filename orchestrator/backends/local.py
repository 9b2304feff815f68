"""``LocalBackend``: the embedded engine in-process, the default backend (no server, no
download: the model is made locally on first use)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from orchestrator.backends._base import Completion, LLMRequest
from orchestrator.engine import (
    Engine,
    EngineRequest,
    FinishEvent,
    RequestRejected,
    SampleParams,
    WordTokenizer,
)
from orchestrator.engine import build_engine as _build_engine
from orchestrator.errors import BackendError, BackendRejected, ConfigError

__all__ = ["LocalBackend"]


class LocalBackend:
    """Runs LLM calls on the embedded engine in this process.

    Use as an async context manager (an ``Orchestrator`` enters it for you): entering loads the
    model (making a preset on first use, cached in the user's cache folder) and starts the
    engine's step loop; leaving stops it. The engine obeys every hint: priorities (with the
    ``"priority"`` batch policy), KV time-to-live pins, and grammars as a hard token mask.

    Args:
        model: a preset name (``"tiny"``, ``"small"``) or a GGUF file.
        seed: the preset's seed.
        engine: an already built ``Engine`` to use instead (its loop is still run here).
        grammar_timeout: seconds a grammar may take to compile before the call is rejected
            (the engine goes on serving other requests meanwhile).
        **options: engine settings for ``build_engine`` (``kv_tokens``, ``max_batch``,
            ``policy``...).
    """

    def __init__(
        self,
        model: str | Path = "tiny",
        *,
        seed: int = 0,
        engine: Engine | None = None,
        grammar_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        self.model = model
        self.grammar_timeout = grammar_timeout
        self.seed = seed
        self.options = options
        self.engine = engine
        self.name = f"local:{model}"
        self.started = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._words = WordTokenizer()

    async def __aenter__(self) -> Self:
        if self.started:
            raise RuntimeError(f"{self.name} is already started")
        if self.engine is None:
            build = functools.partial(_build_engine, self.model, seed=self.seed, **self.options)
            try:
                self.engine, _ = await anyio.to_thread.run_sync(build)
            except (ValueError, OSError) as exc:
                raise ConfigError(f"{self.name}: cannot load the model: {exc}") from exc
        engine = self.engine
        assert engine is not None
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self._tg.start(engine.serve)
        self.started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the engine's loop (requests still running are aborted)."""
        if self._tg is not None:
            tg, self._tg = self._tg, None
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        self.started = False

    async def _engine_request(self, request: LLMRequest) -> EngineRequest:
        if not self.started or self.engine is None:
            raise BackendError(
                f"{self.name} is not running: use `async with LocalBackend(...)` or pass it to "
                "an Orchestrator",
                backend=self.name,
                retryable=False,
            )
        tok = self.engine.tokenizer or self._words  # no tokenizer: a virtual-time engine
        text = tok.render_chat(request.messages) if request.messages else request.prompt or ""
        hints = request.hints
        params = SampleParams(
            max_tokens=request.max_tokens or 256,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
            stop=request.stop,
        )
        req = EngineRequest(
            prompt=tok.encode(text),
            params=params,
            priority=hints.priority,
            program=hints.program,
            thread=hints.thread,
            kv_ttl=hints.kv_ttl,
        )
        try:
            self.engine.check(req)
            if request.grammar is not None:
                matcher = await self.engine.matcher(
                    request.grammar, time_limit=self.grammar_timeout
                )
                req = dataclasses.replace(req, constraint=matcher)
        except RequestRejected as exc:
            raise BackendRejected(f"{self.name}: {exc}", backend=self.name, status=400) from exc
        return req

    async def complete(self, request: LLMRequest) -> Completion:
        """Generate on the embedded engine and return the whole completion."""
        req = await self._engine_request(request)
        assert self.engine is not None
        _, fin = await self.engine.complete(req)
        return _completion(fin)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """Generate on the embedded engine, yielding text as it is decoded."""
        req = await self._engine_request(request)
        assert self.engine is not None
        async with self.engine.open(req) as events:
            async for ev in events:
                if isinstance(ev, FinishEvent):
                    if ev.tail:
                        yield ev.tail
                    return
                if ev.text:
                    yield ev.text

    async def release_program(self, program: str) -> None:
        """The program has ended: its KV pins are no longer worth their memory."""
        if self.engine is not None:
            self.engine.release_program(program)

    def __repr__(self) -> str:
        return f"LocalBackend({self.model!r}, started={self.started})"


def _completion(fin: FinishEvent) -> Completion:
    return Completion(
        text=fin.text,
        prompt_tokens=fin.prompt_tokens,
        completion_tokens=fin.completion_tokens,
        finish_reason=fin.reason,
        cached_tokens=fin.cached_tokens,
        service_time=fin.service_time,
    )
