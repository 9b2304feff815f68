"""The runtime holds together when something around a program fails: the orchestrator stops
under it, a policy or a backend hook raises, a replica's stream is left early, an engine's loop
fails to start, or a setting is wrong."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import dsl
import orchestrator
from orchestrator import BackendError, ConfigError, ProgramCancelled
from orchestrator.backends import Completion, LLMRequest, LocalBackend, Replicas
from orchestrator.engine import virtual_engine
from orchestrator.scheduler import FCFS, CallInfo
from orchestrator.testing import ScriptedBackend

pytestmark = pytest.mark.anyio


@dsl.program
async def ask(tag: str) -> str:
    return await dsl.gen("{{tag}}", tag=tag, name="call")


@dsl.program
async def ask_briefly(tag: str) -> str:
    return await dsl.gen("{{tag}}", tag=tag, name="call", max_tokens=7)


class _Stop(Exception):
    pass


async def test_a_program_whose_orchestrator_stops_under_it_ends_cancelled() -> None:
    """An exception in the ``async with`` block cancels the running programs: a handle awaited
    elsewhere gets ``ProgramCancelled`` (it waited forever before), and the policy learns of
    the program's end."""
    ended: list[str] = []

    class Watching(FCFS):
        def on_program_end(self, program: str, kind: str, now: float) -> None:
            ended.append(program)

    outcome: list[BaseException] = []

    async def stop_under(tg: anyio.abc.TaskGroup) -> str:
        async with orchestrator.Orchestrator(
            ScriptedBackend(default="late", latency=10.0), policy=Watching()
        ) as orch:
            handle = await orch.submit(ask, "slow")

            async def wait() -> None:
                try:
                    await handle.result()
                except ProgramCancelled as exc:
                    outcome.append(exc)

            tg.start_soon(wait)
            await anyio.sleep(0.05)
            stopped.append(handle)
            raise _Stop

    stopped: list[orchestrator.ProgramHandle[str]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            with pytest.raises(_Stop):
                await stop_under(tg)
    handle = stopped[0]
    assert len(outcome) == 1 and "orchestrator stopped" in str(outcome[0])
    assert ended == [handle.id]
    assert handle.stats["call"].status == "cancelled"


async def test_a_policy_failing_at_a_program_s_end_is_logged_not_spread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Faulty(FCFS):
        def on_program_end(self, program: str, kind: str, now: float) -> None:
            if program.endswith("-0"):
                raise RuntimeError("policy bug")

    with caplog.at_level(logging.ERROR, logger="legato"):
        async with orchestrator.Orchestrator(
            ScriptedBackend(default="ok"), policy=Faulty()
        ) as orch:
            handles = [await orch.submit(ask, f"p{i}") for i in range(3)]
            assert [await h.result() for h in handles] == ["ok"] * 3
    assert "policy bug" in caplog.text and handles[0].id in caplog.text


async def test_a_backend_failing_to_release_is_logged_not_spread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class NoRelease(ScriptedBackend):
        async def release_program(self, program: str) -> None:
            raise RuntimeError("release refused")

    with caplog.at_level(logging.ERROR, logger="legato"):
        async with orchestrator.Orchestrator(NoRelease(default="ok")) as orch:
            handles = [await orch.submit(ask, f"p{i}") for i in range(2)]
            assert [await h.result() for h in handles] == ["ok", "ok"]
    failures = [r for r in caplog.records if r.getMessage().startswith("backend could not release")]
    assert sorted(r.getMessage() for r in failures) == [
        f"backend could not release program {h.id!r}" for h in handles
    ]


async def test_a_policy_failing_at_admission_gives_the_slot_back() -> None:
    """With one slot, a policy that fails on the first admission fails that call only; the
    slot is free again for the next program (it stayed taken before, and that program hung)."""

    class FailsOnce(FCFS):
        failed = False

        def on_admit(self, call: CallInfo, now: float) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("admission bug")

    with anyio.fail_after(5):
        async with orchestrator.Orchestrator(
            ScriptedBackend(default="ok"), policy=FailsOnce(), max_in_flight=1
        ) as orch:
            first = await orch.submit(ask, "first")
            with pytest.raises(Exception, match="admission bug"):
                await first.result()
            second = await orch.submit(ask, "second")
            assert await second.result() == "ok"
            assert orch.admission.in_flight == 0


class _Streaming(ScriptedBackend):
    """Streams forever and notes when its stream is closed."""

    closed = 0

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
                await anyio.lowlevel.checkpoint()
        finally:
            type(self).closed += 1

    async def complete(self, request: LLMRequest) -> Completion:  # pragma: no cover
        raise AssertionError("not used")


async def test_leaving_a_replica_stream_closes_the_replica_s_stream() -> None:
    _Streaming.closed = 0
    async with Replicas([_Streaming(), _Streaming()], balancer="round_robin") as group:
        request = LLMRequest(prompt="hi")
        pieces = group.stream(request)
        assert await pieces.__anext__() == "x"
        await pieces.aclose()  # type: ignore[attr-defined]
        assert _Streaming.closed == 1  # at once, not when garbage is collected
        assert group.loads == [0, 0]


async def test_an_engine_loop_failing_to_start_raises_its_own_error() -> None:
    engine = virtual_engine(kv_tokens=4096)

    async def broken(*, task_status: object = None) -> None:
        raise RuntimeError("the loop cannot start")

    engine.serve = broken  # type: ignore[method-assign]
    backend = LocalBackend(engine=engine)
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="the loop cannot start"):
        async with backend:
            pass  # pragma: no cover
    assert not backend.started


