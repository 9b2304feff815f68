"""Legato's runtime: run DSL programs on LLM engines, many at once, program-aware.

    import orchestrator
    result = orchestrator.run(my_program, "arg", backend="http://127.0.0.1:8000/v1")

``Orchestrator`` runs many programs at once; ``orchestrator.backends`` holds the engine
adapters; ``orchestrator.testing`` a scripted backend for testing programs offline.
"""

from orchestrator import backends, errors
from orchestrator.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ConstraintViolation,
    DependencyFailed,
    GrammarError,
    GrammarUnsupported,
    LegatoError,
    PlanRejected,
    ProgramCancelled,
    ProgramError,
    RunError,
    ToolError,
)
from orchestrator.runtime import NodeStats, Orchestrator, ProgramHandle, RetryPolicy, arun, run

__all__ = [
    "BackendError",
    "BackendRejected",
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigError",
    "ConstraintViolation",
    "DependencyFailed",
    "GrammarError",
    "GrammarUnsupported",
    "LegatoError",
    "NodeStats",
    "Orchestrator",
    "PlanRejected",
    "ProgramCancelled",
    "ProgramError",
    "ProgramHandle",
    "RetryPolicy",
    "RunError",
    "ToolError",
    "arun",
    "backends",
    "errors",
    "run",
]
