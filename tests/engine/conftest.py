"""Engine test fixtures: the tiny model (made once per session in a temporary cache)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

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


@contextlib.asynccontextmanager
async def serving(
    tiny: GGUFModel, tokenizer: EngineTokenizer, *, num_blocks: int, context_length: int
) -> AsyncIterator[Engine]:
    """An engine on the tiny model with ``num_blocks`` blocks of 16, serving in a task group
    (stopped on leaving)."""
    model = LlamaModel(tiny, num_blocks=num_blocks, block_size=16)
    e = Engine(
        model,
        tokenizer,
        num_blocks=num_blocks,
        block_size=16,
        context_length=context_length,
        max_batch=8,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(e.serve)
        yield e
        tg.cancel_scope.cancel()


@pytest.fixture
def serve_tiny(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> Callable[..., AbstractAsyncContextManager[Engine]]:
    """``serving`` on the tiny model: ``async with serve_tiny(num_blocks=..., context_length=...)
    as engine``."""
    return functools.partial(serving, tiny, tokenizer)


@pytest.fixture
async def serving_engine(
    serve_tiny: Callable[..., AbstractAsyncContextManager[Engine]],
) -> AsyncIterator[Engine]:
    """An engine on the tiny model, serving in a task group (stopped afterwards)."""
    async with serve_tiny(num_blocks=128, context_length=1024) as e:
        yield e
