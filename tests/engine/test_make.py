"""The model maker: deterministic tokenizer and weights, GGUF and HF files that agree."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from orchestrator.engine import _make
from orchestrator.engine._corpus import corpus_text
from orchestrator.engine._make import (
    CHAT_TEMPLATE,
    PRESETS,
    SPECIAL_TOKENS,
    ModelFiles,
    cache_root,
    cached_model,
    gguf_to_hf_qk,
    hf_to_gguf_qk,
    make_model,
)

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return make_model("tiny", seed=0, out=tmp_path_factory.mktemp("tiny"))


def read_gguf(path: Path) -> tuple[gguf.GGUFReader, dict[str, Any]]:
    reader = gguf.GGUFReader(path)
    return reader, {t.name: t for t in reader.tensors}


def field(reader: gguf.GGUFReader, key: str) -> Any:
    found = reader.get_field(key)
    assert found is not None, key
    return found.contents()


def values(tensor: Any) -> npt.NDArray[np.float32]:
    """A GGUF tensor's values as f32, numpy shape (out, in)."""
    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)


# --- corpus ------------------------------------------------------------------------------------


def test_corpus_is_deterministic_and_varied() -> None:
    text = corpus_text(0)
    assert text == corpus_text(0)
    assert text != corpus_text(1)
    assert 300_000 <= len(text.encode()) <= 400_000
    for marker in (
        "SELECT ",
        " JOIN ",
        "GROUP BY",
        '{"name": "',
        "join()<END_OF_PLAN>",
        "[CALL] 1 [HEAD] ",
        "[INTR] ",
        "[TRAP][END]",
        "<|im_start|>assistant\n",
        "<|im_end|>",
    ):
        assert marker in text, marker


# --- presets and errors ------------------------------------------------------------------------


def test_parameter_counts() -> None:
    assert TINY.n_params == 385_344
    assert PRESETS["small"].n_params == 28_844_544
    assert abs(PRESETS["small"].n_params - 29_000_000) / 29_000_000 < 0.02


def test_unknown_preset_and_dtype(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown model preset 'huge'; known presets: small, tiny"
    ):
        make_model("huge", out=tmp_path)
    with pytest.raises(ValueError, match="known presets: small, tiny"):
        cached_model("huge")
    with pytest.raises(ValueError, match=r"unknown model dtype 'q4'; known dtypes: f32, f16, q8_0"):
        make_model("tiny", out=tmp_path, dtype="q4")
    assert not list(tmp_path.iterdir())


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_same_bytes(tiny: ModelFiles, tmp_path: Path) -> None:
    again = make_model("tiny", seed=0, out=tmp_path / "again")
    assert again.gguf.read_bytes() == tiny.gguf.read_bytes()
    assert again.tokenizer.read_bytes() == tiny.tokenizer.read_bytes()
    safetensors = Path("model.safetensors")
    assert (again.hf_dir / safetensors).read_bytes() == (tiny.hf_dir / safetensors).read_bytes()


def test_other_seed_other_weights(tiny: ModelFiles, tmp_path: Path) -> None:
    other = make_model("tiny", seed=1, out=tmp_path)
    _, mine = read_gguf(tiny.gguf)
    _, theirs = read_gguf(other.gguf)
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "output.weight"):
        assert mine[name].data.shape == theirs[name].data.shape
        assert not np.array_equal(mine[name].data, theirs[name].data)


# --- GGUF --------------------------------------------------------------------------------------


def test_gguf_metadata(tiny: ModelFiles) -> None:
    reader, _ = read_gguf(tiny.gguf)
    expected = {
        "general.architecture": "llama",
        "general.name": "legato-tiny-s0",
        "general.file_type": 0,
        "llama.context_length": 2048,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 256,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.freq_base": 10000.0,
        "llama.rope.dimension_count": 16,
        "llama.vocab_size": 2048,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.eot_token_id": 3,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    for key, value in expected.items():
        assert field(reader, key) == value, key
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)

    tokenizer = Tokenizer.from_file(str(tiny.tokenizer))
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert tokens == [tokenizer.id_to_token(i) for i in range(2048)]
    assert tokens[:4] == list(SPECIAL_TOKENS)
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[:4] == [3, 3, 3, 3]
    assert set(types[4:]) == {1}
    merges = field(reader, "tokenizer.ggml.merges")
    assert len(merges) == 2048 - 4 - 256  # one token per merge after specials and bytes
    assert all(len(m.split(" ")) == 2 for m in merges)
    assert "Ġ t" in merges


