"""Batch policies for the embedded engine: each step, which waiting sequences join the batch and
which running ones are preempted. Pure, like the request policies: views in, a decision out."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from orchestrator.scheduler._policy import CallInfo, Policy

__all__ = [
    "BatchDecision",
    "BatchPolicy",
    "FCFSBatch",
    "PolicyBatch",
    "PriorityBatch",
    "SeqView",
    "batch_policy_for",
]

PreemptMode = Literal["recompute", "keep"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeqView:
    """A sequence as a batch policy sees it.

    Attributes:
        id: the sequence's id.
        priority: Legato's priority, lower = sooner.
        arrival: when the request arrived (engine clock).
        program: the program id from the request's hints, if any.
        blocks_needed: for a waiting sequence, the KV blocks it needs to join (its context less
            what the prefix cache holds); for a running one, the blocks it alone holds (what
            preempting it frees: not the prefix blocks other sequences hold too).
        generated: tokens generated so far.
    """

    id: str
    priority: int
    arrival: float
    program: str | None
    blocks_needed: int
    generated: int = 0


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """Which waiting sequences to admit (in order) and which running ones to preempt."""

    admit: tuple[str, ...] = ()
    preempt: tuple[tuple[str, PreemptMode], ...] = ()


class BatchPolicy(Protocol):
    """Decides the batch each engine step."""

    name: str

    preempts: bool
    """Whether it may preempt; if not, the engine skips it while the batch is full."""

    def schedule(
        self,
        waiting: Sequence[SeqView],
        running: Sequence[SeqView],
        *,
        free_blocks: int,
        max_batch: int,
        now: float,
    ) -> BatchDecision:
        """The admissions and preemptions for this step."""
        ...


def _admit(order: Sequence[SeqView], *, room: int, free_blocks: int) -> list[str]:
    admitted = []
    for s in order:
        if room <= 0 or s.blocks_needed > free_blocks:
            break  # strict order: never let a later sequence overtake one that does not fit
        admitted.append(s.id)
        room -= 1
        free_blocks -= s.blocks_needed
    return admitted


class FCFSBatch:
    """Admit in arrival order while the batch and the KV budget have room; never preempt.
    (The engines' default.)"""

    name = "fcfs"
    preempts = False

    def schedule(
        self,
        waiting: Sequence[SeqView],
        running: Sequence[SeqView],
        *,
        free_blocks: int,
        max_batch: int,
        now: float,
    ) -> BatchDecision:
        """The admissions for this step (here: waiting sequences by arrival, in strict order, while
        the batch and the free blocks have room); never preempts."""
        order = sorted(waiting, key=lambda s: s.arrival)
        return BatchDecision(
            admit=tuple(_admit(order, room=max_batch - len(running), free_blocks=free_blocks))
        )


class PriorityBatch:
    """Admit by priority (lower first, then arrival); when the best waiting sequence does not
    fit, preempt running sequences of worse priority (recompute) to make room.

    Args:
        preempt_threshold: a running sequence yields only to one whose priority is better by
            more than this (SGLang's priority-scheduling preemption threshold). 0, the default,
            preempts for any strictly better priority, as vLLM's priority scheduling does. A
            policy whose hints put a tie-break below a class (``Adaptive``: ``class * 10**9 +
            rank``, the rank being the program's arrival in 10 ms ticks) sets it so that only a
            better class preempts: throwing away a running call's work to serve a slightly
            older program costs more than it saves.
            ``sys.maxsize`` never preempts (``ProgramFCFS``): priorities then order admissions
            only.
    """

    name = "priority"

    def __init__(self, preempt_threshold: int = 0) -> None:
        if preempt_threshold < 0:
            raise ValueError(f"preempt_threshold must be >= 0, got {preempt_threshold}")
        self.preempt_threshold = preempt_threshold
        self.preempts = preempt_threshold < sys.maxsize

    def rank(self, s: SeqView, now: float) -> tuple[float, ...]:
        """Order of a sequence: lower goes first (here: its priority hint, then arrival)."""
        return (s.priority, s.arrival)

    def urgency(self, s: SeqView, now: float) -> int:
        """The priority that preemption compares, against ``preempt_threshold``: a running
        sequence yields only to one more urgent by more than the threshold (here: the hint)."""
        return s.priority

    def on_finish(self, s: SeqView, now: float, service: float) -> None:
        """A sequence finished after ``service`` seconds in the batch."""

    def schedule(
        self,
        waiting: Sequence[SeqView],
        running: Sequence[SeqView],
        *,
        free_blocks: int,
        max_batch: int,
        now: float,
    ) -> BatchDecision:
        """The admissions and preemptions for this step (here: admit by ``rank`` in strict order;
        if the next one does not fit, preempt running sequences, least urgent first, whose
        ``urgency`` is worse than its by more than ``preempt_threshold``, when that makes room)."""
        order = sorted(waiting, key=lambda s: self.rank(s, now))
        room = max_batch - len(running)
        admitted = _admit(order, room=room, free_blocks=free_blocks)
        if len(admitted) == len(order) or not order:
            return BatchDecision(admit=tuple(admitted))
        head = order[len(admitted)]
        room -= len(admitted)
        free = free_blocks - sum(s.blocks_needed for s in order[: len(admitted)])
        victims: list[tuple[str, PreemptMode]] = []
        head_urgency = self.urgency(head, now)
        worst_first = sorted(
            running, key=lambda s: (self.urgency(s, now), self.rank(s, now)), reverse=True
        )
        for v in worst_first:
            if room >= 1 and free >= head.blocks_needed:
                break
            if self.urgency(v, now) - head_urgency <= self.preempt_threshold:
                break  # only a sequence worse by more than the threshold yields
            victims.append((v.id, "recompute"))
            room += 1
            free += v.blocks_needed
        if room >= 1 and free >= head.blocks_needed:
            admitted.append(head.id)
            return BatchDecision(admit=tuple(admitted), preempt=tuple(victims))
        return BatchDecision(admit=tuple(admitted))


class PolicyBatch(PriorityBatch):
    """A request policy (PLAS, ATLAS, adaptive...) run inside the engine's batcher: each sequence
    is a call of the program named by its ``X-Legato-Program`` header (or a program of its own),
    ranked by the policy's key, and finished sequences teach the policy their service. For
    clients that say which program a request belongs to but send no priorities; with priorities
    from Legato's orchestrator, ``PriorityBatch`` already follows them.

    Admissions follow the policy's key; preemption compares the policy's priority hints with
    its ``preempt_threshold``, as ``PriorityBatch`` does with the hints the orchestrator sends,
    so a policy preempts the same way inside the engine as through its hints (program-level
    FCFS never preempts; adaptive preempts for a better Gittins class only).

    A program's state is dropped when it ends: when the engine is told (``Engine.
    release_program``, which an in-process ``Orchestrator`` calls at each program's end), or,
    since an HTTP client never says so, once none of its sequences has been queued or running
    for ``forget_after`` seconds. So a long-lived server's memory stays bounded; a program that
    comes back after that long starts afresh.

    Args:
        policy: the request policy.
        forget_after: seconds without a sequence after which a program counts as ended.
    """

    def __init__(self, policy: Policy, *, forget_after: float = 600.0) -> None:
        super().__init__(preempt_threshold=int(getattr(policy, "preempt_threshold", 0)))
        if not forget_after > 0:
            raise ValueError(f"forget_after must be seconds > 0, got {forget_after}")
        self.policy = policy
        self.name = policy.name
        self.forget_after = forget_after
        self._program_first: dict[str, tuple[float, int]] = {}
        self._seen: dict[str, float] = {}  # program -> when a sequence of it was last seen
        self._seq: dict[str, tuple[int, str]] = {}  # sequence -> (its number, its program)
        self._programs = itertools.count()
        self._calls = itertools.count()
        self._next_sweep = -math.inf

    @property
    def programs(self) -> int:
        """Programs whose state is kept."""
        return len(self._program_first)

    def _call(self, s: SeqView) -> CallInfo:
        program = s.program or s.id
        first = self._program_first.get(program)
        if first is None:
            first = self._program_first[program] = (s.arrival, next(self._programs))
        seq = self._seq.get(s.id)
        if seq is None:
            seq = self._seq[s.id] = (next(self._calls), program)
        return CallInfo(
            call=f"{program}/{s.id}",
            program=program,
            thread="",
            arrival=s.arrival,
            program_arrival=first[0],
            seq=seq[0],
            program_seq=first[1],
        )

    def schedule(
        self,
        waiting: Sequence[SeqView],
        running: Sequence[SeqView],
        *,
        free_blocks: int,
        max_batch: int,
        now: float,
    ) -> BatchDecision:
        """As ``PriorityBatch`` by the policy's key and hints, after marking each sequence's
        program seen and, at most every ``forget_after / 4`` seconds, ending programs unseen
        for longer than ``forget_after``."""
        for s in (*waiting, *running):
            self._seen[s.program or s.id] = now
        if now >= self._next_sweep:
            self._next_sweep = now + self.forget_after / 4
            for program, seen in list(self._seen.items()):
                if now - seen > self.forget_after:
                    self.on_program_end(program, now)
        return super().schedule(
            waiting, running, free_blocks=free_blocks, max_batch=max_batch, now=now
        )

    def rank(self, s: SeqView, now: float) -> tuple[float, ...]:
        return self.policy.key(self._call(s), now)

    def urgency(self, s: SeqView, now: float) -> int:
        return self.policy.priority(self._call(s), now)

    def on_finish(self, s: SeqView, now: float, service: float) -> None:
        if (s.program or s.id) not in self._program_first:  # its program has ended already
            self._seq.pop(s.id, None)  # (learning from it would bring the program back)
            return
        self.policy.on_finish(self._call(s), now, service)
        self._seq.pop(s.id, None)

    def on_program_end(self, program: str, now: float) -> None:
        """``program`` has ended: the policy forgets it (and learns its size, where it learns)."""
        if self._program_first.pop(program, None) is None:
            return
        self._seen.pop(program, None)
        for sid in [sid for sid, (_, p) in self._seq.items() if p == program]:
            del self._seq[sid]
        self.policy.on_program_end(program, "", now)


def batch_policy_for(policy: object) -> PriorityBatch:
    """The embedded engine's batch policy that carries out the hints of the request policy
    ``policy`` (an instance or a class): ``PriorityBatch`` with the policy's
    ``preempt_threshold`` (0 where it declares none). For request-level FCFS, whose hints are
    all 0 and which never preempts, that orders by arrival, as ``FCFSBatch`` does."""
    return PriorityBatch(int(getattr(policy, "preempt_threshold", 0)))
