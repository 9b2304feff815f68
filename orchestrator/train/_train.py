"""``legato model train``: the corpus, a byte-level BPE tokenizer trained on it, and a small
llama model trained on it with torch on the CPU, written as the same files ``legato model make``
writes (GGUF, ``tokenizer.json``, a Hugging Face folder), with a loss curve.

The recipe (``DEMO`` and ``TrainConfig``'s defaults) is the one measured for the issue: a
llama of about 1.1M parameters with tied embeddings, trained for about ten minutes, does better
on this corpus than 5M or 20M models given the same ten minutes. Each row of a batch is one
example (rows padded to the shortest of ``_BUCKETS`` that holds them, so the plain causal
attention kernel runs and nothing leaks between examples); the loss counts only the assistant's
tokens, and the output layer runs only at those positions. The learning rate warms up, then
follows a cosine to a tenth of its peak over the run: over the wall-clock budget (``minutes``)
or over a fixed number of ``steps`` (which makes a run repeatable step for step on one machine;
the manifest records the steps a timed run took).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from orchestrator.engine._make import (
    IM_END_ID,
    ModelFiles,
    Preset,
    train_tokenizer,
    write_model,
)
from orchestrator.train._corpus import Corpus, Example, make_corpus, render_chatml
from orchestrator.train._sql import SqlWorld

__all__ = [
    "DEMO",
    "TrainConfig",
    "TrainResult",
    "batch_loss",
    "encode_examples",
    "train_model",
]

DEMO: Final = Preset(
    name="demo",
    vocab_size=2048,
    n_layers=4,
    d_model=128,
    n_heads=4,
    n_kv_heads=4,
    d_ffn=384,
    context_length=512,
    tied_embeddings=True,
)
"""The demo model's shape: 1,115,264 parameters (embeddings 2048 x 128, shared with the output;
four layers of attention 4 x 128 x 128 and SwiGLU 3 x 128 x 384)."""

_BUCKETS: Final = (32, 48, 64, 80, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
"""Row lengths: an example goes in the shortest that holds it (padding stays small)."""
BATCH_TOKENS: Final = 4096
"""Tokens (rows times row length) per optimiser step."""
TOKENIZER_EXAMPLES: Final = 40_000
"""The tokenizer is trained on the first this many training examples."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train (keyword-only; the defaults are the demo model's recipe).

    Attributes:
        preset: the model's shape.
        seed: seeds the corpus, the tokenizer's corpus, the weights and the batch order.
        minutes: the optimisation's wall-clock budget (ignored when ``steps`` is set).
        steps: a fixed number of optimiser steps instead of a time budget.
        corpus_size: training examples drawn.
        lr: peak learning rate (AdamW, betas 0.9/0.95).
        warmup: steps of linear warm-up.
        min_lr: the final learning rate as a fraction of the peak.
        weight_decay: AdamW's decay, on matrices only.
        dtype: GGUF storage of the matrices (``f16``, ``f32``, ``q8_0``).
        bf16: run the forward and backward passes under bfloat16 autocast (weights and the
            optimiser stay float32). Off by default: at this model's width float32 measured
            faster (18.2k against 15.1k tokens/s with two threads, 10.4k against 9.2k with
            one), even on a CPU with AMX.
        threads: torch's CPU threads per process; None: with one process, measures a few
            steps with one thread and with one per core and keeps the faster (on a machine busy
            with other work, threads that wait on each other make a step several times
            slower); with several, the cores shared out among them.
        workers: training processes (data parallel: each takes its share of every batch's
            rows; gradients are summed before each step, so the optimisation is the same as
            one process's). Measured on two cores (120 steps of the demo recipe, each setting
            twice in one run): one process with two threads 15.3k tokens/s, two processes of
            one thread 14.6k, one thread 8.6k; so the recipe keeps one process. Several pay
            where the model is too narrow for many threads to share a matrix product well,
            which is not the case on two cores.
    """

    preset: Preset = DEMO
    seed: int = 0
    minutes: float = 13.0
    steps: int | None = None
    corpus_size: int = 150_000
    lr: float = 4e-3
    warmup: int = 50
    min_lr: float = 0.1
    weight_decay: float = 0.05
    dtype: str = "f16"
    bf16: bool = False
    threads: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("threads", "workers", "steps", "corpus_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {value}")
        if self.steps is None and not self.minutes > 0:
            raise ValueError(f"TrainConfig.minutes must be positive, got {self.minutes}")


@dataclass(slots=True)
class TrainResult:
    """What a training run wrote and measured.

    Attributes:
        files: the model's files.
        steps: optimiser steps taken.
        tokens: tokens trained on (padding not counted).
        curve: ``(step, seconds since the loop began, mean loss since the last point)``.
        seconds: wall time per phase (``corpus``, ``tokenizer``, ``encode``, ``train``,
            ``export``, ``total``).
        first_loss: mean loss of the first 20 steps; ``last_loss``: of the last 20.
    """

    files: ModelFiles
    steps: int
    tokens: int
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    first_loss: float = math.nan
    last_loss: float = math.nan


Encoded = tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]


def encode_examples(tokenizer: Any, examples: Sequence[Example]) -> list[Encoded]:
    """Token ids of each example's prompt, answer and ``<|im_end|>``, and which of them are
    trained (the answer's trained pieces and the end token)."""

    def encode(texts: list[str]) -> list[list[int]]:
        unique = list(dict.fromkeys(texts))  # corpora repeat prompts: encode each once
        done = tokenizer.encode_batch(unique, add_special_tokens=False)
        ids = {t: e.ids for t, e in zip(unique, done, strict=True)}
        return [ids[t] for t in texts]

    prompts = encode([render_chatml(e.messages) for e in examples])
    flat = [(i, text, trained) for i, e in enumerate(examples) for text, trained in e.answer]
    pieces = encode([t for _, t, _ in flat])
    parts: list[list[tuple[list[int], bool]]] = [[] for _ in examples]
    for (i, _, trained), enc in zip(flat, pieces, strict=True):
        parts[i].append((enc, trained))
    out: list[Encoded] = []
    for prompt, answer in zip(prompts, parts, strict=True):
        ids = list(prompt)
        mask = [False] * len(ids)
        for piece, trained in answer:
            ids += piece
            mask += [trained] * len(piece)
        ids.append(IM_END_ID)
        mask.append(True)
        out.append((np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=np.bool_)))
    return out


