"""First-come-first-served orderings: per request (the engines' default) and per program."""

from __future__ import annotations

from orchestrator.scheduler._policy import CallInfo

__all__ = ["FCFS", "ProgramFCFS"]


class FCFS:
    """Request-level first come, first served: calls in the order they became ready.

    Sends priority 0 on every call, which leaves an engine's own FCFS order alone.
    """

    name = "fcfs"

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        return (call.arrival, call.seq)

    def priority(self, call: CallInfo, now: float) -> int:
        return 0

    def on_admit(self, call: CallInfo, now: float) -> None:
        pass

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        pass

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        pass


class ProgramFCFS:
    """Program-level first come, first served (Continuum): calls of older programs go first,
    whatever their own arrival, so a program is not overtaken by newer ones between its turns.

    The priority hint is the program's submission number, so engines order programs the same way.
    """

    name = "program_fcfs"
    uses_kv_ttl = True  # Continuum: pin the KV cache across tool calls

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        return (call.program_arrival, call.program_seq, call.arrival, call.seq)

    def priority(self, call: CallInfo, now: float) -> int:
        return call.program_seq

    def on_admit(self, call: CallInfo, now: float) -> None:
        pass

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        pass

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        pass