async def test_an_engine_failing_a_request_raises_not_returns_it() -> None:
    """The embedded engine failing one request (``error``) or stopping before it finished
    (``abort``: its loop failed) raises ``BackendError`` naming why, through ``complete``,
    ``stream`` and a program's call. Before, the call returned whatever text there was as a
    completion with finish reason "abort": a silent truncation."""
    engine = virtual_engine(kv_tokens=4096)
    accept = engine._accept

    def fails(s: object, *args: object) -> None:
        if getattr(s, "req").params.max_tokens == 7:  # noqa: B009 - the one request to fail
            raise RuntimeError("this request's step broke")
        accept(s, *args)  # type: ignore[arg-type]

    engine._accept = fails  # type: ignore[method-assign]
    request = LLMRequest(prompt="one two three", max_tokens=7)
    async with LocalBackend(engine=engine) as backend:
        with anyio.fail_after(10):
            with pytest.raises(BackendError, match="failed on this request: RuntimeError: this"):
                await backend.complete(request)
            with pytest.raises(BackendError, match="failed on this request") as caught:
                async for _ in backend.stream(request):
                    pass  # pragma: no cover
            assert not caught.value.retryable
            ok = await backend.complete(LLMRequest(prompt="one two three", max_tokens=3))
            assert ok.finish_reason == "length"  # the engine goes on
            async with orchestrator.Orchestrator(backend) as orch:
                handle = await orch.submit(ask_briefly, "x")
                with pytest.raises(BackendError, match="failed on this request"):
                    await handle.result()


async def test_an_engine_whose_loop_fails_raises_for_the_requests_it_held() -> None:
    engine = virtual_engine(kv_tokens=4096)

    async def fail_step() -> None:
        await anyio.sleep(0.01)
        raise RuntimeError("the step loop broke")

    async def ask_once() -> None:
        async with LocalBackend(engine=engine) as backend:
            with pytest.raises(BackendError, match="stopped before this request finished"):
                await backend.complete(LLMRequest(prompt="one two", max_tokens=3))

    engine._step = fail_step  # type: ignore[method-assign]
    with anyio.fail_after(10), pytest.raises(ExceptionGroup) as group:  # the loop's, at exit
        await ask_once()
    assert group.group_contains(RuntimeError, match="the step loop broke")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"policy": None}, "policy must be a policy name or an object with key"),
        ({"policy": object()}, "policy must be"),
        ({"max_in_flight": "4"}, "max_in_flight must be an integer >= 1, got '4'"),
        ({"max_in_flight": True}, "max_in_flight must be an integer"),
        ({"max_in_flight": 0}, "max_in_flight must be an integer >= 1, got 0"),
        ({"timeout": "5"}, "timeout must be seconds > 0 or None, got '5'"),
        ({"timeout": float("nan")}, "timeout must be seconds"),
        ({"timeout": 0}, "timeout must be seconds"),
        ({"retry": {"retries": 2}}, "retry must be a RetryPolicy or None"),
        ({"constraint_attempts": 0}, "constraint_attempts must be an integer >= 1"),
    ],
)
def test_a_bad_setting_is_named_before_anything_is_built(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        orchestrator.Orchestrator("local", **options)  # type: ignore[arg-type]
