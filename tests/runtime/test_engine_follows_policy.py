"""An embedded engine that Legato builds runs its batch by the orchestrator's policy: the
policy's priorities order it and preempt in it, with the policy's own threshold."""

from __future__ import annotations

import sys

import anyio
import pytest

import dsl
import orchestrator
from orchestrator.backends import LocalBackend, Replicas
from orchestrator.engine import virtual_engine
from orchestrator.scheduler import PLAS, POLICIES, PriorityBatch, QueueConfig


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_the_engine_legato_builds_follows_the_policy(name: str) -> None:
    orch = orchestrator.Orchestrator("local:tiny", policy=name)
    batch = orch.backend.options["policy"]  # type: ignore[attr-defined]
    assert isinstance(batch, PriorityBatch)
    assert batch.preempt_threshold == getattr(POLICIES[name], "preempt_threshold", 0)
    # request-level and program-level FCFS and adaptive never preempt; the others do
    assert batch.preempts == (name not in ("fcfs", "program_fcfs", "adaptive"))
    assert getattr(POLICIES["fcfs"], "preempt_threshold", 0) == sys.maxsize


def test_a_batch_policy_given_or_an_engine_built_is_left_alone() -> None:
    given = LocalBackend("tiny", policy="fcfs")
    built = LocalBackend(engine=virtual_engine())
    before = built.engine.policy  # type: ignore[union-attr]
    orchestrator.Orchestrator(given, policy="plas")
    orchestrator.Orchestrator(built, policy="plas")
    assert given.options["policy"] == "fcfs"
    assert built.engine.policy is before  # type: ignore[union-attr]


def test_replicas_pass_the_policy_to_each_engine_they_build() -> None:
    group = Replicas(["local:tiny", "local:tiny"])
    orchestrator.Orchestrator(group, policy="adaptive")
    for b in group.backends:
        batch = b.options["policy"]  # type: ignore[attr-defined]
        assert isinstance(batch, PriorityBatch) and batch.preempt_threshold > 0


a_between_turns = anyio.Event()


@dsl.tool
async def between_turns() -> str:
    a_between_turns.set()
    return "ok"


@dsl.program
async def long_second_turn() -> str:
    await dsl.gen("first turn", max_tokens=4, temperature=0.0)
    await between_turns()  # program A has attained service: PLAS demotes it
    return await dsl.gen("second turn", max_tokens=300, temperature=0.0)


watched: list[LocalBackend] = []


def a_second_turn_generating() -> bool:
    engine = watched[0].engine
    return engine is not None and engine.counters["generated_tokens"] > 4  # the first turn's 4


@dsl.program
async def newcomer() -> str:
    await a_between_turns.wait()
    for _ in range(1000):  # until A's second call is in the batch (at most 5 s)
        if a_second_turn_generating():
            break
        await anyio.sleep(0.005)
    return await dsl.gen("newcomer", max_tokens=4, temperature=0.0)


@pytest.mark.parametrize(("batch", "preempted"), [(None, True), ("fcfs", False)])
def test_a_new_program_preempts_a_demoted_one_in_the_engine(
    batch: str | None, preempted: bool
) -> None:
    """One batch slot: A's long second call runs; B, with no service yet, arrives. Under the
    orchestrator's PLAS the engine preempts A for B; an engine told ``fcfs`` lets A finish."""
    global a_between_turns
    a_between_turns = anyio.Event()
    options = {} if batch is None else {"policy": batch}
    backend = LocalBackend("tiny", max_batch=1, **options)
    watched[:] = [backend]
    plas = PLAS(config=QueueConfig(thresholds=(1e-6, 10.0)))
    ended: list[str] = []

    async def main() -> None:
        async with orchestrator.Orchestrator(backend, policy=plas, max_in_flight=8) as orch:

            async def one(program: dsl.Program[[], str], tag: str) -> None:
                await (await orch.submit(program)).result()
                ended.append(tag)

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, long_second_turn, "A")
                tg.start_soon(one, newcomer, "B")
            assert backend.engine is not None
            assert (backend.engine.counters["preemptions"] > 0) == preempted

    anyio.run(main)
    assert ended == (["B", "A"] if preempted else ["A", "B"])
