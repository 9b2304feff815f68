"""Engine test fixtures: the tiny model (made once per session in a temporary cache)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.engine import (
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
