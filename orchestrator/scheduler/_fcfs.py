"""First-come-first-served orderings: per request (the engines' default) and per program."""

from __future__ import annotations

import sys

from orchestrator.scheduler._policy import CallInfo

__all__ = ["FCFS", "ProgramFCFS"]


class FCFS:
    """Request-level first come, first served: calls in the order they became ready.

    Sends priority 0 on every call, which leaves an engine's own FCFS order alone.
    """

    name = "fcfs"
    preempt_threshold = sys.maxsize
    """For the engine's batcher: never preempt (all its hints are equal anyway)."""

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: its arrival, then ``seq``)."""
        return (call.arrival, call.seq)

    def priority(self, call: CallInfo, now: float) -> int:
        """The priority hint (here: always 0, leaving the engine's own order alone)."""
        return 0

    def on_admit(self, call: CallInfo, now: float) -> None:
        """Nothing to do: this policy keeps no state."""

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        """Nothing to do: this policy keeps no state."""

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        """Nothing to do: this policy keeps no state."""


class ProgramFCFS:
    """Program-level first come, first served (Continuum): calls of older programs go first,
    whatever their own arrival, so a program is not overtaken by newer ones between its turns.

    The priority hint is the program's submission number, so engines order programs the same way.
    Age orders admissions but never preempts: a running call is not thrown away because an older
    program's call arrived (Continuum reorders the waiting queue only). Preempting for age
    recomputes work for a small gain in order; ``legato bench sched``, mean completion time over
    fcfs's with and without preempting for age (seed 0, default rates): react 0.675 -> 0.667,
    tree 1.095 -> 1.058, text2sql 0.900 -> 0.884, mixed 0.906 -> 0.889, chat 0.974 -> 0.974,
    dag 0.941 -> 0.945; react's speedup over fcfs with seeds 1 and 2: 1.605 -> 1.598 and
    1.488 -> 1.525.
    """

    name = "program_fcfs"
    uses_kv_ttl = True  # Continuum: pin the KV cache across tool calls
    preempt_threshold = sys.maxsize
    """For the engine's batcher (``PriorityBatch(preempt_threshold=...)``): no priority this
    policy sends is better than another's by more than this, so none preempts."""

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: its program's submission time and number, then the
        call's arrival and ``seq``)."""
        return (call.program_arrival, call.program_seq, call.arrival, call.seq)

    def priority(self, call: CallInfo, now: float) -> int:
        """The priority hint (here: the program's submission number, ``program_seq``)."""
        return call.program_seq

    def on_admit(self, call: CallInfo, now: float) -> None:
        """Nothing to do: this policy keeps no state."""

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        """Nothing to do: this policy keeps no state."""

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        """Nothing to do: this policy keeps no state."""
