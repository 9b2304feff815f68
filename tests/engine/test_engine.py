"""The step loop: continuous batching, sampling settings, prefix caching and pins, preemption,
appended tokens, aborts, bounded memory, and virtual time."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import dsl
from orchestrator import constrain
from orchestrator.engine import (
    CostModel,
    Engine,
    EngineRequest,
    EngineTokenizer,
    FinishEvent,
    GGUFModel,
    LlamaModel,
    RequestRejected,
    SampleParams,
    TokenEvent,
    virtual_engine,
)
from orchestrator.scheduler import PriorityBatch

pytestmark = pytest.mark.anyio

GREEDY = SampleParams(max_tokens=12, temperature=0.0, ignore_eos=True)


def make_engine(tiny: GGUFModel, tokenizer: EngineTokenizer, **kw: object) -> Engine:
    blocks = int(kw.pop("num_blocks", 64))  # type: ignore[call-overload]
    model = LlamaModel(tiny, num_blocks=blocks, block_size=16)
    return Engine(model, tokenizer, num_blocks=blocks, block_size=16, context_length=2048, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def running(engine: Engine) -> AsyncIterator[Engine]:
    async with anyio.create_task_group() as tg:
        await tg.start(engine.serve)
        yield engine
        tg.cancel_scope.cancel()


@pytest.fixture
async def engine(tiny: GGUFModel, tokenizer: EngineTokenizer) -> AsyncIterator[Engine]:
    async with running(make_engine(tiny, tokenizer)) as e:
        yield e


def req(
    tokenizer: EngineTokenizer,
    text: str = "SELECT name FROM users",
    params: SampleParams = GREEDY,
    **kw: object,
) -> EngineRequest:
    return EngineRequest(prompt=tokenizer.encode(text), params=params, **kw)  # type: ignore[arg-type]


async def test_greedy_is_deterministic_and_counts_tokens(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    a_tokens, a = await engine.complete(req(tokenizer))
    b_tokens, _b = await engine.complete(req(tokenizer))
    assert [t.token for t in a_tokens] == [t.token for t in b_tokens]
    assert a.reason == "length" and a.completion_tokens == 12
    assert a.prompt_tokens == len(tokenizer.encode("SELECT name FROM users"))
    assert a.text == "".join(t.text for t in a_tokens) + a.tail


async def test_batched_greedy_equals_alone(engine: Engine, tokenizer: EngineTokenizer) -> None:
    texts = ["one two three", "SELECT * FROM t", "the quick brown fox", "hello"]
    alone = [[t.token for t in (await engine.complete(req(tokenizer, x)))[0]] for x in texts]
    together: dict[str, list[int]] = {}

    async def one(x: str) -> None:
        together[x] = [t.token for t in (await engine.complete(req(tokenizer, x)))[0]]

    async with anyio.create_task_group() as tg:
        for x in texts:
            tg.start_soon(one, x)
    assert [together[x] for x in texts] == alone


async def test_new_requests_join_a_running_batch(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    joined_while_running: list[int] = []

    async def long() -> None:
        await engine.complete(
            req(tokenizer, params=SampleParams(max_tokens=200, temperature=0.0, ignore_eos=True))
        )

    async def short() -> None:
        await anyio.sleep(0.05)
        joined_while_running.append(engine.running)
        await engine.complete(req(tokenizer, "short one"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(long)
        tg.start_soon(short)
    assert joined_while_running == [1]  # the long one was mid-generation when short arrived


async def test_seeds_make_sampling_reproducible(engine: Engine, tokenizer: EngineTokenizer) -> None:
    p = SampleParams(max_tokens=16, temperature=1.0, top_p=0.9, top_k=50, seed=7, ignore_eos=True)
    a, _ = await engine.complete(req(tokenizer, params=p))
    b, _ = await engine.complete(req(tokenizer, params=p))
    c, _ = await engine.complete(
        req(tokenizer, params=SampleParams(max_tokens=16, temperature=1.0, seed=8, ignore_eos=True))
    )
    assert [t.token for t in a] == [t.token for t in b] != [t.token for t in c]


async def test_stop_strings_end_and_are_not_returned(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    _, free = await engine.complete(req(tokenizer))
    stop = free.text[3:6]
    assert stop
    tokens, fin = await engine.complete(
        req(
            tokenizer,
            params=SampleParams(max_tokens=12, temperature=0.0, ignore_eos=True, stop=(stop,)),
        )
    )
    assert fin.reason == "stop"
    assert fin.text == free.text[: free.text.index(stop)]
    assert "".join(t.text for t in tokens) + fin.tail == fin.text


async def test_eos_ends_unless_ignored_or_min_tokens(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    eos = tokenizer.eos_id
    assert eos is not None
    # a grammar lets only "yes" and then the end: it alone says when the text may end
    only_yes = await engine.matcher(dsl.Grammar.choice(["yes"]))
    _, fin = await engine.complete(
        req(
            tokenizer,
            params=SampleParams(max_tokens=8, temperature=0.0, min_tokens=5),
            constraint=only_yes,
        )
    )
    assert fin.reason == "stop" and fin.text == "yes"


async def test_logprobs(engine: Engine, tokenizer: EngineTokenizer) -> None:
    tokens, _ = await engine.complete(
        req(
            tokenizer,
            params=SampleParams(max_tokens=4, temperature=0.0, ignore_eos=True, logprobs=3),
        )
    )
    for t in tokens:
        assert len(t.top) == 3 and t.top[0][0] == t.token  # greedy picks the top one
        assert t.logprob == pytest.approx(t.top[0][1]) and t.logprob <= 0.0


async def test_choice_constraint_spells_one_option(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    options = ["billing", "bug report", "other"]
    for seed in range(5):
        _, fin = await engine.complete(
            req(
                tokenizer,
                params=SampleParams(max_tokens=16, temperature=1.0, seed=seed),
                constraint=await engine.matcher(dsl.Grammar.choice(options)),
            )
        )
        assert fin.text in options


async def test_prefix_cache_and_pins_serve_the_next_turn(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    async with running(make_engine(tiny, tokenizer, num_blocks=12)) as engine:
        history = "You are a helpful agent. " * 6  # > 2 blocks of prompt
        _, t1 = await engine.complete(req(tokenizer, history, program="p1", kv_ttl=30.0))
        assert engine.pool.pinned_blocks >= 2
        _, t2 = await engine.complete(req(tokenizer, history + "Tool said: 42.", program="p1"))
        assert t2.cached_tokens >= 32 and t1.cached_tokens == 0
        assert engine.pool.pinned_blocks > 0  # turn 1's answer blocks are still pinned
        # an unrelated request that needs every block drops the pins instead of waiting
        prompt = tokenizer.encode("x " * 60)
        big = SampleParams(max_tokens=12 * 16 - len(prompt), temperature=0.0, ignore_eos=True)
        _, t3 = await engine.complete(EngineRequest(prompt=prompt, params=big))
        assert t3.reason == "length" and engine.pool.pinned_blocks == 0


async def test_pins_expire(tiny: GGUFModel, tokenizer: EngineTokenizer) -> None:
    async with running(make_engine(tiny, tokenizer)) as engine:
        await engine.complete(req(tokenizer, "pin me " * 10, program="p", kv_ttl=0.05))
        assert engine.pool.pinned_blocks > 0
        await anyio.sleep(0.1)
        await engine.complete(req(tokenizer, "other"))  # a step expires old pins
        assert engine.pool.pinned_blocks == 0


async def test_priority_policy_preempts_for_urgent_work(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    async with running(make_engine(tiny, tokenizer, max_batch=1, policy=PriorityBatch())) as engine:
        done: list[str] = []
        slow = SampleParams(max_tokens=150, temperature=0.0, ignore_eos=True)

        async def run(name: str, priority: int, delay: float) -> None:
            await anyio.sleep(delay)
            await engine.complete(
                req(tokenizer, name, params=slow if name == "low" else GREEDY, priority=priority)
            )
            done.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "low", 10, 0.0)
            tg.start_soon(run, "high", 0, 0.05)
        assert done == ["high", "low"]
        assert engine.counters["preemptions"] >= 1


async def test_service_time_leaves_out_the_time_a_preempted_request_waits(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """One slot, so time in the batch never overlaps: ``low`` is preempted by ``high`` and
    waits while it runs. The two service times together fit in ``low``'s time at the engine
    (before, ``low``'s counted from its first start to its end, ``high``'s run included)."""
    async with running(make_engine(tiny, tokenizer, max_batch=1, policy=PriorityBatch())) as engine:
        slow = SampleParams(max_tokens=150, temperature=0.0, ignore_eos=True)
        ends: dict[str, FinishEvent] = {}
        generating = anyio.Event()

        async def run_low() -> None:
            async with engine.open(req(tokenizer, "low", params=slow, priority=10)) as events:
                async for ev in events:
                    generating.set()  # ``low`` is in the batch
                    if isinstance(ev, FinishEvent):
                        ends["low"] = ev

        async def run_high() -> None:
            _, ends["high"] = await engine.complete(req(tokenizer, "high", params=slow, priority=0))

        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_low)
            with anyio.fail_after(10):
                await generating.wait()
            tg.start_soon(run_high)
        elapsed = anyio.current_time() - start
        assert engine.counters["preemptions"] >= 1
        low, high = ends["low"].service_time, ends["high"].service_time
        assert low > 0 and high > 0 and low + high <= elapsed


@pytest.mark.parametrize("promote", [False, True])
async def test_a_request_is_promoted_once_it_has_waited_its_allowance(
    tiny: GGUFModel, tokenizer: EngineTokenizer, promote: bool
) -> None:
    """One slot. ``old`` (priority 9) waits behind ``blocker`` (5), then ``fresh`` (2) comes
    and preempts. Without a promotion ``old`` goes last; with ``promote_after`` 0.05 s to
    priority 0 it overtakes (and preempts) both once it has waited that long."""
    async with running(make_engine(tiny, tokenizer, max_batch=1, policy=PriorityBatch())) as engine:
        done: list[str] = []
        slow = SampleParams(max_tokens=200, temperature=0.0, ignore_eos=True)

        async def run(name: str, priority: int, delay: float, after: float | None) -> None:
            await anyio.sleep(delay)
            r = req(tokenizer, name, params=slow, priority=priority, promote_after=after)
            await engine.complete(r)
            done.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "blocker", 5, 0.0, None)
            tg.start_soon(run, "old", 9, 0.02, 0.05 if promote else None)
            tg.start_soon(run, "fresh", 2, 0.04, None)
        assert done == (["old", "fresh", "blocker"] if promote else ["fresh", "blocker", "old"])


async def test_time_in_the_batch_does_not_count_toward_a_promotion(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """One slot. ``running`` (priority 9, promoted after 0.03 s of waiting) joins the batch at
    once and is still running when ``urgent`` (2, four tokens) comes 0.05 s later: it has
    waited (nearly) nothing, so it is not promoted, and ``urgent`` preempts it and ends
    before ``running`` has waited its 0.03 s."""
    async with running(make_engine(tiny, tokenizer, max_batch=1, policy=PriorityBatch())) as engine:
        done: list[str] = []

        async def run(name: str, priority: int, delay: float, tokens: int) -> None:
            await anyio.sleep(delay)
            params = SampleParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
            after = 0.03 if name == "running" else None
            r = req(tokenizer, name, params=params, priority=priority, promote_after=after)
            await engine.complete(r)
            done.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "running", 9, 0.0, 200)
            tg.start_soon(run, "urgent", 2, 0.05, 4)
        assert done == ["urgent", "running"]
        assert engine.counters["preemptions"] >= 1


@pytest.mark.parametrize("demote", [False, True])
async def test_a_running_request_is_demoted_once_it_has_run_its_quantum(
    tiny: GGUFModel, tokenizer: EngineTokenizer, demote: bool
) -> None:
    """One slot. ``long`` (priority 2, 900 tokens) runs; ``other`` (5) comes once ``long`` has
    streamed a token. Without demotion ``long`` keeps the slot and ends first; demoted to 9
    after 0.01 s of service, it yields to ``other`` (a preemption) and ends last."""
    async with running(make_engine(tiny, tokenizer, max_batch=1, policy=PriorityBatch())) as engine:
        done: list[str] = []
        streaming = anyio.Event()
        steps = ((0.01, 9),) if demote else ()

        async def run_long() -> None:
            params = SampleParams(max_tokens=900, temperature=0.0, ignore_eos=True)
            r = req(tokenizer, "long", params=params, priority=2, demote=steps)
            async with engine.open(r) as events:
                async for ev in events:
                    streaming.set()
                    if isinstance(ev, FinishEvent):
                        break
            done.append("long")

        async def run_other() -> None:
            with anyio.fail_after(30):
                await streaming.wait()
            params = SampleParams(max_tokens=4, temperature=0.0, ignore_eos=True)
            await engine.complete(req(tokenizer, "other", params=params, priority=5))
            done.append("other")

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_long)
            tg.start_soon(run_other)
        assert done == (["other", "long"] if demote else ["long", "other"])
        assert (engine.counters["preemptions"] >= 1) is demote


@pytest.mark.parametrize("steps", [((-1.0, 3),), ((0.5, 1), (0.5, 2)), ((math.inf, 1),)])
async def test_bad_demotion_steps_are_rejected(
    engine: Engine, tokenizer: EngineTokenizer, steps: tuple[tuple[float, int], ...]
) -> None:
    with pytest.raises(RequestRejected, match="demote step") as err:
        await engine.complete(req(tokenizer, demote=steps))
    assert err.value.field == "demote"


async def test_a_negative_promotion_time_is_rejected(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    with pytest.raises(RequestRejected, match="promote_after") as err:
        await engine.complete(req(tokenizer, promote_after=-1.0))
    assert err.value.field == "promote_after"


async def test_appended_tokens_join_the_context(engine: Engine, tokenizer: EngineTokenizer) -> None:
    base = req(tokenizer, params=SampleParams(max_tokens=30, temperature=0.0, ignore_eos=True))
    plain, _ = await engine.complete(base)
    injected: list[TokenEvent] = []
    async with engine.open(base) as events:
        seq_id = next(iter(engine._by_id))
        async for ev in events:
            if isinstance(ev, FinishEvent):
                assert ev.completion_tokens == 30
                break
            injected.append(ev)
            if len(injected) == 5:
                engine.append_tokens(seq_id, tokenizer.encode(" [INTR] 1 [HEAD] 42 [END]"))
    assert [t.token for t in injected[:5]] == [t.token for t in plain[:5]]
    assert [t.token for t in injected] != [t.token for t in plain]


async def test_leaving_early_aborts_and_frees_blocks(
    engine: Engine, tokenizer: EngineTokenizer
) -> None:
    free = engine.pool.free_blocks
    long = req(tokenizer, params=SampleParams(max_tokens=500, temperature=0.0, ignore_eos=True))
    async with engine.open(long) as events:
        async for ev in events:
            assert isinstance(ev, TokenEvent)
            break
    await anyio.sleep(0.05)
    assert engine.running == 0 and engine.waiting == 0
    assert engine.pool.free_blocks == free
    assert engine.counters["aborted"] == 1


async def test_more_requests_than_memory_all_finish(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    async with running(make_engine(tiny, tokenizer, num_blocks=10, max_batch=16)) as engine:
        finished: list[FinishEvent] = []
        peak = 0

        async def one(i: int) -> None:
            nonlocal peak
            _, fin = await engine.complete(
                req(
                    tokenizer,
                    f"request number {i}",
                    params=(SampleParams(max_tokens=20, temperature=0.0, ignore_eos=True)),
                )
            )
            peak = max(peak, engine.running)
            finished.append(fin)

        async with anyio.create_task_group() as tg:
            for i in range(64):
                tg.start_soon(one, i)
        assert len(finished) == 64 and all(f.completion_tokens == 20 for f in finished)
        assert engine.pool.free_blocks == 10


async def test_requests_that_can_never_run_are_rejected(engine: Engine) -> None:
    with pytest.raises(RequestRejected, match="2048 tokens but the context holds 2048"):
        engine.check(EngineRequest(prompt=[1] * 2048))
    with pytest.raises(RequestRejected, match="empty"):
        engine.check(EngineRequest(prompt=[]))
    with pytest.raises(RequestRejected, match="outside the vocabulary"):
        engine.check(EngineRequest(prompt=[10**6]))


def test_virtual_time_runs_thousands_through_the_real_batcher() -> None:
    import trio.testing

    async def main() -> tuple[float, int]:
        engine = virtual_engine(cost=CostModel(), max_batch=64)
        lengths: list[int] = []
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)

            async def one(i: int) -> None:
                await anyio.sleep(i * 0.01)  # arrivals spread over 10 virtual seconds
                _, fin = await engine.complete(
                    EngineRequest(
                        prompt=list(range(200 + i % 300)),
                        params=SampleParams(max_tokens=50 + i % 100, ignore_eos=True),
                    )
                )
                lengths.append(fin.completion_tokens)

            async with anyio.create_task_group() as inner:
                for i in range(1000):
                    inner.start_soon(one, i)
            tg.cancel_scope.cancel()
        assert lengths and all(n >= 50 for n in lengths)
        return anyio.current_time(), len(lengths)

    wall = time.perf_counter()
    virtual_end, n = anyio.run(
        main,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )
    wall = time.perf_counter() - wall
    assert n == 1000
    assert virtual_end > 10.0  # simulated seconds passed...
    assert wall < virtual_end  # ...faster than real time


class _PauseOldest:
    """A test policy: when the batch is full and someone waits, pause the oldest running
    sequence once, keeping its KV blocks; otherwise admit in arrival order."""

    name = "pause-oldest"
    preempts = True

    def __init__(self) -> None:
        self.paused: str | None = None

    def schedule(self, waiting, running, *, free_blocks, max_batch, now):  # type: ignore[no-untyped-def]
        from orchestrator.scheduler import BatchDecision

        room = max_batch - len(running)
        if self.paused is None and room == 0 and waiting:
            victim = min(running, key=lambda v: v.arrival)
            self.paused = victim.id
            newest = max(waiting, key=lambda v: v.arrival)
            return BatchDecision(admit=(newest.id,), preempt=((victim.id, "keep"),))
        order = sorted(waiting, key=lambda v: v.arrival)
        return BatchDecision(admit=tuple(v.id for v in order[:room]))


async def test_keep_preemption_resumes_without_recomputing(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    policy = _PauseOldest()
    long = SampleParams(max_tokens=300, temperature=0.0, ignore_eos=True)
    texts = ["first one", "second one", "third one"]
    async with running(make_engine(tiny, tokenizer)) as plain:
        alone = {
            t: [e.token for e in (await plain.complete(req(tokenizer, t, params=long)))[0]]
            for t in texts
        }
    async with running(make_engine(tiny, tokenizer, policy=policy, max_batch=2)) as engine:
        results: dict[str, list[int]] = {}

        async def one(text: str, delay: float) -> None:
            await anyio.sleep(delay)
            events, _ = await engine.complete(req(tokenizer, text, params=long))
            results[text] = [e.token for e in events]

        async with anyio.create_task_group() as tg:
            for i, text in enumerate(texts):
                tg.start_soon(one, text, 0.01 * i)
        assert policy.paused is not None and engine.counters["preemptions"] == 1
        assert results == alone  # the paused sequence resumed where it stopped
        # every token's KV was computed exactly once: nothing was recomputed
        contexts = sum(len(tokenizer.encode(t)) + 300 - 1 for t in texts)
        assert engine.counters["computed_tokens"] == contexts


async def test_program_level_policy_inside_the_batcher(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    from orchestrator.scheduler import PLAS, PolicyBatch, QueueConfig

    policy = PolicyBatch(PLAS(config=QueueConfig(thresholds=(0.001, 1.0))))
    async with running(make_engine(tiny, tokenizer, max_batch=1, policy=policy)) as engine:
        done: list[str] = []
        slow = SampleParams(max_tokens=150, temperature=0.0, ignore_eos=True)

        async def run(name: str, program: str, delay: float) -> None:
            await anyio.sleep(delay)
            await engine.complete(
                req(tokenizer, name, params=slow if name == "A1" else GREEDY, program=program)
            )
            done.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "A1", "A", 0.0)
            tg.start_soon(run, "A2", "A", 0.02)  # A's second call, queued first...
            tg.start_soon(run, "B1", "B", 0.04)  # ...but B has had no service yet
        assert done == ["A1", "B1", "A2"]
        assert policy.policy.programs["A"].service > 0  # the engine taught the policy
        engine.release_program("A")  # the program's end reaches the policy
        assert "A" not in policy.policy.programs and policy.programs == 1


async def test_a_program_s_own_pins_do_not_hold_up_its_next_request(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """A program pins its blocks (a long TTL), then asks with another prompt that needs those
    blocks: its own pins give way too (they used to block the queue for the whole TTL)."""
    async with running(make_engine(tiny, tokenizer, num_blocks=12)) as engine:
        with anyio.fail_after(10):
            await engine.complete(req(tokenizer, "pin me " * 40, program="p", kv_ttl=1000.0))
            assert engine.pool.pinned_blocks >= 6
            prompt = tokenizer.encode("y " * 60)
            big = SampleParams(max_tokens=12 * 16 - len(prompt), temperature=0.0, ignore_eos=True)
            _, fin = await engine.complete(EngineRequest(prompt=prompt, params=big, program="p"))
        assert fin.reason == "length"


async def test_prompt_tokens_are_counted_once_when_a_sequence_is_preempted(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """A sequence preempted and admitted again counts its prompt once, and its usage reports
    the cache it found when it first joined (not its own prefix, found again)."""
    engine = make_engine(
        tiny, tokenizer, num_blocks=128, max_batch=1, max_step_tokens=4, policy=PriorityBatch()
    )
    async with running(engine):
        slow = SampleParams(max_tokens=8, temperature=0.0, ignore_eos=True)
        # a prompt of ~100 4-token chunks: the urgent request comes during its prefill
        prompts = {"low": "the slow one " * 150, "urgent": "urgent work here"}
        finishes: dict[str, FinishEvent] = {}

        async def run(name: str, priority: int) -> None:
            _, finishes[name] = await engine.complete(
                req(tokenizer, prompts[name], slow if name == "low" else GREEDY, priority=priority)
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "low", 5)
            with anyio.fail_after(10):
                # until the low one has begun its prefill (the engine signals no such event)
                while not engine.counters["steps"]:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            tg.start_soon(run, "urgent", 0)
    assert engine.counters["preemptions"] >= 1
    expected = sum(len(tokenizer.encode(p)) for p in prompts.values())
    assert engine.counters["prompt_tokens"] == expected
    assert finishes["low"].cached_tokens == 0


async def test_tokens_appended_past_the_kv_pool_are_refused(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """Within the context length but beyond the KV pool (8 blocks of 16 here): refused, rather
    than a sequence that can never grow and stays in the batch for ever."""
    async with running(make_engine(tiny, tokenizer, num_blocks=8)) as engine:
        held = SampleParams(max_tokens=40, temperature=0.0, ignore_eos=True)
        sid = engine.new_seq_id()
        async with engine.open(req(tokenizer, "a b c", held), seq_id=sid) as events:
            async for ev in events:
                assert isinstance(ev, TokenEvent)
                with pytest.raises(RequestRejected, match="more KV blocks than the engine has"):
                    engine.append_tokens(sid, [1] * 150)
                break


async def test_an_urgent_request_whose_prefix_is_cached_preempts_when_it_does_not_fit(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """16 blocks of 16 tokens. An urgent request finds 4 blocks of its prefix cached (free to
    evict, so already counted among the free blocks) and needs 3 more, with 2 free: it does
    not fit without preempting the low-priority one running. The batch policy used to count
    the cached blocks twice, think it fitted, and let it wait for the other to finish."""
    engine = make_engine(tiny, tokenizer, num_blocks=16, max_batch=2, policy=PriorityBatch())
    words = tokenizer.encode("alpha beta gamma delta " * 100)
    prefix, low_prompt = words[:64], words[100:250]
    order: list[str] = []
    async with running(engine):
        await engine.complete(EngineRequest(prompt=prefix, params=GREEDY))  # 4 blocks cached
        low = EngineRequest(
            prompt=low_prompt,  # 10 blocks with its 9 tokens: 2 blocks stay free
            params=SampleParams(max_tokens=9, temperature=0.0, ignore_eos=True),
            priority=5,
        )
        urgent = EngineRequest(prompt=prefix + words[300:340], params=GREEDY, priority=0)

        async def run(name: str, request: EngineRequest) -> None:
            await engine.complete(request)
            order.append(name)

        async with anyio.create_task_group() as tg, engine.open(low) as events:
            async for _ in events:  # the low one is running: now the urgent one comes
                tg.start_soon(run, "urgent", urgent)
                break
            async for ev in events:
                if isinstance(ev, FinishEvent):
                    order.append("low")
    assert order == ["urgent", "low"]
    assert engine.counters["preemptions"] == 1


async def test_preempting_credits_only_the_blocks_a_victim_holds_alone(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """20 blocks. Two running requests share an 8-block prefix and hold 2-4 blocks each of
    their own; a medium-priority request needs 13 blocks. Preempting the low-priority one frees
    only its own blocks, never enough, and the other outranks the newcomer: nothing should be
    preempted. Credited with the shared prefix too, the low one used to be preempted (its work
    thrown away) without making room."""
    engine = make_engine(tiny, tokenizer, num_blocks=20, max_batch=3, policy=PriorityBatch())
    words = tokenizer.encode("alpha beta gamma delta epsilon " * 200)
    other = tokenizer.encode("one two three four five six " * 100)
    prefix = words[:128]  # 8 full blocks
    params = SampleParams(max_tokens=40, temperature=0.0, ignore_eos=True)
    low = EngineRequest(prompt=prefix + words[200:216], params=params, priority=9)
    high = EngineRequest(prompt=prefix + words[300:316], params=params, priority=0)
    medium = EngineRequest(prompt=other[:200], params=GREEDY, priority=5)  # 13 blocks
    done: list[str] = []

    async def run(name: str, request: EngineRequest) -> None:
        await engine.complete(request)
        done.append(name)

    async with running(engine), anyio.create_task_group() as tg, engine.open(low) as low_events:
        await low_events.__anext__()  # its prompt is computed: the prefix is cached
        async with engine.open(high) as high_events:
            await high_events.__anext__()  # both running, sharing the prefix
            assert all(engine.pool.exclusive(r.table) < 8 for r in engine._running)  # type: ignore[arg-type]
            tg.start_soon(run, "medium", medium)
            async for _ in low_events:
                pass
            async for _ in high_events:
                pass
    assert done == ["medium"]
    assert engine.counters["preemptions"] == 0


async def test_admission_drops_only_the_pins_it_needs_gone(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    """16 blocks: program A's 10-block prompt and B's 5 are pinned, 1 block is free. A's next
    turn finds its 10 blocks cached and needs 2 more: one of B's pins goes, not all five (the
    whole prompt's 12 blocks used to be asked for)."""
    engine = make_engine(tiny, tokenizer, num_blocks=16)
    words = tokenizer.encode("alpha beta gamma delta epsilon " * 200)
    one = SampleParams(max_tokens=1, temperature=0.0, ignore_eos=True)

    def pinned(owner: str) -> int:
        return sum(1 for o in engine.pool._pin_owner.values() if o == owner)

    async with running(engine):
        a = words[:160]
        await engine.complete(EngineRequest(prompt=a, params=one, program="A", kv_ttl=60.0))
        await engine.complete(
            EngineRequest(prompt=words[300:380], params=one, program="B", kv_ttl=30.0)
        )
        assert (pinned("A"), pinned("B"), engine.pool.free_blocks) == (10, 5, 1)
        _, fin = await engine.complete(
            EngineRequest(prompt=a + words[500:520], params=one, program="A", kv_ttl=60.0)
        )
    assert fin.cached_tokens == 160
    assert pinned("B") == 4


