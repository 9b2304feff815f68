"""``Orchestrator``: runs many programs at once against one backend; ``run``/``arun`` for one."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import secrets
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

import anyio
import anyio.abc

import dsl
from orchestrator.backends import Backend, Hints, backend_from_spec
from orchestrator.errors import ConfigError, ProgramError
from orchestrator.runtime._admission import Admission
from orchestrator.runtime._retry import RetryPolicy
from orchestrator.runtime._run import NodeStats, ProgramRun
from orchestrator.scheduler import CallInfo, Policy, TTLPredictor, make_policy

__all__ = ["Orchestrator", "ProgramHandle", "arun", "resolve_backend", "run"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def resolve_backend(backend: Backend | str | None) -> tuple[Backend, bool]:
    """The backend for ``backend=`` and whether Legato created it (and so must close it).

    Accepts a ``Backend``; ``"local"`` (the default, also when None), ``"local:PRESET"`` or
    ``"local:PATH.gguf"`` for the embedded engine in-process; or the ``http(s)://`` URL of an
    OpenAI-compatible server.
    """
    if backend is None:
        backend = "local"
    if isinstance(backend, str):
        return backend_from_spec(backend), True
    if not isinstance(backend, Backend):
        raise ConfigError(f"backend {backend!r} does not implement the Backend protocol")
    return backend, False


class ProgramHandle(Generic[R]):
    """A submitted program: wait for its result, cancel it, read its statistics."""

    def __init__(self, run: ProgramRun) -> None:
        self._run = run

    @property
    def id(self) -> str:
        """The program instance's id (sent as ``X-Legato-Program``)."""
        return self._run.id

    @property
    def done(self) -> bool:
        """Whether the program has finished (with a value, an error, or cancelled)."""
        return self._run.finished.is_set()

    async def result(self) -> R:
        """Wait for the program; its return value (``Var``s in it resolved) or its error."""
        await self._run.finished.wait()
        if self._run.error is not None:
            raise self._run.error
        value: R = self._run.value
        return value

    def cancel(self) -> None:
        """Cancel the program and its in-flight calls and tools; ``result()`` then raises
        ``ProgramCancelled``. (A sync tool's worker thread cannot be stopped: the program stops
        waiting for it, and the thread runs to its end; see ``dsl.tool``.)"""
        self._run.cancel()

    @property
    def stats(self) -> dict[str, NodeStats]:
        """Per-node statistics, by node id (a snapshot)."""
        return self._run.stats()

    @property
    def graph(self) -> dsl.Graph:
        """The graph as built so far (it grows as the program runs past its awaits)."""
        return self._run.builder.graph()


