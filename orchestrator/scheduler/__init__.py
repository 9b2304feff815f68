"""Pure scheduling policies: they order ready calls and compute the hints sent to engines.

Policies do no I/O and read no clock: the runtime passes ``now`` in, so each one can be tested
step by step. ``make_policy(name)`` builds one by name.
"""

from orchestrator.scheduler._balancer import BALANCERS, Balancer
from orchestrator.scheduler._batch import (
    BatchDecision,
    BatchPolicy,
    FCFSBatch,
    PolicyBatch,
    PriorityBatch,
    SeqView,
    batch_policy_for,
)
from orchestrator.scheduler._fcfs import FCFS, ProgramFCFS
from orchestrator.scheduler._kv_ttl import TTLPredictor
from orchestrator.scheduler._policy import CallInfo, Policy
from orchestrator.scheduler._program import (
    ATLAS,
    MLFQ,
    PLAS,
    SLO,
    Adaptive,
    QueueConfig,
    gittins_index,
)
from orchestrator.scheduler._queue import ReadyQueue

__all__ = [
    "ATLAS",
    "BALANCERS",
    "Balancer",
    "FCFS",
    "MLFQ",
    "PLAS",
    "SLO",
    "Adaptive",
    "QueueConfig",
    "ReadyQueue",
    "TTLPredictor",
    "gittins_index",
    "POLICIES",
    "BatchDecision",
    "BatchPolicy",
    "CallInfo",
    "FCFSBatch",
    "PolicyBatch",
    "Policy",
    "PriorityBatch",
    "ProgramFCFS",
    "SeqView",
    "batch_policy_for",
    "make_policy",
]

POLICIES: dict[str, type[Policy]] = {
    "fcfs": FCFS,
    "program_fcfs": ProgramFCFS,
    "plas": PLAS,
    "atlas": ATLAS,
    "mlfq": MLFQ,
    "slo": SLO,
    "adaptive": Adaptive,
}
"""Policy classes by name."""


def make_policy(name: str) -> Policy:
    """A new policy by name; ``ValueError`` listing the known names if there is none."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}"
        ) from None
    return cls()
