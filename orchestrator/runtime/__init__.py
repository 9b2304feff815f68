"""The runtime: runs programs' graphs as dataflow, with admission control and retries."""

from orchestrator.runtime._admission import Admission
from orchestrator.runtime._orchestrator import (
    Orchestrator,
    ProgramHandle,
    arun,
    resolve_backend,
    run,
)
from orchestrator.runtime._retry import Retrying, RetryPolicy
from orchestrator.runtime._run import NodeStats, match_option

__all__ = [
    "Admission",
    "NodeStats",
    "Orchestrator",
    "ProgramHandle",
    "RetryPolicy",
    "Retrying",
    "arun",
    "match_option",
    "resolve_backend",
    "run",
]
