"""Batch policies for the embedded engine: each step, which waiting sequences join the batch and
which running ones are preempted. Pure, like the request policies: views in, a decision out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["BatchDecision", "BatchPolicy", "FCFSBatch", "PriorityBatch", "SeqView"]

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
            what the prefix cache holds); for a running one, the blocks it holds (what
            preempting it frees).
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
        order = sorted(waiting, key=lambda s: s.arrival)
        return BatchDecision(
            admit=tuple(_admit(order, room=max_batch - len(running), free_blocks=free_blocks))
        )


class PriorityBatch:
    """Admit by priority (lower first, then arrival); when the best waiting sequence does not
    fit, preempt running sequences of strictly worse priority (recompute) to make room, as vLLM's
    priority scheduling does."""

    name = "priority"
    preempts = True

    def schedule(
        self,
        waiting: Sequence[SeqView],
        running: Sequence[SeqView],
        *,
        free_blocks: int,
        max_batch: int,
        now: float,
    ) -> BatchDecision:
        order = sorted(waiting, key=lambda s: (s.priority, s.arrival))
        room = max_batch - len(running)
        admitted = _admit(order, room=room, free_blocks=free_blocks)
        if len(admitted) == len(order) or not order:
            return BatchDecision(admit=tuple(admitted))
        head = order[len(admitted)]
        room -= len(admitted)
        free = free_blocks - sum(s.blocks_needed for s in order[: len(admitted)])
        victims: list[tuple[str, PreemptMode]] = []
        for v in sorted(running, key=lambda s: (s.priority, s.arrival), reverse=True):
            if room >= 1 and free >= head.blocks_needed:
                break
            if v.priority <= head.priority:
                break
            victims.append((v.id, "recompute"))
            room += 1
            free += v.blocks_needed
        if room >= 1 and free >= head.blocks_needed:
            admitted.append(head.id)
            return BatchDecision(admit=tuple(admitted), preempt=tuple(victims))
        return BatchDecision(admit=tuple(admitted))
