"""The embedded engine against llama.cpp's llama-server on the same GGUF files: the same greedy
tokens, and Legato programs running through the llama.cpp dialect, streaming and not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import orchestrator
from integrations.llamacpp import LlamaServer
from orchestrator.backends import LLMRequest, Message, OpenAICompatible
from orchestrator.cli import load_program
from orchestrator.engine import (
    EngineRequest,
    EngineTokenizer,
    ModelFiles,
    SampleParams,
    build_engine,
    load_gguf,
    make_model,
)

pytestmark = [pytest.mark.http, pytest.mark.llamacpp]

PROMPTS = [
    "SELECT name FROM users WHERE age > 30",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    '1. search("tides")\n2. search("moon")\n3. math("$1 + $2")\njoin()',
    "The quick brown fox jumps over the lazy dog. " * 12,
    '[CALL] 1 [HEAD] weather("Kyoto") [END]',
]


@pytest.fixture(scope="module", params=["tiny", "small"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return make_model(request.param, seed=3, out=tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def server(llama_server_binary: Path, model: ModelFiles) -> Iterator[LlamaServer]:
    with LlamaServer(model.gguf, binary=llama_server_binary, parallel=4) as s:
        yield s


def llama_greedy(server: LlamaServer, prompt: list[int], n: int) -> list[int]:
    r = httpx.post(
        f"{server.base}/completion",
        timeout=120,
        json={
            "prompt": prompt,
            "n_predict": n,
            "temperature": 0,
            "ignore_eos": True,
            "return_tokens": True,
            "cache_prompt": False,
        },
    )
    r.raise_for_status()
    tokens: list[int] = r.json()["tokens"]
    return tokens


def test_greedy_tokens_equal_llama_server(server: LlamaServer, model: ModelFiles) -> None:
    tok = EngineTokenizer.for_model(load_gguf(model.gguf))
    engine, _ = build_engine(model.gguf, kv_tokens=4096)

    async def ours(prompt: list[int], n: int) -> list[int]:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            events, _ = await engine.complete(
                EngineRequest(
                    prompt=prompt,
                    params=SampleParams(max_tokens=n, temperature=0.0, ignore_eos=True),
                )
            )
            tg.cancel_scope.cancel()
        return [e.token for e in events]

    agree = 0
    for text in PROMPTS:
        ids = tok.encode(text)
        theirs = llama_greedy(server, ids, 24)
        mine = anyio.run(ours, ids, 24)
        agree += mine == theirs
        # float summation order differs between the two; a near-tie may flip late, never early
        assert mine[:8] == theirs[:8], text
    assert agree >= len(PROMPTS) - 1


@pytest.mark.timeout(300)  # random weights decode to max_tokens on a 29M model: slow on 2 cores
def test_programs_run_through_the_llamacpp_dialect(server: LlamaServer) -> None:
    triage = load_program("examples/triage.py")
    research = load_program("examples/research.py")

    async def main() -> tuple[list[object], str, str]:
        async with OpenAICompatible(server.url, dialect="llamacpp") as backend:
            async with orchestrator.Orchestrator(backend, max_in_flight=4) as orch:
                handles = [await orch.submit(triage, f"ticket {i}") for i in range(3)]
                handles.append(await orch.submit(research, "tides"))
                results = [await h.result() for h in handles]
            streamed = "".join(
                [
                    piece
                    async for piece in backend.stream(
                        LLMRequest(
                            messages=(Message("user", "hello"),), max_tokens=16, temperature=0.0
                        )
                    )
                ]
            )
            whole = await backend.complete(
                LLMRequest(messages=(Message("user", "hello"),), max_tokens=16, temperature=0.0)
            )
        return results, streamed, whole.text

    results, streamed, whole = anyio.run(main)
    for r in results[:3]:
        assert isinstance(r, dict) and r["label"] in {"bug", "billing", "other"}  # GBNF choice
    assert isinstance(results[3], str)
    assert streamed == whole
