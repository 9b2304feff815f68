"""The demo model's corpus, held-out splits, SQL grammar and training loop, and the shipped
model itself: deterministic data, splits that hold out what they say, a few seconds of training
that lowers the loss and writes files every engine loads, and the shipped model answering."""

from __future__ import annotations

import json
import random
import sqlite3
import struct
from pathlib import Path

import anyio
import numpy as np
import pytest
import torch
from lark import Lark

import dsl
from orchestrator.backends import LLMRequest, LocalBackend, Message
from orchestrator.engine import (
    EngineRequest,
    EngineTokenizer,
    LlamaModel,
    Preset,
    SampleParams,
    SeqWork,
    build_engine,
    load_gguf,
    trained_model,
)
from orchestrator.engine._make import train_tokenizer
from orchestrator.train import (
    SPLITS,
    SqlWorld,
    TorchLlama,
    TrainConfig,
    heldout_split,
    make_corpus,
    preset_of,
    render_chatml,
    sql_grammar,
    sql_prompt,
    train_model,
    write_loss_png,
)
from orchestrator.train._sql import FRAMES, held_combo, held_value
from orchestrator.train._train import _epoch, batch_loss, encode_examples

SMALL = Preset(
    name="demo",
    vocab_size=384,
    n_layers=1,
    d_model=32,
    n_heads=2,
    n_kv_heads=2,
    d_ffn=64,
    context_length=512,
    tied_embeddings=True,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SqlWorld:
    return SqlWorld(tmp_path_factory.mktemp("databases"))


def test_the_corpus_is_a_function_of_its_seed(world: SqlWorld) -> None:
    a = make_corpus(world, seed=3, size=300)
    b = make_corpus(world, seed=3, size=300)
    c = make_corpus(world, seed=4, size=300)
    assert [e.messages for e in a.train] == [e.messages for e in b.train]
    assert [e.target for e in a.train] == [e.target for e in b.train]
    assert [e.target for e in a.train] != [e.target for e in c.train]
    assert {e.kind for e in a.train} == {"sql", "plan", "join", "cml", "chat"}


def test_training_pairs_hold_nothing_out(world: SqlWorld) -> None:
    pairs = [e.sql for e in make_corpus(world, seed=0, size=1500).train if e.sql is not None]
    assert pairs
    for p in pairs:
        assert not p.held_values and not held_combo(p.combo)
        assert p.frame < len(FRAMES[p.shape]) - 1


def test_each_split_holds_out_what_it_says(world: SqlWorld) -> None:
    corpus = make_corpus(world, seed=0, size=1500)
    train_questions = corpus.seen_questions()
    for split in SPLITS:
        examples = heldout_split(corpus, split, 25)
        assert len(examples) == 25
        assert not {e.messages[-1][1] for e in examples} & train_questions
        for e in examples:
            if split == "values":
                assert e.sql is not None and e.sql.held_values
                assert all(held_value(v) for v in e.sql.held_values)
            elif split == "combos":
                assert e.sql is not None and held_combo(e.sql.combo)
            elif split == "phrasings":
                assert e.sql is not None and e.sql.frame == len(FRAMES[e.sql.shape]) - 1
            elif split == "plans_values":
                assert e.plan is not None and e.plan.held


def test_gold_sql_fits_its_grammar_and_answers(world: SqlWorld) -> None:
    corpus = make_corpus(world, seed=0, size=300)
    rng = random.Random(0)
    examples = [e for s in ("seen", "values", "combos", "phrasings")
                for e in heldout_split(corpus, s, 30)]  # fmt: skip
    for e in rng.sample(examples, 6):
        assert e.sql is not None
        grammar = sql_grammar(e.sql.db, e.sql.question, path=world.paths[e.sql.db])
        Lark(grammar, start="start").parse(e.sql.sql)
        con = sqlite3.connect(world.paths[e.sql.db])
        try:
            assert con.execute(e.sql.sql).fetchall()
        finally:
            con.close()


def test_training_lowers_the_loss_and_writes_files_every_engine_loads(
    tmp_path: Path, world: SqlWorld
) -> None:
    corpus = make_corpus(world, seed=0, size=1200)
    cfg = TrainConfig(preset=SMALL, steps=60, warmup=5, lr=1e-2, threads=1, dtype="f32")
    result = train_model(tmp_path / "model", cfg, corpus=corpus)
    assert result.steps == 60
    assert result.last_loss < result.first_loss - 1.0
    files = result.files
    manifest = json.loads((files.root / "legato-model.json").read_text())
    assert manifest["trained"]["steps"] == 60
    config = json.loads((files.hf_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is True

    model = load_gguf(files.gguf)
    assert preset_of(model).tied_embeddings
    engine, _ = build_engine(files.gguf, kv_tokens=2048)
    tok = engine.tokenizer
    assert tok is not None
    question = "How many customers from Paris are there?"

    async def answer() -> tuple[str, str]:
        async with LocalBackend(engine=engine) as backend:
            done = await backend.complete(
                LLMRequest(
                    messages=(Message("user", sql_prompt("shop", question)),),
                    max_tokens=48,
                    temperature=0.0,
                    grammar=dsl.Grammar.lark(
                        sql_grammar("shop", question, path=world.paths["shop"])
                    ),
                )
            )
            return done.text, done.finish_reason

    # a model this briefly trained may not finish within max_tokens; what it wrote follows the
    # grammar either way, and parses whole when it did finish
    text, finish = anyio.run(answer)
    assert text.startswith("SELECT "), text
    if finish == "stop":
        Lark(sql_grammar("shop", question, path=world.paths["shop"]), start="start").parse(text)

    # the torch model on the file's weights computes what the numpy engine computes
    torch_model = TorchLlama(preset_of(model))
    torch_model.load_gguf_weights({k: np.asarray(v) for k, v in model.tensors.items()})
    ids = EngineTokenizer.for_model(model).encode(render_chatml([("user", "hello")]))
    with torch.no_grad():
        theirs = torch_model(torch.tensor([ids]))[0, -1].numpy()
    ours = LlamaModel(model, num_blocks=8, block_size=16).forward(
        [SeqWork(ids, 0, list(range(8)))]
    )[0]
    assert np.abs(theirs - ours).max() < 1e-3


def test_the_loss_curve_is_a_png(tmp_path: Path) -> None:
    path = write_loss_png(tmp_path / "loss.png", [(i, 5.0 / (1 + i)) for i in range(50)])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (640, 360)


def test_the_shipped_demo_model_is_the_default_and_answers() -> None:
    assert trained_model().is_file()
    question = "How many customers from Paris are there?"

    async def answer() -> str:
        async with LocalBackend() as backend:
            done = await backend.complete(
                LLMRequest(
                    messages=(Message("user", sql_prompt("shop", question)),),
                    max_tokens=48,
                    temperature=0.0,
                    grammar=dsl.Grammar.lark(sql_grammar("shop", question)),
                )
            )
            return done.text

    assert anyio.run(answer) == "SELECT COUNT(*) FROM customers WHERE city = 'Paris'"


def test_torch_and_the_engine_agree_on_the_shipped_model() -> None:
    model = load_gguf(trained_model())
    tok = EngineTokenizer.for_model(model)
    torch_model = TorchLlama(preset_of(model))
    torch_model.load_gguf_weights({k: np.asarray(v) for k, v in model.tensors.items()})
    engine, _ = build_engine(trained_model(), kv_tokens=2048)
    prompts = [
        tok.encode(render_chatml([("user", sql_prompt(db, q))]))
        for db, q in (("school", "How many students are there?"),
                      ("shop", "Which country has the most suppliers?"))
    ]  # fmt: skip

    async def ours() -> list[list[int]]:
        out = []
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            for prompt in prompts:
                events, _ = await engine.complete(
                    EngineRequest(prompt=prompt, params=SampleParams(max_tokens=40, temperature=0))
                )
                out.append([e.token for e in events if e.token not in tok.stop_ids()])
            tg.cancel_scope.cancel()
        return out

    for prompt, mine in zip(prompts, anyio.run(ours), strict=True):
        expected = torch_model.greedy(prompt, 40, tok.stop_ids())
        assert mine == [t for t in expected if t not in tok.stop_ids()]


def test_legato_model_train_writes_the_files_and_the_curve(tmp_path: Path) -> None:
    from orchestrator.cli import main

    out = tmp_path / "demo"
    args = ["model", "train", "--steps", "3", "--corpus-size", "4000", "--threads", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(out.glob("*.gguf"))) == 1
    assert (out / "tokenizer.json").is_file() and (out / "hf" / "model.safetensors").is_file()


def test_the_processes_shares_of_a_batch_add_up_to_its_loss_and_gradient(
    world: SqlWorld,
) -> None:
    corpus = make_corpus(world, seed=0, size=200)
    tokenizer = train_tokenizer(SMALL.vocab_size, 0, texts=corpus.texts())
    encoded = [e for e in encode_examples(tokenizer, corpus.train) if len(e[0]) <= 512]
    cfg = TrainConfig(preset=SMALL, steps=1)
    batch = next(b for b in _epoch(encoded, random.Random(0)) if len(b.ids) >= 3)
    model = TorchLlama(SMALL, seed=0)

    def grads(rank: int, world_size: int) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        loss = batch_loss(model, batch, cfg, rank, world_size)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters()]

    whole, g = grads(0, 1)
    parts = [grads(r, 3) for r in range(3)]
    assert sum(loss for loss, _ in parts) == pytest.approx(whole, rel=1e-5)
    for i, full in enumerate(g):
        torch.testing.assert_close(sum(p[1][i] for p in parts), full, rtol=1e-4, atol=1e-6)


def test_two_training_processes_compute_what_one_computes(tmp_path: Path, world: SqlWorld) -> None:
    corpus = make_corpus(world, seed=0, size=600)
    runs = []
    for workers in (1, 2):
        cfg = TrainConfig(
            preset=SMALL, steps=40, warmup=5, lr=1e-2, workers=workers, threads=1, dtype="f32"
        )
        runs.append(train_model(tmp_path / str(workers), cfg, corpus=corpus))
    one, two = runs
    assert two.steps == 40 and two.tokens == one.tokens
    assert two.last_loss < two.first_loss - 0.3
    assert [c[2] for c in two.curve] == pytest.approx([c[2] for c in one.curve], rel=1e-3)
    manifest = json.loads((two.files.root / "legato-model.json").read_text())
    assert manifest["trained"]["workers"] == 2
    a, b = load_gguf(one.files.gguf), load_gguf(two.files.gguf)
    for name, w in a.tensors.items():
        np.testing.assert_allclose(np.asarray(b.tensors[name]), np.asarray(w), atol=1e-3)


@pytest.mark.parametrize("field", ["workers", "threads", "steps", "corpus_size"])
def test_a_recipe_with_no_processes_threads_or_steps_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be at least 1"):
        TrainConfig(**{field: 0})  # type: ignore[arg-type]


def _training_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # the process ended while we looked
            continue
        if "orchestrator.train._worker" in text:
            found.append(text)
    return found


def test_a_run_that_fails_leaves_no_training_process_behind(
    tmp_path: Path, world: SqlWorld
) -> None:
    corpus = make_corpus(world, seed=0, size=300)

    def stop(done: float, step: int, loss: float, tokens_per_s: float) -> None:
        if step == 3:
            raise RuntimeError("stopped at step 3")

    cfg = TrainConfig(preset=SMALL, steps=40, warmup=5, workers=2, threads=1, dtype="f32")
    with pytest.raises(RuntimeError, match="stopped at step 3"):
        train_model(tmp_path, cfg, corpus=corpus, progress=stop)
    assert _training_processes() == []
    assert not list(tmp_path.glob("*.gguf"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["--minutes", "0"], "argument --minutes: must be > 0, got 0"),
        (["--corpus-size", "-5"], "argument --corpus-size: must be >= 1, got -5"),
    ],
)
def test_the_train_command_refuses_bad_settings_before_making_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    from orchestrator.cli import main

    out = tmp_path / "model"
    with pytest.raises(SystemExit) as exited:  # refused while parsing, naming the option
        main(["model", "train", *args, "--out", str(out)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