def test_gguf_tensor_shapes(tiny: ModelFiles) -> None:
    _, tensors = read_gguf(tiny.gguf)
    shapes = TINY.tensor_shapes()
    assert list(tensors) == list(shapes)
    assert sum(t.n_elements for t in tensors.values()) == TINY.n_params
    for name, shape in shapes.items():
        tensor = tensors[name]
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert tensor.data.shape == shape  # numpy order: (out, in)
        assert tuple(tensor.shape.tolist()) == shape[::-1]  # GGUF ne order: (in, out)
    assert tensors["blk.0.attn_k.weight"].data.shape == (2 * 16, 64)  # GQA: 2 KV heads
    assert np.all(tensors["blk.1.ffn_norm.weight"].data == 1.0)
    std = float(np.std(tensors["output.weight"].data))
    assert std == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize(("dtype", "qtype"), [("f16", "F16"), ("q8_0", "Q8_0")])
def test_low_precision(dtype: str, qtype: str, tmp_path: Path) -> None:
    made = make_model("tiny", out=tmp_path, dtype=dtype)
    assert made.gguf.name == f"legato-tiny-s0-{dtype}.gguf"
    reader, tensors = read_gguf(made.gguf)
    assert field(reader, "general.file_type") == {"f16": 1, "q8_0": 7}[dtype]
    for name, tensor in tensors.items():
        is_norm = name.endswith("norm.weight")
        assert tensor.tensor_type.name == ("F32" if is_norm else qtype), name
    # The HF folder holds exactly what the GGUF decodes to.
    hf = load_file(str(made.hf_dir / "model.safetensors"))
    assert np.array_equal(hf["lm_head.weight"], values(tensors["output.weight"]))
    q = gguf_to_hf_qk(values(tensors["blk.1.attn_q.weight"]), TINY.n_heads)
    assert np.array_equal(hf["model.layers.1.self_attn.q_proj.weight"], q)
    # ... and that is close to the f32 model.
    _, full = read_gguf(make_model("tiny", out=tmp_path / "f32").gguf)
    error = np.abs(values(tensors["output.weight"]) - full["output.weight"].data).max()
    assert 0 < error < 2e-3


# --- tokenizer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hello world, the quiet river opened.",
        "SELECT name, COUNT(*) FROM customers GROUP BY city ORDER BY 2 DESC LIMIT 3;",
        '{"name": "search", "arguments": {"query": "tides"}}',
        '1. search("x")\n2. math("$1 + 2")\njoin()<END_OF_PLAN>',
        '[CALL] 1 [HEAD] search("x") [END] [TRAP][END] [INTR] 1 [HEAD] 42 [END]',
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "  tabs\tand\nnewlines\r\n, unicode: héllo ✓ 日本 🎉",
    ],
)
def test_tokenizer_round_trips(tiny: ModelFiles, text: str) -> None:
    tokenizer = Tokenizer.from_file(str(tiny.tokenizer))
    ids = tokenizer.encode(text).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert len(ids) < len(text.encode()) or not text.isascii()


def test_tokenizer_specials_and_merges(tiny: ModelFiles) -> None:
    tokenizer = Tokenizer.from_file(str(tiny.tokenizer))
    assert tokenizer.get_vocab_size() == 2048
    for i, special in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(special) == i
    chat = tokenizer.encode("<|im_start|>user\nWhat is SQL?<|im_end|>").ids
    assert chat[0] == 2
    assert chat[-1] == 3
    assert 2 not in chat[1:-1]
    # The corpus' vocabulary became whole tokens.
    for word in ("SELECT", "ĠFROM", "ĠWHERE", "Ġsearch", "assistant"):
        assert tokenizer.token_to_id(word) is not None, word


# --- HF folder ---------------------------------------------------------------------------------


