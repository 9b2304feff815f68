"""Failures: tool errors fail only their dependants, backend errors are retried or not by kind,
timeouts and cancellation leave nothing running."""

from __future__ import annotations

import anyio
import pytest

import dsl
import orchestrator
from orchestrator import (
    BackendError,
    BackendRejected,
    BackendUnavailable,
    ConstraintViolation,
    DependencyFailed,
    ProgramCancelled,
    RetryPolicy,
    ToolError,
)
from orchestrator.testing import ScriptedBackend

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(retries=2, backoff=0.001, jitter=0.0)


class Boom(Exception):
    pass


@dsl.tool
async def explode(x: str) -> str:
    raise Boom(f"cannot handle {x}")


@dsl.tool
async def slow_ok(x: str) -> str:
    await anyio.sleep(0.1)
    return x + "!"


@dsl.program
async def branches() -> dict[str, str]:
    bad = explode(dsl.gen("a", name="a"))
    dependant = dsl.gen("after {{b}}", b=bad, name="dependant")
    independent = slow_ok(dsl.gen("c", name="c"))
    return {"dependant": await dependant, "independent": await independent}


async def test_tool_error_names_node_tool_and_cause_and_spares_independent_branches() -> None:
    backend = ScriptedBackend(lambda r: r.text)
    async with orchestrator.Orchestrator(backend, retry=FAST) as orch:
        handle = await orch.submit(branches)
        with pytest.raises(DependencyFailed) as info:
            await handle.result()
    err = info.value
    assert err.node == "dependant" and err.dependency == "explode_1"
    root = err.error
    assert isinstance(root, ToolError)
    assert root.node == "explode_1" and root.tool == "explode"
    assert isinstance(root.cause, Boom) and "cannot handle a" in str(root)
    stats = handle.stats
    assert stats["explode_1"].status == "failed"
    assert stats["explode_1"].attempts == 1  # tools are not retried unless they ask
    assert stats["dependant"].status == "skipped"
    assert stats["slow_ok_1"].status == "ok"  # the independent branch ran to its end
    assert [c.request.node for c in backend.calls if c.request.node == "dependant"] == []
    assert handle.done


async def test_awaited_tool_error_can_be_handled_by_the_program() -> None:
    @dsl.program
    async def careful() -> str:
        try:
            return await explode("x")
        except ToolError as exc:
            return f"recovered from {exc.tool}"

    assert await orchestrator.arun(careful, backend=ScriptedBackend()) == "recovered from explode"


async def test_unawaited_failure_still_fails_the_program() -> None:
    @dsl.program
    async def careless() -> str:
        explode("x")
        return "finished"

    with pytest.raises(ToolError, match="explode"):
        await orchestrator.arun(careless, backend=ScriptedBackend())


async def test_nothing_runs_after_run_raises() -> None:
    ended: list[str] = []

    @dsl.tool
    async def slow() -> str:
        await anyio.sleep(0.1)
        ended.append("slow")
        return "done"

    @dsl.program
    async def p() -> str:
        s = slow()
        await explode("x")  # raises in the body
        return await s

    with pytest.raises(ToolError):
        await orchestrator.arun(p, backend=ScriptedBackend())
    assert ended == ["slow"]  # the in-flight branch finished before run returned


async def test_4xx_is_not_retried_and_carries_the_engine_message() -> None:
    backend = ScriptedBackend(
        {"x": BackendRejected("engine says: prompt too long", backend="eng", status=400)}
    )

    @dsl.program
    async def p() -> str:
        return await dsl.gen("x", name="call")

    async with orchestrator.Orchestrator(backend, retry=FAST) as orch:
        h = await orch.submit(p)
        with pytest.raises(BackendRejected, match="prompt too long") as info:
            await h.result()
    assert info.value.node == "call" and not info.value.retryable
    assert h.stats["call"].attempts == 1 and len(backend.calls) == 1


async def test_retryable_errors_are_retried_then_reported_as_unavailable() -> None:
    down = BackendError("503 service unavailable", backend="eng", retryable=True, status=503)
    backend = ScriptedBackend({"x": down}, name="eng")

    @dsl.program
    async def p() -> str:
        return await dsl.gen("x", name="call")

    async with orchestrator.Orchestrator(backend, retry=FAST) as orch:
        h = await orch.submit(p)
        with pytest.raises(BackendUnavailable, match=r"'eng'.*3 attempts.*503") as info:
            await h.result()
    assert info.value.backend == "eng" and info.value.node == "call"
    assert isinstance(info.value.__cause__, BackendError)
    assert h.stats["call"].attempts == 3 and len(backend.calls) == 3


async def test_a_retry_can_succeed() -> None:
    flaky = BackendError("502", backend="eng", retryable=True, status=502)
    backend = ScriptedBackend({"x": [flaky, "fine"]})

    @dsl.program
    async def p() -> str:
        return await dsl.gen("x", name="call")

    async with orchestrator.Orchestrator(backend, retry=FAST) as orch:
        h = await orch.submit(p)
        assert await h.result() == "fine"
    assert h.stats["call"].attempts == 2 and h.stats["call"].retries == 1


