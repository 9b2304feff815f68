"""Reading llama-architecture GGUF files: the hyperparameters, the tokenizer metadata and the
weights (F32, F16 and Q8_0 tensors, all returned as float32 arrays)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["GGUFModel", "LlamaConfig", "ModelFileError", "load_gguf"]

Array = npt.NDArray[np.float32]


class ModelFileError(ValueError):
    """A model file is missing, corrupt, or of a kind the embedded engine cannot run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LlamaConfig:
    """Hyperparameters of a llama-architecture model."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    context_length: int
    rope_theta: float
    rms_eps: float

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.dim // self.n_heads


@dataclass(frozen=True, slots=True, kw_only=True)
class GGUFModel:
    """A loaded GGUF llama model: its config, float32 weights by GGUF tensor name (matrices as
    ``(out_features, in_features)``), and its tokenizer metadata."""

    path: Path
    config: LlamaConfig
    tensors: dict[str, Array]
    tokenizer: dict[str, Any]
    name: str


_SUPPORTED = {"F32", "F16", "Q8_0"}


def _field(reader: Any, key: str, path: Path, default: Any = None) -> Any:
    field = reader.get_field(key)
    if field is None:
        if default is not None:
            return default
        raise ModelFileError(f"{path}: missing metadata key {key!r}")
    return field.contents()


def load_gguf(path: str | Path) -> GGUFModel:
    """Load a llama GGUF file; ``ModelFileError`` naming the file and the problem otherwise."""
    import gguf

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    try:
        reader = gguf.GGUFReader(p)
    except Exception as exc:  # the reader raises ValueError, struct.error, IndexError...
        raise ModelFileError(
            f"{p}: not a readable GGUF file ({type(exc).__name__}: {exc})"
        ) from exc
    arch = _field(reader, "general.architecture", p)
    if arch != "llama":
        raise ModelFileError(
            f"{p}: architecture {arch!r} is not supported; the embedded engine runs 'llama' models"
        )
    n_heads = int(_field(reader, "llama.attention.head_count", p))
    tensors: dict[str, Array] = {}
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind not in _SUPPORTED:
            raise ModelFileError(
                f"{p}: tensor {t.name!r} has type {kind}; "
                f"supported: {', '.join(sorted(_SUPPORTED))}"
            )
        data = gguf.quants.dequantize(t.data, t.tensor_type) if kind == "Q8_0" else t.data
        tensors[t.name] = np.ascontiguousarray(data, dtype=np.float32)
    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise ModelFileError(f"{p}: missing tensor 'token_embd.weight'")
    config = LlamaConfig(
        vocab_size=embd.shape[0],
        dim=int(_field(reader, "llama.embedding_length", p)),
        n_layers=int(_field(reader, "llama.block_count", p)),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", p, n_heads)),
        ffn_dim=int(_field(reader, "llama.feed_forward_length", p)),
        context_length=int(_field(reader, "llama.context_length", p)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", p, 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", p, 1e-5)),
    )
    if "output.weight" not in tensors:  # tied embeddings
        tensors["output.weight"] = embd
    required = ["output_norm.weight"] + [
        f"blk.{i}.{n}.weight"
        for i in range(config.n_layers)
        for n in (
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        )
    ]
    missing = [n for n in required if n not in tensors]
    if missing:
        more = " ..." if len(missing) > 4 else ""
        raise ModelFileError(f"{p}: missing tensors {missing[:4]}{more}")
    expected_q = (config.n_heads * config.head_dim, config.dim)
    if tensors["blk.0.attn_q.weight"].shape != expected_q:
        raise ModelFileError(
            f"{p}: blk.0.attn_q.weight has shape {tensors['blk.0.attn_q.weight'].shape}, "
            f"expected {expected_q} from the metadata"
        )
    tok: dict[str, Any] = {}
    for key in (
        "model",
        "pre",
        "tokens",
        "merges",
        "token_type",
        "bos_token_id",
        "eos_token_id",
        "chat_template",
        "add_bos_token",
    ):
        field = (
            reader.get_field(f"tokenizer.ggml.{key}")
            if key != "chat_template"
            else (reader.get_field("tokenizer.chat_template"))
        )
        if field is not None:
            tok[key] = field.contents()
    name = reader.get_field("general.name")
    return GGUFModel(
        path=p,
        config=config,
        tensors=tensors,
        tokenizer=tok,
        name=str(name.contents()) if name is not None else p.stem,
    )
