"""One program instance running: the event-driven dataflow executor behind a ``ProgramHandle``.

The program's body runs in the host task of the run's task group; each node it creates starts in
that task group the moment its last input resolves (no supersteps, no polling). A failed node
fails its dependants without running them; independent nodes run to the end. The run ends when
the body has returned and every node has finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, assert_never

import anyio

import dsl
from dsl import InputNode, LLMNode, Node, PlanNode, SelectNode, ToolNode
from orchestrator import constrain
from orchestrator.backends import Completion, Hints, LLMRequest, Message
from orchestrator.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConstraintViolation,
    DependencyFailed,
    GrammarUnsupported,
    ProgramCancelled,
    RunError,
    ToolError,
)
from orchestrator.runtime._retry import Retrying
from orchestrator.scheduler import CallInfo

if TYPE_CHECKING:
    from orchestrator.runtime._orchestrator import Orchestrator

__all__ = ["NodeStats", "ProgramRun"]

_log = logging.getLogger("legato")

Status = Literal["waiting", "running", "ok", "failed", "skipped", "cancelled"]


@dataclass(slots=True, kw_only=True)
class NodeStats:
    """What happened to one node. Times are seconds on the runtime clock (``anyio.current_time``).

    Attributes:
        node, kind, thread: the node's id, kind (gen/select/tool) and thread.
        status: waiting, running, ok, failed, skipped (an input failed) or cancelled.
        ready: when its inputs had all resolved.
        start: when its first attempt began (for LLM calls: when the backend admitted it).
        end: when it finished.
        attempts: attempts made (``attempts - 1`` retries).
        prompt_tokens, completion_tokens: usage reported by the engine, summed over attempts.
        error: the error message if it failed.
        degraded: the engine could not hold the output to its grammar, so the runtime asked
            without it and validated (retrying with the parse error); ``attempts`` counts those.
    """

    node: str
    kind: str
    thread: str
    status: Status = "waiting"
    ready: float | None = None
    start: float | None = None
    end: float | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    degraded: bool = False

    @property
    def retries(self) -> int:
        """Attempts beyond the first."""
        return max(0, self.attempts - 1)


@dataclass(slots=True, eq=False)
class _NodeState:
    node: Node
    stats: NodeStats
    event: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    value: Any = None
    error: RunError | None = None
    remaining: int = 0
    scope: anyio.CancelScope | None = None  # while it runs: what ``cancel_node`` cancels

    @property
    def done(self) -> bool:
        return self.event.is_set()


def _loose(text: str) -> str:
    return text.strip(" \t\n.!\"'`*").lower()


def match_option(text: str, options: tuple[str, ...]) -> str | None:
    """The option ``text`` names, as the option is written (its own spaces included).

    In turn: ``text`` exactly as an option is written (this always wins, so an engine that
    held the answer to the options gets back the very option, even one with outer spaces);
    then ``text`` and the options both stripped of outer whitespace (the first option that
    matches); then both also ignoring case and outer punctuation (``.!"'`*``) (the first);
    then the only option ``text`` starts with, or else contains, compared the same way."""
    if text in options:
        return text
    t = text.strip()
    for o in options:
        if o.strip() == t:
            return o
    norm = _loose(t)
    loose = [(o, _loose(o)) for o in options]
    for o, lo in loose:
        if lo == norm:
            return o
    starts = [o for o, lo in loose if lo and norm.startswith(lo)]
    if len(starts) == 1:
        return starts[0]
    inside = [o for o, lo in loose if lo and lo in norm]
    return inside[0] if len(inside) == 1 else None


def _describe(grammar: dsl.Grammar) -> str:
    """The grammar as the prompt states it to an engine that cannot enforce it."""
    match grammar.kind:
        case "choice":
            return "exactly one of: " + ", ".join(grammar.options)
        case "regex":
            return f"the regular expression /{grammar.source}/"
        case "json_schema":
            return f"this JSON schema (JSON only, no other text):\n{grammar.source}"
        case "lark":
            return f"this Lark grammar (its text only):\n{grammar.source}"


def _ask_for(request: LLMRequest, instruction: str, previous: str | None = None) -> LLMRequest:
    """``request`` with an instruction added (after the model's previous answer, if any)."""
    if request.messages is not None:
        extra = (Message("assistant", previous),) if previous is not None else ()
        if previous is None:
            *head, last = request.messages
            msgs = (*head, Message(last.role, f"{last.content}\n\n{instruction}"))
        else:
            msgs = (*request.messages, *extra, Message("user", instruction))
        return dataclasses.replace(request, messages=msgs)
    assert request.prompt is not None
    before = f"{request.prompt}{previous}\n\n" if previous is not None else f"{request.prompt}\n\n"
    return dataclasses.replace(request, prompt=f"{before}{instruction}\n")


class ProgramRun:
    """Runs one program instance; the ``dsl.Sink`` its builder sends nodes to."""

    def __init__(
        self,
        orch: Orchestrator,
        program: dsl.Program[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        program_id: str,
        seq: int,
        slo: float | None = None,
    ) -> None:
        self.orch = orch
        self.program = program
        self.args = args
        self.kwargs = kwargs
        self.id = program_id
        self.seq = seq
        self.builder = dsl.Builder(program.name, self)
        self.submitted = anyio.current_time()
        self.finished = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self._states: dict[str, _NodeState] = {}
        self._waiting_on: dict[str, list[str]] = {}
        self._roots: list[RunError] = []
        self._observed: set[int] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._scope = anyio.CancelScope()
        self.slo = slo
        self._last_tool: dict[str, str] = {}
        self._remaining: dict[str, dsl.passes.Remaining] = {}
        self._analysis_size = -1

    # -- public view -----------------------------------------------------------------------
    def stats(self) -> dict[str, NodeStats]:
        return {k: dataclasses.replace(s.stats) for k, s in self._states.items()}

    def cancel(self) -> None:
        self._scope.cancel()

    # -- main ------------------------------------------------------------------------------
    async def main(self) -> None:
        """Run the body and every node it creates; record the value or the error. However the
        run ends, even cancelled from outside (its orchestrator's task group), the program's
        end is told to the policy and the backend and ``finished`` is set, so no one waiting
        on its handle waits forever."""
        body_error: BaseException | None = None
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    try:
                        raw = await self.program.execute(self.builder, *self.args, **self.kwargs)
                        self.value = await self._resolve_vars(raw)
                    except Exception as exc:
                        body_error = exc
        except BaseException as exc:
            # Cancelled from outside (the orchestrator is stopping), or a fault of the runtime
            # itself: the program did not finish.
            self._tg = None
            why = (
                "its orchestrator stopped first"
                if isinstance(exc, anyio.get_cancelled_exc_class())
                else f"the runtime failed: {exc!r}"
            )
            self._cancelled(f"program {self.id!r} was stopped: {why}")
            with anyio.CancelScope(shield=True):
                await self._end()
            raise
        self._tg = None
        if self._scope.cancelled_caught or self._scope.cancel_called:
            self._cancelled(f"program {self.id!r} was cancelled")
        elif body_error is not None:
            if isinstance(body_error, DependencyFailed):
                self._observed.add(id(body_error.error))
            for other in self._roots:
                if id(other) not in self._observed and other is not body_error:
                    body_error.add_note(f"also failed, unobserved: {other}")
            self.error = body_error
        else:
            unobserved = [e for e in self._roots if id(e) not in self._observed]
            if unobserved:
                first = unobserved[0]
                for other in unobserved[1:]:
                    first.add_note(f"also failed, unobserved: {other}")
                self.error = first
        await self._end()

    def _cancelled(self, message: str) -> None:
        self.value = None
        self.error = ProgramCancelled(message)
        for st in self._states.values():
            if not st.done:
                st.stats.status = "cancelled"

    async def _end(self) -> None:
        """Tell the policy and the backend that the program has ended, then set ``finished``.
        A hook that fails is logged (logger ``legato``), never raised: it must not take the
        other programs of the orchestrator down with it."""
        try:
            try:
                self.orch.policy.on_program_end(self.id, self.program.name, anyio.current_time())
            except Exception:
                _log.exception(
                    "policy %r failed at the end of program %r", self.orch.policy, self.id
                )
            release = getattr(self.orch.backend, "release_program", None)
            if release is not None:  # Continuum: pins are dropped on a program's last call
                with anyio.CancelScope(shield=True):
                    try:
                        await release(self.id)
                    except Exception:
                        _log.exception("backend could not release program %r", self.id)
        finally:
            self.finished.set()

    async def _resolve_vars(self, value: Any) -> Any:
        if isinstance(value, dsl.Var):
            return await value
        if isinstance(value, list):
            return [await self._resolve_vars(v) for v in value]
        if isinstance(value, tuple):
            return tuple([await self._resolve_vars(v) for v in value])
        if isinstance(value, dict):
            return {k: await self._resolve_vars(v) for k, v in value.items()}
        return value

    # -- dsl.Sink --------------------------------------------------------------------------
    def submit(self, node: Node) -> None:
        st = _NodeState(node, NodeStats(node=node.id, kind=node.kind, thread=node.thread))
        self._states[node.id] = st
        if isinstance(node, InputNode):  # pragma: no cover - only tracing makes inputs
            raise AssertionError("symbolic inputs cannot run")
        for d in node.deps:
            dep = self._states[d]
            if dep.error is not None:
                self._skip(st, d, dep.error)
                return
            if not dep.done:
                st.remaining += 1
                self._waiting_on.setdefault(d, []).append(node.id)
        if st.remaining == 0:
            self._fire(st)

    async def wait(self, node_id: str) -> Any:
        st = self._states[node_id]
        await st.event.wait()
        if st.error is not None:
            root = st.error.error if isinstance(st.error, DependencyFailed) else st.error
            self._observed.add(id(root))
            raise st.error
        return st.value

    # -- what the scheduler is told -----------------------------------------------------------
    def _call_info(self, node: LLMNode | SelectNode | PlanNode) -> CallInfo:
        now = anyio.current_time()
        graph = self.builder.graph()
        if self._analysis_size != len(graph):  # the graph grew: analyse it again
            self._remaining = dsl.passes.remaining_work(graph)
            self._analysis_size = len(graph)
        cost = dsl.passes.default_cost(node)
        remaining = self._remaining.get(node.id)
        after = remaining.critical if remaining is not None else 0.0
        deadline = None
        if self.slo is not None:
            budget = self.submitted + self.slo - now
            deadline = now + budget * cost / (cost + after) if cost + after > 0 else now
        return CallInfo(
            call=f"{self.id}/{node.id}",
            program=self.id,
            thread=node.thread,
            arrival=now,
            program_arrival=self.submitted,
            seq=self.orch.next_call_seq(),
            program_seq=self.seq,
            kind=self.program.name,
            parents=tuple(f"{self.id}/{p}" for p in self._llm_parents(node)),
            expected_service=cost,
            remaining=after,
            deadline=deadline,
        )

    def _llm_parents(self, node: Node) -> tuple[str, ...]:
        """The nearest LLM calls upstream of ``node``, through data and control edges, looking
        through tool nodes."""
        found: list[str] = []
        stack = [*node.deps, *node.after]
        seen: set[str] = set()
        while stack:
            nid = stack.pop()
            if nid in seen or nid not in self._states:
                continue
            seen.add(nid)
            up = self._states[nid].node
            if isinstance(up, LLMNode | SelectNode | PlanNode):
                found.append(nid)
            else:
                stack.extend([*up.deps, *up.after])
        return tuple(found)

    def _kv_ttl(self, node: LLMNode | SelectNode | PlanNode, request: LLMRequest) -> float | None:
        """Continuum's TTL for this call's KV cache, if the policy pins: the tool its thread
        ran last (else the last tool of any program of this kind) is the one expected next."""
        orch = self.orch
        if not orch.kv_ttl:
            return None
        tool = self._last_tool.get(node.thread) or orch.last_tool.get(self.program.name)
        if tool is None:
            return None
        reload_cost = len(request.text) * dsl.passes.PREFILL_S_PER_CHAR
        ttl = orch.ttl.ttl(tool, queue_delay=orch.call_latency, reload_cost=reload_cost)
        return round(ttl, 3) if ttl > 0 else None

    # -- node life -------------------------------------------------------------------------
    def _fire(self, st: _NodeState) -> None:
        assert self._tg is not None
        st.stats.ready = anyio.current_time()
        self._tg.start_soon(self._run_node, st, name=f"{self.id}/{st.node.id}")

    def _skip(self, st: _NodeState, dependency: str, error: RunError) -> None:
        root = error.error if isinstance(error, DependencyFailed) else error
        dep_err = DependencyFailed(node=st.node.id, dependency=dependency, error=root)
        st.stats.status = "skipped"
        st.stats.error = str(dep_err)
        self._finish(st, error=dep_err)

    def _finish(self, st: _NodeState, *, value: Any = None, error: RunError | None = None) -> None:
        st.value = value
        st.error = error
        st.stats.end = anyio.current_time()
        st.event.set()
        for waiting_id in self._waiting_on.pop(st.node.id, ()):
            w = self._states[waiting_id]
            if w.done:
                continue
            if error is not None:
                self._skip(w, st.node.id, error)
            else:
                w.remaining -= 1
                if w.remaining == 0:
                    self._fire(w)

    def cancel_node(self, node_id: str, error: RunError) -> None:
        """End node ``node_id`` now with ``error`` if it has not finished: it is cancelled if it
        runs, never started if it waits, and its dependants are skipped. Its status is
        ``cancelled``; ``error`` counts as no failure of its own (the program is not failed by
        it). A sync tool's worker thread cannot be stopped: it runs to its end, its result
        dropped."""
        st = self._states[node_id]
        if st.done:
            return
        if st.scope is not None:
            st.scope.cancel()
        st.stats.status = "cancelled"
        st.stats.error = str(error)
        self._finish(st, error=error)

    async def _run_node(self, st: _NodeState) -> None:
        if st.done:  # cancelled (cancel_node) before it started
            return
        node = st.node
        st.stats.status = "running"
        values = {d: self._states[d].value for d in node.deps}
        st.scope = anyio.CancelScope()
        try:
            with st.scope:
                value = await self._node_value(st, node, values)
        except anyio.get_cancelled_exc_class():
            st.stats.status = "cancelled"
            raise
        except Exception as exc:
            if st.done:  # cancel_node ended it: what it raised on the way out is moot
                return
            err = (
                exc
                if isinstance(exc, RunError)
                else RunError(f"node {node.id!r} failed: {type(exc).__name__}: {exc}")
            )
            if err is not exc:
                err.__cause__ = exc
            err.node = node.id
            st.stats.status = "failed"
            st.stats.error = str(err)
            self._roots.append(err)
            self._finish(st, error=err)
        else:
            if st.done:  # cancel_node ended it (its scope took the cancellation)
                return
            st.stats.status = "ok"
            self._finish(st, value=value)
        finally:
            st.scope = None

    async def _node_value(self, st: _NodeState, node: Node, values: dict[str, Any]) -> Any:
        match node:
            case LLMNode():
                return await self._run_llm(st, node, values)
            case SelectNode():
                return await self._run_select(st, node, values)
            case ToolNode():
                return await self._run_tool(st, node, values)
            case PlanNode():
                from orchestrator.runtime._plan import run_plan

                return await run_plan(self, st, node, values)
            case InputNode():  # pragma: no cover
                raise AssertionError("symbolic inputs cannot run")
            case _:
                assert_never(node)

    def _request(
        self,
        node: LLMNode | SelectNode,
        values: dict[str, Any],
    ) -> LLMRequest:
        inputs = {k: dsl.substitute(v, values) for k, v in node.inputs}
        text = dsl.render(node.template, inputs)
        if isinstance(node, LLMNode):
            chat, grammar = node.chat, node.grammar
        else:
            chat, grammar = True, dsl.Grammar.choice(node.options)
        messages: tuple[Message, ...] | None = None
        prompt: str | None = None
        if chat:
            system = (Message("system", node.system),) if node.system else ()
            messages = (*system, Message("user", text))
        else:
            prompt = text if not node.system else f"{node.system}\n\n{text}"
        p = node.params
        return LLMRequest(
            messages=messages,
            prompt=prompt,
            model=node.model,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=p.stop,
            seed=p.seed,
            grammar=grammar,
            require=node.require if isinstance(node, LLMNode) else (),
            node=node.id,
            hints=Hints(program=self.id, thread=node.thread),
        )

    async def _call_backend(
        self, st: _NodeState, node: LLMNode | SelectNode | PlanNode, request: LLMRequest
    ) -> Completion:
        orch = self.orch
        backend = orch.backend
        retrying = Retrying(orch.retry, node.retries)
        timeout = node.timeout if node.timeout is not None else orch.timeout
        call = self._call_info(node)
        while True:
            st.stats.attempts += 1
            try:
                async with orch.admission.slot(call) as grant:
                    if st.stats.start is None:
                        st.stats.start = anyio.current_time()
                    now = anyio.current_time()
                    hints = orch.hints(request.hints, call, now, kv_ttl=self._kv_ttl(node, request))
                    req = dataclasses.replace(request, hints=hints)
                    with anyio.fail_after(timeout):
                        completion = await backend.complete(req)
                    orch.observe_call(anyio.current_time() - now)
                    grant.service = completion.service_time
                st.stats.prompt_tokens += completion.prompt_tokens
                st.stats.completion_tokens += completion.completion_tokens
                return completion
            except TimeoutError:
                failure: BackendError = BackendTimeout(
                    f"backend {backend.name!r} gave no answer to node {node.id!r} "
                    f"within {timeout}s",
                    backend=backend.name,
                )
            except BackendError as exc:
                if not exc.retryable:
                    raise
                failure = exc
            delay = retrying.failed(retryable=True, retry_after=failure.retry_after)
            if delay is None:
                raise BackendUnavailable(
                    f"backend {backend.name!r} unavailable for node {node.id!r} after "
                    f"{retrying.attempts} attempts: {failure}",
                    backend=backend.name,
                    attempts=retrying.attempts,
                ) from failure
            await anyio.sleep(delay)
            # The retry is ready again now: its wait for a slot starts here (the policy counts
            # a program's waits from a call's arrival; the earlier wait is counted already).
            call = dataclasses.replace(call, arrival=anyio.current_time())

    @contextlib.asynccontextmanager
    async def stream_call(
        self, st: _NodeState, node: LLMNode | PlanNode, request: LLMRequest
    ) -> AsyncIterator[AsyncIterator[str]]:
        """A streaming LLM call through admission: yields the backend's text chunks while the
        call holds its slot. Not retried (a half-read stream cannot be replayed).

        The node's ``timeout`` (else the orchestrator's) bounds the whole block from the
        moment the call is admitted, as it bounds each attempt of other calls: past it the
        block is cancelled, the stream closed and the slot given back, and the call fails
        with ``BackendUnavailable`` (caused by a ``BackendTimeout``), as a call out of retries
        does."""
        orch = self.orch
        backend = orch.backend
        timeout = node.timeout if node.timeout is not None else orch.timeout
        call = self._call_info(node)
        st.stats.attempts += 1
        async with orch.admission.slot(call):
            now = anyio.current_time()
            if st.stats.start is None:
                st.stats.start = now
            hints = orch.hints(request.hints, call, now, kv_ttl=None)
            chunks = backend.stream(dataclasses.replace(request, hints=hints))
            try:
                with anyio.move_on_after(timeout) as deadline:
                    yield chunks
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):  # a cancelled program still closes it
                        await aclose()
                orch.observe_call(anyio.current_time() - now)
        if deadline.cancelled_caught:
            failure = BackendTimeout(
                f"backend {backend.name!r} gave no answer to node {node.id!r} within "
                f"{timeout}s (its stream had not ended)",
                backend=backend.name,
            )
            raise BackendUnavailable(
                f"backend {backend.name!r} unavailable for node {node.id!r} after 1 attempt "
                f"(a stream is not retried): {failure}",
                backend=backend.name,
                attempts=1,
            ) from failure

    async def _run_llm(self, st: _NodeState, node: LLMNode, values: dict[str, Any]) -> Any:
        request = self._request(node, values)
        if node.async_calls:
            from orchestrator.runtime._asynclm import run_async_calls

            return await run_async_calls(self, st, node, request)
        if request.grammar is None:
            return (await self._call_backend(st, node, request)).text
        return await self._constrained(st, node, request, request.grammar)

    async def _run_select(self, st: _NodeState, node: SelectNode, values: dict[str, Any]) -> str:
        request = self._request(node, values)
        assert request.grammar is not None
        value: str = await self._constrained(st, node, request, request.grammar)
        return value

    def _check(
        self, node: LLMNode | SelectNode | PlanNode, grammar: dsl.Grammar, completion: Completion
    ) -> Any:
        """The output's value under its grammar, or ``ConstraintViolation``. A select's answer
        is matched to its options leniently (case, outer punctuation), whatever the engine."""
        text = completion.text
        if isinstance(node, SelectNode):
            choice = match_option(text, node.options)
            if choice is None:
                raise ConstraintViolation(
                    node=node.id,
                    text=text,
                    reason=f"it names none of the options {list(node.options)!r}",
                )
            return choice
        try:
            return constrain.check(grammar, text)
        except constrain.Invalid as exc:
            reason = str(exc)
            if completion.finish_reason == "length":
                reason = f"max_tokens ran out before the grammar was complete ({reason})"
            raise ConstraintViolation(
                node=node.id, text=text, reason=reason, position=exc.position
            ) from None

    async def _checked(
        self, node: LLMNode | SelectNode | PlanNode, grammar: dsl.Grammar, completion: Completion
    ) -> Any:
        """``_check``, in a worker thread for a Lark grammar: an Earley parse of a large one (a
        Text-to-SQL grammar scoped to a schema has ~1,000 rules) takes a good part of a second,
        during which the event loop would stall every program (other kinds check in
        microseconds)."""
        if grammar.kind == "lark" and not isinstance(node, SelectNode):
            return await anyio.to_thread.run_sync(self._check, node, grammar, completion)
        return self._check(node, grammar, completion)

    async def _constrained(
        self,
        st: _NodeState,
        node: LLMNode | SelectNode | PlanNode,
        request: LLMRequest,
        grammar: dsl.Grammar,
    ) -> Any:
        """A call whose output must match ``grammar``: enforced by the engine where it can,
        else asked for plainly and validated, retrying with the parse error in the prompt."""
        try:
            completion = await self._call_backend(st, node, request)
        except GrammarUnsupported:
            st.stats.degraded = True
        else:
            return await self._checked(node, grammar, completion)
        attempts = self.orch.constraint_attempts
        req = dataclasses.replace(request, grammar=None)
        req = _ask_for(req, f"Answer with output that matches {_describe(grammar)}.")
        for attempt in range(1, attempts + 1):
            completion = await self._call_backend(st, node, req)
            text = completion.text
            try:
                return await self._checked(node, grammar, completion)
            except ConstraintViolation as exc:
                if attempt == attempts:
                    raise ConstraintViolation(
                        node=node.id,
                        text=text,
                        reason=f"{exc.reason} (the engine cannot enforce the grammar; "
                        f"{attempts} attempts were validated)",
                        position=exc.position,
                    ) from None
                req = _ask_for(
                    req,
                    f"That output is invalid: {exc.reason}. Answer again with output that "
                    f"matches {_describe(grammar)}.",
                    previous=text,
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_tool(self, st: _NodeState, node: ToolNode, values: dict[str, Any]) -> Any:
        args = dsl.substitute(node.args, values)
        kwargs = {k: dsl.substitute(v, values) for k, v in node.kwargs}
        st.stats.start = anyio.current_time()
        self._last_tool[node.thread] = node.tool

        def attempt() -> None:
            st.stats.attempts += 1

        return await self.call_tool(
            node.tool,
            args,
            kwargs,
            node=node.id,
            time_limit=node.timeout,
            retries=node.retries,
            on_attempt=attempt,
        )

    async def call_tool(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        node: str,
        time_limit: float | None,
        retries: int | None,
        on_attempt: Callable[[], None] | None = None,
    ) -> Any:
        """Call the program's tool ``name`` (a thread for sync ones) with its timeout and
        retries; ``ToolError`` naming ``node`` when it fails for good. Its durations feed the
        KV time-to-live predictor."""
        tool = self.builder.tools[name]
        retrying = Retrying(self.orch.retry, retries)
        start = anyio.current_time()
        while True:
            if on_attempt is not None:
                on_attempt()
            try:
                with anyio.fail_after(time_limit):
                    if tool.is_async:
                        result = await tool.invoke(*args, **kwargs)
                    else:
                        call: Callable[[], Any] = functools.partial(tool.fn, *args, **kwargs)
                        result = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
                self.orch.ttl.observe(name, anyio.current_time() - start)
                self.orch.last_tool[self.program.name] = name
                return result
            except Exception as exc:
                cause: BaseException = exc
                if isinstance(exc, TimeoutError) and time_limit is not None:
                    cause = TimeoutError(f"no result within {time_limit}s")
                delay = retrying.failed(retryable=True)
                if delay is None:
                    raise ToolError(
                        node=node, tool=name, cause=cause, attempts=retrying.attempts
                    ) from exc
            await anyio.sleep(delay)