def test_permutation_is_llama_cpps_and_inverts() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4 * 16, 8)).astype(np.float32)
    # llama.cpp convert_hf_to_gguf.py: LlamaModel.permute
    expected = w.reshape(4, 2, 8, 8).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(hf_to_gguf_qk(w, 4), expected)
    assert np.array_equal(gguf_to_hf_qk(hf_to_gguf_qk(w, 4), 4), w)
    assert np.array_equal(hf_to_gguf_qk(gguf_to_hf_qk(w, 4), 4), w)
    # Within a head, HF row s*8 + j is GGUF row 2j + s.
    assert np.array_equal(hf_to_gguf_qk(w, 4)[2 * 3 + 1], w[8 + 3])


def test_hf_folder_holds_the_gguf_weights(tiny: ModelFiles) -> None:
    _, tensors = read_gguf(tiny.gguf)
    hf = load_file(str(tiny.hf_dir / "model.safetensors"))
    assert len(hf) == len(tensors)
    assert all(w.dtype == np.float32 for w in hf.values())
    pairs = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for i in range(TINY.n_layers):
        hf_layer, gg_layer = f"model.layers.{i}.", f"blk.{i}."
        pairs |= {
            hf_layer + "input_layernorm.weight": gg_layer + "attn_norm.weight",
            hf_layer + "self_attn.v_proj.weight": gg_layer + "attn_v.weight",
            hf_layer + "self_attn.o_proj.weight": gg_layer + "attn_output.weight",
            hf_layer + "post_attention_layernorm.weight": gg_layer + "ffn_norm.weight",
            hf_layer + "mlp.gate_proj.weight": gg_layer + "ffn_gate.weight",
            hf_layer + "mlp.up_proj.weight": gg_layer + "ffn_up.weight",
            hf_layer + "mlp.down_proj.weight": gg_layer + "ffn_down.weight",
        }
        q, k = hf[hf_layer + "self_attn.q_proj.weight"], hf[hf_layer + "self_attn.k_proj.weight"]
        assert np.array_equal(
            hf_to_gguf_qk(q, TINY.n_heads), tensors[gg_layer + "attn_q.weight"].data
        )
        assert np.array_equal(
            hf_to_gguf_qk(k, TINY.n_kv_heads), tensors[gg_layer + "attn_k.weight"].data
        )
        assert not np.array_equal(q, tensors[gg_layer + "attn_q.weight"].data)
    for hf_name, gg_name in pairs.items():
        assert np.array_equal(hf[hf_name], tensors[gg_name].data), hf_name


def rope_hf(x: npt.NDArray[np.float64], theta: float) -> npt.NDArray[np.float64]:
    """transformers' rotate-half RoPE on (positions, heads, head_dim)."""
    half = x.shape[-1] // 2
    freq = theta ** (-np.arange(half) * 2 / x.shape[-1])
    angle = np.arange(x.shape[0])[:, None, None] * np.concatenate([freq, freq])
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    out: npt.NDArray[np.float64] = x * np.cos(angle) + rotated * np.sin(angle)
    return out