async def test_a_retry_s_wait_counts_from_when_it_is_ready_again() -> None:
    """The policy counts a program's waits from each call's arrival: a retry arrives after its
    backoff, so the first attempt's wait and the backoff are not counted again."""
    from orchestrator.scheduler import FCFS, CallInfo

    admitted: list[tuple[float, float]] = []

    class Watching(FCFS):
        def on_admit(self, call: CallInfo, now: float) -> None:
            admitted.append((call.arrival, now))

    flaky = BackendError("502", backend="eng", retryable=True, status=502)
    backend = ScriptedBackend({"x": [flaky, "fine"]}, latency=0.05)

    @dsl.program
    async def p() -> str:
        return await dsl.gen("x", name="call")

    retry = RetryPolicy(retries=1, backoff=0.2, jitter=0.0)
    async with orchestrator.Orchestrator(backend, retry=retry, policy=Watching()) as orch:
        h = await orch.submit(p)
        assert await h.result() == "fine"
    (_, first_admit), (second_arrival, second_admit) = admitted
    assert second_arrival >= first_admit + 0.2  # after the backoff, not the first arrival
    assert second_admit - second_arrival < 0.05


async def test_per_node_timeout_and_retries() -> None:
    backend = ScriptedBackend(default="late", latency=5.0)

    @dsl.program
    async def p() -> str:
        return await dsl.gen("x", timeout=0.05, retries=1, name="call")

    with anyio.fail_after(3):
        async with orchestrator.Orchestrator(backend, retry=FAST) as orch:
            h = await orch.submit(p)
            with pytest.raises(BackendUnavailable, match=r"within 0\.05s"):
                await h.result()
    assert h.stats["call"].attempts == 2


async def test_tool_timeout() -> None:
    @dsl.tool(timeout=0.05)
    async def hang() -> str:
        await anyio.sleep(10)
        return "never"

    @dsl.program
    async def p() -> str:
        return await hang()

    with anyio.fail_after(3), pytest.raises(ToolError, match="timed out") as info:
        await orchestrator.arun(p, backend=ScriptedBackend())
    assert isinstance(info.value.cause, TimeoutError)


async def test_tool_retries_until_it_works() -> None:
    calls: list[int] = []

    @dsl.tool(retries=2)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("transient")
        return "ok"

    @dsl.program
    async def p() -> str:
        return await flaky()

    async with orchestrator.Orchestrator(ScriptedBackend(), retry=FAST) as orch:
        h = await orch.submit(p)
        assert await h.result() == "ok"
    assert len(calls) == 3 and h.stats["flaky_1"].attempts == 3


async def test_cancel_stops_in_flight_calls_and_tools() -> None:
    backend = ScriptedBackend(default="late", latency=10.0)

    @dsl.tool
    async def long_tool() -> str:
        await anyio.sleep(10)
        return "never"

    @dsl.program
    async def p() -> list[str]:
        return [await dsl.gen("x", name="call"), await long_tool()]

    with anyio.fail_after(3):
        async with orchestrator.Orchestrator(backend) as orch:
            h = await orch.submit(p)
            await anyio.sleep(0.05)
            h.cancel()
            with pytest.raises(ProgramCancelled):
                await h.result()
    assert h.stats["call"].status == "cancelled"
    assert len(backend.calls) == 1 and backend.calls[0].end - backend.calls[0].start < 1.0


async def test_select_answer_outside_the_options() -> None:
    @dsl.program
    async def p() -> str:
        return await dsl.select("Pick", options=["red", "green"], name="pick")

    with pytest.raises(ConstraintViolation, match="none of the options") as info:
        await orchestrator.arun(p, backend=ScriptedBackend(default="blue"))
    assert info.value.node == "pick" and info.value.text == "blue"


async def test_template_errors_are_raised_before_any_request() -> None:
    backend = ScriptedBackend(default="ok")

    @dsl.program
    async def p() -> str:
        a = dsl.gen("fine")
        return await dsl.gen("uses {{missing}}", a=a)

    with pytest.raises(dsl.TemplateError, match="missing"):
        await orchestrator.arun(p, backend=backend)
    # the first, valid call may be in flight when the second fails to build; nothing else is sent
    assert all(c.request.text == "fine" for c in backend.calls)


async def test_bad_program_arguments_fail_at_submit() -> None:
    @dsl.program
    async def p(a: int) -> int:
        return a

    async with orchestrator.Orchestrator(ScriptedBackend()) as orch:
        with pytest.raises(dsl.ProgramError, match="bad arguments"):
            await orch.submit(p, 1, 2)


def test_bad_backend_settings() -> None:
    with pytest.raises(orchestrator.ConfigError, match="neither 'local\\[:MODEL\\]' nor a URL"):
        orchestrator.Orchestrator("localhost:8000")
    with pytest.raises(orchestrator.ConfigError, match="max_in_flight"):
        orchestrator.Orchestrator(ScriptedBackend(), max_in_flight=0)
    with pytest.raises(orchestrator.ConfigError, match="unknown policy 'nope'"):
        orchestrator.Orchestrator(ScriptedBackend(), policy="nope")


async def test_a_failing_body_notes_the_failures_nobody_awaited() -> None:
    """The body's own error is the program's; a tool that failed on the side, never awaited,
    is not lost: it is noted on that error."""

    @dsl.program
    async def p() -> str:
        explode("side")  # started, never awaited
        await slow_ok("wait")  # the side tool has failed by now
        raise Boom("the body's own")

    async with orchestrator.Orchestrator(ScriptedBackend(default="x")) as orch:
        h = await orch.submit(p)
        with pytest.raises(Boom, match="the body's own") as info:
            await h.result()
    assert any("also failed, unobserved" in n and "side" in n for n in info.value.__notes__)


async def test_failures_nobody_awaited_fail_the_program_all_named() -> None:
    @dsl.program
    async def p() -> str:
        explode("first")
        explode("second")
        return await slow_ok("done")

    async with orchestrator.Orchestrator(ScriptedBackend(default="x")) as orch:
        h = await orch.submit(p)
        with pytest.raises(ToolError) as info:
            await h.result()
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1 and "also failed, unobserved" in notes[0]
    text = f"{info.value} {notes[0]}"
    assert "first" in text and "second" in text
