"""Errors raised while programs run, under the same root as the DSL's program errors.

LegatoError
├── ProgramError            the program is wrong (dsl.errors); nothing was sent
│   ├── TemplateError
│   ├── VarMisuseError
│   ├── GrammarError        a grammar or JSON schema is invalid (line, column)
│   └── ConfigError         a bad backend or orchestrator setting
└── RunError                something failed while running
    ├── BackendError        an engine call failed (retryable, retry_after, backend)
    │   ├── BackendRejected     4xx: the engine refused the request; never retried
    │   │   └── GrammarUnsupported  the engine cannot hold the output to its grammar
    │   ├── BackendTimeout      no answer in time; retried
    │   └── BackendUnavailable  retryable failures outlasted the retries
    ├── ToolError           a tool raised (node, tool, cause)
    ├── DependencyFailed    a node did not run because an input failed
    ├── ConstraintViolation the output broke its constraint (text, reason)
    │   └── PlanRejected        a planner's last plan had a line that cannot run
    └── ProgramCancelled    the program was cancelled
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsl.errors import GrammarError, LegatoError, ProgramError, TemplateError, VarMisuseError

if TYPE_CHECKING:
    from dsl.plans import PlanError

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
    "PlanRejected",
    "ProgramCancelled",
    "ProgramError",
    "RunError",
    "TemplateError",
    "ToolError",
    "VarMisuseError",
]


class ConfigError(ProgramError):
    """A backend, orchestrator or CLI setting is invalid."""


class RunError(LegatoError):
    """Base of errors at run time. ``node`` is the graph node concerned, where there is one."""

    node: str | None = None


class BackendError(RunError):
    """An engine call failed.

    Attributes:
        backend: the backend's name (its URL for HTTP backends).
        retryable: whether trying again may succeed.
        retry_after: seconds the engine asked us to wait, if it said.
        status: the HTTP status, if there was a response.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class BackendRejected(BackendError):
    """The engine answered 4xx: the request itself is wrong; not retried."""

    def __init__(self, message: str, *, backend: str, status: int | None = None) -> None:
        super().__init__(message, backend=backend, retryable=False, status=status)


class GrammarUnsupported(BackendRejected):
    """The engine cannot enforce the call's grammar (no field for it, or it refused the field).
    The runtime then asks without the grammar, validates the answer and retries with the parse
    error (the node's statistics say ``degraded``)."""


class BackendTimeout(BackendError):
    """The engine did not answer in time."""

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message, backend=backend, retryable=True)


class BackendUnavailable(BackendError):
    """Retryable failures (5xx, timeouts, refused connections) outlasted the retries."""

    def __init__(self, message: str, *, backend: str, attempts: int) -> None:
        super().__init__(message, backend=backend, retryable=False)
        self.attempts = attempts


class ToolError(RunError):
    """A tool raised. ``__cause__`` is the tool's own exception.

    Attributes:
        node: the tool call's node id.
        tool: the tool's name.
        cause: the exception the tool raised (or the timeout).
        attempts: how many times it was tried.
    """

    def __init__(self, *, node: str, tool: str, cause: BaseException, attempts: int) -> None:
        what = (
            f"timed out ({cause})"
            if isinstance(cause, TimeoutError)
            else (f"raised {type(cause).__name__}: {cause}")
        )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"tool {tool!r} (node {node!r}) {what}{tries}")
        self.node = node
        self.tool = tool
        self.cause = cause
        self.attempts = attempts


class DependencyFailed(RunError):
    """A node was not run because a node it reads from failed.

    Attributes:
        node: the node that did not run.
        dependency: the failed input node.
        error: the failed input's error.
    """

    def __init__(self, *, node: str, dependency: str, error: BaseException) -> None:
        super().__init__(f"node {node!r} did not run: its input {dependency!r} failed ({error})")
        self.node = node
        self.dependency = dependency
        self.error = error


class ConstraintViolation(RunError):
    """The output does not satisfy the call's constraint.

    Attributes:
        text: the output.
        reason: what is wrong with it and where.
        position: the offset in ``text`` where it goes wrong, where known.
    """

    def __init__(self, *, node: str, text: str, reason: str, position: int | None = None) -> None:
        super().__init__(f"node {node!r}: output {text[:80]!r} violates its constraint: {reason}")
        self.node = node
        self.text = text
        self.reason = reason
        self.position = position


class PlanRejected(ConstraintViolation):
    """The planner's last plan had a line the runtime cannot run, and no replan was left.

    Attributes:
        error: the ``dsl.plans.PlanError`` naming the line (its number, text and fault).
        text: the plan as the planner wrote it, up to where it was cut.
    """

    def __init__(self, *, node: str, text: str, error: PlanError) -> None:
        super().__init__(
            node=node, text=text, reason=f"the plan was rejected, no replan is left: {error}"
        )
        self.error = error


class ProgramCancelled(RunError):
    """The program was cancelled before it finished."""