@dataclass(frozen=True, slots=True)
class _Batch:
    ids: npt.NDArray[np.int64]  # (B, L): one example a row, padded at the end
    target: npt.NDArray[np.bool_]  # (B, L - 1): token t + 1 is trained (predicted at t)
    tokens: int  # real tokens (no padding)


def _bucket(n: int) -> int:
    return next(b for b in _BUCKETS if n <= b)


def _epoch(encoded: Sequence[Encoded], rng: random.Random) -> list[_Batch]:
    """Every example once: grouped by length bucket, shuffled, ``BATCH_TOKENS // length``
    rows a batch, batches in a shuffled order."""
    by: dict[int, list[int]] = {}
    for i, (toks, _) in enumerate(encoded):
        by.setdefault(_bucket(len(toks)), []).append(i)
    batches: list[_Batch] = []
    for length, members in sorted(by.items()):
        rng.shuffle(members)
        per = max(1, BATCH_TOKENS // length)
        for b in range(0, len(members), per):
            chunk = members[b : b + per]
            ids = np.zeros((len(chunk), length), dtype=np.int64)
            target = np.zeros((len(chunk), length), dtype=np.bool_)
            real = 0
            for r, i in enumerate(chunk):
                toks, mask = encoded[i]
                ids[r, : len(toks)] = toks
                target[r, : len(toks)] = mask
                real += len(toks)
            batches.append(_Batch(ids, target[:, 1:].copy(), real))
    rng.shuffle(batches)
    return batches


def _probe_threads(config: TrainConfig, encoded: Sequence[Encoded]) -> int:
    """1 or one thread per core, whichever runs forward and backward passes faster now (on a
    throw-away model: the run's own starts from its seed)."""
    import torch

    cores = _cores()
    if cores == 1:
        return 1
    model, _ = _new_model(config)
    batches = sorted(_epoch(encoded, random.Random(0)), key=lambda b: b.ids.shape[1])[:3]
    best, best_time = 1, math.inf
    for n in (1, cores):
        torch.set_num_threads(n)
        batch_loss(model, batches[0], config).backward()  # warm up
        t = time.perf_counter()
        for b in batches[1:]:
            batch_loss(model, b, config).backward()
        if (spent := time.perf_counter() - t) < best_time:
            best, best_time = n, spent
    return best


def _lr(cfg: TrainConfig, step: int, progress: float) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * cos)


Progress = Callable[[float, int, float, float], None]
"""Called after each step with (fraction done, step, recent loss, tokens per second)."""


