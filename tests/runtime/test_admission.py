"""Admission control: at most ``max_in_flight`` calls at the backend; the policy picks."""

from __future__ import annotations

import anyio
import pytest

import dsl
import orchestrator
from orchestrator.runtime import Admission
from orchestrator.scheduler import FCFS, MLFQ, PLAS, CallInfo, QueueConfig
from orchestrator.testing import ScriptedBackend

pytestmark = pytest.mark.anyio


@dsl.program
async def chain(tag: str, n: int) -> str:
    last = ""
    for i in range(n):
        last = await dsl.gen("{{tag}} step {{i}}", tag=tag, i=i)
    return last


@dsl.program
async def wide(tag: str, n: int) -> list[str]:
    return [await v for v in [dsl.gen("{{tag}} {{i}}", tag=tag, i=i) for i in range(n)]]


@dsl.tool
async def pause(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


@dsl.program
async def late(tag: str, delay: float) -> str:
    await pause(delay)
    return await dsl.gen("{{tag}} call", tag=tag)


async def test_limit_is_never_exceeded() -> None:
    live = 0
    peak = 0

    async def reply(req: object) -> str:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await anyio.sleep(0.01)
        live -= 1
        return "ok"

    async with orchestrator.Orchestrator(ScriptedBackend(reply), max_in_flight=2) as orch:
        handles = [await orch.submit(wide, f"p{i}", 4) for i in range(3)]
        for h in handles:
            await h.result()
    assert peak == 2


async def test_program_fcfs_serves_older_programs_first() -> None:
    """A blocker holds the only slot; meanwhile programs A, B, C (submitted in that order) make
    their calls in the opposite order. FCFS serves the calls as they came (C, B, A); program
    FCFS serves the programs as they came (A, B, C)."""

    async def served(policy: str) -> list[str]:
        async def reply(req: object) -> str:
            text: str = req.text  # type: ignore[attr-defined]
            await anyio.sleep(0.5 if text.startswith("Z") else 0.0)
            return text.split()[0]

        backend = ScriptedBackend(reply)
        async with orchestrator.Orchestrator(backend, policy=policy, max_in_flight=1) as orch:
            await orch.submit(late, "Z", 0.0)
            for tag, delay in (("A", 0.3), ("B", 0.2), ("C", 0.1)):  # 0.1 s apart: a busy machine
                await orch.submit(late, tag, delay)
        return [c.request.text.split()[0] for c in backend.calls]

    assert await served("fcfs") == ["Z", "C", "B", "A"]
    assert await served("program_fcfs") == ["Z", "A", "B", "C"]


async def test_priority_hint_comes_from_the_policy() -> None:
    backend = ScriptedBackend(default="ok")
    async with orchestrator.Orchestrator(backend, policy="program_fcfs") as orch:
        for tag in ("A", "B"):
            await (await orch.submit(chain, tag, 1)).result()
    assert [c.request.hints.priority for c in backend.calls] == [0, 1]


async def test_each_call_carries_when_it_would_starve_at_the_engine() -> None:
    """PLAS (beta 4, a first queue under 0.05 s): the first call has no service behind it and
    is never promoted; the second, of a program with ~0.1 s of service (queue 1), is promoted
    to 0 if it waits ~0.4 s at the engine, and says so in its headers."""

    async def reply(req: object) -> str:
        await anyio.sleep(0.1)
        return "ok"

    backend = ScriptedBackend(reply)
    policy = PLAS(config=QueueConfig(thresholds=(0.05, 1.0)))
    async with orchestrator.Orchestrator(backend, policy=policy) as orch:
        await (await orch.submit(chain, "A", 2)).result()
    first, second = (c.request.hints for c in backend.calls)
    assert first.promote_after is None and "X-Legato-Promote-After" not in first.headers()
    assert second.promote_after is not None and 0.35 < second.promote_after < 0.6
    assert second.promote_to == 0 and second.priority == 1
    assert second.headers()["X-Legato-Promote-To"] == "0"


async def test_cancelled_waiter_gives_its_turn_away() -> None:
    adm = Admission(1, FCFS())

    def info(i: int) -> CallInfo:
        return CallInfo(
            call=str(i),
            program="p",
            thread="t",
            arrival=float(i),
            program_arrival=0.0,
            seq=i,
            program_seq=0,
        )

    got: list[int] = []

    async def user(i: int, hold: float) -> None:
        async with adm.slot(info(i)):
            got.append(i)
            await anyio.sleep(hold)

    async with anyio.create_task_group() as tg:
        tg.start_soon(user, 0, 0.05)
        await anyio.sleep(0.01)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await user(1, 0)  # cancelled while waiting
        tg.start_soon(user, 2, 0)
    assert got == [0, 2]
    assert adm.in_flight == 0 and adm.waiting == 0


async def test_each_call_carries_its_demotion_steps_when_the_policy_demotes_running_calls() -> None:
    """PLAS with demotion by quantum (thresholds 0.05 and 1 s): the second call's program has
    ~0.1 s of service (queue 1), so it falls to queue 2 once it has run ~0.9 s itself."""

    async def reply(req: object) -> str:
        await anyio.sleep(0.1)
        return "ok"

    backend = ScriptedBackend(reply)
    policy = PLAS(config=QueueConfig(thresholds=(0.05, 1.0), demote_running=True))
    async with orchestrator.Orchestrator(backend, policy=policy) as orch:
        await (await orch.submit(chain, "A", 2)).result()
    first, second = (c.request.hints for c in backend.calls)
    assert [to for _, to in first.demote] == [1, 2]  # queue 0: 0.05 s, then 1 s
    assert second.priority == 1 and len(second.demote) == 1
    after, to = second.demote[0]
    assert 0.5 < after < 0.95 and to == 2  # 1 s less ~0.1 s of service (a busy machine: more)
    assert second.headers()["X-Legato-Demote"] == f"{after:.3f}:2"


async def test_a_call_that_can_be_demoted_keeps_its_promotion() -> None:
    """A first call starts in the top queue, where a promotion to it would gain nothing, but
    it can be demoted while it runs: it keeps its promotion, so a demoted call that is
    preempted and then waits long is promoted back (a promotion wins over demotion)."""
    backend = ScriptedBackend(default="ok")
    # the call's expected ~2.6 s is in the first queue: [0, 10)
    policy = MLFQ(config=QueueConfig(thresholds=(10.0, 20.0), demote_running=True))
    async with orchestrator.Orchestrator(backend, policy=policy) as orch:
        await (await orch.submit(chain, "A", 1)).result()
    (hints,) = (c.request.hints for c in backend.calls)
    assert hints.priority == 0 and hints.demote == ((10.0, 1), (20.0, 2))
    assert hints.promote_after is not None and hints.promote_to == 0
