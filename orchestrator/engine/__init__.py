"""The embedded engine: llama GGUF models run with numpy under continuous batching, a paged KV
cache with prefix caching and time-to-live pins, pure batch policies, virtual time, and an
OpenAI-compatible HTTP server. No downloads: the default model (``demo``) was trained here and
ships with Legato; presets with random weights are made locally (``make_model``).

    engine, name = build_engine()                # the shipped demo model
    engine, name = build_engine("tiny")          # a preset, made and cached on first use
    async with anyio.create_task_group() as tg:
        await tg.start(engine.serve)
        tokens, finish = await engine.complete(EngineRequest(prompt=[1, 2, 3]))
"""

from orchestrator.engine._cost import CostModel
from orchestrator.engine._engine import (
    Engine,
    EngineRequest,
    Event,
    FinishEvent,
    RequestRejected,
    TokenEvent,
)
from orchestrator.engine._gguf import GGUFModel, LlamaConfig, ModelFileError, load_gguf
from orchestrator.engine._kv import BlockPool, BlockTable, OutOfBlocks
from orchestrator.engine._load import (
    BATCH_POLICIES,
    DEFAULT_MODEL,
    TRAINED_MODELS,
    build_engine,
    resolve_model,
    trained_model,
    virtual_engine,
)
from orchestrator.engine._make import PRESETS, ModelFiles, Preset, cached_model, make_model
from orchestrator.engine._model import LlamaModel, SeqWork
from orchestrator.engine._sampler import Sampled, SampleParams, sample
from orchestrator.engine._tokenizer import EngineTokenizer, WordTokenizer

__all__ = [
    "BATCH_POLICIES",
    "DEFAULT_MODEL",
    "PRESETS",
    "TRAINED_MODELS",
    "BlockPool",
    "BlockTable",
    "CostModel",
    "Engine",
    "EngineRequest",
    "EngineTokenizer",
    "Event",
    "FinishEvent",
    "GGUFModel",
    "LlamaConfig",
    "LlamaModel",
    "ModelFileError",
    "ModelFiles",
    "OutOfBlocks",
    "Preset",
    "RequestRejected",
    "SampleParams",
    "Sampled",
    "SeqWork",
    "TokenEvent",
    "build_engine",
    "cached_model",
    "load_gguf",
    "make_model",
    "resolve_model",
    "sample",
    "trained_model",
    "virtual_engine",
    "WordTokenizer",
]
