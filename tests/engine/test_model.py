"""The numpy forward pass: paged incremental decoding equals recomputing from scratch, batching
changes nothing, and every supported weight type loads; bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.engine import (
    EngineTokenizer,
    GGUFModel,
    LlamaModel,
    ModelFileError,
    SeqWork,
    load_gguf,
    make_model,
)

TEXT = "SELECT name, age FROM users WHERE age > 30 ORDER BY age DESC LIMIT 5"


def test_paged_incremental_decode_equals_full_recompute(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> None:
    ids = tokenizer.encode(TEXT)
    assert len(ids) > 16  # crosses a block boundary
    full = LlamaModel(tiny, num_blocks=8, block_size=16)
    expected = [full.forward([SeqWork(ids[: n + 1], 0, [0, 1, 2])])[0] for n in range(len(ids))]
    paged = LlamaModel(tiny, num_blocks=8, block_size=16)
    blocks = [5, 2, 7]  # scattered, out of order
    got = [paged.forward([SeqWork([t], n, blocks)])[0] for n, t in enumerate(ids)]
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=2e-5)


def test_batching_changes_nothing(tiny: GGUFModel, tokenizer: EngineTokenizer) -> None:
    a = tokenizer.encode(TEXT)
    b = tokenizer.encode("hello world, how are you")
    alone = LlamaModel(tiny, num_blocks=8, block_size=16)
    ref_a = alone.forward([SeqWork(a, 0, [0, 1])])[0]
    ref_b = alone.forward([SeqWork(b, 0, [2])])[0]
    ref_a2 = alone.forward([SeqWork([7], len(a), [0, 1])])[0]
    together = LlamaModel(tiny, num_blocks=8, block_size=16)
    out = together.forward([SeqWork(a, 0, [3, 4]), SeqWork(b, 0, [5])])
    np.testing.assert_allclose(out[0], ref_a, atol=2e-5)
    np.testing.assert_allclose(out[1], ref_b, atol=2e-5)
    # a decode and a prompt in the same step
    mixed = together.forward([SeqWork([7], len(a), [3, 4]), SeqWork(b[:3], 0, [6])])
    np.testing.assert_allclose(mixed[0], ref_a2, atol=2e-5)


@pytest.mark.parametrize(("dtype", "atol"), [("f16", 5e-3), ("q8_0", 5e-2)])
def test_f16_and_q8_0_files_run_close_to_f32(
    tmp_path: Path, tiny: GGUFModel, tokenizer: EngineTokenizer, dtype: str, atol: float
) -> None:
    other = load_gguf(make_model("tiny", seed=0, out=tmp_path, dtype=dtype).gguf)
    ids = tokenizer.encode(TEXT)
    ref = LlamaModel(tiny, num_blocks=4, block_size=16).forward([SeqWork(ids, 0, [0, 1])])[0]
    got = LlamaModel(other, num_blocks=4, block_size=16).forward([SeqWork(ids, 0, [0, 1])])[0]
    assert np.abs(got - ref).max() < atol


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        load_gguf(tmp_path / "nope.gguf")


def test_corrupt_file_names_the_file(tmp_path: Path, tiny: GGUFModel) -> None:
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(tiny.path.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"truncated\.gguf: not a readable GGUF file"):
        load_gguf(bad)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelFileError, match=r"junk\.gguf"):
        load_gguf(junk)


def test_non_llama_architecture_is_refused(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="architecture 'gpt2' is not supported"):
        load_gguf(path)


def test_tokenizer_from_gguf_metadata_matches_tokenizer_json(
    tiny_files: object, tiny: GGUFModel, tmp_path: Path
) -> None:
    from_json = EngineTokenizer.for_model(tiny)
    lone = tmp_path / "alone.gguf"
    lone.write_bytes(tiny.path.read_bytes())  # no tokenizer.json beside it
    from_meta = EngineTokenizer.for_model(load_gguf(lone))
    for text in (TEXT, "<|im_start|>user\nhi there<|im_end|>\n", "émoji 🙂 and 123,456"):
        assert from_meta.encode(text) == from_json.encode(text)
        assert from_meta.decode(from_json.encode(text)) == text.replace("<|im_start|>", "").replace(
            "<|im_end|>", ""
        )
