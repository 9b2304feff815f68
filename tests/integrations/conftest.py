"""Fixtures for the engine-launcher tests: the llama-server binary and a tiny made model.

The binary is never built here (that takes minutes): run ``python3 -m integrations.llamacpp
build`` first, as CI does. Without it the tests that need it are skipped, or fail when
``LEGATO_REQUIRE_LLAMA_SERVER=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integrations.llamacpp import cached_binary_path, find
from orchestrator.engine import ModelFiles, make_model


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The built ``llama-server``; skip (fail under ``LEGATO_REQUIRE_LLAMA_SERVER=1``) if none."""
    found = find()
    if found is None:
        message = (
            f"llama-server is not built (expected {cached_binary_path()}): "
            "run `python3 -m integrations.llamacpp build`"
        )
        if os.environ.get("LEGATO_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """The ``tiny`` preset (2 layers, d=64, f32), made once per session in a temporary folder."""
    return make_model("tiny", seed=0, out=tmp_path_factory.mktemp("llamacpp-tiny"))


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model: ModelFiles) -> Path:
    """The tiny model's GGUF file."""
    return tiny_model.gguf
