"""The policy interface: what the scheduler knows about a ready call, and how a policy orders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["CallInfo", "Policy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInfo:
    """A ready LLM call as a policy sees it. Times are seconds on the runtime's clock.

    Attributes:
        call: a key unique among live calls (program id and node id).
        program: the program instance's id.
        thread: the call's thread within its program.
        arrival: when the call became ready (its inputs resolved).
        program_arrival: when its program was submitted.
        seq: a counter that increases with each ready call; breaks ties in arrival order.
        program_seq: a counter that increases with each submitted program.
        kind: the program's name (programs of one kind are alike: history is kept per kind).
        parents: the calls this one depends on, through data or control edges (and through
            tools in between): ATLAS's critical path runs along them.
        expected_service: the graph's cost estimate for this call, in seconds.
        remaining: expected seconds of work on the program's longest chain after this call, as
            far as the graph is known (0 for a program still discovering its next step).
        deadline: when this call should finish to keep its program's SLO, or None.
    """

    call: str
    program: str
    thread: str
    arrival: float
    program_arrival: float
    seq: int
    program_seq: int
    kind: str = ""
    parents: tuple[str, ...] = ()
    expected_service: float = 0.0
    remaining: float = 0.0
    deadline: float | None = None


class Policy(Protocol):
    """A pure scheduling policy: no I/O, no clock of its own; ``now`` is passed in.

    ``key`` orders waiting calls (the smallest is admitted first); ``priority`` is the hint sent
    to engines (Legato's meaning: lower = sooner). ``on_admit`` and ``on_finish`` let stateful
    policies learn from what ran.

    Optional, read with ``getattr`` by the orchestrator and the engine's batcher:
    ``promotion(call, now)`` (when a call still waiting at the engine should be promoted, and
    to what), ``demotion(call, now)`` (after how much of its own service a running call falls
    to each lower priority), ``preempt_threshold`` (how much better a priority must be to
    preempt) and ``uses_kv_ttl`` (whether its calls pin their KV cache between turns).
    """

    name: str

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call; lower is admitted sooner."""
        ...

    def priority(self, call: CallInfo, now: float) -> int:
        """The priority hint for the engine, lower = sooner."""
        ...

    def on_admit(self, call: CallInfo, now: float) -> None:
        """The call was admitted to its backend at ``now``."""
        ...

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        """The call finished at ``now`` after ``service`` seconds at the backend."""
        ...

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        """The program finished (or failed): forget it, or learn from it."""
        ...
