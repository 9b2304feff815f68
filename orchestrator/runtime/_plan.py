"""Running an LLMCompiler plan (``dsl.plan``): the planner streams, each task line becomes a
tool node of the program's graph the moment it is complete, and the joiner finishes or asks for
a new plan.

Tasks are ordinary tool nodes: the dataflow executor starts each one as soon as the tasks it
reads are done (no polling), a failed task fails its dependants (``DependencyFailed``) and is
reported to the joiner, and every task shows in ``handle.stats`` and ``handle.graph``.

A plan is untrusted text. A line the parser rejects cuts the plan there; the tasks of the lines
before it have started already. With a replan left they run to their end and the planner sees
their results and the error; without one the plan node fails with ``PlanRejected`` naming the
line, and the joiner is not asked. Whenever the plan node fails, the tasks it started that have
not finished are cancelled (``ProgramRun.cancel_node``), so they do not hold the program up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import dsl
from dsl import Interp, PlanNode, Ref, ToolNode, cml
from dsl.plans import (
    END_OF_PLAN,
    JoinLine,
    PlanError,
    PlanParser,
    TaskLine,
    TaskRef,
    TextWithRefs,
    ToolSignature,
    describe_tools,
    grounding_runs,
    joiner_grammar,
    parse_verdict,
    plan_grammar,
    question_lists,
    question_names,
    tool_words,
)
from orchestrator.backends import Hints, LLMRequest, Message
from orchestrator.errors import GrammarUnsupported, PlanRejected, RunError

if TYPE_CHECKING:
    from orchestrator.runtime._run import ProgramRun, _NodeState

__all__ = ["run_plan"]

_PLAN_TOKENS = 512
_JOIN_TOKENS = 128


def _arg(value: Any, ids: dict[int, str]) -> Any:
    """A parsed argument with ``$k`` turned into a reference to task ``k``'s node."""
    if isinstance(value, TaskRef):
        return Ref(ids[value.task])
    if isinstance(value, TextWithRefs):
        return Interp(tuple(p if isinstance(p, str) else Ref(ids[p.task]) for p in value.parts))
    if isinstance(value, list):
        return [_arg(v, ids) for v in value]
    return value


def _show(value: Any) -> str:
    return cml.json_text(value)


def _as_written(arg: Any) -> str:
    """A parsed argument as the plan wrote it: ``$k`` for a task's value, a string with its
    ``$k`` in place (``"$1 - $2"``), other literals as JSON."""
    if isinstance(arg, TaskRef):
        return f"${arg.task}"
    if isinstance(arg, TextWithRefs):
        text = "".join(p if isinstance(p, str) else f"${p.task}" for p in arg.parts)
        return json.dumps(text, ensure_ascii=False)
    if isinstance(arg, list):
        return f"[{', '.join(_as_written(a) for a in arg)}]"
    return _show(arg)


class _Round:
    """One plan: its text, its tasks' nodes, and what went wrong."""

    def __init__(self, run: ProgramRun, node: PlanNode, signatures: list[ToolSignature]) -> None:
        self.run = run
        self.node = node
        self.parser = PlanParser({s.name: s for s in signatures}, node.max_tasks)
        self.text = ""
        self.lines: dict[int, TaskLine] = {}
        self.ids: dict[int, str] = {}
        self.errors: list[PlanError] = []

    def cancel(self, error: RunError) -> None:
        """Cancel the tasks that have not finished: the plan node failed with ``error``."""
        for task in self.ids.values():
            why = RunError(f"node {task!r} was cancelled: its plan {self.node.id!r} failed")
            why.node = task
            why.__cause__ = error
            self.run.cancel_node(task, why)

    def handle(self, events: list[TaskLine | JoinLine | PlanError]) -> None:
        for ev in events:
            match ev:
                case TaskLine():
                    self._dispatch(ev)
                case PlanError():
                    self.errors.append(ev)
                case JoinLine():
                    pass

    def _dispatch(self, task: TaskLine) -> None:
        """Add the task to the program's graph; the executor runs it when its inputs are
        done."""
        tool = self.run.builder.tools[task.tool]
        var = self.run.builder.add(
            ToolNode,
            label=f"{self.node.id}_{task.tool}",
            name=None,
            type=Any,
            after=(self.node.id,),
            tool=task.tool,
            args=tuple(_arg(a, self.ids) for a in task.args),
            timeout=tool.timeout,
            retries=tool.retries,
            expected_duration=tool.expected_duration,
        )
        self.lines[task.index] = task
        self.ids[task.index] = var.id

    async def results(self) -> str:
        """Wait for every task; one line per task with its value or its error."""
        out = []
        for index, task in sorted(self.lines.items()):
            call = f"{task.tool}({', '.join(_as_written(a) for a in task.args)})"
            try:
                value = await self.run.wait(self.ids[index])
                out.append(f"{index}. {call} -> {_show(value)}")
            except RunError as exc:
                out.append(f"{index}. {call} -> ERROR: {exc}")
        out += [f"error: {e}" for e in self.errors]
        return "\n".join(out) if out else "(no tasks ran)"


