"""The local model maker: a trained BPE tokenizer and seeded llama weights, as GGUF and HF files.

Model weights cannot be downloaded, so Legato makes its own (``legato model make``): a byte-level
BPE tokenizer trained with ``tokenizers`` on :func:`~orchestrator.engine._corpus.corpus_text`,
llama-architecture weights drawn from a seed, written as one GGUF file (what llama.cpp and the
embedded engine load) and a Hugging Face folder (what vLLM and transformers load) holding the
same weights. The models say nothing useful; they exist so that engines, batchers and
benchmarks run real forward passes with real tokenizers and agree with each other token for
token.

Layout: weights are drawn in GGUF's llama layout, numpy shape ``(out_features, in_features)``
(GGUF stores dims reversed, ``ne = [in, out]``, which is what llama.cpp expects). GGUF's Q and K
rows are permuted for llama.cpp's interleaved RoPE (pairs ``(2i, 2i+1)``) as llama.cpp's
``convert_hf_to_gguf.py`` does; the HF folder gets the inverse permutation, so that HF's
rotate-half RoPE (pairs ``(i, i + head_dim/2)``) computes the same function.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import gguf
import numpy as np
import numpy.typing as npt
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from orchestrator.engine._corpus import corpus_text

__all__ = [
    "CHAT_TEMPLATE",
    "PRESETS",
    "SPECIAL_TOKENS",
    "ModelFiles",
    "Preset",
    "cache_root",
    "cached_model",
    "hf_to_gguf_qk",
    "gguf_to_hf_qk",
    "make_model",
    "train_tokenizer",
    "write_model",
]

MAKER_VERSION: Final = 2
"""Bumped whenever the corpus, tokenizer or weights drawn for a given seed change; cached models
made by another version are made again."""

DTYPES: Final[tuple[str, ...]] = ("f32", "f16", "q8_0")
"""GGUF storage types :func:`make_model` writes (norms are always f32)."""

SPECIAL_TOKENS: Final[tuple[str, ...]] = ("<s>", "</s>", "<|im_start|>", "<|im_end|>")
"""Special tokens, ids 0..3 in this order: bos, eos, ChatML turn start, ChatML turn end."""
BOS_ID: Final = 0
EOS_ID: Final = 1
IM_START_ID: Final = 2
IM_END_ID: Final = 3

CHAT_TEMPLATE: Final = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML chat template (Jinja), written to the GGUF and to ``tokenizer_config.json``."""

MANIFEST: Final = "legato-model.json"
_WEIGHT_STD: Final = 0.02

F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Shape of a made model: llama architecture, RoPE theta 10000, RMS eps 1e-5; the output
    matrix is the token embedding when ``tied_embeddings`` (then the GGUF has no
    ``output.weight``, as llama.cpp allows, and the HF config says ``tie_word_embeddings``)."""

    name: str
    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ffn: int
    context_length: int = 2048
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tied_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        """Dimension of one attention head (``d_model // n_heads``)."""
        return self.d_model // self.n_heads

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """GGUF tensor names to numpy shapes ``(out, in)``, in drawing and writing order."""
        d, hd = self.d_model, self.head_dim
        shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (self.vocab_size, d)}
        for i in range(self.n_layers):
            shapes |= {
                f"blk.{i}.attn_norm.weight": (d,),
                f"blk.{i}.attn_q.weight": (self.n_heads * hd, d),
                f"blk.{i}.attn_k.weight": (self.n_kv_heads * hd, d),
                f"blk.{i}.attn_v.weight": (self.n_kv_heads * hd, d),
                f"blk.{i}.attn_output.weight": (d, self.n_heads * hd),
                f"blk.{i}.ffn_norm.weight": (d,),
                f"blk.{i}.ffn_gate.weight": (self.d_ffn, d),
                f"blk.{i}.ffn_up.weight": (self.d_ffn, d),
                f"blk.{i}.ffn_down.weight": (d, self.d_ffn),
            }
        shapes["output_norm.weight"] = (d,)
        if not self.tied_embeddings:
            shapes["output.weight"] = (self.vocab_size, d)
        return shapes

    @property
    def n_params(self) -> int:
        """Total number of parameters, embeddings and output included."""
        return sum(int(np.prod(shape)) for shape in self.tensor_shapes().values())


PRESETS: Final[Mapping[str, Preset]] = MappingProxyType({
    # 385,344 parameters: 1.5 MB in f32.
    "tiny": Preset(name="tiny", vocab_size=2048, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                   d_ffn=256),
    # 28,844,544 parameters (~29M): embeddings 2 x 2048 x 512 = 2,097,152; per layer attention
    # 512 x (512 + 256 + 256 + 512) = 786,432, MLP 3 x 512 x 1664 = 2,555,904, norms 1,024;
    # 8 layers = 26,746,880; final norm 512. d_ffn 1664 = 13 x 128 (a multiple of Q8_0's block
    # of 32, as every row length must be) is the multiple of 128 that lands closest to 29M.
    "small": Preset(name="small", vocab_size=2048, n_layers=8, d_model=512, n_heads=8,
                    n_kv_heads=4, d_ffn=1664),
})  # fmt: skip
"""The presets :func:`make_model` knows, by name."""


