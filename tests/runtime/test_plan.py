"""Running LLMCompiler plans: tasks start while the plan streams, independent ones in
parallel, failures reach the joiner, bad plans are replanned, and the embedded engine writes
plans the grammar allows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

import dsl
import orchestrator
from orchestrator.backends import Completion, LLMRequest
from orchestrator.errors import BackendRejected, GrammarUnsupported

pytestmark = pytest.mark.anyio

STARTED: dict[str, float] = {}


@dsl.tool
async def search(query: str) -> str:
    """Look something up (takes a while)."""
    STARTED[query] = anyio.current_time()
    await anyio.sleep(0.05)
    return f"<{query}>"


@dsl.tool
def fail(reason: str) -> str:
    """Always raises."""
    raise RuntimeError(reason)


@dsl.tool
def combine(a: str, b: str) -> str:
    """Join two results."""
    return f"{a}+{b}"


class PlanEngine:
    """Streams scripted plans a line at a time (with a pause per line) and answers the joiner
    from a list; records every request."""

    name = "plan-engine"

    def __init__(
        self, plans: Sequence[str], verdicts: Sequence[str], *, grammars: bool = True
    ) -> None:
        self.plans = list(plans)
        self.verdicts = list(verdicts)
        self.grammars = grammars
        self.requests: list[LLMRequest] = []
        self.stream_end: list[float] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        return Completion(text=self.verdicts.pop(0), finish_reason="stop")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        if request.grammar is not None and not self.grammars:
            raise GrammarUnsupported("no grammar field here", backend=self.name)
        for line in self.plans.pop(0).splitlines(keepends=True):
            await anyio.sleep(0.03)
            yield line
        self.stream_end.append(anyio.current_time())

    async def aclose(self) -> None:
        pass


@dsl.program
async def answer(question: str) -> str:
    return await dsl.plan(question, tools=[search, fail, combine], name="plan")


PARALLEL = (
    '1. search("a")\n2. search("b")\n3. combine($1, $2)\n4. search("c $3")\n'
    "5. join()\n<END_OF_PLAN>"
)


async def test_tasks_run_as_lines_arrive_and_independent_ones_overlap() -> None:
    STARTED.clear()
    engine = PlanEngine([PARALLEL], ["Finish(done)"])
    async with orchestrator.Orchestrator(engine) as orch:
        h = await orch.submit(answer, "q")
        assert await h.result() == "done"
    # task 1 started before the plan was fully written; 1 and 2 ran at the same time
    assert STARTED["a"] < engine.stream_end[0]
    assert STARTED["b"] - STARTED["a"] < 0.05
    tasks = {k: s for k, s in h.stats.items() if k.startswith("plan_")}
    assert len(tasks) == 4 and all(s.status == "ok" for s in tasks.values())
    assert "c <a>+<b>" in STARTED  # "$3" inside a string is the value as text
    graph = h.graph
    combine_node = next(n for n in graph if isinstance(n, dsl.ToolNode) and n.tool == "combine")
    assert len(combine_node.deps) == 2  # $1 and $2 are data edges: typed values, not text
    joiner_prompt = engine.requests[-1].text
    # each result line shows the task as the plan wrote it, $k and all
    assert '\n3. combine($1, $2) -> "<a>+<b>"\n' in joiner_prompt, joiner_prompt
    assert '\n4. search("c $3") -> ' in joiner_prompt, joiner_prompt
    # the planner's request carried the grammar built from the tools, and asked for distinct
    # task lines (the joiner's did not)
    assert engine.requests[0].grammar is not None
    assert engine.requests[0].distinct_lines and not engine.requests[-1].distinct_lines
    assert "combine(a: str, b: str)" in engine.requests[0].text


async def test_a_failed_task_fails_its_dependants_and_the_joiner_hears_of_it() -> None:
    plan = '1. fail("boom")\n2. combine($1, "x")\n3. search("ok")\n4. join()\n<END_OF_PLAN>'
    engine = PlanEngine([plan], ["Finish(partial)"])
    async with orchestrator.Orchestrator(engine) as orch:
        h = await orch.submit(answer, "q")
        assert await h.result() == "partial"  # the program goes on: the plan observed it
    statuses = sorted(s.status for k, s in h.stats.items() if k.startswith("plan_"))
    assert statuses == ["failed", "ok", "skipped"]
    joiner_prompt = engine.requests[-1].text
    assert "ERROR: tool 'fail'" in joiner_prompt and "boom" in joiner_prompt


async def test_replan_shows_the_previous_plan_and_results() -> None:
    engine = PlanEngine(
        ['1. search("a")\n2. join()\n<END_OF_PLAN>', '1. search("b")\n2. join()\n<END_OF_PLAN>'],
        ["Replan(need b too)", "Finish(a and b)"],
    )
    async with orchestrator.Orchestrator(engine) as orch:
        assert await (await orch.submit(answer, "q")).result() == "a and b"
    second_planner = engine.requests[2].text
    assert 'search("a")' in second_planner and "need b too" in second_planner
    # the last joiner may only finish: its grammar has no Replan
    last_grammar = engine.requests[-1].grammar
    assert last_grammar is not None and "Replan" not in last_grammar.source


async def test_a_grounded_plan_builds_strings_from_the_question_and_earlier_rounds() -> None:
    @dsl.program
    async def grounded(question: str) -> str:
        return await dsl.plan(question, tools=[search], grounded=True, name="plan")

    engine = PlanEngine(
        [
            '1. search("Oslo")\n2. join()\n<END_OF_PLAN>',
            '1. search("Lima")\n2. join()\n<END_OF_PLAN>',
        ],
        ["Replan(try Lima)", "Finish(done)"],
    )
    async with orchestrator.Orchestrator(engine) as orch:
        assert await (await orch.submit(grounded, "Weather in Oslo?")).result() == "done"
    first, second = engine.requests[0].grammar, engine.requests[2].grammar
    assert first is not None and second is not None
    assert '"Oslo"' in first.source and '"Lima"' not in first.source
    assert '"Lima"' in second.source  # the joiner's reason is part of the next round's words


async def test_without_grammar_support_a_bad_line_is_named_and_replanned() -> None:
    engine = PlanEngine(
        ['1. search("a")\n2. combine($3, "x")\n3. join()\n<END_OF_PLAN>', PARALLEL],
        ["Finish(ok)"],
        grammars=False,
    )
    async with orchestrator.Orchestrator(engine) as orch:
        h = await orch.submit(answer, "q")
        assert await h.result() == "ok"
    assert h.stats["plan"].degraded
    replanner = engine.requests[2].text  # refused, plan 1, then plan 2 (no joiner for plan 1)
    assert "plan line 2" in replanner and "$3 does not refer to an earlier task" in replanner


async def test_on_the_embedded_engine_plans_follow_the_grammar() -> None:
    @dsl.tool
    def lookup(key: str) -> str:
        """A table lookup."""
        return key.upper()

    @dsl.program
    async def p(seed: int) -> str:
        return await dsl.plan(
            "What is x?",
            name="plan",
            tools=[lookup],
            max_tasks=2,
            max_replans=0,
            seed=seed,
            max_tokens=64,
            temperature=1.0,
        )

    finished = 0
    async with orchestrator.Orchestrator("local:tiny") as orch:
        for seed in range(3):
            h = await orch.submit(p, seed)
            try:
                await h.result()
            except orchestrator.ConstraintViolation as exc:
                # random weights: the plan or the joiner may run out of tokens; a plan is never
                # malformed otherwise
                reason = exc.reason
            else:
                finished += 1
                continue
            assert "max_tokens ran out" in reason or "cut short by max_tokens" in reason, reason
            assert h.stats["plan"].status == "failed"
    tasks = [k for k in h.stats if k.startswith("plan_")]
    # a task either ran fine or was cancelled because its plan was cut short
    assert all(h.stats[k].status in ("ok", "cancelled") for k in tasks)


async def test_names_are_asked_of_the_first_plan_only() -> None:
    @dsl.program
    async def named(question: str) -> str:
        return await dsl.plan(question, tools=[search], names="in_order", name="plan")

    engine = PlanEngine(
        [
            '1. search("Oslo")\n2. join()\n<END_OF_PLAN>',
            '1. search("Lima")\n2. join()\n<END_OF_PLAN>',
        ],
        ["Replan(try Lima)", "Finish(done)"],
    )
    async with orchestrator.Orchestrator(engine) as orch:
        question = "Is Oslo or Lima colder than camel, elk and bison? Do a search."
        h = await orch.submit(named, question)
        assert await h.result() == "done"
    first, replan = engine.requests[0], engine.requests[2]
    assert first.require == ("Oslo", "Lima", "camel", "elk", "bison") and first.require_order
    assert first.require_anywhere == ("search",)  # the word that names a tool, in any order
    assert first.alike == (("camel", "elk", "bison"),)  # a list: "Oslo or Lima" runs on
    assert replan.require == () and not replan.require_order and replan.require_anywhere == ()
    assert replan.alike == ()


async def test_on_the_demo_model_a_plan_asked_for_names_writes_each_in_order() -> None:
    """The trained model, greedy: without names its plan for this question skips ``zebra``;
    asked for the question's names in order (and its list on alike lines), the engine finds
    a plan that looks up the four animals, each once and nothing else."""
    looked_up: list[str] = []

    @dsl.tool
    def get_speed(animal: str) -> float:
        """The top speed of an animal in km/h."""
        looked_up.append(animal)
        return {"lion": 80.0, "zebra": 64.0, "bison": 56.0, "elk": 72.0}.get(animal, 0.0)

    @dsl.tool
    def math(expression: str) -> str:
        """Evaluate an arithmetic expression (numbers may carry units)."""
        return expression

    @dsl.tool
    def get_population(city: str) -> int:
        """The population of a city."""
        return 0

    def program(names: str) -> dsl.Program:
        @dsl.program
        async def speeds(question: str) -> str:
            return await dsl.plan(
                question,
                tools=[get_speed, math, get_population],
                grounded=True,
                names=names,  # type: ignore[arg-type]
                max_replans=0,
                temperature=0.0,
                name="plan",
            )

        return speeds

    question = "What is the average top speed of lion, zebra, bison and elk?"
    async with orchestrator.Orchestrator("local:demo") as orch:
        await (await orch.submit(program("free"), question)).result()
        assert "zebra" not in looked_up, "the plain plan found zebra: the test would show little"
        looked_up.clear()
        await (await orch.submit(program("in_order"), question)).result()
    assert sorted(looked_up) == ["bison", "elk", "lion", "zebra"]


# -- untrusted plans: rejection, timeouts, cancellation ---------------------------------------

SENT: list[str] = []


@dsl.tool
async def send_email(to: str) -> str:
    """Send an email (a side effect)."""
    SENT.append(to)
    return "sent"


@dsl.tool
async def slow(query: str) -> str:
    """Takes far longer than any test."""
    STARTED[query] = anyio.current_time()
    await anyio.sleep(30)
    return "late"


async def test_a_rejected_last_plan_fails_the_node_without_asking_the_joiner() -> None:
    from orchestrator import PlanRejected
    from orchestrator.testing import ScriptedBackend

    @dsl.program
    async def emails(question: str) -> str:
        return await dsl.plan(question, tools=[send_email], max_replans=0, name="plan")

    plan = '1. send_email("bob")\n2. send_email("bob")\n2. join()\n<END_OF_PLAN>'
    backend = ScriptedBackend({"Plan and results": "Finish(all good)", "Tools:": plan})
    async with orchestrator.Orchestrator(backend) as orch:
        h = await orch.submit(emails, "Email Bob")
        with pytest.raises(PlanRejected, match=r"plan line 3 \('2\. join\(\)'\)") as info:
            await h.result()
    assert isinstance(info.value, orchestrator.ConstraintViolation)
    assert info.value.error.line == 3 and "task number 2, expected 3" in info.value.error.message
    assert h.stats["plan"].status == "failed"
    assert not any("Plan and results" in c.request.text for c in backend.calls)  # no joiner
    # the tasks before the bad line had been dispatched; none outlives the failed plan
    tasks = [s for k, s in h.stats.items() if k.startswith("plan_")]
    assert len(tasks) == 2 and all(s.status in ("ok", "cancelled") for s in tasks)


class StallEngine:
    """Streams one task line, then stalls (or breaks) before the rest; records whether the
    stream was closed."""

    name = "stall-engine"

    def __init__(self, *, stall: float = 30.0, error: BaseException | None = None) -> None:
        self.stall = stall
        self.error = error
        self.closed = False
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        return Completion(text="Finish(too late)", finish_reason="stop")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        try:
            yield '1. slow("first")\n'
            await anyio.sleep(0.05)
            if self.error is not None:
                raise self.error
            await anyio.sleep(self.stall)
            yield "2. join()\n<END_OF_PLAN>"
        finally:
            self.closed = True

    async def aclose(self) -> None:
        pass


@dsl.program
async def slow_plan(question: str) -> str:
    return await dsl.plan(question, tools=[slow], max_replans=0, name="plan")


@dsl.program
async def slow_plan_with_timeout(question: str) -> str:
    return await dsl.plan(question, tools=[slow], max_replans=0, name="plan", timeout=0.2)


@pytest.mark.parametrize("where", ["node", "orchestrator"])
async def test_the_timeout_bounds_the_planners_stream(where: str) -> None:
    engine = StallEngine()
    program = slow_plan_with_timeout if where == "node" else slow_plan
    timeout = None if where == "node" else 0.2
    with anyio.fail_after(5):
        async with orchestrator.Orchestrator(engine, timeout=timeout) as orch:
            start = anyio.current_time()
            h = await orch.submit(program, "q")
            with pytest.raises(orchestrator.BackendUnavailable, match=r"within 0\.2s") as info:
                await h.result()
            assert anyio.current_time() - start < 2
            assert isinstance(info.value.__cause__, orchestrator.BackendTimeout)
            assert orch.admission.in_flight == 0  # the slot went back
    assert engine.closed  # the backend's stream was closed
    assert len(engine.requests) == 1  # no joiner
    assert h.stats["plan"].status == "failed"
    assert h.stats["plan_slow_1"].status == "cancelled"  # the task it had started


async def test_a_broken_stream_cancels_the_tasks_the_plan_started() -> None:
    engine = StallEngine(error=BackendRejected("the stream broke", backend="stall-engine"))
    STARTED.pop("first", None)
    with anyio.fail_after(5):
        async with orchestrator.Orchestrator(engine) as orch:
            start = anyio.current_time()
            h = await orch.submit(slow_plan, "q")
            with pytest.raises(BackendRejected, match="the stream broke"):
                await h.result()
            assert h.done  # result() came when the program was over: nothing runs on
            assert anyio.current_time() - start < 2
    assert "first" in STARTED  # the task had started before the stream broke
    task = h.stats["plan_slow_1"]
    assert task.status == "cancelled" and task.error is not None
    assert "its plan 'plan' failed" in task.error


async def test_a_rejected_last_plan_cancels_the_tasks_it_started() -> None:
    engine = PlanEngine(['1. slow("first")\n2. slow("second")\n2. join()\n'], ["Finish(x)"])

    @dsl.program
    async def p(question: str) -> str:
        return await dsl.plan(question, tools=[slow], max_replans=0, name="plan")

    with anyio.fail_after(5):
        async with orchestrator.Orchestrator(engine) as orch:
            h = await orch.submit(p, "q")
            with pytest.raises(orchestrator.ConstraintViolation, match="plan line 3"):
                await h.result()
            assert h.done
    tasks = {k: s.status for k, s in h.stats.items() if k.startswith("plan_")}
    assert sorted(tasks.values()) == ["cancelled", "cancelled"]
    assert len(engine.requests) == 1  # the joiner was not asked


async def test_a_huge_integer_result_reaches_the_joiner() -> None:
    @dsl.tool
    def power(n: int) -> int:
        """Ten to the n."""
        return int(10**n)

    @dsl.program
    async def p(question: str) -> str:
        return await dsl.plan(question, tools=[power], name="plan")

    engine = PlanEngine(["1. power(5000)\n2. join()\n<END_OF_PLAN>"], ["Finish(big)"])
    async with orchestrator.Orchestrator(engine) as orch:
        assert await (await orch.submit(p, "q")).result() == "big"
    assert "1. power(5000) -> 1.0000000000000000e+5000" in engine.requests[-1].text
