"""Fixtures for the engine-launcher tests: the llama-server binary and a tiny GGUF model.

The binary is never built here (that takes minutes): run ``python3 -m integrations.llamacpp
build`` first, as CI does. Without it the tests that need it are skipped, or fail when
``LEGATO_REQUIRE_LLAMA_SERVER=1``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from integrations.llamacpp import cached_binary_path, find

TINY_VOCAB_BYTES = 256
"""The fallback model's vocabulary: 256 byte tokens, a few merges, one end-of-text token."""


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


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE vocabularies)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def write_tiny_llama_gguf(path: Path, *, seed: int = 0, dim: int = 64, layers: int = 2) -> Path:
    """Write a random-weight llama GGUF with a byte-level BPE tokenizer (f32, about 0.5 MB)."""
    import gguf

    rng = np.random.default_rng(seed)
    chars = _bytes_to_unicode()
    tokens = [chars[b] for b in range(TINY_VOCAB_BYTES)]
    merge_pairs = [("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġt", "he")]
    merges = [f"{a} {b}" for a, b in merge_pairs]
    tokens += [a + b for a, b in merge_pairs]
    eos = len(tokens)
    tokens.append("<|endoftext|>")
    types = [gguf.TokenType.NORMAL] * (len(tokens) - 1) + [gguf.TokenType.CONTROL]
    vocab, heads, ffn = len(tokens), 4, 4 * dim

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("legato-test-tiny")
    writer.add_context_length(2048)
    writer.add_embedding_length(dim)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(dim // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)

    def weight(*shape: int) -> Any:
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(vocab, dim))
    writer.add_tensor("output_norm.weight", np.ones(dim, dtype=np.float32))
    writer.add_tensor("output.weight", weight(vocab, dim))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(dim, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(dim, dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(dim, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ffn, dim))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ffn, dim))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(dim, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama GGUF: from the project's model maker when present, else written here."""
    out = tmp_path_factory.mktemp("llamacpp-model")
    try:
        make = importlib.import_module("orchestrator.engine._make")
    except ImportError:
        return write_tiny_llama_gguf(out / "tiny.gguf")
    made = make.make_model("tiny", seed=0, out=out)
    return Path(made.gguf)