_POLICY_METHODS = ("key", "priority", "on_admit", "on_finish", "on_program_end")
"""What the runtime calls on a policy (``orchestrator.scheduler.Policy``)."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int(name: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


class Orchestrator:
    """Runs programs against a backend, many at once, as an async context manager.

    ::

        async with Orchestrator(backend="http://127.0.0.1:8000/v1") as orch:
            handles = [await orch.submit(research, topic) for topic in topics]
            results = [await h.result() for h in handles]

    Args:
        backend: a ``Backend``; ``"local"`` or ``"local:MODEL"`` for the embedded engine (the
            default); or the URL of an OpenAI-compatible server.
        policy: the scheduling policy by name (``"fcfs"``, ``"program_fcfs"``, ``"plas"``,
            ``"atlas"``, ``"mlfq"``, ``"slo"``, ``"adaptive"``) or an object. It orders the
            admission queue and sets each call's hints; an embedded engine that Legato builds
            (``"local"``, or a ``LocalBackend`` given no batch ``policy=``) also runs its batch
            by those hints (``LocalBackend.follow``).
        max_in_flight: how many LLM calls may be at the backend at once; the policy orders the
            rest.
        retry: how failed calls and tools are retried (nodes may override ``retries``).
        timeout: default seconds per LLM call attempt (nodes may override), or None.
        kv_ttl: send Continuum's KV-cache time-to-live with each call (``X-Legato-KV-TTL``),
            predicted from the durations of the tool the program runs between turns; default:
            on for the policies that pin (``program_fcfs``, ``adaptive``).
        constraint_attempts: for a constrained call on an engine that cannot enforce its
            grammar: how many answers to validate (each retry shows the parse error).

    Leaving the block waits for the programs still running; an exception in the block cancels
    them.
    """

    def __init__(
        self,
        backend: Backend | str | None = None,
        *,
        policy: str | Policy = "fcfs",
        max_in_flight: int = 64,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        kv_ttl: bool | None = None,
        constraint_attempts: int = 3,
    ) -> None:
        # Every setting is checked before the backend is built (which may start nothing yet,
        # but a bad setting should not leave one half made).
        if isinstance(policy, str):
            try:
                self.policy: Policy = make_policy(policy)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        elif all(callable(getattr(policy, m, None)) for m in _POLICY_METHODS):
            self.policy = policy
        else:
            raise ConfigError(
                f"policy must be a policy name or an object with {', '.join(_POLICY_METHODS)}"
                f" (orchestrator.scheduler.Policy), got {policy!r}"
            )
        _check_int("max_in_flight", max_in_flight, 1)
        _check_int("constraint_attempts", constraint_attempts, 1)
        if timeout is not None and not (_is_number(timeout) and 0 < timeout < math.inf):
            raise ConfigError(f"timeout must be seconds > 0 or None, got {timeout!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy or None, got {retry!r}")
        self.backend, self._owns_backend = resolve_backend(backend)
        follow = getattr(self.backend, "follow", None)
        if follow is not None:  # an embedded engine not built yet: its batcher follows too
            follow(self.policy)
        self.constraint_attempts = constraint_attempts
        self.admission = Admission(max_in_flight, self.policy)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.kv_ttl = kv_ttl if kv_ttl is not None else bool(getattr(self.policy, "uses_kv_ttl", 0))
        self.ttl = TTLPredictor()
        self.last_tool: dict[str, str] = {}
        self.call_latency = 0.0
        self._token = secrets.token_hex(3)
        self._program_seq = itertools.count()
        self._call_seq = itertools.count()
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    def observe_call(self, seconds: float) -> None:
        """Fold one LLM call's time at the backend into the running average (what a KV-cache
        miss would make the next turn wait again)."""
        self.call_latency += 0.1 * (seconds - self.call_latency)

    def hints(self, hints: Hints, call: CallInfo, now: float, *, kv_ttl: float | None) -> Hints:
        """``hints`` with the policy's word on ``call``, admitted at ``now``: its priority, and
        when and to what it is promoted if it waits at the engine (the policy's
        ``promotion``, where it has one and it would raise the priority), and the steps by
        which it is demoted as it runs there (the policy's ``demotion``, where it has one:
        demotion by quantum)."""
        priority = self.policy.priority(call, now)
        demotion = getattr(self.policy, "demotion", None)
        demote: list[tuple[float, int]] = []
        for after, to in demotion(call, now) if demotion is not None else ():
            if to <= priority:
                continue
            after = round(after, 3)  # as sent: steps closer than that merge, the later wins
            if demote and after <= demote[-1][0]:
                demote[-1] = (demote[-1][0], to)
            else:
                demote.append((after, to))
        promotion = getattr(self.policy, "promotion", None)
        promote = promotion(call, now) if promotion is not None else None
        worst = max([priority, *(to for _, to in demote)])
        if promote is not None and promote[1] >= worst:
            promote = None  # nothing to gain: it never leaves that priority or a better one
        return dataclasses.replace(
            hints,
            priority=priority,
            kv_ttl=kv_ttl,
            promote_after=None if promote is None else round(promote[0], 3),
            promote_to=0 if promote is None else promote[1],
            demote=tuple(demote),
        )

    def next_call_seq(self) -> int:
        """A number that increases with each LLM call (ties in the policies' orderings)."""
        return next(self._call_seq)

    async def __aenter__(self) -> Orchestrator:
        if self._tg is not None:
            raise RuntimeError("this Orchestrator is already running")
        async with contextlib.AsyncExitStack() as stack:
            # Start a backend that needs starting (the embedded engine's loop) and that we
            # created or that nobody has started; a user's started backend is theirs to close.
            if self._owns_backend or getattr(self.backend, "started", True) is False:
                enter = getattr(self.backend, "__aenter__", None)
                if enter is not None:
                    await stack.enter_async_context(self.backend)  # type: ignore[arg-type]
                elif self._owns_backend:
                    stack.push_async_callback(self.backend.aclose)
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        tg, self._tg = self._tg, None
        if exc is not None:
            tg.cancel_scope.cancel()
        try:
            # Program runs never raise (they keep their errors for their handles), so the
            # block's own exception, if any, is what propagates, unwrapped.
            await tg.__aexit__(None, None, None)
            return None
        finally:
            stack, self._stack = self._stack, None
            if stack is not None:
                await stack.aclose()

    async def submit(
        self, program: dsl.Program[P, R], /, *args: Any, slo: float | None = None, **kwargs: Any
    ) -> ProgramHandle[R]:
        """Start ``program(*args, **kwargs)``; returns at once with its handle.

        Arguments are checked against the program's signature here (``ProgramError``).
        ``slo`` gives the program a deadline in seconds from now, which the ``slo`` policy splits
        over its stages (so a program cannot take a parameter named ``slo`` through here).
        """
        if self._tg is None:
            raise RuntimeError("use `async with Orchestrator(...) as orch:` before submit()")
        if not isinstance(program, dsl.Program):
            raise ProgramError(f"{program!r} is not a @dsl.program")
        program.bind(args, kwargs)
        seq = next(self._program_seq)
        run = ProgramRun(
            self,
            program,
            args,
            kwargs,
            program_id=f"{program.name}-{self._token}-{seq}",
            seq=seq,
            slo=slo,
        )
        self._tg.start_soon(run.main, name=f"program {run.id}")
        return ProgramHandle(run)


@overload
async def arun(
    program: dsl.Program[P, dsl.Var[T]],
    /,
    *args: Any,
    backend: Backend | str | None = None,
    **kwargs: Any,
) -> T: ...
@overload
async def arun(
    program: dsl.Program[P, R], /, *args: Any, backend: Backend | str | None = None, **kwargs: Any
) -> R: ...


async def arun(
    program: dsl.Program[P, Any], /, *args: Any, backend: Backend | str | None = None, **kwargs: Any
) -> Any:
    """Run one program to the end and return its result (``Var``s in it resolved)."""
    async with Orchestrator(backend) as orch:
        handle = await orch.submit(program, *args, **kwargs)
        return await handle.result()


@overload
def run(
    program: dsl.Program[P, dsl.Var[T]],
    /,
    *args: Any,
    backend: Backend | str | None = None,
    **kwargs: Any,
) -> T: ...
@overload
def run(
    program: dsl.Program[P, R], /, *args: Any, backend: Backend | str | None = None, **kwargs: Any
) -> R: ...


def run(
    program: dsl.Program[P, Any], /, *args: Any, backend: Backend | str | None = None, **kwargs: Any
) -> Any:
    """Synchronous ``arun``: run one program in a fresh event loop and return its result."""

    async def main() -> Any:
        return await arun(program, *args, backend=backend, **kwargs)

    return anyio.run(main)