async def _write_plan(
    run: ProgramRun, st: _NodeState, node: PlanNode, request: LLMRequest, round_: _Round
) -> None:
    """Stream the planner's answer through the parser, dispatching tasks as lines complete."""
    async with run.stream_call(st, node, request) as chunks:
        async for chunk in chunks:
            round_.text += chunk
            round_.handle(round_.parser.feed(chunk))
            if round_.parser.done:
                break  # the plan is complete (or wrong): stop reading
    round_.handle(round_.parser.close())


async def run_plan(run: ProgramRun, st: _NodeState, node: PlanNode, values: dict[str, Any]) -> str:
    """Plan, run the tasks, join; replan while the joiner asks and replans remain. If this
    fails, the tasks the plans started and that still run are cancelled."""
    rounds: list[_Round] = []
    try:
        return await _run_rounds(run, st, node, values, rounds)
    except Exception as exc:
        error = exc if isinstance(exc, RunError) else RunError(f"{type(exc).__name__}: {exc}")
        for round_ in rounds:
            round_.cancel(error)
        raise


async def _run_rounds(
    run: ProgramRun,
    st: _NodeState,
    node: PlanNode,
    values: dict[str, Any],
    rounds: list[_Round],
) -> str:
    inputs = {k: dsl.substitute(v, values) for k, v in node.inputs}
    signatures = [ToolSignature.of(run.builder.tools[name]) for name in node.tools]
    p = node.params
    context = ""
    takes_grammar = True  # until the engine says it has no field for one
    # A grounded grammar quotes the question and earlier rounds: one per round.
    fixed = None if node.grounded else dsl.Grammar.lark(plan_grammar(signatures, node.max_tasks))
    for attempt in range(node.max_replans + 1):
        last = attempt == node.max_replans
        grammar: dsl.Grammar | None = None
        if takes_grammar and fixed is not None:
            grammar = fixed
        elif takes_grammar:
            runs = grounding_runs(str(inputs["question"]), context)
            grammar = dsl.Grammar.lark(plan_grammar(signatures, node.max_tasks, runs=runs))
        # The question's names and the words that name a tool: asked of the first plan (a
        # replan may need only some).
        named = node.names != "free" and not context
        required = question_names(str(inputs["question"])) if named else ()
        anywhere = tool_words(str(inputs["question"]), node.tools) if named else ()
        in_order = named and node.names == "in_order"
        alike = question_lists(str(inputs["question"])) if in_order else ()
        prompt = dsl.render(
            node.planner,
            {**inputs, "tools": describe_tools(signatures), "context": context},
        )
        request = LLMRequest(
            messages=(Message("user", prompt),),
            model=node.model,
            max_tokens=p.max_tokens or _PLAN_TOKENS,
            temperature=p.temperature,
            seed=p.seed,
            stop=(END_OF_PLAN,) if grammar is None else (),
            grammar=grammar,
            distinct_lines=True,  # a plan never needs the same call twice: $k reuses a result
            require=required,
            require_order=bool(required) and in_order,
            require_anywhere=anywhere,
            alike=alike,
            hints=Hints(program=run.id, thread=node.thread),
            node=node.id,
        )
        round_ = _Round(run, node, signatures)
        rounds.append(round_)
        try:
            await _write_plan(run, st, node, request, round_)
        except GrammarUnsupported:
            # The engine has no field for the plan's grammar: the parser checks each line.
            st.stats.degraded = True
            takes_grammar = False
            request = LLMRequest(
                messages=request.messages,
                model=node.model,
                max_tokens=request.max_tokens,
                temperature=p.temperature,
                seed=p.seed,
                stop=(END_OF_PLAN,),
                distinct_lines=True,
                require=request.require,
                require_order=request.require_order,
                require_anywhere=request.require_anywhere,
                alike=request.alike,
                hints=request.hints,
                node=node.id,
            )
            round_ = _Round(run, node, signatures)
            rounds.append(round_)
            await _write_plan(run, st, node, request, round_)
        if round_.errors and last:
            raise PlanRejected(node=node.id, text=round_.text, error=round_.errors[0])
        results = await round_.results()
        if round_.errors:
            context = (
                f"\nA previous plan was rejected:\n{round_.text.strip()}\n"
                f"Results so far:\n{results}\nWrite a corrected plan.\n"
            )
            continue
        verdict_grammar = dsl.Grammar.lark(joiner_grammar(may_replan=not last))
        join_prompt = dsl.render(
            node.joiner,
            {**inputs, "results": f"{round_.text.strip()}\n\n{results}"},
        )
        join_request = LLMRequest(
            messages=(Message("user", join_prompt),),
            model=node.model,
            max_tokens=p.max_tokens or _JOIN_TOKENS,
            temperature=p.temperature,
            seed=p.seed,
            grammar=verdict_grammar,
            hints=Hints(program=run.id, thread=node.thread),
            node=node.id,
        )
        verdict: str = await run._constrained(st, node, join_request, verdict_grammar)
        kind, text = parse_verdict(verdict)
        if kind == "finish" or last:
            return text
        context = (
            f"\nPrevious plan:\n{round_.text.strip()}\nIts results:\n{results}\n"
            f"That was not enough: {text}\nWrite a new plan.\n"
        )
    raise AssertionError("unreachable")  # pragma: no cover
