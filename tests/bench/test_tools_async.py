"""``legato bench tools`` part (b): async against synchronous calling in virtual time through the
real AsyncLM runtime, and the small real case on llama-server."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from dsl import cml
from orchestrator.backends import LLMRequest
from orchestrator.bench.tools_async import (
    Case,
    VirtualCMLModel,
    bfcl_workload,
    latency_model,
    measure_async,
    measure_llamacpp,
    tokenize,
)
from orchestrator.engine import CostModel


def test_the_workload_is_seeded_and_bfcl_like() -> None:
    a, b = bfcl_workload(20, seed=3), bfcl_workload(20, seed=3)
    assert a == b and a != bfcl_workload(20, seed=4)
    assert all(2 <= len(c.calls) <= 4 for c in a)
    keys = [(fn, args) for c in a for fn, args, _ in c.calls]
    assert len(keys) == len(set(keys))  # a call's duration is found from its arguments
    case = a[0]
    script = case.script("sync")
    assert script.count(cml.TRAP_FRAME) == len(case.calls)
    assert case.script("async").count(cml.TRAP_FRAME) == 1
    parser = cml.FrameParser([])
    events = parser.feed(script) + parser.close()
    assert sum(isinstance(e, cml.FrameError) for e in events) == len(case.calls)  # no tools here
    assert tokenize("[CALL] 12 [HEAD] f(\"Oslo\", 2024)") == [
        "[", "CALL", "]", " ", "12", " ", "[", "HEAD", "]", " ", "f", "(", '"', "Oslo", '"', ",",
        " ", "202", "4", ")",
    ]  # fmt: skip


def test_the_latency_model() -> None:
    cost = CostModel()
    for case in bfcl_workload(10, seed=1):
        sync, asynchronous = latency_model(case, "sync"), latency_model(case, "async")
        durations = [d for _, _, d in case.calls]
        instant = Case(case.id, tuple((f, a, 0.0) for f, a, _ in case.calls), case.final_words)
        decode = latency_model(instant, "async")  # the text alone
        assert asynchronous >= decode + max(durations) - 0.5 * len(case.calls)
        assert sync > asynchronous
        # synchronous calling pays every duration (minus what overlaps " [END] [TRAP][END]")
        assert sync > decode + sum(durations) - len(case.calls) * 12 * cost.step_time(
            tokens=1, context_tokens=500
        )


def test_the_virtual_model_pauses_and_takes_injections() -> None:
    async def go() -> list[tuple[float, str]]:
        model = VirtualCMLModel({"x": "a [TRAP][END] b"}, prompt_tokens=10)
        seen: list[tuple[float, str]] = []
        async with (
            model.session(LLMRequest(prompt="x"), pause=[cml.TRAP_FRAME]) as s,
            anyio.create_task_group() as tg,
        ):

            async def inject_later() -> None:
                await anyio.sleep(5)
                assert await s.inject("[INTR] 1 [HEAD] 2 [END]", after=1) is False
                assert await s.inject("[INTR] 1 [HEAD] 2 [END]", after=s.n)

            tg.start_soon(inject_later)
            async for piece in s:
                seen.append((anyio.current_time(), piece.text))
        return seen

    seen = anyio.run(
        go, backend="trio", backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)}
    )
    text = "".join(t for _, t in seen)
    assert text == "a [TRAP][END] b"
    resumed = next(t for t, tok in seen if tok == "b")
    assert resumed > 5.0  # it waited at the trap until the injection
    assert seen[0][0] > 0.004  # the prompt's prefill step


def test_quick_measure_reports_both_targets() -> None:
    ticks: list[int] = []
    rows, targets = measure_async(calls=12, seed=2, advance=lambda: ticks.append(1))
    assert len(ticks) == 3 * 12  # per case and mode, for a progress bar
    assert set(targets) == {"bfcl_async_speedup_vs_sync", "bfcl_async_gap_to_latency_model"}
    by_mode = {r["mode"]: r for r in rows}
    assert set(by_mode) == {"sync", "async_trap", "async_each", "summary"}
    for mode in ("sync", "async_trap", "async_each"):
        assert by_mode[mode]["intr_frames"] == by_mode[mode]["calls"]  # every result delivered
        assert abs(by_mode[mode]["gap_to_model"]) < 0.05
    speedup = targets["bfcl_async_speedup_vs_sync"]
    assert speedup.value == pytest.approx(by_mode["summary"]["speedup_async_trap_vs_sync"], 1e-3)
    assert speedup.value > 1.3 and speedup.aim == 1.6 and speedup.better == "higher"
    gap = targets["bfcl_async_gap_to_latency_model"]
    assert gap.aim == 0.10 and gap.better == "lower" and gap.met
    assert by_mode["summary"]["conveyor_head_start_ms"] > 0  # tools started before [END]


@pytest.mark.llamacpp
def test_the_real_case_on_llama_server(llama_server_binary: object) -> None:
    rows = measure_llamacpp(seeds=(4, 10), max_tokens=120)
    assert [(r["policy"], r["seed"]) for r in rows] == [
        ("trap", 4),
        ("trap", 10),
        ("each", 4),
        ("each", 10),
    ]
    for row in rows:
        assert row["engine"] == "llama-server" and row["wall_s"] > 0
        if not row["unclosed"]:
            assert row["errors"] == 0 and row["resumed_requests"] >= 0


@pytest.fixture
def llama_server_binary() -> object:
    from integrations.llamacpp import find

    found = find()
    if found is None:
        pytest.skip("llama-server is not built: python3 -m integrations.llamacpp build")
    return found


def test_a_given_number_of_cases_wins_over_quick() -> None:
    """``legato bench tools --quick --programs N`` gives part (b) N cases, as its help says
    (``quick`` used to override them with 30)."""
    rows, _ = measure_async(calls=4, seed=1, quick=True)
    assert {r["cases"] for r in rows if r["mode"] != "summary"} == {4}
    with pytest.raises(ValueError, match="calls must be >= 1"):
        measure_async(calls=0)
