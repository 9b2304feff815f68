"""Engine test fixtures: the tiny model (made once per session in a temporary cache)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from orchestrator.engine import (
    Engine,
    EngineTokenizer,
    GGUFModel,
    LlamaModel,
    ModelFiles,
    load_gguf,
    make_model,
)


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return make_model("tiny", seed=0, out=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny(tiny_files: ModelFiles) -> GGUFModel:
    return load_gguf(tiny_files.gguf)


@pytest.fixture(scope="session")
def tokenizer(tiny: GGUFModel) -> EngineTokenizer:
    return EngineTokenizer.for_model(tiny)


@pytest.fixture
def model(tiny: GGUFModel) -> Iterator[LlamaModel]:
    return LlamaModel(tiny, num_blocks=64, block_size=16)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def serving_engine(tiny: GGUFModel, tokenizer: EngineTokenizer) -> AsyncIterator[Engine]:
    """An engine on the tiny model, serving in a task group (stopped afterwards)."""
    model = LlamaModel(tiny, num_blocks=128, block_size=16)
    e = Engine(model, tokenizer, num_blocks=128, block_size=16, context_length=1024, max_batch=8)
    async with anyio.create_task_group() as tg:
        await tg.start(e.serve)
        yield e
        tg.cancel_scope.cancel()
