"""Admission control in front of a backend: at most ``limit`` calls in flight, and when a slot
frees, the policy picks which waiting call takes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from orchestrator.scheduler import CallInfo, Policy, ReadyQueue

__all__ = ["Admission", "Grant"]


@dataclass(slots=True)
class Grant:
    """A held slot. ``service``: seconds the call really ran at the engine, if it said."""

    service: float | None = None


@dataclass(eq=False)
class _Waiter:
    call: CallInfo
    event: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False


class Admission:
    """A policy-ordered semaphore for one backend (the waiting calls in a ``ReadyQueue``)."""

    def __init__(self, limit: int, policy: Policy) -> None:
        if limit < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {limit}")
        self.limit = limit
        self.policy = policy
        self.in_flight = 0
        self._queue: ReadyQueue[_Waiter] = ReadyQueue(policy)

    @property
    def waiting(self) -> int:
        """How many calls wait for a slot."""
        return len(self._queue)

    @asynccontextmanager
    async def slot(self, call: CallInfo) -> AsyncIterator[Grant]:
        """Hold a slot for ``call`` while the block runs. The policy learns the call's service:
        what the block sets as ``grant.service`` (the engine's own figure), else the time the
        slot was held."""
        await self._acquire(call)
        try:  # the slot goes back however the block ends, even if the policy raises
            start = anyio.current_time()
            self.policy.on_admit(call, start)
            self._queue.touched(call.program, start)
            grant = Grant()
            try:
                yield grant
            finally:
                now = anyio.current_time()
                service = grant.service if grant.service is not None else now - start
                self.policy.on_finish(call, now, service)
                self._queue.touched(call.program, now)
        finally:
            self._release()

    async def _acquire(self, call: CallInfo) -> None:
        if self.in_flight < self.limit and not len(self._queue):
            self.in_flight += 1
            return
        waiter = _Waiter(call)
        self._queue.push(call, waiter, anyio.current_time())
        try:
            await waiter.event.wait()
        except BaseException:
            # Cancelled while waiting: give back a slot granted in the meantime.
            if waiter.granted:
                self._release()
            else:
                self._queue.remove(call)
            raise

    def _release(self) -> None:
        self.in_flight -= 1
        now = anyio.current_time()
        while self.in_flight < self.limit:
            best = self._queue.pop(now)
            if best is None:
                return
            waiter = best[1]
            waiter.granted = True
            self.in_flight += 1
            waiter.event.set()