def rope_gguf(x: npt.NDArray[np.float64], theta: float) -> npt.NDArray[np.float64]:
    """llama.cpp's normal RoPE: rotates adjacent pairs (2i, 2i+1)."""
    freq = theta ** (-np.arange(x.shape[-1] // 2) * 2 / x.shape[-1])
    angle = np.arange(x.shape[0])[:, None, None] * freq
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[..., 1::2] = even * np.sin(angle) + odd * np.cos(angle)
    return out


def test_attention_scores_agree_across_rope_conventions(tiny: ModelFiles) -> None:
    _, tensors = read_gguf(tiny.gguf)
    hf = load_file(str(tiny.hf_dir / "model.safetensors"))
    x = np.random.default_rng(1).standard_normal((12, TINY.d_model))
    heads, kv_heads, hd = TINY.n_heads, TINY.n_kv_heads, TINY.head_dim

    def scores(wq: Any, wk: Any, rope: Any) -> npt.NDArray[np.float64]:
        q = rope((x @ wq.T.astype(np.float64)).reshape(12, heads, hd), 10000.0)
        k = rope((x @ wk.T.astype(np.float64)).reshape(12, kv_heads, hd), 10000.0)
        k = np.repeat(k, heads // kv_heads, axis=1)
        return np.asarray(np.einsum("qhd,khd->hqk", q, k), dtype=np.float64)

    from_hf = scores(
        hf["model.layers.0.self_attn.q_proj.weight"],
        hf["model.layers.0.self_attn.k_proj.weight"],
        rope_hf,
    )
    from_gguf = scores(
        tensors["blk.0.attn_q.weight"].data, tensors["blk.0.attn_k.weight"].data, rope_gguf
    )
    np.testing.assert_allclose(from_hf, from_gguf, rtol=1e-9, atol=1e-9)
    # Q/K are drawn so that scores are far from uniform (RoPE bugs must show).
    assert np.std(from_hf / np.sqrt(hd)) > 0.5
    wrong = scores(
        hf["model.layers.0.self_attn.q_proj.weight"],
        hf["model.layers.0.self_attn.k_proj.weight"],
        rope_gguf,
    )
    assert np.abs(wrong - from_hf).max() > 0.1


def test_hf_config_and_tokenizer_files(tiny: ModelFiles) -> None:
    config = json.loads((tiny.hf_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert {
        k: config[k]
        for k in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
            "max_position_embeddings",
            "tie_word_embeddings",
            "bos_token_id",
            "eos_token_id",
            "torch_dtype",
        )
    } == {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 2048,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }
    assert config["rope_theta"] == 10000.0
    assert config["rms_norm_eps"] == 1e-5
    tokenizer_config = json.loads((tiny.hf_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == CHAT_TEMPLATE
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (tiny.hf_dir / "tokenizer.json").read_bytes() == tiny.tokenizer.read_bytes()
    generation = json.loads((tiny.hf_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 3]


# --- cache -------------------------------------------------------------------------------------


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEGATO_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "legato"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "legato"
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_cached_model_made_once_then_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny: ModelFiles
) -> None:
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path))
    calls: list[str] = []
    real = _make.make_model

    def counting(preset: str, **kwargs: Any) -> ModelFiles:
        calls.append(preset)
        return real(preset, **kwargs)

    monkeypatch.setattr(_make, "make_model", counting)
    first = cached_model("tiny", seed=0)
    assert calls == ["tiny"]
    assert first.root == tmp_path / "models" / "tiny-s0"
    assert first.gguf.read_bytes() == tiny.gguf.read_bytes()
    second = cached_model("tiny", seed=0)
    assert calls == ["tiny"]
    assert second == first
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-s0"]  # no temp left
    assert cached_model("tiny", seed=0, dtype="f16").root.name == "tiny-s0-f16"


def test_cached_model_remade_after_maker_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path))
    made = cached_model("tiny")
    manifest = made.root / _make.MANIFEST
    manifest.write_text(json.dumps({"maker_version": 0}))
    made.gguf.write_bytes(b"old")
    again = cached_model("tiny")
    assert again.gguf.read_bytes()[:4] == b"GGUF"
    assert json.loads(manifest.read_text())["maker_version"] == _make.MAKER_VERSION
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-s0"]


def test_cached_model_concurrent_makers_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path))
    results: list[ModelFiles] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            results.append(cached_model("tiny", seed=3))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({r.root for r in results}) == 1
    gguf.GGUFReader(results[0].gguf)  # whole and readable
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-s3"]


# --- against transformers (skipped unless torch, transformers and accelerate are installed) -----


def test_transformers_loads_both_files_to_the_same_model(tiny: ModelFiles) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    hf = transformers.LlamaForCausalLM.from_pretrained(tiny.hf_dir, dtype=torch.float32)
    from_gguf = transformers.AutoModelForCausalLM.from_pretrained(
        tiny.root, gguf_file=tiny.gguf.name, dtype=torch.float32
    )
    tokenizer = Tokenizer.from_file(str(tiny.tokenizer))
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nSELECT 1;<|im_end|>\n").ids])
    with torch.no_grad():
        a, b = hf(ids).logits, from_gguf(ids).logits
    assert float((a - b).abs().max()) < 1e-5
