"""Building an engine from a model name or path: the shipped trained model (``demo``, the
default), presets made on first use and cached, or a GGUF file."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Final

from orchestrator.engine._cost import CostModel
from orchestrator.engine._engine import Engine
from orchestrator.engine._gguf import ModelFileError, load_gguf
from orchestrator.engine._make import PRESETS, cached_model
from orchestrator.engine._model import LlamaModel
from orchestrator.engine._tokenizer import EngineTokenizer
from orchestrator.scheduler import (
    POLICIES,
    BatchPolicy,
    FCFSBatch,
    PolicyBatch,
    PriorityBatch,
    make_policy,
)

__all__ = [
    "BATCH_POLICIES",
    "DEFAULT_MODEL",
    "TRAINED_MODELS",
    "build_engine",
    "resolve_model",
    "trained_model",
    "virtual_engine",
]

DEFAULT_MODEL: Final = "demo"
"""The model the embedded engine runs when none is named: the trained demo model shipped with
Legato (``orchestrator/engine/models/demo``; see ``legato model train``)."""

TRAINED_MODELS: Final = ("demo",)
"""Trained models shipped with Legato, by name (each a folder of ``orchestrator.engine``'s
package data holding one GGUF file, its ``tokenizer.json`` and its manifest)."""


def trained_model(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of the shipped trained model ``name``.

    Raises:
        ModelFileError: no such shipped model, or its file is missing from this installation.
    """
    if name not in TRAINED_MODELS:
        raise ModelFileError(f"no shipped model {name!r}; shipped: {', '.join(TRAINED_MODELS)}")
    folder = Path(str(importlib.resources.files("orchestrator.engine") / "models" / name))
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        raise ModelFileError(
            f"{folder}: the shipped model {name!r} is missing (expected one .gguf file); "
            "make it with `legato model train --preset demo --out DIR` and pass DIR"
        )
    return found[0]


BATCH_POLICIES: dict[str, type[FCFSBatch] | type[PriorityBatch]] = {
    "fcfs": FCFSBatch,
    "priority": PriorityBatch,
}
"""Batch policies by name (``legato engine serve --policy``)."""


def resolve_model(model: str | Path, *, seed: int = 0) -> Path:
    """The GGUF file for ``model``: a shipped trained model (``demo``), a preset name (made and
    cached on first use), or a path (a GGUF file or a folder holding one)."""
    if isinstance(model, str) and model in TRAINED_MODELS:
        return trained_model(model)
    if isinstance(model, str) and model in PRESETS:
        return cached_model(model, seed=seed).gguf
    path = Path(model)
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) != 1:
            raise ModelFileError(
                f"{path}: expected one .gguf file in the folder, found {len(found)}"
            )
        return found[0]
    if not path.exists():
        raise ModelFileError(
            f"{model}: no such model file, and not a model name "
            f"({', '.join([*TRAINED_MODELS, *sorted(PRESETS)])})"
        )
    return path


def _policy(policy: str | BatchPolicy) -> BatchPolicy:
    """A batch policy by name: ``fcfs``, ``priority`` (follow the priority hints), or any
    request policy (``plas``, ``atlas``, ``adaptive``...) run inside the batcher."""
    if not isinstance(policy, str):
        return policy
    if policy in BATCH_POLICIES:
        return BATCH_POLICIES[policy]()
    if policy in POLICIES:
        return PolicyBatch(make_policy(policy))
    known = sorted({*BATCH_POLICIES, *POLICIES})
    raise ValueError(f"unknown batch policy {policy!r}; known: {', '.join(known)}")


def build_engine(
    model: str | Path = DEFAULT_MODEL,
    *,
    seed: int = 0,
    kv_tokens: int = 16384,
    block_size: int = 16,
    max_batch: int = 16,
    max_step_tokens: int = 512,
    policy: str | BatchPolicy = "fcfs",
) -> tuple[Engine, str]:
    """An engine running ``model`` (``demo``, a preset or a GGUF path) and the model's name.

    ``kv_tokens`` sets the KV cache budget (rounded up to whole blocks).
    """
    path = resolve_model(model, seed=seed)
    gguf = load_gguf(path)
    tokenizer = EngineTokenizer.for_model(gguf)
    num_blocks = -(-kv_tokens // block_size)
    llama = LlamaModel(gguf, num_blocks=num_blocks, block_size=block_size)
    engine = Engine(
        llama,
        tokenizer,
        num_blocks=num_blocks,
        block_size=block_size,
        context_length=gguf.config.context_length,
        max_batch=max_batch,
        max_step_tokens=max_step_tokens,
        policy=_policy(policy),
    )
    named = isinstance(model, str) and (model in PRESETS or model in TRAINED_MODELS)
    name = model if named else gguf.name
    return engine, str(name)


def virtual_engine(
    *,
    cost: CostModel | None = None,
    kv_tokens: int = 262_144,
    block_size: int = 16,
    context_length: int = 8192,
    max_batch: int = 256,
    max_step_tokens: int = 8192,
    policy: str | BatchPolicy = "fcfs",
) -> Engine:
    """An engine in virtual time: no model, step times from ``cost`` (default: an 8B model on
    one H100), so benchmarks run thousands of requests through the real batcher in seconds
    under a mock clock. Tokens have no content; give lengths with ``max_tokens``."""
    num_blocks = -(-kv_tokens // block_size)
    return Engine(
        None,
        None,
        num_blocks=num_blocks,
        block_size=block_size,
        context_length=context_length,
        max_batch=max_batch,
        max_step_tokens=max_step_tokens,
        policy=_policy(policy),
        cost=cost or CostModel(),
    )