def train_model(
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    corpus: Corpus | None = None,
    workdir: str | Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train a model with ``config`` and write its files into ``out``.

    With ``config.workers`` above 1, that many processes train together (this one and
    ``workers - 1`` started for the run): each takes its share of every batch's rows, and the
    gradients are summed across them before each step, so the run computes what one process
    computes on the whole batch.

    Args:
        out: the folder for the GGUF, ``tokenizer.json``, ``hf/`` and the manifest.
        config: the recipe.
        corpus: a corpus already drawn (else ``make_corpus`` with the config's seed and size).
        workdir: where the example databases are built (default: ``out/databases``).
        progress: called after each step.
    """
    import torch

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        world = SqlWorld(workdir or root / "databases", seed=0)
        corpus = make_corpus(world, seed=config.seed, size=config.corpus_size)
    seconds["corpus"] = time.perf_counter() - t0
    t = time.perf_counter()
    texts = itertools.islice(corpus.texts(), TOKENIZER_EXAMPLES)
    tokenizer = train_tokenizer(config.preset.vocab_size, config.seed, texts=texts)
    seconds["tokenizer"] = time.perf_counter() - t
    t = time.perf_counter()
    encoded = [e for e in encode_examples(tokenizer, corpus.train) if len(e[0]) <= _BUCKETS[-1]]
    seconds["encode"] = time.perf_counter() - t

    workers = config.workers
    with _Group(workers, config, encoded) as group:
        t = time.perf_counter()
        threads = _threads(config, workers) or _probe_threads(config, encoded)
        seconds["threads_probe"] = time.perf_counter() - t
        group.connect()
        run = _optimise(config, encoded, 0, workers, threads, progress)
    seconds["train"] = run.seconds

    t = time.perf_counter()
    seconds["total"] = time.perf_counter() - t0  # up to the export, which is a second
    losses = run.losses
    manifest = {
        "trained": {
            "config": {k: v for k, v in asdict(config).items() if k != "preset"},
            "steps": run.steps,
            "tokens": run.tokens,
            "examples": len(encoded),
            "first_loss": float(np.mean(losses[:20])) if losses else None,
            "last_loss": float(np.mean(losses[-20:])) if losses else None,
            "torch": torch.__version__,
            "workers": workers,
            "threads": threads,
            "cpus": os.cpu_count(),
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        }
    }
    files = write_model(
        config.preset,
        tokenizer,
        run.model.gguf_weights(),
        out=root,
        seed=config.seed,
        dtype=config.dtype,
        manifest=manifest,
    )
    seconds["export"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return TrainResult(
        files=files,
        steps=run.steps,
        tokens=run.tokens,
        curve=run.curve,
        seconds=seconds,
        first_loss=float(np.mean(losses[:20])) if losses else math.nan,
        last_loss=float(np.mean(losses[-20:])) if losses else math.nan,
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _threads(config: TrainConfig, workers: int) -> int | None:
    """Torch threads per process: the recipe's, else the cores shared out among several
    processes; None for one process, which probes."""
    if config.threads is not None or workers == 1:
        return config.threads
    return max(1, _cores() // workers)


@dataclass(slots=True)
class _Run:
    model: Any
    steps: int
    tokens: int
    losses: list[float]
    curve: list[tuple[int, float, float]]
    seconds: float


def _new_model(config: TrainConfig) -> tuple[Any, Any]:
    """The model and its optimiser, the same in every process (seeded)."""
    import torch

    from orchestrator.train._torch import TorchLlama

    torch.manual_seed(config.seed)
    model = TorchLlama(config.preset, seed=config.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    return model, opt


def batch_loss(model: Any, b: _Batch, config: TrainConfig, rank: int = 0, world: int = 1) -> Any:
    """The loss of process ``rank`` of ``world`` on batch ``b``: the summed cross-entropy of
    its rows (every ``world``-th, from ``rank``) over the trained tokens of the whole batch, so
    that the processes' losses, and their gradients, add up to the whole batch's mean."""
    import torch

    ids = torch.from_numpy(b.ids[rank::world])
    target = torch.from_numpy(b.target[rank::world])
    n = max(1, int(b.target.sum()))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        logits = model(ids[:, :-1], select=target)
    return (
        torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][target], reduction="sum") / n
    )


def _optimise(
    config: TrainConfig,
    encoded: Sequence[Encoded],
    rank: int,
    world: int,
    threads: int,
    progress: Progress | None,
) -> _Run:
    """The training loop of process ``rank`` of ``world`` (rank 0 keeps the clock: its share
    of the time budget travels with the gradients, so every process stops at the same step)."""
    import torch

    torch.set_num_threads(threads)
    model, opt = _new_model(config)
    params = list(model.parameters())
    rng = random.Random(f"legato/train/batches/{config.seed}")
    budget = config.minutes * 60.0
    step = 0
    tokens = 0
    done = 0.0
    losses: list[float] = []
    curve: list[tuple[int, float, float]] = []
    window: list[float] = []
    batches: list[_Batch] = []
    start = time.perf_counter()
    model.train()
    while done < 1.0:
        if not batches:
            batches = _epoch(encoded, rng)
        b = batches.pop()
        for group in opt.param_groups:
            group["lr"] = _lr(config, step, done)
        opt.zero_grad(set_to_none=False)
        loss = batch_loss(model, b, config, rank, world) if b.ids[rank::world].size else None
        if loss is not None:
            loss.backward()
        value = float(loss.detach()) if loss is not None else 0.0
        clock = (time.perf_counter() - start) / budget if rank == 0 else 0.0
        if world > 1:
            value, clock = _all_reduce(params, value, clock)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        tokens += b.tokens
        done = step / config.steps if config.steps is not None else clock
        losses.append(value)
        window.append(value)
        now = time.perf_counter() - start
        if len(window) >= 20:
            curve.append((step, now, sum(window) / len(window)))
            window = []
        if progress is not None:
            progress(min(1.0, done), step, sum(losses[-20:]) / len(losses[-20:]), tokens / now)
    if window:
        curve.append((step, time.perf_counter() - start, sum(window) / len(window)))
    return _Run(model, step, tokens, losses, curve, time.perf_counter() - start)


def _all_reduce(params: list[Any], loss: float, clock: float) -> tuple[float, float]:
    """Sum the gradients, the losses and the clocks of every process, in one exchange."""
    import torch
    import torch.distributed as dist

    flat = torch.cat([p.grad.reshape(-1) for p in params] + [torch.tensor([loss, clock])])
    dist.all_reduce(flat)
    at = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[at : at + n].view_as(p.grad))
        at += n
    return float(flat[at]), float(flat[at + 1])


class _Group:
    """The processes of a data-parallel run: on entry, the examples are written to a file
    and ``workers - 1`` processes are started on them; ``connect`` joins this process (rank 0)
    to theirs; on exit they are waited for, and stopped if they are still running."""

    TIMEOUT_S: Final = 120.0

    def __init__(self, workers: int, config: TrainConfig, encoded: Sequence[Encoded]) -> None:
        self.workers = workers
        self.config = config
        self.encoded = encoded
        self.procs: list[Any] = []
        self.tmp: Any = None

    def __enter__(self) -> _Group:
        if self.workers == 1:
            return self
        import pickle
        import subprocess
        import sys
        import tempfile

        self.tmp = tempfile.TemporaryDirectory(prefix="legato-train-")
        folder = Path(self.tmp.name)
        lengths = np.array([len(ids) for ids, _ in self.encoded], dtype=np.int64)
        np.savez(
            folder / "examples.npz",
            ids=np.concatenate([ids for ids, _ in self.encoded]),
            mask=np.concatenate([mask for _, mask in self.encoded]),
            lengths=lengths,
        )
        (folder / "config.pickle").write_bytes(pickle.dumps(self.config))
        # a fresh interpreter per process (not multiprocessing's spawn, which would run the
        # caller's main module again), finding this package where this process found it
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), *filter(None, [env.get("PYTHONPATH")])]
        )
        for rank in range(1, self.workers):
            cmd = [sys.executable, "-m", "orchestrator.train._worker", str(folder), str(rank)]
            self.procs.append(subprocess.Popen([*cmd, str(self.workers)], env=env))
        return self

    def connect(self) -> None:
        if self.workers > 1:
            _join(0, self.workers, self.tmp.name, self.TIMEOUT_S)

    def __exit__(self, *exc: object) -> None:
        if self.workers == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            if exc[0] is None:
                dist.barrier()  # every process is done with the group before it goes
            dist.destroy_process_group()
        import subprocess

        for proc in self.procs:
            try:
                proc.wait(timeout=self.TIMEOUT_S if exc[0] is None else 5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        failed = [f"{i} (exit {p.returncode})" for i, p in enumerate(self.procs, start=1)
                  if p.returncode != 0]  # fmt: skip
        self.tmp.cleanup()
        if failed and exc[0] is None:
            raise RuntimeError(f"training process(es) {', '.join(failed)} failed")


def _join(rank: int, world: int, folder: str, timeout_s: float) -> None:
    import datetime

    import torch.distributed as dist

    store = dist.FileStore(str(Path(folder) / "store"), world)  # type: ignore[attr-defined]
    dist.init_process_group(
        "gloo",
        store=store,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def worker(folder: str, rank: int, world: int) -> None:
    """A training process other than the first (``python -m orchestrator.train._worker``):
    the same loop on its share of each batch."""
    import pickle

    import torch.distributed as dist

    config: TrainConfig = pickle.loads((Path(folder) / "config.pickle").read_bytes())
    with np.load(Path(folder) / "examples.npz") as f:
        ids, mask, lengths = f["ids"], f["mask"], f["lengths"]
    ends = np.cumsum(lengths)
    encoded = [(ids[e - n : e], mask[e - n : e]) for e, n in zip(ends, lengths, strict=True)]
    _join(rank, world, folder, _Group.TIMEOUT_S)
    try:
        threads = _threads(config, world) or 1
        _optimise(config, encoded, rank, world, threads, None)
        dist.barrier()
    finally:
        dist.destroy_process_group()
