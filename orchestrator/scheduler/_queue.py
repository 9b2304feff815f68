"""``ReadyQueue``: waiting calls in a policy's order, with a decision in O(log n).

Scanning every waiting call for the smallest key costs milliseconds at 10,000 queued calls. A
heap is enough if keys only change when we know they do; policies say when:

- a program's state changed (its calls were admitted or finished): ``touched(program, now)``
  re-keys that program's queued calls (a program has few at a time);
- the policy's shared state changed (``policy.epoch``, e.g. adaptive's refreshed history):
  everything is re-keyed once, at the next decision (rare: policies bump it sparingly);
- time passed (anti-starvation): ``policy.expires(call, now)`` says when a key may change by
  time alone; an expiry heap re-keys those entries when the time comes.

Keys must otherwise not depend on ``now`` (they are compared across entries keyed at different
times). A policy without ``expires`` is taken to have time-invariant keys.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from orchestrator.scheduler._policy import CallInfo, Policy

__all__ = ["ReadyQueue"]

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Entry(Generic[T]):
    call: CallInfo
    item: T
    gen: int = 0
    live: bool = True


@dataclass
class ReadyQueue(Generic[T]):
    """Calls waiting for admission, best first by ``policy.key``."""

    policy: Policy
    _heap: list[tuple[tuple[float, ...], int, int, int, _Entry[T]]] = field(default_factory=list)
    _expiry: list[tuple[float, int, int, int, _Entry[T]]] = field(default_factory=list)
    _ticks: Iterator[int] = field(default_factory=itertools.count)
    """Breaks ties between heap entries with equal keys and seq (the same call queued again),
    so the heap never compares entries."""
    _by_program: dict[str, dict[str, _Entry[T]]] = field(default_factory=dict)
    _by_call: dict[str, _Entry[T]] = field(default_factory=dict)
    _epoch: int = 0

    def __len__(self) -> int:
        return len(self._by_call)

    def _compact(self, now: float) -> None:
        """Rebuild the heaps from the live calls (dead entries from re-keying pile up)."""
        self._heap.clear()
        self._expiry.clear()
        for e in self._by_call.values():
            self._key(e, now, compact=False)

    def _key(self, e: _Entry[T], now: float, *, compact: bool = True) -> None:
        if compact and len(self._heap) > 4 * len(self._by_call) + 64:
            self._compact(now)
        e.gen += 1  # older heap entries of this call are now dead
        key = self.policy.key(e.call, now)
        heapq.heappush(self._heap, (key, e.call.seq, next(self._ticks), e.gen, e))
        expires = getattr(self.policy, "expires", None)
        if expires is not None:
            when = expires(e.call, now)
            if when < math.inf:
                # A time at or before ``now`` (float rounding at the boundary) is looked at again
                # at the next later decision, never again within this one.
                when = max(when, math.nextafter(now, math.inf))
                heapq.heappush(self._expiry, (when, e.call.seq, next(self._ticks), e.gen, e))

    def push(self, call: CallInfo, item: T, now: float) -> None:
        """Queue ``call`` (with ``item``, e.g. its waiter). ``ValueError`` if a call of that id
        is queued already (its entries would be confused)."""
        if call.call in self._by_call:
            raise ValueError(f"call {call.call!r} is queued already")
        e = _Entry(call, item)
        self._by_call[call.call] = e
        self._by_program.setdefault(call.program, {})[call.call] = e
        self._key(e, now)

    def remove(self, call: CallInfo) -> None:
        """Take ``call`` out (it was cancelled)."""
        e = self._by_call.pop(call.call, None)
        if e is not None:
            e.live = False
            self._forget(e)

    def _forget(self, e: _Entry[T]) -> None:
        mine = self._by_program.get(e.call.program)
        if mine is not None:
            mine.pop(e.call.call, None)
            if not mine:
                del self._by_program[e.call.program]

    def touched(self, program: str, now: float) -> None:
        """``program``'s state in the policy changed: re-key its queued calls."""
        for e in list(self._by_program.get(program, {}).values()):
            self._key(e, now)

    def pop(self, now: float) -> tuple[CallInfo, T] | None:
        """The best call now, removed from the queue; None if empty."""
        epoch = int(getattr(self.policy, "epoch", 0))
        if epoch != self._epoch:  # shared state changed: every key may have moved
            self._epoch = epoch
            self._compact(now)
        while self._expiry and self._expiry[0][0] <= now:
            _, _, _, gen, e = heapq.heappop(self._expiry)
            if e.live and gen == e.gen:
                self._key(e, now)  # time changed its key (e.g. it starved)
        while self._heap:
            _, _, _, gen, e = self._heap[0]
            heapq.heappop(self._heap)
            if not e.live or gen != e.gen:
                continue
            e.live = False
            del self._by_call[e.call.call]
            self._forget(e)
            return e.call, e.item
        return None
