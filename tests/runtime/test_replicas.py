"""Replicas of the embedded engine (virtual time): the balancer keeps multi-turn programs on
the replica holding their prefix."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

import dsl
import orchestrator
from orchestrator.backends import LocalBackend, Replicas
from orchestrator.engine import virtual_engine


@dsl.tool
async def think(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


@dsl.program
async def loop(i: int) -> int:
    context = f"agent {i} instructions " * 60
    for turn in range(6):
        await dsl.gen("{{c}}", c=context, max_tokens=20)
        await think(0.2)
        context += f" turn {turn} observation " * 10
    return i


def run(balancer: str) -> Replicas:
    replicas = Replicas(
        [LocalBackend(engine=virtual_engine()) for _ in range(2)], balancer=balancer
    )

    async def main() -> None:
        async with orchestrator.Orchestrator(replicas, policy="program_fcfs") as orch:
            handles = []
            for i in range(40):
                await anyio.sleep(0.05)
                handles.append(await orch.submit(loop, i))
            assert [await h.result() for h in handles] == list(range(40))

    anyio.run(
        main,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )
    return replicas


def hit_rate(r: Replicas) -> float:
    hits = list(r.prefix_hits.values())
    return sum(h.cached_tokens for h in hits) / sum(h.reusable_tokens for h in hits)


@pytest.mark.parametrize("balancer", ["round_robin", "locality"])
def test_both_replicas_serve(balancer: str) -> None:
    r = run(balancer)
    assert all(n > 40 for n in r.calls)  # the load was spread
    assert not r.started


def test_locality_finds_the_prefix_round_robin_loses_it() -> None:
    locality, round_robin = hit_rate(run("locality")), hit_rate(run("round_robin"))
    assert locality >= 0.9
    assert round_robin < locality - 0.1


class _Releasing(LocalBackend):
    """A replica whose release waits for another replica's release to have started."""

    def __init__(self, started: anyio.Event, wait_for: anyio.Event) -> None:
        super().__init__(engine=virtual_engine())
        self.started, self.wait_for = started, wait_for

    async def release_program(self, program: str) -> None:
        self.started.set()
        await self.wait_for.wait()


def test_a_program_s_end_reaches_every_replica_at_once() -> None:
    """Each replica's release waits for the other's to start: one after the other, the first
    would wait forever; at once, both finish."""

    async def main() -> None:
        a, b = anyio.Event(), anyio.Event()
        replicas = Replicas([_Releasing(a, b), _Releasing(b, a)])
        with anyio.fail_after(5):
            await replicas.release_program("p")

    anyio.run(main)


def test_replicas_stop_what_they_started_and_leave_a_caller_s_running_backend() -> None:
    async def main() -> None:
        theirs = LocalBackend(engine=virtual_engine())
        async with theirs:
            ours = LocalBackend(engine=virtual_engine())
            async with Replicas([theirs, ours]):
                assert theirs.started and ours.started
            assert not ours.started  # started here: stopped here
            assert theirs.started  # the caller's: it used to be stopped under them
            reply = await theirs.complete(
                orchestrator.backends.LLMRequest(prompt="a b", max_tokens=2)
            )
            assert reply.completion_tokens == 2

    anyio.run(main)
