"""AsyncLM at run time: an LLM call whose model calls tools from its own text while it keeps
decoding, and gets each result back as an ``[INTR]`` frame (``dsl.gen(..., async_calls=True)``).

The protocol (``dsl.cml``, DESIGN.md section 3 "AsyncLM" and "Conveyor"): the system prompt
teaches it and lists the tools; a grammar built from the tools (``dsl.cml.grammar``) holds the
output to well-formed frames on engines that take grammars, and leaves the model no way to write
``[INTR]``; a sans-I/O ``FrameParser`` reads the stream. A tool starts the moment its frame's
arguments are complete (before ``[END]`` is decoded) in this call's task group and runs while
the model decodes. Its result is delivered per ``LLMNode.interrupt``:

- ``"each"``: as soon as it returns, at the next safe boundary (never inside a half-written
  frame);
- ``"trap"``: when the model writes ``[TRAP][END]``.

At a trap the model waits until every pending call has returned, then gets every result not yet
delivered. How results reach the model depends on the backend:

- a backend with ``session()`` (``LocalBackend``: the embedded engine) keeps one sequence
  running: ``[INTR]`` frames are injected as tokens into it (``Engine.append_tokens``, refused
  and retried at the next boundary if the engine has decoded past the point the runtime saw),
  and the engine pauses the sequence after ``[TRAP][END]`` until the results are injected;
- any other backend (HTTP engines) is driven through the completions endpoint: the chat
  messages are rendered once into a plain ``role: content`` prompt (``render_prompt``), the
  stream is closed at the moment the parser sees ``[TRAP][END]`` (the OpenAI stream does not say
  whether a stop string or an end token ended it, so the trap is detected here rather than by a
  server-side stop string; tokens decoded past it are dropped) or, under ``"each"``, at the safe
  boundary where a result is to be delivered; the frames are appended to the text and the
  completion is resumed from ``prompt + text + frames`` (prefix caching makes the re-read
  cheap). ``max_tokens`` bounds the output over all the resumed requests, counting one token
  per streamed chunk.

A failed or timed-out tool (its own ``timeout``, else ``DEFAULT_TOOL_TIMEOUT``) and a frame that
cannot run (unknown tool, wrong arity, malformed arguments) are answered with an error frame;
the generation goes on. A model that is still inside a frame when its tokens run out raises
``ConstraintViolation`` naming the open frame.

The value is a ``dsl.cml.CMLText``: the model's text without frames (a ``str``), with
``.transcript`` (everything the model wrote and was shown, frames included) and ``.calls``
(each call, its arguments, result or error and timings). Calls still running when the model
finishes are awaited and recorded, but the model does not see their results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import dsl
from dsl import LLMNode, cml
from orchestrator.backends import Completion, LLMRequest, Message
from orchestrator.backends.local import SessionText
from orchestrator.errors import ConstraintViolation, GrammarUnsupported, ProgramError, ToolError

if TYPE_CHECKING:
    from orchestrator.runtime._run import ProgramRun, _NodeState

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TOOL_TIMEOUT",
    "InjectableBackend",
    "InjectableSession",
    "render_prompt",
    "run_async_calls",
]

DEFAULT_TOOL_TIMEOUT = 60.0
"""Seconds a tool called from the text may take when it declares no ``timeout``; past it the
model gets an error frame."""
DEFAULT_MAX_TOKENS = 256
"""The output budget of a call with asynchronous tools that sets no ``max_tokens``."""


@runtime_checkable
class InjectableSession(Protocol):
    """A running generation that text can be added to (``LocalBackend.session``)."""

    def __aiter__(self) -> AsyncIterator[SessionText]:
        """The output as it is decoded, with the count of tokens generated so far."""
        ...

    async def inject(self, text: str, *, after: int | None = None) -> bool:
        """Add ``text`` to the context (a paused sequence resumes); with ``after``, only if
        exactly that many tokens have been generated. Whether it was added."""
        ...


@runtime_checkable
class InjectableBackend(Protocol):
    """A backend that can run a generation as an ``InjectableSession``."""

    def session(
        self, request: LLMRequest, *, pause: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[InjectableSession]:
        """Start ``request``; the session pauses after any of the ``pause`` strings."""
        ...


def render_prompt(messages: Sequence[Message]) -> str:
    """Chat ``messages`` as one completions prompt: ``role: content`` lines, then
    ``assistant:`` where the answer begins (the plain rendering the embedded engine uses for
    models without a chat template)."""
    return "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant:"


@functools.lru_cache(maxsize=64)
def _cml_grammar(text: str) -> dsl.Grammar:
    return dsl.Grammar.lark(text)


def _with_protocol(request: LLMRequest, system: str, grammar: dsl.Grammar) -> LLMRequest:
    """``request`` with the protocol in its system prompt, the CML grammar and a budget."""
    max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
    if request.messages is not None:
        msgs = list(request.messages)
        if msgs and msgs[0].role == "system":
            msgs[0] = Message("system", f"{system}\n\n{msgs[0].content}")
        else:
            msgs.insert(0, Message("system", system))
        return dataclasses.replace(
            request, messages=tuple(msgs), grammar=grammar, max_tokens=max_tokens
        )
    assert request.prompt is not None
    return dataclasses.replace(
        request, prompt=f"{system}\n\n{request.prompt}", grammar=grammar, max_tokens=max_tokens
    )


async def run_async_calls(
    run: ProgramRun, st: _NodeState, node: LLMNode, request: LLMRequest
) -> cml.CMLText:
    """Run ``node`` (``async_calls=True``) on ``run``'s backend; see the module docstring.

    Returns:
        The model's text without frames, as a ``CMLText`` carrying ``.transcript`` and
        ``.calls``.

    Raises:
        ProgramError: the node also sets ``grammar=`` (the CML grammar holds its output).
        ConstraintViolation: the output ended inside a frame (``max_tokens`` ran out).
        BackendError: the engine failed.
    """
    if node.grammar is not None:
        raise ProgramError(
            f"node {node.id!r}: grammar= cannot be combined with async_calls=True "
            "(the output is held to the CML grammar)"
        )
    specs = [cml.ToolSpec.from_tool(run.builder.tools[name]) for name in node.tools]
    grammar = _cml_grammar(cml.grammar(specs))
    req = _with_protocol(request, cml.system_prompt(specs, interrupt=node.interrupt), grammar)
    driver = _Driver(run, st, node, specs, req)
    try:
        with anyio.fail_after(node.timeout):
            return await driver.run()
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if leaf is None:
            raise
        raise leaf from None


def _leaf(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    """The first exception in ``group`` that is not a cancellation."""
    cancelled = anyio.get_cancelled_exc_class()
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _leaf(exc)
            if found is not None:
                return found
        elif isinstance(exc, Exception) and not isinstance(exc, cancelled):
            return exc
    return None


# -- what the driver's loop receives ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Piece:
    segment: int
    text: str
    tokens: int  # tokens generated in this segment so far, this piece included


@dataclass(frozen=True, slots=True)
class _End:
    segment: int
    completion: Completion | None
    ran_out: bool  # max_tokens was reached


@dataclass(frozen=True, slots=True)
class _Done:
    record: cml.CallRecord
    frame: str


_Item = _Piece | _End | _Done


class _Transport(Protocol):
    segment: int
    cuts_at_trap: bool

    def running(self) -> AbstractAsyncContextManager[None]: ...

    def on_trap(self) -> None: ...

    def consumed(self, piece: _Piece) -> None: ...

    async def inject(self, frames: str, *, after: int, context: str) -> bool: ...

    async def resume(self, frames: str, *, after: int, context: str) -> bool: ...


@contextlib.asynccontextmanager
async def _admitted(
    run: ProgramRun, st: _NodeState, node: LLMNode, request: LLMRequest, *, first: bool
) -> AsyncIterator[LLMRequest]:
    """Hold an admission slot for ``request`` (with the policy's priority in its hints)."""
    orch = run.orch
    call = run._call_info(node)
    if first:
        st.stats.attempts += 1
    async with orch.admission.slot(call):
        now = anyio.current_time()
        if st.stats.start is None:
            st.stats.start = now
        hints = orch.hints(request.hints, call, now, kv_ttl=None)
        try:
            yield dataclasses.replace(request, hints=hints)
        finally:
            orch.observe_call(anyio.current_time() - now)


class _Driver:
    """Steps the frame parser over the output, runs the tools, and delivers their results."""

    def __init__(
        self,
        run: ProgramRun,
        st: _NodeState,
        node: LLMNode,
        specs: Sequence[cml.ToolSpec],
        request: LLMRequest,
    ) -> None:
        self.run_ = run
        self.st = st
        self.node = node
        self.request = request
        self.parser = cml.FrameParser(specs)
        self.transcript: list[str] = []
        self.records: list[cml.CallRecord] = []
        self.by_id: dict[str, cml.CallRecord] = {}
        self.pending: set[str] = set()
        self.undelivered: list[tuple[cml.CallRecord, str]] = []
        self.trapped = False
        self.due = False  # results owed at the next boundary whatever the policy
        self.seen = 0  # tokens of the current segment processed
        self.done = False
        self._send: MemoryObjectSendStream[_Item] | None = None
        self._tools: anyio.abc.TaskGroup | None = None
        backend = run.orch.backend
        self.transport: _Transport = (
            _SessionTransport(self, backend)
            if isinstance(backend, InjectableBackend)
            else _ResumeTransport(self)
        )

    def send(self, item: _Item) -> None:
        assert self._send is not None
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(item)  # after the model finished, nobody listens

    async def run(self) -> cml.CMLText:
        send, receive = anyio.create_memory_object_stream[_Item](math.inf)
        with send, receive:
            self._send = send
            async with anyio.create_task_group() as tools:
                self._tools = tools
                async with self.transport.running():
                    await self._loop(receive)
        text = "".join(self.transcript)
        return cml.CMLText(self.parser.prose.strip(), text, tuple(self.records))

    async def _loop(self, receive: MemoryObjectReceiveStream[_Item]) -> None:
        async for item in receive:
            match item:
                case _Done():
                    self.pending.discard(item.record.id)
                    self.undelivered.append((item.record, item.frame))
                case _Piece() if item.segment == self.transport.segment:
                    self.transport.consumed(item)
                    self.seen = item.tokens
                    events = self.parser.feed(item.text, stop_at_trap=self.transport.cuts_at_trap)
                    # text past a trap that the transport cuts at is never shown to the model
                    self.transcript.append(item.text[: len(item.text) - len(self.parser.unread)])
                    for event in events:
                        self._on_event(event)
                case _End() if item.segment == self.transport.segment:
                    self._on_end(item)
                    return
                case _:
                    continue  # text of a segment closed at a boundary: dropped
            await self._deliver()
            if self.done:
                return

    def _on_end(self, item: _End) -> None:
        try:
            for event in self.parser.close():
                self._on_event(event)
        except cml.UnclosedFrame as exc:
            why = (
                f"max_tokens={self.request.max_tokens} ran out"
                if item.ran_out
                else "the engine ended the output"
            )
            raise ConstraintViolation(
                node=self.node.id,
                text="".join(self.transcript),
                reason=(
                    f"the output ended inside the frame {exc.frame!r}, which the model never "
                    f"closed ({why})"
                ),
                position=len("".join(self.transcript)) - len(exc.frame),
            ) from None
        if item.completion is not None:
            self.st.stats.prompt_tokens += item.completion.prompt_tokens
            self.st.stats.completion_tokens += item.completion.completion_tokens

    def _on_event(self, event: cml.Event) -> None:
        now = anyio.current_time()
        match event:
            case cml.Text():
                pass
            case cml.CallStarted():
                rec = cml.CallRecord(id=event.id, fn=event.fn)
                self.records.append(rec)
                self.by_id[event.id] = rec
            case cml.CallReady():
                rec = self.by_id[event.id]
                rec.args, rec.kwargs, rec.frame = event.args, event.kwargs, event.frame
                rec.started = now
                self.pending.add(rec.id)
                assert self._tools is not None
                self._tools.start_soon(self._call, rec, name=f"{self.node.id}/call {rec.id}")
            case cml.CallEnd():
                self.by_id[event.id].frame_end = now
            case cml.Trap():
                self.trapped = True
                self.transport.on_trap()
            case cml.FrameError():
                rec = cml.CallRecord(
                    id=event.id or "?", fn="", frame=event.frame, error=str(event), ended=now
                )
                known = self.by_id.get(event.id) if event.id is not None else None
                if known is not None and known.started is None:
                    known.frame, known.error, known.ended = event.frame, str(event), now
                    rec = known
                else:
                    self.records.append(rec)
                self.undelivered.append((rec, cml.format_error(rec.id, event.message)))
            case _:  # pragma: no cover
                raise AssertionError(event)

    async def _call(self, rec: cml.CallRecord) -> None:
        """Run one tool call and hand its frame to the loop."""
        run = self.run_
        tool = run.builder.tools[rec.fn]
        limit = tool.timeout if tool.timeout is not None else DEFAULT_TOOL_TIMEOUT
        try:
            rec.result = await run.call_tool(
                rec.fn,
                rec.args,
                rec.kwargs,
                node=self.node.id,
                time_limit=limit,
                retries=tool.retries,
            )
            frame = cml.format_result(rec.id, rec.result)
        except ToolError as exc:
            rec.error = str(exc)
            cause = exc.cause
            why = (
                f"timed out after {limit:g}s"
                if isinstance(cause, TimeoutError)
                else f"{type(cause).__name__}: {cause}"
            )
            frame = cml.format_error(rec.id, why)
        rec.ended = anyio.current_time()
        self.send(_Done(rec, frame))

    def _due(self) -> tuple[str, list[cml.CallRecord]]:
        frames = "".join(frame for _, frame in self.undelivered)
        return frames, [rec for rec, _ in self.undelivered]

    def _delivered(self, frames: str, records: list[cml.CallRecord]) -> None:
        now = anyio.current_time()
        self.undelivered.clear()
        self.due = False
        self.transcript.append(frames)
        for rec in records:
            rec.delivered = now

    async def _deliver(self) -> None:
        """Deliver what the policy says is due now."""
        if self.trapped:
            if self.pending:
                return  # the model waits for every pending call
            self.trapped = False
            if not self.parser.safe_boundary:
                # The token that completed the trap also began a frame ("][" is one token in
                # many vocabularies): never inject inside it. Let the model finish the frame;
                # the results are due at the next boundary, whatever the policy.
                self.due = True
                context = "".join(self.transcript)
                if not await self.transport.resume("", after=self.seen, context=context):
                    self.done = True
                return
            frames, records = self._due()
            context = "".join(self.transcript)
            if await self.transport.resume(frames, after=self.seen, context=context):
                self._delivered(frames, records)
            else:
                self.done = True  # out of tokens: nothing more will be decoded
        elif (
            (self.due or self.node.interrupt == "each")
            and self.undelivered
            and self.parser.safe_boundary
        ):
            frames, records = self._due()
            context = "".join(self.transcript)
            # refused when the engine has decoded past this point: tried at the next boundary
            if await self.transport.inject(frames, after=self.seen, context=context):
                self._delivered(frames, records)


class _SessionTransport:
    """One sequence on an engine that takes injected tokens (``LocalBackend.session``)."""

    segment = 0
    cuts_at_trap = False  # the engine pauses after the token that completes the trap

    def __init__(self, driver: _Driver, backend: InjectableBackend) -> None:
        self.driver = driver
        self.backend = backend
        self.session: InjectableSession | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        d = self.driver
        async with (
            _admitted(d.run_, d.st, d.node, d.request, first=True) as request,
            self.backend.session(request, pause=[cml.TRAP_FRAME]) as session,
            anyio.create_task_group() as tg,
        ):
            self.session = session
            tg.start_soon(self._read, session)
            yield
            tg.cancel_scope.cancel()

    async def _read(self, session: InjectableSession) -> None:
        async for piece in session:
            self.driver.send(_Piece(0, piece.text, piece.tokens))
        completion = getattr(session, "completion", None)
        if not isinstance(completion, Completion):
            completion = None
        ran_out = completion is not None and completion.finish_reason == "length"
        self.driver.send(_End(0, completion, ran_out))

    def on_trap(self) -> None:
        pass  # the engine pauses the sequence after [TRAP][END] by itself

    def consumed(self, piece: _Piece) -> None:
        pass  # the engine counts max_tokens

    async def inject(self, frames: str, *, after: int, context: str) -> bool:
        assert self.session is not None
        return await self.session.inject(frames, after=after)

    async def resume(self, frames: str, *, after: int, context: str) -> bool:
        assert self.session is not None
        return await self.session.inject(frames, after=after)


class _ResumeTransport:
    """Any backend: completions requests, closed at a trap or a delivery and resumed with the
    frames appended."""

    cuts_at_trap = True

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        req = driver.request
        self.base = req.prompt if req.prompt is not None else render_prompt(req.messages or ())
        self.request = dataclasses.replace(req, messages=None, prompt=self.base)
        self.budget = req.max_tokens or DEFAULT_MAX_TOKENS
        self.used = 0
        self.segment = 0
        self.segments = 0
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._start(self.base)
            yield
            tg.cancel_scope.cancel()

    def _start(self, prompt: str) -> None:
        assert self._tg is not None
        self.segment += 1
        self.segments += 1
        self._scope = anyio.CancelScope()
        seed = self.request.seed
        request = dataclasses.replace(
            self.request,
            prompt=prompt,
            max_tokens=self.budget - self.used,
            # a resumed request with the same seed would replay the same random draws
            seed=None if seed is None else seed + self.segments - 1,
        )
        self._tg.start_soon(self._read, self.segment, self._scope, request, self.segments == 1)

    def _stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        self.segment += 1  # whatever the closed stream still sends is dropped

    async def _read(
        self, segment: int, scope: anyio.CancelScope, request: LLMRequest, first: bool
    ) -> None:
        d = self.driver
        with scope:
            while True:
                n = 0
                try:
                    async with _admitted(d.run_, d.st, d.node, request, first=first) as req:
                        chunks = d.run_.orch.backend.stream(req)
                        try:
                            async for text in chunks:
                                n += 1
                                d.send(_Piece(segment, text, n))
                        finally:
                            aclose = getattr(chunks, "aclose", None)
                            if aclose is not None:
                                with anyio.CancelScope(shield=True):
                                    await aclose()
                except GrammarUnsupported:
                    if n or request.grammar is None:
                        raise
                    # validate-and-answer: the parser still rejects malformed frames
                    request = dataclasses.replace(request, grammar=None)
                    self.request = dataclasses.replace(self.request, grammar=None)
                    d.st.stats.degraded = True
                    continue
                break
            d.send(_End(segment, None, n >= (request.max_tokens or DEFAULT_MAX_TOKENS)))

    def on_trap(self) -> None:
        self._stop()  # the model waits: decode nothing past the trap

    def consumed(self, piece: _Piece) -> None:
        self.used += 1

    async def inject(self, frames: str, *, after: int, context: str) -> bool:
        if self.used >= self.budget:
            return False
        self._stop()
        self._start(self.base + context + frames)
        return True

    async def resume(self, frames: str, *, after: int, context: str) -> bool:
        return await self.inject(frames, after=after, context=context)