@dataclass(frozen=True, kw_only=True)
class ModelFiles:
    """Where a made model's files are.

    ``gguf`` is the model for llama.cpp and the embedded engine, ``tokenizer`` its
    ``tokenizer.json`` (for the ``tokenizers`` library), ``hf_dir`` the Hugging Face folder for
    vLLM and transformers, all inside ``root``.
    """

    preset: Preset
    seed: int
    dtype: str
    root: Path
    gguf: Path
    tokenizer: Path
    hf_dir: Path


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown model preset {name!r}; known presets: {known}") from None


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown model dtype {dtype!r}; known dtypes: {', '.join(DTYPES)}")


# --- tokenizer ---------------------------------------------------------------------------------

_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def _training_text(seed: int, texts: Iterable[str] | None = None) -> Iterator[str]:
    # Special tokens are whole tokens at encode time; keep their spelling out of the merges.
    pieces = corpus_text(seed).split("\n\n") if texts is None else texts
    for piece in pieces:
        yield from (part for part in _SPECIAL_RE.split(piece) if part)


def train_tokenizer(
    vocab_size: int, seed: int = 0, *, texts: Iterable[str] | None = None
) -> Tokenizer:
    """Train the byte-level BPE tokenizer on ``corpus_text(seed)``, or on ``texts`` when given;
    the same arguments give the same tokenizer.

    Ids 0..3 are :data:`SPECIAL_TOKENS`, then the 256 byte symbols of GPT-2's byte-level
    alphabet, then one token per merge.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(seed, texts), trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise RuntimeError(
            f"the corpus yields {tokenizer.get_vocab_size()} tokens, fewer than {vocab_size}"
        )
    return tokenizer


def _vocab(tokenizer: Tokenizer) -> tuple[list[str], list[int], list[str]]:
    """Tokens in id order, their GGUF token types, and the merges as ``"a b"`` strings."""
    by_id = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    tokens = [by_id[i] for i in range(len(by_id))]
    special = set(SPECIAL_TOKENS)
    types = [int(gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL) for t in tokens]
    raw: list[Any] = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw]
    return tokens, types, merges


# --- weights -----------------------------------------------------------------------------------


def hf_to_gguf_qk(w: npt.NDArray[Any], n_heads: int) -> npt.NDArray[Any]:
    """Permute HF Q or K rows into llama.cpp's order (``convert_hf_to_gguf.py``'s ``permute``).

    Within each head, HF row ``s * head_dim/2 + j`` (``s`` in {0, 1}) moves to row ``2j + s``.
    For K pass the number of KV heads.
    """
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def gguf_to_hf_qk(w: npt.NDArray[Any], n_heads: int) -> npt.NDArray[Any]:
    """Inverse of :func:`hf_to_gguf_qk`: llama.cpp's Q or K rows back into HF's order."""
    return (
        w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _draw_weights(preset: Preset, seed: int) -> dict[str, F32Array]:
    """Every tensor in GGUF layout, drawn in :meth:`Preset.tensor_shapes` order.

    Matrices are N(0, 0.02); the residual projections (attention output, FFN down) are scaled by
    ``1/sqrt(2 n_layers)`` as in GPT-2; norms are 1. Q and K are drawn with std
    ``1/sqrt(d_model)`` instead, so that attention scores have unit variance: at 0.02 every head
    attends almost uniformly, position and RoPE barely move the logits, and an engine with a
    broken RoPE or KV cache would still match a reference forward pass.
    """
    rng = np.random.default_rng(seed)
    residual_scale = 1.0 / np.sqrt(2.0 * preset.n_layers)
    weights: dict[str, F32Array] = {}
    for name, shape in preset.tensor_shapes().items():
        if len(shape) == 1:
            weights[name] = np.ones(shape, dtype=np.float32)
            continue
        std = _WEIGHT_STD
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            std = preset.d_model**-0.5
        elif name.endswith(("attn_output.weight", "ffn_down.weight")):
            std *= residual_scale
        weights[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    return weights


def _encode(w: F32Array, dtype: str) -> tuple[npt.NDArray[Any], Any, F32Array]:
    """Store ``w`` at ``dtype``: (GGUF data, raw GGML type or None, the values it holds, f32).

    One-dimensional tensors (the norms) stay f32, as llama.cpp's converter keeps them.
    """
    if w.ndim == 1 or dtype == "f32":
        return w, None, w
    if dtype == "f16":
        half = w.astype(np.float16)
        return half, None, half.astype(np.float32)
    qtype = gguf.GGMLQuantizationType.Q8_0
    packed = gguf.quants.quantize(w, qtype)
    values = np.asarray(gguf.quants.dequantize(packed, qtype), dtype=np.float32).reshape(w.shape)
    return packed, qtype, values


_FILE_TYPES: Final = {"f32": 0, "f16": 1, "q8_0": 7}  # gguf.LlamaFileType


def _write_gguf(
    path: Path,
    preset: Preset,
    seed: int,
    dtype: str,
    tokenizer: Tokenizer,
    weights: dict[str, tuple[npt.NDArray[Any], Any]],
) -> None:
    tokens, types, merges = _vocab(tokenizer)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"legato-{preset.name}-s{seed}")
    writer.add_context_length(preset.context_length)
    writer.add_embedding_length(preset.d_model)
    writer.add_block_count(preset.n_layers)
    writer.add_feed_forward_length(preset.d_ffn)
    writer.add_head_count(preset.n_heads)
    writer.add_head_count_kv(preset.n_kv_heads)
    writer.add_rope_freq_base(preset.rope_theta)
    writer.add_layer_norm_rms_eps(preset.rms_eps)
    writer.add_rope_dimension_count(preset.head_dim)
    writer.add_vocab_size(preset.vocab_size)
    writer.add_file_type(_FILE_TYPES[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_eot_token_id(IM_END_ID)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, (data, raw_dtype) in weights.items():
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


_HF_LAYER_NAMES: Final = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_HF_GLOBAL_NAMES: Final = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def _hf_tensors(preset: Preset, values: dict[str, F32Array]) -> dict[str, F32Array]:
    """The same weights under HF names, Q and K rows un-permuted."""
    out: dict[str, F32Array] = {}
    for name, w in values.items():
        if name in _HF_GLOBAL_NAMES:
            out[_HF_GLOBAL_NAMES[name]] = w
            continue
        _, layer, kind, _ = name.split(".")
        if kind == "attn_q":
            w = gguf_to_hf_qk(w, preset.n_heads)
        elif kind == "attn_k":
            w = gguf_to_hf_qk(w, preset.n_kv_heads)
        out[f"model.layers.{layer}.{_HF_LAYER_NAMES[kind]}.weight"] = np.ascontiguousarray(w)
    return out


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _write_hf(
    hf_dir: Path, preset: Preset, tokenizer_json: Path, tensors: dict[str, F32Array]
) -> None:
    hf_dir.mkdir(parents=True, exist_ok=True)
    _write_json(
        hf_dir / "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": preset.vocab_size,
            "hidden_size": preset.d_model,
            "intermediate_size": preset.d_ffn,
            "num_hidden_layers": preset.n_layers,
            "num_attention_heads": preset.n_heads,
            "num_key_value_heads": preset.n_kv_heads,
            "head_dim": preset.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": preset.context_length,
            "rms_norm_eps": preset.rms_eps,
            "rope_theta": preset.rope_theta,
            "rope_scaling": None,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "initializer_range": _WEIGHT_STD,
            "tie_word_embeddings": preset.tied_embeddings,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "use_cache": True,
            "torch_dtype": "float32",
        },
    )
    _write_json(
        hf_dir / "generation_config.json",
        {"bos_token_id": BOS_ID, "eos_token_id": [EOS_ID, IM_END_ID]},
    )
    shutil.copyfile(tokenizer_json, hf_dir / "tokenizer.json")
    added = {
        str(i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(SPECIAL_TOKENS)
    }
    _write_json(
        hf_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": SPECIAL_TOKENS[BOS_ID],
            "eos_token": SPECIAL_TOKENS[EOS_ID],
            "additional_special_tokens": list(SPECIAL_TOKENS[2:]),
            "added_tokens_decoder": added,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": preset.context_length,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(
        hf_dir / "special_tokens_map.json",
        {
            "bos_token": SPECIAL_TOKENS[BOS_ID],
            "eos_token": SPECIAL_TOKENS[EOS_ID],
            "additional_special_tokens": list(SPECIAL_TOKENS[2:]),
        },
    )
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})


def _files(root: Path, preset: Preset, seed: int, dtype: str) -> ModelFiles:
    return ModelFiles(
        preset=preset,
        seed=seed,
        dtype=dtype,
        root=root,
        gguf=root / f"legato-{preset.name}-s{seed}-{dtype}.gguf",
        tokenizer=root / "tokenizer.json",
        hf_dir=root / "hf",
    )


def make_model(
    preset: str = "tiny", *, seed: int = 0, out: Path | str, dtype: str = "f32"
) -> ModelFiles:
    """Make a model into the folder ``out`` and return where its files are.

    Writes ``legato-{preset}-s{seed}-{dtype}.gguf``, ``tokenizer.json``, ``hf/`` (config,
    ``model.safetensors`` in f32, tokenizer files, chat template) and a manifest. Everything is a
    function of ``(preset, seed, dtype)``: the same arguments give byte-identical files. With
    ``dtype="f16"`` or ``"q8_0"`` the GGUF matrices are stored at that precision (norms stay f32)
    and the HF folder holds the values the GGUF decodes to, so both files describe one model.

    Raises:
        ValueError: unknown preset or dtype.
    """
    spec = _preset(preset)
    _check_dtype(dtype)
    tokenizer = train_tokenizer(spec.vocab_size, seed)
    return write_model(spec, tokenizer, _draw_weights(spec, seed), out=out, seed=seed, dtype=dtype)


def write_model(
    preset: Preset,
    tokenizer: Tokenizer,
    weights: Mapping[str, F32Array],
    *,
    out: Path | str,
    seed: int,
    dtype: str = "f32",
    manifest: Mapping[str, Any] | None = None,
) -> ModelFiles:
    """Write a model's files into the folder ``out``: what :func:`make_model` writes, for any
    weights (a trained model's, say).

    ``weights`` are float32 arrays under GGUF tensor names in GGUF's layout (``(out, in)``,
    Q and K rows in llama.cpp's order), one per name of ``preset.tensor_shapes()``;
    ``manifest`` adds entries to the manifest.

    Raises:
        ValueError: unknown dtype, or tensors missing or of the wrong shape.
    """
    _check_dtype(dtype)
    shapes = preset.tensor_shapes()
    if set(weights) != set(shapes):
        missing = sorted(set(shapes) - set(weights)) or sorted(set(weights) - set(shapes))
        raise ValueError(f"weights do not match the preset {preset.name!r}: {missing[:3]}")
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name}: shape {weights[name].shape}, the preset says {shape}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    files = _files(root, preset, seed, dtype)
    tokenizer.save(str(files.tokenizer))

    stored: dict[str, tuple[npt.NDArray[Any], Any]] = {}
    values: dict[str, F32Array] = {}
    for name in shapes:
        w = np.ascontiguousarray(weights[name], dtype=np.float32)
        data, raw_dtype, value = _encode(w, dtype)
        stored[name] = (data, raw_dtype)
        values[name] = value
    _write_gguf(files.gguf, preset, seed, dtype, tokenizer, stored)
    del stored
    _write_hf(files.hf_dir, preset, files.tokenizer, _hf_tensors(preset, values))
    _write_json(
        root / MANIFEST,
        {
            "maker_version": MAKER_VERSION,
            "preset": preset.name,
            "seed": seed,
            "dtype": dtype,
            "n_params": preset.n_params,
            "gguf": files.gguf.name,
            **(manifest or {}),
        },
    )
    return files


# --- cache -------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Legato's cache folder: ``$LEGATO_CACHE_DIR``, else ``$XDG_CACHE_HOME/legato``, else
    ``~/.cache/legato``."""
    if explicit := os.environ.get("LEGATO_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "legato"
    return Path.home() / ".cache" / "legato"


def _is_current(root: Path) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("maker_version") == MAKER_VERSION


def cached_model(preset: str = "tiny", seed: int = 0, *, dtype: str = "f32") -> ModelFiles:
    """Return the model ``(preset, seed, dtype)`` from the cache, making it on first use.

    It lives in ``cache_root()/models/{preset}-s{seed}`` (``-{dtype}`` appended unless f32). It
    is made in a temporary folder beside that and renamed into place, so a process never sees a
    half-written model; when several make it at once, the first rename wins and the others use
    it. A model left by another version of the maker is made again.

    Raises:
        ValueError: unknown preset or dtype.
    """
    spec = _preset(preset)
    _check_dtype(dtype)
    name = f"{spec.name}-s{seed}" + ("" if dtype == "f32" else f"-{dtype}")
    models_dir = cache_root() / "models"
    final = models_dir / name
    if _is_current(final):
        return _files(final, spec, seed, dtype)
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=models_dir))
    stale: Path | None = None
    try:
        make_model(spec.name, seed=seed, out=tmp, dtype=dtype)
        tmp.chmod(0o755)  # mkdtemp's 0o700 would hide the model from other users
        if final.exists() and not _is_current(final):
            # Made by another maker version: move it aside, then drop it once ours is in place.
            stale = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".stale", dir=models_dir))
            with contextlib.suppress(FileNotFoundError):  # someone else moved it first
                final.rename(stale / "model")
        try:
            tmp.rename(final)
        except OSError:
            if not _is_current(final):
                raise  # not lost to a concurrent maker: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    return _files(final, spec, seed, dtype)