class _Breaks(constrain.TokenMatcher):
    """A real matcher that fails the way a grammar's bug would: ``fill`` or ``accept`` raises
    once ``after`` tokens have been taken."""

    def __init__(self, inner: constrain.TokenMatcher, where: str, after: int) -> None:
        super().__init__(inner._m)
        self.where, self.after, self.taken = where, after, 0

    def fill(self, bitmask: object, row: int) -> None:  # type: ignore[override]
        if self.where == "fill" and self.taken >= self.after:
            raise RuntimeError("the matcher broke while filling")
        super().fill(bitmask, row)  # type: ignore[arg-type]

    def accept(self, token: int) -> bool:
        if self.where == "accept" and self.taken >= self.after:
            raise RuntimeError("the matcher broke while accepting")
        self.taken += 1
        return super().accept(token)


@pytest.mark.parametrize("where", ["fill", "accept"])
async def test_a_sequence_whose_processing_fails_ends_alone(
    engine: Engine, tokenizer: EngineTokenizer, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure inside one sequence's step (here its grammar's matcher) ends that sequence
    with ``error``, naming the failure; the batch's other sequences and later requests go on.
    It used to end the step loop, and with it every request."""
    matcher = await engine.matcher(dsl.Grammar.regex("[a-z]{1,40}"))
    broken = req(
        tokenizer,
        params=SampleParams(max_tokens=30, temperature=0.0),
        constraint=_Breaks(matcher, where, after=3),
    )
    results: dict[str, FinishEvent] = {}

    async def one(name: str, r: EngineRequest) -> None:
        _, results[name] = await engine.complete(r)

    with caplog.at_level("ERROR", logger="legato"), anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "broken", broken)
            tg.start_soon(one, "fine", req(tokenizer))
        _, later = await engine.complete(req(tokenizer, "a later request"))
    assert results["broken"].reason == "error" and results["broken"].text == ""
    assert f"RuntimeError: the matcher broke while {where}" in (results["broken"].error or "")
    assert results["fine"].reason == "length" and results["fine"].completion_tokens == 12
    assert later.reason == "length" and engine.running == 0
    assert engine.pool.free_blocks == engine.pool.num_blocks
    assert "failed in the engine" in caplog.text
