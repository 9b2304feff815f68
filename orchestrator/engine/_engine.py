"""The embedded engine's step loop: continuous batching over a paged KV cache.

Each step the batch policy chooses which waiting sequences join and which running ones are
preempted; every running sequence then computes its uncomputed tokens (a prompt chunk, the last
sampled token, or tokens appended mid-generation) in one forward call, and each sequence whose
context is fully computed samples its next token. New requests join between steps. Finished
sequences free their blocks, or pin them for a time-to-live so the same program's next turn
finds its prefix cached.

In virtual-time mode there is no model: a ``CostModel`` says how long each step would take on a
GPU-class engine, the loop sleeps that long on the anyio clock (a mock clock jumps it), and
tokens have no content; lengths come from ``max_tokens``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.abc
import anyio.lowlevel
import numpy as np
import numpy.typing as npt
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dsl import Grammar
from orchestrator import constrain
from orchestrator.engine._cost import CostModel
from orchestrator.engine._kv import BlockPool, BlockTable, OutOfBlocks
from orchestrator.engine._model import LlamaModel, SeqWork
from orchestrator.engine._sampler import Sampled, SampleParams, sample
from orchestrator.engine._tokenizer import EngineTokenizer
from orchestrator.scheduler import BatchPolicy, FCFSBatch, SeqView

__all__ = ["Engine", "EngineRequest", "Event", "FinishEvent", "RequestRejected", "TokenEvent"]

_log = logging.getLogger("legato")

FinishReason = Literal["stop", "length", "abort", "error"]
"""Why a generation ended: a stop (a stop string, an end token, the grammar's end), its length,
``abort`` (its client left, or the engine stopped first), or ``error`` (its own processing
failed, its grammar's matcher for instance; ``FinishEvent.error`` says how; the engine goes on
with the others)."""

MAX_REWINDS = 16
"""Rewinds a ``distinct_lines`` or ``require`` sequence may make in all; past them a repeat
stands and an output ends without what it lacks."""

_LIST_MARK = re.compile(r"\s*(?:\d+[.)]|[-*])\s*")


def line_key(line: str) -> str:
    """What ``EngineRequest.distinct_lines`` compares: the line without its list marker
    (``3.``, ``3)``, ``-``, ``*``) and surrounding space. ``'2. f("a")'`` -> ``'f("a")'``."""
    m = _LIST_MARK.match(line)
    return line[m.end() if m else 0 :].strip()


class RequestRejected(ValueError):
    """The request can never run on this engine (e.g. its prompt exceeds the context).

    Attributes:
        field: the ``EngineRequest`` field at fault when it is one of the searches'
            (``require``, ``alike``, ...), else None (the prompt or its size).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineRequest:
    """One generation request, in tokens.

    Attributes:
        prompt: the prompt's token ids.
        params: sampling settings.
        priority: lower = sooner (used by priority batch policies).
        program, thread: the Legato program and thread it belongs to, if any.
        kv_ttl: seconds to keep its KV blocks pinned after it finishes.
        promote_after: once the request has waited this many seconds in the engine's queue
            (not counting its time in the batch), batch policies see ``promote_to`` as its
            priority (the orchestrator's anti-starvation,
            ``Hints.promote_after``). None: ``priority`` always.
        promote_to: its priority after ``promote_after``.
        demote: ``(service, priority)`` steps, service strictly ascending: once the request
            has spent ``service`` seconds in the batch (``Hints.demote``, demotion by
            quantum), batch policies see that step's ``priority``; a promotion still wins.
            Time in the batch counts whether or not the sequence computes (a paused one
            waiting for appended tokens is served too).
        constraint: a grammar matcher (``GrammarCompiler.compile(g).matcher()``): each step
            only the tokens it allows may be sampled, and the generation ends when it is
            complete and an end token is chosen. Owned by this request (one per sequence).
        pause: strings after which the sequence pauses (AsyncLM's ``[TRAP][END]``): once its
            output contains one, it keeps its place in the batch and its KV blocks but samples
            nothing until ``Engine.append_tokens`` adds to its context.
        distinct_lines: no two lines of the output may be the same (``line_key``: list markers
            aside), as in a plan whose tasks are numbered lines. When a line ends as a repeat
            of an earlier one, the sequence rewinds to the token of that line the model chose
            by the smallest margin over an alternative that writes other text, bans there the
            tokens ranked above that alternative, and decodes on (at most ``MAX_REWINDS``
            times in all). Text is sent a whole line at a time, so a rewound line is
            never seen; the token events of rewound tokens carry no text. Not with ``pause``.
        require: strings the output must each contain (a query's values from the question).
            When the output would end without one (an end token, a stop string, a complete
            grammar, or ``max_tokens``), the sequence rewinds and decodes on (within
            ``MAX_REWINDS``). It goes back to the choice, among
            the tokens after the required strings already written (with ``require_order``)
            and the choice to end, whose alternative would begin a word that begins the
            missing string, the closest such, and takes that alternative there; if there is
            none, to the choice the model made by the smallest margin over an alternative
            writing other text, as for ``distinct_lines`` (anywhere in the output, if nothing
            after those strings can change). If the search fails (the rewinds are spent or
            nothing is left to try), the output is the best ending it saw: one that ended by
            itself (not cut by ``max_tokens``) before one that did, then the one with more of
            the strings (in order, with ``require_order``), then the earliest. So a search
            never turns a complete answer (a query that parses) into a cut one. Its text is
            sent only at the end, in ``FinishEvent.tail``. Not with ``pause``.
        require_order: the ``require`` strings must appear in their order (a plan's names in
            the question's order). Besides the check at the end, a required string written
            while an earlier one is still missing rewinds its line at once, to a choice that
            begins the missing string if the line has one, else as a repeated line does for
            ``distinct_lines``.
        require_anywhere: more strings the output must each contain, in any order even with
            ``require_order`` (a plan's words that name a tool, next to its names in order);
            searched for as ``require`` strings are, over the whole output.
        alike: groups of strings (a question's lists of names, ``dsl.plans.question_lists``),
            each written on consecutive lines that read alike: once a line has written a
            group's first string (as a whole word), each next line is that line with the
            group's next string in its place (list markers aside), up to the group's last.
            A line that goes another way is taken back to the token where it does, and the
            expected text is written from there, as a rewound required string is (counted
            with the rewinds, at most ``MAX_REWINDS``). Its text is sent only at the end, as
            with ``require``. Not with ``pause``.
    """

    prompt: Sequence[int]
    params: SampleParams = field(default_factory=SampleParams)
    priority: int = 0
    program: str | None = None
    thread: str | None = None
    kv_ttl: float | None = None
    promote_after: float | None = None
    promote_to: int = 0
    demote: tuple[tuple[float, int], ...] = ()
    constraint: constrain.TokenMatcher | None = None
    pause: tuple[str, ...] = ()
    distinct_lines: bool = False
    require: tuple[str, ...] = ()
    require_order: bool = False
    require_anywhere: tuple[str, ...] = ()
    alike: tuple[tuple[str, ...], ...] = ()

    @property
    def rewinds(self) -> bool:
        """Whether the engine may rewind this request (``distinct_lines``, ``require`` or
        ``alike``)."""
        return self.distinct_lines or self.held

    @property
    def held(self) -> bool:
        """Whether its text is held back until it ends, because a rewind may take back any of
        it (required strings or ``alike`` lines)."""
        return bool(self.require or self.require_anywhere or self.alike)

    def priority_at(self, waited: float, served: float = 0.0) -> int:
        """Its priority once it has waited ``waited`` seconds in the engine's queue and spent
        ``served`` seconds in the batch: promoted if it has waited long enough, else its last
        demotion step reached, else ``priority``."""
        if self.promote_after is not None and waited >= self.promote_after:
            return self.promote_to
        priority = self.priority
        for after, to in self.demote:
            if served < after:
                break
            priority = to
        return priority

    @property
    def required(self) -> tuple[str, ...]:
        """Every required string: ``require`` then ``require_anywhere``."""
        return self.require + self.require_anywhere


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A generated token and the text it completes (may be empty while a multi-byte
    character or a possible stop string is held back)."""

    token: int
    text: str
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class FinishEvent:
    """The end of a generation: why, the whole text, and ``tail``, the text not yet sent in a
    ``TokenEvent`` (held back until the end)."""

    reason: FinishReason
    text: str
    tail: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    events: tuple[TokenEvent, ...] = ()
    """The token events, for a request opened with ``stream=False`` (sent here, not one by
    one)."""
    service_time: float = 0.0
    """Seconds in the batch: from arrival to the end, less the time queued (before it first
    joined and after each preemption)."""
    error: str | None = None
    """For ``reason == "error"``: what failed."""


Event = TokenEvent | FinishEvent


@dataclass(eq=False)
class _Seq:
    id: str
    req: EngineRequest
    send: MemoryObjectSendStream[Event]
    arrival: float
    tokens: list[int]
    rng: np.random.Generator
    num_computed: int = 0
    table: BlockTable | None = None
    generated: list[int] = field(default_factory=list)
    sent: int = 0
    cached: int = 0
    aborted: bool = False
    done: bool = False
    stop_at: int | None = None
    stop_from: int = 0  # stop strings before this offset were grammar content, not stops
    started: float | None = None  # when it first joined the batch
    queued_at: float = 0.0  # when it last entered the queue (arrival, preemption)
    waited: float = 0.0  # seconds queued before that (its time in the batch does not count)
    stream: bool = True
    collected: list[TokenEvent] = field(default_factory=list)
    blocks_hint: int | None = None  # blocks to join, estimated when it (re)entered the queue
    held: bool = False  # paused after a pause string until tokens are appended
    pause_from: int = 0  # pause strings before this text offset have been acted on
    # distinct_lines: each generated token's logit and its best ALTERNATIVES allowed then, the
    # tokens banned after
    # a given output prefix, the keys of the finished lines, where the unfinished line starts.
    choices: list[tuple[float, tuple[tuple[int, float], ...]]] = field(default_factory=list)
    bans: dict[tuple[int, ...], set[int]] = field(default_factory=dict)
    line_keys: set[str] = field(default_factory=set)
    line_from: int = 0
    forced: dict[tuple[int, ...], int] = field(default_factory=dict)
    writing: tuple[str, int] | None = None  # a required string begun by a rewind, its offset
    # require: per required string, the tokens that begin a word writing it (``_starts``)
    starts: tuple[npt.NDArray[np.int64], ...] = ()
    rewinds: int = 0
    order_from: int = 0  # require_order: text before this offset has been checked for order
    # require: the best ending seen: (ended by itself, strings held), tokens, stop_at, reason
    best_end: tuple[tuple[bool, int], list[int], int | None, FinishReason] | None = None
    error: str | None = None  # why its processing failed (it ends with "error")

    @property
    def prompt_len(self) -> int:
        return len(self.req.prompt)


def _served(s: _Seq, now: float, queued: float) -> float:
    """Seconds ``s`` has spent in the batch by ``now``, given its time ``queued`` in all: its
    time at the engine less that (0 if it never joined)."""
    return 0.0 if s.started is None else max(0.0, now - s.arrival - queued)


class Engine:
    """Continuous batching over a ``LlamaModel`` (or, without one, in virtual time).

    Run ``await engine.serve()`` in a task group; submit with ``async with engine.open(req) as
    events:`` or ``await engine.complete(req)``.

    Args:
        model: the model, or None for virtual time (then ``cost`` is required).
        tokenizer: decodes text and knows the end tokens (None in virtual time).
        num_blocks, block_size: the KV budget (must match the model's cache).
        context_length: longest context a sequence may reach.
        max_batch: most sequences running at once.
        max_step_tokens: most prompt tokens computed in one step (longer prompts are chunked).
        policy: the batch policy (default FCFS).
        cost: the cost model for virtual time.

    Raises:
        ValueError: no model and no ``cost``, or ``max_batch``, ``max_step_tokens`` or
            ``context_length`` below 1 (``BlockPool`` checks ``num_blocks`` and ``block_size``).
    """

    def __init__(
        self,
        model: LlamaModel | None,
        tokenizer: EngineTokenizer | None,
        *,
        num_blocks: int,
        block_size: int,
        context_length: int,
        max_batch: int = 16,
        max_step_tokens: int = 512,
        policy: BatchPolicy | None = None,
        cost: CostModel | None = None,
    ) -> None:
        if model is None and cost is None:
            raise ValueError("an engine without a model runs in virtual time: pass cost=")
        # a zero batch or step budget would never schedule a sequence: every request would hang
        for name, value in (
            ("max_batch", max_batch),
            ("max_step_tokens", max_step_tokens),
            ("context_length", context_length),
        ):
            if value < 1:
                raise ValueError(f"Engine {name} must be >= 1, got {value}")
        self.model = model
        self.tokenizer = tokenizer
        self.pool = BlockPool(num_blocks, block_size)
        self.context_length = context_length
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens
        self.policy: BatchPolicy = policy or FCFSBatch()
        self.cost = cost
        self._waiting: list[_Seq] = []
        self._running: list[_Seq] = []
        self._by_id: dict[str, _Seq] = {}
        self._ids = itertools.count()
        self._token_texts: list[str] | None = None  # each token's text, for ``_starts``
        self._start_ids: dict[str, npt.NDArray[np.int64]] = {}  # ``_starts``, by string
        self._wake = anyio.Event()
        self._aborts = False
        self._stop_ids: frozenset[int] = frozenset(tokenizer.stop_ids() if tokenizer else ())
        self._grammars: constrain.GrammarCompiler | None = None
        self.counters: dict[str, int] = {
            "requests": 0,
            "prompt_tokens": 0,
            "cached_prompt_tokens": 0,
            "generated_tokens": 0,
            "computed_tokens": 0,
            "preemptions": 0,
            "steps": 0,
            "aborted": 0,
            "rewinds": 0,
            "released_programs": 0,
        }

    # -- public ------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        """Sequences in the batch."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Sequences waiting to join."""
        return len(self._waiting)

    def check(self, req: EngineRequest) -> None:
        """Raise ``RequestRejected`` if ``req`` can never run here."""
        n = len(req.prompt)
        if n == 0:
            raise RequestRejected("the prompt is empty")
        if n >= self.context_length:
            raise RequestRejected(
                f"the prompt has {n} tokens but the context holds {self.context_length}"
            )
        need = self.pool.blocks_for(min(self.context_length, n + req.params.max_tokens))
        if need > self.pool.num_blocks:
            raise RequestRejected(
                f"the request needs {need} KV blocks but the engine has {self.pool.num_blocks}"
            )
        if req.promote_after is not None and not req.promote_after >= 0:
            raise RequestRejected(
                f"promote_after must be seconds >= 0, got {req.promote_after}",
                field="promote_after",
            )
        for i, (after, _) in enumerate(req.demote):
            if not (0 <= after < math.inf) or (i and after <= req.demote[i - 1][0]):
                raise RequestRejected(
                    f"demote step {i}: seconds must be >= 0 and above the step before, "
                    f"got {req.demote}",
                    field="demote",
                )
        if req.rewinds and req.pause:
            what = (
                "distinct_lines"
                if req.distinct_lines
                else "alike"
                if req.alike and not req.required
                else "require"
            )
            raise RequestRejected(f"{what} cannot be combined with pause strings", field=what)
        if any(not r for r in req.required):
            what = "require" if any(not r for r in req.require) else "require_anywhere"
            raise RequestRejected(f"{what} holds an empty string", field=what)
        if req.require_order and not req.require:
            raise RequestRejected("require_order needs require strings", field="require_order")
        for group in req.alike:
            if len(group) < 2 or any(not x for x in group):
                raise RequestRejected(
                    f"alike group {list(group)!r} needs two or more non-empty strings",
                    field="alike",
                )
        if self.model is not None:
            vocab = self.model.config.vocab_size
            bad = next((t for t in req.prompt if not 0 <= t < vocab), None)
            if bad is not None:
                raise RequestRejected(f"token id {bad} is outside the vocabulary (0..{vocab - 1})")

    def new_seq_id(self) -> str:
        """A fresh sequence id, to pass to ``open`` when the caller needs to know it (for
        ``append_tokens``)."""
        return f"seq-{next(self._ids)}"

    @asynccontextmanager
    async def open(
        self, req: EngineRequest, *, stream: bool = True, seq_id: str | None = None
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """Submit ``req``; yields its stream of events, which ends with a ``FinishEvent``.
        With ``stream=False`` the token events come in the ``FinishEvent`` (one wake-up per
        request instead of one per token). Leaving the block early aborts the request and
        frees its blocks. ``seq_id`` (from ``new_seq_id``) names the sequence for
        ``append_tokens``."""
        self.check(req)
        if seq_id is not None and seq_id in self._by_id:
            raise ValueError(f"sequence id {seq_id!r} is in use")
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        seq = _Seq(
            id=seq_id if seq_id is not None else self.new_seq_id(),
            req=req,
            send=send,
            arrival=(now := anyio.current_time()),
            queued_at=now,
            tokens=list(req.prompt),
            rng=np.random.default_rng(req.params.seed),
            stream=stream,
            starts=self._starts(req.required, alike=bool(req.alike)),
        )
        self._by_id[seq.id] = seq
        self._waiting.append(seq)
        self.counters["requests"] += 1
        self._wake.set()
        try:
            with receive:
                yield receive
        finally:
            if not seq.done:
                seq.aborted = True
                self._aborts = True
                self._wake.set()

    async def complete(self, req: EngineRequest) -> tuple[list[TokenEvent], FinishEvent]:
        """Run ``req`` to the end; its token events and its finish event."""
        async with self.open(req, stream=False) as events:
            async for ev in events:
                if isinstance(ev, FinishEvent):
                    return list(ev.events), ev
        raise RuntimeError("the engine stopped before the request finished")  # pragma: no cover

    def grammar_compiler(self) -> constrain.GrammarCompiler:
        """The compiler of grammars for this engine's tokenizer (made on first use)."""
        if self._grammars is None:
            if self.tokenizer is None or self.model is None:
                raise RequestRejected(
                    "a virtual-time engine generates no text: it cannot hold output to a grammar"
                )
            self._grammars = constrain.GrammarCompiler.for_tokenizer(
                self.tokenizer.tk, self._stop_ids, vocab_size=self.model.config.vocab_size
            )
        return self._grammars

    async def matcher(
        self, grammar: Grammar, *, time_limit: float = 30.0
    ) -> constrain.TokenMatcher:
        """A fresh matcher for ``grammar`` (compiled once per engine, in a worker thread so the
        step loop keeps serving). Raises ``RequestRejected`` if it does not compile within
        ``time_limit`` seconds or cannot be made a mask."""
        try:
            compiled = await self.grammar_compiler().acompile(grammar, time_limit=time_limit)
        except constrain.CompileTimeout as exc:
            raise RequestRejected(str(exc)) from None
        except (ValueError, RuntimeError) as exc:  # xgrammar reports what it cannot compile
            raise RequestRejected(f"{grammar.describe()} cannot be compiled: {exc}") from None
        return compiled.matcher()

    def release_program(self, program: str) -> int:
        """The program has ended: drop the pins it holds (returns how many blocks), put its
        cached blocks first in line for eviction (``BlockPool.release``), and tell a batch
        policy that keeps per-program state (``PolicyBatch``) to forget it."""
        self.counters["released_programs"] += 1
        end = getattr(self.policy, "on_program_end", None)
        if end is not None:
            end(program, anyio.current_time())
        return self.pool.release(program)

    def append_tokens(
        self, seq_id: str, tokens: Sequence[int], *, after: int | None = None
    ) -> bool:
        """Append ``tokens`` to a running sequence's context (they are computed at the next step
        and are not part of its output); a paused sequence (``EngineRequest.pause``) resumes.

        With ``after``, append only if the sequence has generated exactly ``after`` tokens, so
        that a caller who decided where to inject from the tokens it has seen never lands
        after tokens it has not seen. Returns whether the tokens were appended.

        Raises:
            KeyError: no such sequence is running (unknown, or finished).
            RequestRejected: the context would reach the engine's context length.
        """
        seq = self._by_id.get(seq_id)
        if seq is None or seq.done:
            raise KeyError(f"no running sequence {seq_id!r}")
        if after is not None and len(seq.generated) != after:
            return False
        if len(seq.tokens) + len(tokens) >= self.context_length:
            raise RequestRejected(
                f"appending {len(tokens)} tokens to a context of {len(seq.tokens)} would reach "
                f"the context length ({self.context_length})"
            )
        if self.pool.blocks_for(len(seq.tokens) + len(tokens) + 1) > self.pool.num_blocks:
            raise RequestRejected(
                f"appending {len(tokens)} tokens to a context of {len(seq.tokens)} would need "
                f"more KV blocks than the engine has ({self.pool.num_blocks})"
            )
        if not tokens and seq.held and seq.num_computed == len(seq.tokens) > 0:
            # Paused after computing its last token, whose logits were not sampled: compute
            # it again (same KV values) so that the next step samples.
            seq.num_computed -= 1
        seq.tokens.extend(tokens)
        seq.held = False
        self._wake.set()
        return True

    async def serve(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """The step loop; runs until cancelled."""
        task_status.started()
        try:
            while True:
                if not self._waiting and all(self._idle(s) for s in self._running):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self._step()
                await anyio.lowlevel.checkpoint()  # let new requests and aborts in between steps
        finally:
            for s in [*self._waiting, *self._running]:
                self._finish(s, "abort")

    # -- the step ------------------------------------------------------------------------------
    @staticmethod
    def _idle(s: _Seq) -> bool:
        """A paused sequence with nothing left to compute: no step has work for it."""
        return s.held and s.num_computed >= len(s.tokens)

    def _view(self, s: _Seq, running: bool, now: float) -> SeqView:
        if running:  # what preempting it frees: not the prefix blocks others hold too
            blocks = self.pool.exclusive(s.table) if s.table else 0
        else:
            if s.blocks_hint is None:  # the prefix match is costly: once per queue entry
                # Its blocks, less the cached prefix blocks other sequences hold: those are not
                # counted in the pool's free blocks. (Unreferenced cached blocks are counted
                # there, and taking them up uses them as a new block would.)
                cached, _ = self.pool.match_prefix(s.tokens)
                held = self.pool.referenced(cached)
                s.blocks_hint = self.pool.blocks_for(len(s.tokens) + 1) - held
            blocks = s.blocks_hint
        waited = s.waited if running else s.waited + now - s.queued_at
        served = _served(s, now, waited) if s.req.demote else 0.0
        return SeqView(
            id=s.id,
            priority=s.req.priority_at(waited, served),
            arrival=s.arrival,
            program=s.req.program,
            blocks_needed=blocks,
            generated=len(s.generated),
        )

    def _preempt(self, s: _Seq, mode: str = "recompute") -> None:
        """Take ``s`` out of the batch: ``recompute`` frees its blocks (its context is computed
        again when it rejoins); ``keep`` holds them, so it rejoins where it stopped."""
        assert s.table is not None
        if mode != "keep":
            self.pool.free(s.table)
            s.table = None
            s.num_computed = 0
        s.blocks_hint = None if mode != "keep" else 0
        self._running.remove(s)
        self._requeue(s)
        self.counters["preemptions"] += 1

    def _requeue(self, s: _Seq) -> None:
        """Put a sequence taken out of the batch back in the queue; its wait starts again."""
        s.queued_at = anyio.current_time()
        self._waiting.append(s)

    def _service(self, s: _Seq) -> float:
        """Seconds ``s`` has spent in the batch: its time at the engine less its time queued,
        before it first joined and after each preemption (0 if it never joined)."""
        now = anyio.current_time()
        return _served(s, now, s.waited + (now - s.queued_at if s in self._waiting else 0.0))

    def _join(self, s: _Seq, now: float) -> None:
        """Move a queued sequence into the batch, counting its wait."""
        s.waited += now - s.queued_at
        self._waiting.remove(s)
        self._running.append(s)

    def _schedule(self, now: float) -> None:
        self.pool.expire_pins(now)
        if self._aborts:
            self._aborts = False
            for s in [s for s in [*self._waiting, *self._running] if s.aborted]:
                self.counters["aborted"] += 1
                self._finish(s, "abort")
        if not self._waiting or (
            len(self._running) >= self.max_batch and not getattr(self.policy, "preempts", True)
        ):
            return  # nothing to admit and the policy never preempts: skip building views
        decision = self.policy.schedule(
            [self._view(s, False, now) for s in self._waiting],
            [self._view(s, True, now) for s in self._running],
            free_blocks=self.pool.free_blocks + self.pool.pinned_blocks,
            max_batch=self.max_batch,
            now=now,
        )
        by_id = {s.id: s for s in [*self._waiting, *self._running]}
        for sid, mode in decision.preempt:
            victim = by_id.get(sid)
            if victim is not None and victim in self._running:
                self._preempt(victim, mode)
        for sid in decision.admit:
            found = by_id.get(sid)
            if found is None or found not in self._waiting:
                continue
            s = found
            if s.table is not None:  # preempted with "keep": its blocks are still there
                self._join(s, now)
                continue
            try:
                s.table, cached = self.pool.allocate(s.tokens, now)
            except OutOfBlocks:
                if not self.pool.pinned_blocks:
                    break
                # Pins never block the head of the queue: drop as few as make room, those
                # expiring soonest first (not every program's at once), the asking program's
                # own last (those on its prefix it takes up anyway).
                need = self.pool.required(s.tokens)  # not its whole prompt: its prefix is there
                self.pool.drop_pins_for(need, keep=s.req.program)
                try:
                    s.table, cached = self.pool.allocate(s.tokens, now)
                except OutOfBlocks:
                    self.pool.drop_pins_for(self.pool.required(s.tokens))
                    try:
                        s.table, cached = self.pool.allocate(s.tokens, now)
                    except OutOfBlocks:
                        break
            s.num_computed = cached
            if s.started is None:  # its first admission (not a return after a preemption)
                s.started = now
                s.cached = cached
                self.counters["cached_prompt_tokens"] += cached
                self.counters["prompt_tokens"] += s.prompt_len
            self._join(s, now)

    def _plan(self, now: float) -> list[tuple[_Seq, int]]:
        work: list[tuple[_Seq, int]] = []
        budget = self.max_step_tokens
        # Decodes first (one token each, never starved), then prompt chunks oldest first.
        for s in sorted(
            self._running, key=lambda s: (len(s.tokens) - s.num_computed > 1, s.arrival)
        ):
            if s not in self._running:  # preempted below to make room for an earlier one
                continue
            pending = len(s.tokens) - s.num_computed
            take = pending if pending == 1 else min(pending, budget)
            if take <= 0:
                continue
            assert s.table is not None
            while True:
                try:
                    self.pool.grow(s.table, s.num_computed + take, now)
                    break
                except OutOfBlocks:
                    need = self.pool.blocks_for(s.num_computed + take) - len(s.table.blocks)
                    if self.pool.drop_pins_for(need):  # pins never stall a running sequence
                        continue
                    busy = {id(w) for w, _ in work}
                    others = [o for o in self._running if o is not s and id(o) not in busy]
                    if not others:
                        take = 0
                        break
                    self._preempt(max(others, key=lambda o: o.arrival))
            if take:
                work.append((s, take))
                if take > 1:
                    budget -= take
        return work

    async def _step(self) -> None:
        now = anyio.current_time()
        self._schedule(now)
        work = self._plan(now)
        if not work:
            if self._waiting and not self._running:
                # Nothing fits even alone: wait for an abort or a pin to expire.
                await anyio.sleep(0.01)
            else:
                # Sequences in the batch with nothing to compute (paused ones while others
                # wait for room): wait for a change (a request, tokens appended, an abort),
                # at most 10 ms (pins expire), rather than spin (under a mock clock a spin
                # never lets time pass).
                with anyio.move_on_after(0.01):
                    await self._wake.wait()
            return
        self.counters["steps"] += 1
        logits = None
        if self.model is None:
            assert self.cost is not None
            await anyio.sleep(
                self.cost.step_time(
                    tokens=sum(t for _, t in work),
                    context_tokens=sum(s.num_computed + t for s, t in work),
                )
            )
        else:
            batch = [
                SeqWork(
                    s.tokens[s.num_computed : s.num_computed + t],
                    s.num_computed,
                    list(s.table.blocks) if s.table else [],
                )
                for s, t in work
            ]
            logits = await anyio.to_thread.run_sync(self.model.forward, batch)
        now = anyio.current_time()
        if logits is not None:
            self._mask(logits, work)
        for row, (s, take) in enumerate(work):
            if s.aborted or s.done:
                continue
            s.num_computed += take
            self.counters["computed_tokens"] += take
            assert s.table is not None
            self.pool.commit(s.table, s.tokens[: s.num_computed])
            if s.num_computed < len(s.tokens) or s.held:
                continue  # a prompt chunk, or paused: nothing to sample yet
            try:
                self._sample(s, None if logits is None else logits[row])
            except Exception as exc:  # one sequence's failure ends it, not the engine
                self._fail(s, exc)

    def _sample(self, s: _Seq, logits: npt.NDArray[np.float32] | None) -> None:
        """Sample ``s``'s next token from its row of ``logits`` (a placeholder token in virtual
        time) and take it."""
        if logits is None:
            self._accept(s, Sampled(0, 0.0))
            return
        banned = self._banned(s)
        # A rewind to a choice that begins a missing required string takes it there, and the
        # tokens after it write the rest of that string where they can.
        forced = s.forced.get(tuple(s.generated)) if s.forced else None
        allowed: Sequence[int] | None = None
        if forced is not None and forced not in banned:
            allowed = (forced,)
        elif s.writing is not None:
            allowed = self._writing(s, logits, banned)
        sampled = sample(logits, s.req.params, s.rng, banned=banned, allowed=allowed)
        choice = None
        if s.req.rewinds:
            choice = _choice(logits, banned, sampled.token, s.starts)
        self._accept(s, sampled, choice)

    def _fail(self, s: _Seq, exc: Exception) -> None:
        """``s``'s own processing raised: log it and end ``s`` with ``error`` (the others go on)."""
        _log.exception("request %s failed in the engine", s.id, exc_info=exc)
        s.error = f"{type(exc).__name__}: {exc}"
        self._finish(s, "error")

    def _mask(self, logits: npt.NDArray[np.float32], work: list[tuple[_Seq, int]]) -> None:
        """Fill one bitmask row per constrained sequence about to sample, and forbid the
        tokens its grammar does not allow."""
        rows = [
            (row, s.req.constraint)
            for row, (s, take) in enumerate(work)
            if s.req.constraint is not None
            and not (s.aborted or s.done)
            and s.num_computed + take >= len(s.tokens)
        ]
        if not rows:
            return
        vocab = logits.shape[1]
        bitmask = constrain.new_bitmask(len(rows), vocab)
        for i, (row, matcher) in enumerate(rows):
            try:
                matcher.fill(bitmask, i)
            except Exception as exc:  # its grammar's failure ends it, not the engine
                self._fail(work[row][0], exc)
        keep = constrain.allowed_rows(bitmask, vocab)
        idx = [row for row, _ in rows]
        logits[idx] = np.where(keep, logits[idx], -np.inf)

    # -- tokens, text and endings ------------------------------------------------------------
    def _banned(self, s: _Seq) -> frozenset[int]:
        """End tokens are banned before ``min_tokens`` or with ``ignore_eos`` (never under a
        grammar, which alone says when the text may end), and after a rewound prefix the tokens
        ``distinct_lines`` banned there."""
        p = s.req.params
        out: frozenset[int] = frozenset()
        if s.req.constraint is None and (p.ignore_eos or len(s.generated) < p.min_tokens):
            out = self._stop_ids
        if s.bans:
            out |= s.bans.get(tuple(s.generated), frozenset())
        return out

    def _accept(
        self,
        s: _Seq,
        sampled: Sampled,
        choice: tuple[float, tuple[tuple[int, float], ...]] | None = None,
    ) -> None:
        p = s.req.params
        tok = sampled.token
        matcher = s.req.constraint
        if matcher is not None and self.tokenizer is not None and not matcher.accept(tok):
            # Only reachable if the mask allowed nothing (xgrammar allows an end token then).
            self._finish(s, "stop")
            return
        if self.tokenizer is not None and tok in self._stop_ids and not p.ignore_eos:
            # An end token the grammar took is undone with the rest if the output is rewound.
            if not self._lacks(s, end=choice or (0.0, ()), taken=int(matcher is not None)):
                self._finish(s, "stop")
            return
        s.tokens.append(tok)
        s.generated.append(tok)
        self.counters["generated_tokens"] += 1
        full = None
        if s.req.rewinds and self.tokenizer is not None:
            s.choices.append(choice or (0.0, ()))
            full = self._full_text(s)
            if s.req.distinct_lines and self._repeats(s, full):
                return  # rewound: the next step samples again where the repeat began
            if s.req.require_order and self._out_of_order(s, full):
                return  # rewound into the line that wrote a required string too early
            if s.req.alike and self._unlike(s, full):
                return  # taken back to where a line left the form of its list
        text, stopped = self._text(s, full)
        if s.req.pause and not stopped:
            self._check_pause(s)
        event = TokenEvent(tok, text, sampled.logprob, sampled.top)
        try:
            if s.stream:
                s.send.send_nowait(event)
            else:
                s.collected.append(event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            s.aborted = True  # the client has gone; freed at the next step
            self._aborts = True
        if stopped or (matcher is not None and matcher.terminated):
            if not self._lacks(s):
                self._finish(s, "stop")
        elif (
            len(s.generated) >= p.max_tokens or len(s.tokens) >= self.context_length
        ) and not self._lacks(s, length=True):
            self._finish(s, "length")

    def _lacks(
        self,
        s: _Seq,
        end: tuple[float, tuple[tuple[int, float], ...]] | None = None,
        taken: int = 0,
        length: bool = False,
    ) -> bool:
        """Whether ``s``, about to end, lacks a ``require`` string and has been rewound (then
        it decodes on), or has been ended with a better ending seen before. ``end``: the
        choice of an end token just sampled (not in its output), ``taken`` of which its
        grammar accepted; ``length``: it ends at ``max_tokens`` (else by itself)."""
        if not s.req.required or self.tokenizer is None:
            return False
        full = self._full_text(s)
        if s.stop_at is not None:
            full = full[: s.stop_at]
        first = _missing(full, s.req.require, s.req.require_order)
        missing = first or _missing(full, s.req.required, False)
        if missing is None:
            return False
        k, after = missing
        held = sum(r in full for r in s.req.required)
        if first is not None and s.req.require_order:  # only those before the first missing
            held -= sum(r in full for r in s.req.require[first[0] :])
        here: tuple[bool, int] = (not length, held)
        if s.best_end is None or here > s.best_end[0]:
            reason: FinishReason = "length" if length else "stop"
            s.best_end = (here, list(s.generated), s.stop_at, reason)
        if s.stop_at is not None and s.req.constraint is not None:
            # Its grammar has been moved to the stop string: it cannot roll back.
            return self._end_best(s)
        # What the required strings before it wrote stays; only what follows is searched
        # (everything, if nothing there can change).
        want = s.req.required[k]
        if not any(
            self._rewind(s, full, start, whole=True, end=end, taken=taken, want=want)
            for start in dict.fromkeys((after, 0))
        ):
            return self._end_best(s)
        s.stop_at = None
        kept = self._full_text(s)
        s.stop_from = min(s.stop_from, len(kept))
        self._relines(s, kept)
        return True

    def _relines(self, s: _Seq, kept: str) -> None:
        """After a rewind that may have taken back whole lines: the lines ``distinct_lines``
        checks are those still written (``kept``: the text now)."""
        if s.req.distinct_lines:
            s.line_from = kept.rfind("\n") + 1
            s.line_keys = {line_key(line) for line in kept[: s.line_from].split("\n")[:-1]}

    def _end_best(self, s: _Seq) -> bool:
        """The search for ``s``'s required strings has failed: end ``s`` with the best ending
        it saw (the earliest of equals; True)."""
        assert s.best_end is not None
        _, tokens, stop_at, reason = s.best_end
        drop = len(s.generated)
        del s.tokens[len(s.tokens) - drop :]
        s.tokens += tokens
        s.generated[:] = tokens
        s.stop_at = stop_at
        self._finish(s, reason)
        return True

    def _out_of_order(self, s: _Seq, full: str) -> bool:
        """Whether ``s``'s latest token completed a required string while an earlier one is
        still missing; then rewind ``s`` into that string's line (True). Each offset of the
        text is judged once, so a line the rewinds could not mend stands."""
        due = _missing(full, s.req.require, True)
        if due is None:
            s.order_from = len(full)
            return False
        k, after = due
        early = [
            i
            for r in s.req.require[k + 1 :]
            if (i := full.find(r, after)) >= 0 and i + len(r) > s.order_from
        ]
        if early:
            at = min(early)
            start = full.rfind("\n", 0, at) + 1
            end = at + len(next(r for r in s.req.require if full.startswith(r, at)))
            if self._rewind(s, full, start, upto=end, want=s.req.require[k]):
                return True
        s.order_from = len(full)
        return False

    def _repeats(self, s: _Seq, full: str) -> bool:
        """Check the lines ``s``'s latest token finished (``full``: its whole text); on a
        repeat, rewind ``s`` (True)."""
        while (end := full.find("\n", s.line_from)) >= 0:
            line = full[s.line_from : end]
            key = line_key(line)
            if key and key in s.line_keys and self._rewind(s, full, s.line_from):
                return True
            s.line_keys.add(key)
            s.line_from = end + 1
        return False

    def _rewind(
        self,
        s: _Seq,
        full: str,
        start: int,
        *,
        whole: bool = False,
        end: tuple[float, tuple[tuple[int, float], ...]] | None = None,
        taken: int = 0,
        upto: int | None = None,
        want: str | None = None,
    ) -> bool:
        """Take ``s`` back to the token whose best alternative that writes other text (not the
        same text cut another way) came closest, and ban there that token and every other
        ranked above the alternative. Candidates are, with ``whole``, every token of the output
        and ``end`` (the choice of an end token, ``taken`` of which the grammar accepted);
        else the tokens of the line at ``start`` that write its content (not its list marker)
        before its last letter or digit, so that the new line differs in its words, not in
        what follows them (``f("a b")`` is not redone as ``f("a b and a b")``); with ``upto``,
        the tokens of the line that write some of its text before that offset. With
        ``want`` (a missing required string), a token whose alternative would begin writing
        it comes first, the closest such alternative. False when there is none or the
        rewinds are spent."""
        if s.rewinds >= MAX_REWINDS:
            return False
        line = full[start:].split("\n", 1)[0]
        m = _LIST_MARK.match(line)
        key_from = start + (m.end() if m else 0)
        stop = len(full) if whole else upto if upto is not None else start + len(line) + 1
        # (does not begin ``want``, margin), token index, tokens to ban there, the alternative,
        # and the offset where it would begin ``want`` (-1: it would not)
        best: tuple[tuple[bool, float], int, set[int], int, int] | None = None

        def scan(
            j: int,
            at: int,
            choice: tuple[float, tuple[tuple[int, float], ...]],
            above: set[int],
            rest: str | None,
        ) -> None:
            """Weigh the alternatives of the choice made at token ``j`` (text offset ``at``)
            that write other text than ``rest`` (None: the choice to end; then any text but an
            end): the best one, and with ``want`` the best that begins it (``above``: the
            tokens ranked before, banned if it is taken)."""
            nonlocal best
            chosen, alternatives = choice
            first = True
            for token, logit in alternatives:
                other = self._decode([token])
                if (
                    token not in self._stop_ids and bool(other)
                    if rest is None
                    else not (rest.startswith(other) or other.startswith(rest))
                ):
                    begin = -1 if want is None else _begins(full, at, other, want)
                    key = (begin < 0, chosen - logit)
                    if (first or begin >= 0) and (best is None or key <= best[0]):
                        best = (key, j, set(above), token, begin)
                    first = False
                    if begin >= 0 or want is None:
                        return
                above.add(token)

        if end is not None:
            scan(len(s.generated), len(full), end, set(), None)
        after = len(full)
        for j in range(len(s.generated) - 1, -1, -1):
            begin = len(self._decode(s.generated[:j]))
            if begin < start:
                break
            rest = full[begin:stop]
            if whole or (after > key_from and any(c.isalnum() for c in rest)):
                scan(j, begin, s.choices[j], {s.generated[j]}, rest)
            after = begin
        if best is None:
            return False
        _, j, banned, token, begins_at = best
        if j == len(s.generated):
            banned = banned | self._stop_ids  # decode on instead of ending here
        prefix = tuple(s.generated[:j])
        s.bans.setdefault(prefix, set()).update(banned)
        s.forced.pop(prefix, None)  # a choice taken there before is banned now
        s.writing = None
        if want is not None and begins_at >= 0:  # it begins ``want``: take it, even sampling
            s.forced[prefix] = token
            s.writing = (want, begins_at)
        self._cut(s, j, taken)
        return True

    def _unlike(self, s: _Seq, full: str) -> bool:
        """Whether the line ``s`` is writing has left the form its ``alike`` group asks of it;
        then take it back to the token where it did and write the expected text from there
        (True). Not while a rewind is writing a string, nor once the rewinds are spent."""
        if s.writing is not None or s.rewinds >= MAX_REWINDS:
            return False
        for group in s.req.alike:
            line = _alike_line(full, group)
            if line is None:
                continue
            at, want = line
            written = full[at:]
            if want.startswith(written):
                continue
            d = at  # where it left the form
            while d - at < min(len(written), len(want)) and written[d - at] == want[d - at]:
                d += 1
            j = len(s.generated) - 1
            while j > 0 and len(self._decode(s.generated[:j])) > d:
                j -= 1
            begin = len(self._decode(s.generated[:j]))
            start = min(at, begin)
            s.forced.pop(tuple(s.generated[:j]), None)
            s.writing = (full[start:at] + want, start)
            self._cut(s, j)
            s.stop_from = min(s.stop_from, begin)
            self._relines(s, full[:begin])
            return True
        return False

    def _cut(self, s: _Seq, j: int, taken: int = 0) -> None:
        """Take ``s`` back to its first ``j`` generated tokens (``taken``: an end token its
        grammar accepted, undone too) and count a rewind."""
        drop = len(s.generated) - j
        if s.req.constraint is not None:
            s.req.constraint.rollback(drop + taken)
        del s.generated[j:]
        del s.choices[j:]
        if s.req.require_order:
            s.order_from = min(s.order_from, len(self._decode(s.generated)))
        del s.tokens[len(s.tokens) - drop :]
        s.rewinds += 1
        self.counters["rewinds"] += 1
        # The table's last blocks hold the rewound tokens: give them up and take the prefix
        # again (its full blocks are still cached, so only the last partial one is computed).
        assert s.table is not None
        self.pool.free(s.table)
        try:
            s.table, s.num_computed = self.pool.allocate(s.tokens, anyio.current_time())
        except OutOfBlocks:
            s.table, s.num_computed, s.blocks_hint = None, 0, None
            self._running.remove(s)
            self._requeue(s)

    def _check_pause(self, s: _Seq) -> None:
        """Pause ``s`` if a pause string has appeared in its output since the last one."""
        full = self._full_text(s)
        for p in s.req.pause:
            idx = full.find(p, s.pause_from)
            if idx >= 0:
                s.held = True
                s.pause_from = idx + len(p)

    def _full_text(self, s: _Seq) -> str:
        return self.tokenizer.decode(s.generated) if self.tokenizer else ""

    def _text(self, s: _Seq, full: str | None = None) -> tuple[str, bool]:
        """The new text to send after ``s``'s latest token (``full``: its whole text, if the
        caller has it), and whether a stop string ended it."""
        if self.tokenizer is None:
            return "", False
        if full is None:
            full = self._full_text(s)
        for stop in s.req.params.stop:
            idx = full.find(stop, max(s.stop_from, s.sent - len(stop) + 1))
            if idx >= 0 and not self._stop_ends_grammar(s, full, idx):
                s.stop_from = idx + 1  # the grammar is not complete there: it is content
                idx = -1
            if idx >= 0:
                s.stop_at = idx
                if s.req.held:
                    return "", True  # the whole text goes in the tail, if it ends here
                piece = full[s.sent : idx]
                s.sent = idx
                return piece, True
        safe = len(full)
        if full.endswith("\ufffd"):
            safe -= 1  # an incomplete multi-byte character
        if s.req.held:
            safe = 0  # sent at the end, once it is known to hold every required string
        elif s.req.distinct_lines:
            safe = min(safe, s.line_from)  # a line is sent once it is known not to repeat
        for stop in s.req.params.stop:
            for k in range(min(len(stop) - 1, safe - s.sent), 0, -1):
                if full[safe - k : safe] == stop[:k]:
                    safe -= k
                    break
        piece = full[s.sent : safe] if safe > s.sent else ""
        s.sent = max(s.sent, safe)
        return piece, False

    def _stop_ends_grammar(self, s: _Seq, full: str, idx: int) -> bool:
        """Whether a stop string at ``idx`` may end a constrained generation: the matcher,
        rolled back to the text before it (cutting a token in two where the stop string starts
        inside one), must be complete there. It is then left in that state."""
        matcher = s.req.constraint
        if matcher is None:
            return True
        assert self.tokenizer is not None
        keep = len(s.generated)
        while keep > 0 and len(self._decode(s.generated[:keep])) > idx:
            keep -= 1
        before = self._decode(s.generated[:keep])
        trial = matcher.fork()
        trial.rollback(len(s.generated) - keep)
        if not full.startswith(before) or not trial.accept_text(full[len(before) : idx]):
            return False
        if not trial.complete:
            return False
        matcher.adopt(trial)
        return True

    def _writing(
        self, s: _Seq, row: npt.NDArray[np.float32], banned: frozenset[int]
    ) -> list[int] | None:
        """The tokens that write on the required string a rewind began in ``s`` (allowed by
        the grammar, not banned), or None once it is written or cannot go on."""
        assert s.writing is not None and self._token_texts is not None
        want, at = s.writing
        written = self._full_text(s)[at:]
        need = want[len(written) :]
        if not need or not want.startswith(written):
            s.writing = None
            return None
        ids = [
            t
            for t, text in enumerate(self._token_texts)
            if text
            and (need.startswith(text) or text.startswith(need))
            and t not in banned
            and np.isfinite(row[t])
        ]
        if not ids:
            s.writing = None
        return ids or None

    def _starts(
        self, required: Sequence[str], *, alike: bool = False
    ) -> tuple[npt.NDArray[np.int64], ...]:
        """Per string of ``required``, the tokens that would begin a word writing it (their
        text past leading spaces and punctuation begins it or is begun by it). Each token's
        text is learnt here too, once, for a request that writes strings (``alike``)."""
        if not (required or alike) or self.tokenizer is None or self.model is None:
            return ()
        if self._token_texts is None:
            vocab = self.model.config.vocab_size
            self._token_texts = [self._decode([t]) for t in range(vocab)]
        for r in required:
            if r not in self._start_ids:
                if len(self._start_ids) >= 4096:
                    self._start_ids.clear()
                ids = [
                    t for t, text in enumerate(self._token_texts) if _begins("", 0, text, r) >= 0
                ]
                self._start_ids[r] = np.array(ids, dtype=np.int64)
        return tuple(self._start_ids[r] for r in required)

    def _decode(self, ids: Sequence[int]) -> str:
        assert self.tokenizer is not None
        return self.tokenizer.decode(ids)

    def _finish(self, s: _Seq, reason: FinishReason) -> None:
        if s.done:
            return
        s.done = True
        service = self._service(s)
        if s in self._running:
            self._running.remove(s)
        if s in self._waiting:
            self._waiting.remove(s)
        self._by_id.pop(s.id, None)
        ended = reason in ("abort", "error")  # not a normal end: nothing to learn or keep
        if s.started is not None and not ended:
            on_finish = getattr(self.policy, "on_finish", None)
            if on_finish is not None:
                now = anyio.current_time()
                on_finish(self._view(s, True, now), now, service)
        if s.table is not None:
            pin = None
            if not ended and s.req.kv_ttl and s.req.program:
                pin = anyio.current_time() + s.req.kv_ttl
            self.pool.free(s.table, pin_until=pin, owner=s.req.program)
            s.table = None
        text = self._full_text(s) if reason != "error" else ""
        if s.stop_at is not None:
            text = text[: s.stop_at]
        tail = text[s.sent :] if not ended else ""
        event = FinishEvent(
            reason,
            text,
            tail,
            s.prompt_len,
            len(s.generated),
            s.cached,
            tuple(s.collected),
            service,
            s.error,
        )
        with s.send, contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            s.send.send_nowait(event)  # suppressed: the client has gone


def _begins(full: str, at: int, text: str, want: str) -> int:
    """Where ``want`` would begin if ``text`` were written at offset ``at`` of ``full``: at
    ``text``'s first letter or digit if it begins a word there, or at the start of the word it
    goes on, if that word and ``text`` begin writing ``want`` (``"K"`` then ``"2"`` for
    ``K2``); -1 if neither."""
    i = next((i for i, c in enumerate(text) if c.isalnum()), len(text))
    if i == len(text):
        return -1
    start = at + i
    if i == 0:
        while start > 0 and full[start - 1].isalnum():
            start -= 1
    head = full[start:at] + text[i:]
    return start if want.startswith(head) or head.startswith(want) else -1


def _alike_line(full: str, group: Sequence[str]) -> tuple[int, str] | None:
    """Where the line ``full`` is now writing begins and what it must read (its list marker
    as written, the form, a newline), when it is one of the lines ``group`` (an
    ``EngineRequest.alike`` group) asks for: the lines after the first line that wrote
    ``group[0]``, one per further string. None when there is no such line, or its marker
    is not yet written."""
    m = re.search(rf"(?<![^\W_]){re.escape(group[0])}(?![^\W_])", full)
    if m is None:
        return None
    first = full.rfind("\n", 0, m.start()) + 1
    end = full.find("\n", m.end())
    if end < 0:
        return None
    mark = _LIST_MARK.match(full[first:end])
    content = first + (mark.end() if mark else 0)
    head, tail = full[content : m.start()], full[m.end() : end]
    at = end + 1
    for item in group[1:]:
        if at >= len(full):
            return None
        nl = full.find("\n", at)
        line = full[at:] if nl < 0 else full[at : nl + 1]
        marker = ""
        if mark is not None:
            own = _LIST_MARK.match(line)
            if own is None or own.end() == len(line):
                return None
            marker = own.group()
        want = f"{marker}{head}{item}{tail}\n"
        if line != want:
            return at, want
        at = nl + 1
    return None


def _missing(text: str, required: Sequence[str], ordered: bool) -> tuple[int, int] | None:
    """The first of ``required`` that ``text`` lacks (with ``ordered``: after the one before
    it), and the offset its search began at; None if it lacks none."""
    after = 0
    for k, r in enumerate(required):
        i = text.find(r, after if ordered else 0)
        if i < 0:
            return k, after
        if ordered:
            after = i + len(r)
    return None


ALTERNATIVES = 8
"""Tokens kept per step of a sequence that may be rewound, best first, to rewind to."""


def _choice(
    row: npt.NDArray[np.float32],
    banned: frozenset[int],
    token: int,
    starts: Sequence[npt.NDArray[np.int64]] = (),
) -> tuple[float, tuple[tuple[int, float], ...]]:
    """``token``'s logit in ``row`` (already masked by the grammar) and the best
    ``ALTERNATIVES`` other tokens allowed there (not ``banned``), best first, with theirs;
    then, per set of ``starts`` (the tokens that begin a required string), its best token
    allowed there if it is not among them, so a rewind can begin that string wherever the
    grammar allows it."""
    x = row.astype(np.float64)
    if banned:
        x[list(banned)] = -np.inf
    chosen = float(x[token])
    x[token] = -np.inf
    k = min(ALTERNATIVES, x.size - 1)
    top = np.argpartition(-x, k - 1)[:k]
    top = top[np.argsort(-x[top])]
    out = [(int(t), float(x[t])) for t in top if np.isfinite(x[t])]
    for ids in starts:
        if ids.size:
            best = int(ids[np.argmax(x[ids])])
            if np.isfinite(x[best]) and all(t != best for t, _ in out):
                out.append((best, float(x[best])))
    return chosen, tuple(out)
