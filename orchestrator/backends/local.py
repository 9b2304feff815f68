"""``LocalBackend``: the embedded engine in-process, the default backend (no server, no
download: the model is made locally on first use)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
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
    TokenEvent,
    WordTokenizer,
)
from orchestrator.engine import build_engine as _build_engine
from orchestrator.errors import BackendError, BackendRejected, ConfigError
from orchestrator.scheduler import batch_policy_for

__all__ = ["LocalBackend", "LocalSession", "SessionText"]


class LocalBackend:
    """Runs LLM calls on the embedded engine in this process.

    Use as an async context manager (an ``Orchestrator`` enters it for you): entering loads the
    model (making a preset on first use, cached in the user's cache folder) and starts the
    engine's step loop; leaving stops it. The engine obeys every hint: priorities and their
    promotions (with a ``"priority"`` batch policy), KV time-to-live pins, and grammars as a
    hard token mask. Given to an ``Orchestrator`` without a ``policy=`` option, the engine's
    batch policy follows the orchestrator's policy (``follow``); otherwise it is ``"fcfs"``.

    Args:
        model: ``"demo"`` (the trained model shipped with Legato, the default), a preset name
            with random weights (``"tiny"``, ``"small"``) or a GGUF file.
        seed: the preset's seed.
        engine: an already built ``Engine`` to use instead (its loop is still run here).
        grammar_timeout: seconds a grammar may take to compile before the call is rejected
            (the engine goes on serving other requests meanwhile).
        **options: engine settings for ``build_engine`` (``kv_tokens``, ``max_batch``,
            ``policy``: the batch policy...).
    """

    def __init__(
        self,
        model: str | Path = "demo",
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
        self._batch_given = "policy" in options

    def follow(self, policy: object) -> None:
        """Let the engine this backend builds carry out the hints of the request policy
        ``policy`` (an ``Orchestrator`` calls this with its own): its batch policy becomes
        ``batch_policy_for(policy)``, so priorities order the batch, promotions act, and the
        policy's preemption threshold holds. Does nothing when a batch policy was given
        (``policy=``) or the engine is already built."""
        if self.engine is None and not self._batch_given:
            self.options["policy"] = batch_policy_for(policy)

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
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(engine.serve)
        except BaseException:
            # The loop failed before it served: close the task group (or anyio's cancel scopes
            # stay out of order) and raise the loop's own error.
            tg.cancel_scope.cancel()
            with contextlib.suppress(BaseException):
                await tg.__aexit__(None, None, None)
            raise
        self._tg = tg
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
            promote_after=hints.promote_after,
            promote_to=hints.promote_to,
            demote=hints.demote,
            distinct_lines=request.distinct_lines,
            require=request.require,
            require_order=request.require_order,
            require_anywhere=request.require_anywhere,
            alike=request.alike,
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
        return _completion(fin, self.name)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """Generate on the embedded engine, yielding text as it is decoded."""
        req = await self._engine_request(request)
        assert self.engine is not None
        async with self.engine.open(req) as events:
            async for ev in events:
                if isinstance(ev, FinishEvent):
                    _check(ev, self.name)
                    if ev.tail:
                        yield ev.tail
                    return
                if ev.text:
                    yield ev.text

    @contextlib.asynccontextmanager
    async def session(
        self, request: LLMRequest, *, pause: Sequence[str] = ()
    ) -> AsyncIterator[LocalSession]:
        """Generate on the embedded engine as a session the caller can add text to (AsyncLM's
        interrupts): iterate it for the text as it is decoded, ``inject`` text into the running
        sequence's context. ``pause`` strings pause the sequence once its output contains one
        (``[TRAP][END]``) until the next ``inject``. Leaving the block aborts the generation
        if it is still running.

        ::

            async with backend.session(request, pause=["[TRAP][END]"]) as s:
                async for piece in s:
                    if wants_to_inject(piece.text):
                        await s.inject("[INTR] 1 [HEAD] 42 [END]", after=piece.tokens)
        """
        req = await self._engine_request(request)
        engine = self.engine
        assert engine is not None
        tokenizer = engine.tokenizer
        if tokenizer is None:
            raise BackendRejected(
                f"{self.name}: a virtual-time engine generates no text to inject into",
                backend=self.name,
            )
        req = dataclasses.replace(req, pause=tuple(pause))
        seq_id = engine.new_seq_id()
        async with engine.open(req, seq_id=seq_id) as events:
            yield LocalSession(engine, seq_id, events, backend=self.name)

    async def release_program(self, program: str) -> None:
        """The program has ended: its KV pins are no longer worth their memory."""
        if self.engine is not None:
            self.engine.release_program(program)

    def __repr__(self) -> str:
        return f"LocalBackend({self.model!r}, started={self.started})"


@dataclass(frozen=True, slots=True)
class SessionText:
    """A piece of a session's output, and how many tokens had been generated when it came."""

    text: str
    tokens: int


class LocalSession:
    """A generation running on the embedded engine that text can be injected into; made by
    ``LocalBackend.session``. Iterating yields ``SessionText`` pieces (one per generated token,
    possibly empty while a multi-byte character is incomplete, then the held-back tail);
    ``completion`` holds the usage once the iteration has ended."""

    def __init__(
        self,
        engine: Engine,
        seq_id: str,
        events: AsyncIterator[TokenEvent | FinishEvent],
        *,
        backend: str = "local",
    ) -> None:
        assert engine.tokenizer is not None
        self._engine = engine
        self._backend = backend
        self._tokenizer = engine.tokenizer
        self.seq_id = seq_id
        self._events = events
        self._ids: list[int] = []
        self.completion: Completion | None = None
        """The whole output (without injected text) and its usage, after the end."""

    async def __aiter__(self) -> AsyncIterator[SessionText]:
        async for ev in self._events:
            if isinstance(ev, FinishEvent):
                self.completion = _completion(ev, self._backend)
                if ev.tail:
                    yield SessionText(ev.tail, len(self._ids))
                return
            self._ids.append(ev.token)
            yield SessionText(ev.text, len(self._ids))

    async def inject(self, text: str, *, after: int | None = None) -> bool:
        """Add ``text`` to the sequence's context, after the tokens generated so far (computed
        at the next step; never part of the output); a paused sequence resumes.

        With ``after``, only if exactly ``after`` tokens have been generated and their text is
        whole (no multi-byte character cut in two): the text lands right where the caller saw
        the output end. Returns whether it was injected (False too if the generation has
        ended).

        Raises:
            BackendRejected: the context would outgrow the engine's context length.
        """
        if after is not None and self._tokenizer.decode(self._ids[:after]).endswith("\ufffd"):
            return False
        tokens: list[int] = self._tokenizer.tk.encode(text, add_special_tokens=False).ids
        try:
            return self._engine.append_tokens(self.seq_id, tokens, after=after)
        except KeyError:
            return False
        except RequestRejected as exc:
            raise BackendRejected(f"cannot inject: {exc}", backend="local", status=400) from exc


def _check(fin: FinishEvent, backend: str) -> None:
    """Raise ``BackendError`` for a generation that did not end normally: the engine failed on
    it (``error``) or stopped before it finished (``abort``: its loop failed or it is shutting
    down). Neither is retried: the same engine gives the same answer."""
    if fin.reason == "error":
        raise BackendError(
            f"{backend}: the engine failed on this request: {fin.error}",
            backend=backend,
            retryable=False,
        )
    if fin.reason == "abort":
        raise BackendError(
            f"{backend}: the engine stopped before this request finished",
            backend=backend,
            retryable=False,
        )


def _completion(fin: FinishEvent, backend: str) -> Completion:
    _check(fin, backend)
    return Completion(
        text=fin.text,
        prompt_tokens=fin.prompt_tokens,
        completion_tokens=fin.completion_tokens,
        finish_reason=fin.reason,
        cached_tokens=fin.cached_tokens,
        service_time=fin.service_time,
    )
