"""``legato bench grammar``: what grammar-constrained decoding costs, for every shipped grammar,
at a 2k vocabulary (the made models' tokenizer) and a 32k one (trained here for the benchmark).

For each grammar and vocabulary it measures, in one run:

- **mask time**: the wall time of filling one bitmask row (``TokenMatcher.fill``), the work the
  embedded engine adds per constrained token (DESIGN.md, "XGrammar"). Two ways of walking the
  grammar, each reported as p50/p99/max in microseconds:

  - *walk*: random-logit decoding. Each step draws seeded standard-normal logits over the
    vocabulary, masks them and takes the argmax (a uniform choice among the allowed tokens);
    end tokens are avoided for ``step_budget`` steps and preferred after it; a sequence that
    ends (or runs past four budgets) is followed by a fresh matcher. Uniform choice follows
    the vocabulary, not the language: at 32k most allowed tokens are words and numbers, so
    the walk rarely opens a string, while at 2k it stays in strings for long.
  - *text*: realistic outputs (JSON tool calls, SQL queries, plans and AsyncLM text taken
    from the tokenizer corpus, ``orchestrator.engine._corpus``, in each grammar's layout),
    tokenized by the tokenizer and fed through a matcher token by token, a mask filled before
    each token and once at the end (where a model would choose the end token).

  The mask targets take, per grammar, the worse of the two walks: a slow state that real
  outputs visit counts even where the random walk misses it.
- **compile time**: *cold*, a fresh ``GrammarCompiler`` (empty xgrammar cache) compiling the
  grammar, the tokenizer-info preprocessing of making that compiler timed apart (``info_ms``);
  *cached*, compiling it again on the same compiler (Legato's cache hit). Medians of
  ``compile_repeats``.
- **throughput**: the embedded engine (the ``small`` preset by default, whose vocabulary is the
  2k one) with ``batch`` requests always in flight (a new one starts as one ends), unconstrained
  and constrained by each grammar, sampling at temperature 1 with end tokens allowed and
  ``max_tokens`` per request. Tokens/s is the engine's generated-token counter over a window
  that starts after a warm-up (the batch is full throughout it); grammars end generations at
  different lengths, which keeping the batch full makes comparable per token. Each round runs,
  for every grammar, a constrained and an unconstrained window back to back (alternating which
  goes first); a grammar's ratio is the median over rounds of its tokens/s over the paired
  unconstrained window's. ``tok_cpu_s_ratio`` is the same with tokens per second of process
  CPU time: less moved by other processes taking the cores, but blind to waiting.

Timings are wall times, and on a shared machine other processes move them: the load average
before and after is in the report's config, and the throughput ratios per round are in its
rows.

Targets (DESIGN.md section 6): ``mask_p50_us_32k_max`` and ``mask_p99_us_32k_max``, the worst
over the grammars at 32k (aims 5 us and 1 ms), ``constrained_throughput_ratio_min``, the worst
grammar's ratio (aim 0.9).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import itertools
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import grammars
from dsl import Grammar
from orchestrator.bench._report import Report, Target, _cell, progress
from orchestrator.constrain import (
    CompiledGrammar,
    GrammarCompiler,
    allowed,
    new_bitmask,
    vocab_bytes,
)
from orchestrator.engine import (
    PRESETS,
    EngineRequest,
    EngineTokenizer,
    SampleParams,
    build_engine,
)
from orchestrator.engine._corpus import corpus_text
from orchestrator.engine._make import SPECIAL_TOKENS, cache_root, cached_model

__all__ = [
    "QUICK",
    "bench_tokenizer",
    "main",
    "measure",
    "print_report",
    "sample_outputs",
    "train_bench_tokenizer",
]

TOKENIZER_VERSION: Final = 1
"""Bumped whenever the 32k tokenizer's corpus or training changes (cached ones are retrained)."""

LARGE_VOCAB: Final = 32_000

QUICK: Final[dict[str, Any]] = {
    "walk_masks": 200,
    "text_masks": 100,
    "mask_seconds": 0.5,
    "compile_repeats": 1,
    "preset": "tiny",
    "window_s": 0.5,
    "warmup_s": 0.2,
    "rounds": 1,
}
"""``measure`` settings of ``--quick``: seconds, not minutes (the figures are rough)."""

# --- the 32k tokenizer ----------------------------------------------------------------------------

_ONSETS: Final = (
    "", "b", "br", "c", "ch", "d", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p",
    "pr", "qu", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z",
)  # fmt: skip
_NUCLEI: Final = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y")
_CODAS: Final = ("", "", "", "n", "r", "s", "l", "m", "t", "nd", "st", "ck", "ng", "x")
_WORD: Final = re.compile(r"[A-Za-z]{3,}")
_SPECIAL: Final = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
_LEXICON_SIZE: Final = 40_000
_CORPUS_SEEDS: Final = 4
_SUBSTITUTE: Final = 0.5


def _lexicon(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct pronounceable pseudo-words of one to four syllables, sorted."""
    words: set[str] = set()
    while len(words) < n:
        syllables = rng.choice((1, 2, 2, 2, 3, 3, 4))
        words.add(
            "".join(
                rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)
                for _ in range(syllables)
            )
        )
    return sorted(words)


def _large_corpus(seed: int) -> Iterator[str]:
    """The made models' corpus (``corpus_text``) for a few seeds, half of its lowercase and
    capitalised words replaced by pseudo-words drawn with Zipf-like frequencies: the same
    shapes (prose, SQL, JSON, plans, frames, ChatML), with enough distinct words for a 32k
    BPE vocabulary. Special tokens are cut out, as the model maker does."""
    rng = random.Random(seed)
    lexicon = _lexicon(rng, _LEXICON_SIZE)
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(len(lexicon))))

    def substitute(m: re.Match[str]) -> str:
        word = m.group(0)
        if word.isupper() or rng.random() > _SUBSTITUTE:
            return word  # SQL keywords, frame markers
        new = rng.choices(lexicon, cum_weights=cumulative)[0]
        return new.capitalize() if word[0].isupper() else new

    for k in range(_CORPUS_SEEDS):
        text = _WORD.sub(substitute, corpus_text(seed * _CORPUS_SEEDS + k))
        for piece in text.split("\n\n"):
            yield from (part for part in _SPECIAL.split(piece) if part)


def train_bench_tokenizer(vocab_size: int = LARGE_VOCAB, seed: int = 0) -> Tokenizer:
    """Train a byte-level BPE tokenizer of ``vocab_size`` tokens on ``_large_corpus(seed)``, set
    up as the model maker's (special tokens 0..3, then the 256 byte symbols, then merges).

    Raises:
        RuntimeError: the corpus yields fewer than 95% of ``vocab_size`` tokens.
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
    tokenizer.train_from_iterator(_large_corpus(seed), trainer)
    if tokenizer.get_vocab_size() < 0.95 * vocab_size:
        raise RuntimeError(
            f"the benchmark corpus yields {tokenizer.get_vocab_size()} tokens, "
            f"fewer than 95% of {vocab_size}"
        )
    return tokenizer


def bench_tokenizer(vocab_size: int = LARGE_VOCAB, seed: int = 0) -> tuple[Path, bool]:
    """The benchmark's large tokenizer file, trained on first use and cached in
    ``cache_root()/tokenizers``; and whether it was already cached. Written to a temporary
    file and renamed into place, so a process never reads a half-written one."""
    folder = cache_root() / "tokenizers"
    path = folder / f"bench-{vocab_size}-s{seed}-v{TOKENIZER_VERSION}.json"
    if path.is_file():
        return path, True
    tokenizer = train_bench_tokenizer(vocab_size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        tokenizer.save(tmp)
        Path(tmp).chmod(0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path, False


# --- realistic outputs --------------------------------------------------------------------------

_INTR: Final = re.compile(r" ?\[INTR\] .*? \[END\]")
_TASK: Final = re.compile(r"^[1-9][0-9]*\. ")


def sample_outputs(name: str, seed: int = 0) -> list[str]:
    """Texts in the language of the shipped grammar ``name``, from the tokenizer corpus
    (``corpus_text(seed)``), put in the grammar's layout: JSON tool calls re-dumped with
    ``json.dumps`` (``json``, ``tool_call``), SQL queries without their ``;``
    (``sqlite_select``), plans with a numbered join line (``llmcompiler_plan``), AsyncLM text
    without the runtime's ``[INTR]`` frames (``asynclm_cml``). Empty for other grammars. Not
    checked against the grammar here (the caller's matcher is)."""
    out: list[str] = []
    for raw in corpus_text(seed).split("\n\n"):
        piece = raw.strip()
        if piece.startswith("<|im_start|>"):
            continue
        match name:
            case "json" | "tool_call":
                try:
                    value = json.loads(piece)
                except ValueError:
                    continue
                if name == "json" or (
                    isinstance(value, dict)
                    and set(value) == {"name", "arguments"}
                    and isinstance(value["arguments"], dict)
                ):
                    out.append(json.dumps(value))
            case "sqlite_select":
                out.extend(
                    line.rstrip(";") for line in piece.splitlines() if line.startswith("SELECT ")
                )
            case "llmcompiler_plan":
                if not piece.endswith("<END_OF_PLAN>"):
                    continue
                tasks = [line for line in piece.splitlines() if _TASK.match(line)]
                out.append("\n".join([*tasks, f"{len(tasks) + 1}. join()", "<END_OF_PLAN>"]))
            case "asynclm_cml":
                if "[CALL]" in piece:
                    out.append(_INTR.sub("", piece))
    return out


# --- measuring ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Vocab:
    label: str
    tokenizer: EngineTokenizer
    vocab: list[bytes]
    stop_ids: list[int]
    vocab_bytes_ms: float
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.vocab)


def _ms(seconds: float) -> float:
    return seconds * 1e3


def _stats(times_us: Sequence[float]) -> tuple[float, float, float]:
    if not times_us:
        return math.nan, math.nan, math.nan
    arr = np.asarray(times_us, dtype=np.float64)
    p50, p99 = np.percentile(arr, [50, 99])
    return float(p50), float(p99), float(arr.max())


def _walk(
    compiled: CompiledGrammar,
    stop_ids: Sequence[int],
    *,
    masks: int,
    seconds: float,
    step_budget: int,
    seed: int,
) -> list[float]:
    """Mask times (us) of random-logit decoding through ``compiled`` (see the module doc)."""
    size = compiled.vocab_size
    rng = np.random.default_rng(seed)
    bitmask = new_bitmask(1, size)
    stops = np.zeros(size, dtype=bool)
    stops[list(stop_ids)] = True
    matcher = compiled.matcher()
    steps = 0
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < masks and (not times or time.perf_counter() < deadline):
        t0 = time.perf_counter_ns()
        matcher.fill(bitmask, 0)
        times.append((time.perf_counter_ns() - t0) / 1e3)
        ok = allowed(bitmask[0], size)
        if not ok.any():
            matcher, steps = compiled.matcher(), 0
            continue
        logits: npt.NDArray[np.float32] = rng.standard_normal(size, dtype=np.float32)
        logits[~ok] = -np.inf
        ending = ok & stops
        if steps < step_budget and (ok & ~stops).any():
            logits[stops] = -np.inf  # keep going
        elif steps >= step_budget and ending.any():
            logits[~ending] = -np.inf  # end where the grammar allows it
        token = int(np.argmax(logits))
        matcher.accept(token)
        steps += 1
        if matcher.terminated or steps >= 4 * step_budget:
            matcher, steps = compiled.matcher(), 0
    return times


def _feed(
    compiled: CompiledGrammar,
    texts: Sequence[list[int]],
    *,
    masks: int,
    seconds: float,
) -> tuple[list[float], int]:
    """Mask times (us) of feeding tokenized ``texts`` (cycled) through ``compiled``, and how many
    texts the grammar rejected part-way."""
    bitmask = new_bitmask(1, compiled.vocab_size)
    times: list[float] = []
    rejected = 0
    if not texts:
        return times, rejected
    deadline = time.perf_counter() + seconds
    for ids in itertools.cycle(texts):
        if len(times) >= masks or time.perf_counter() >= deadline:
            break
        matcher = compiled.matcher()
        for token in [*ids, None]:
            t0 = time.perf_counter_ns()
            matcher.fill(bitmask, 0)
            times.append((time.perf_counter_ns() - t0) / 1e3)
            if token is not None and not matcher.accept(token):
                rejected += 1
                break
    return times, rejected


def _load_vocabs(preset: str, seed: int) -> list[_Vocab]:
    """The engine model's vocabulary (2k) and the benchmark's 32k one; xgrammar is imported and
    warmed up on the first before anything is timed."""
    vocabs: list[_Vocab] = []
    small = cached_model(preset, seed=seed).tokenizer
    t0 = time.perf_counter()
    large, was_cached = bench_tokenizer(LARGE_VOCAB, seed)
    train_s = time.perf_counter() - t0
    sources: list[tuple[Path, str, dict[str, Any]]] = [
        (small, f"the made models' tokenizer (cached_model({preset!r}))", {}),
        (
            large,
            "trained for this benchmark",
            {"cached": was_cached, "train_s": None if was_cached else round(train_s, 2)},
        ),
    ]
    for path, source, extra in sources:
        tk = EngineTokenizer.from_file(path)
        t0 = time.perf_counter()
        vocab = vocab_bytes(tk.tk)
        elapsed = time.perf_counter() - t0
        label = f"{round(len(vocab) / 1000)}k"
        stops = sorted(tk.stop_ids())
        info = {"path": str(path), **extra}
        vocabs.append(_Vocab(label, tk, vocab, stops, _ms(elapsed), source, info))
    warm = GrammarCompiler(vocabs[0].vocab, vocabs[0].stop_ids)
    warm.compile(Grammar.regex("[a-z]+"))
    return vocabs


def _compile_times(
    grammar: Grammar, vocab: _Vocab, repeats: int
) -> tuple[float, float, float, CompiledGrammar]:
    """(tokenizer-info ms, cold compile ms, cached compile ms) medians, and the compiled
    grammar."""
    info: list[float] = []
    cold: list[float] = []
    cached: list[float] = []
    compiled: CompiledGrammar | None = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        compiler = GrammarCompiler(vocab.vocab, vocab.stop_ids)
        t1 = time.perf_counter()
        compiled = compiler.compile(grammar)
        t2 = time.perf_counter()
        again = compiler.compile(grammar)
        t3 = time.perf_counter()
        assert again is compiled
        info.append(_ms(t1 - t0))
        cold.append(_ms(t2 - t1))
        cached.append(_ms(t3 - t2))
    assert compiled is not None
    return statistics.median(info), statistics.median(cold), statistics.median(cached), compiled


@dataclass(frozen=True, slots=True, kw_only=True)
class _Window:
    """One measured window of one arm: tokens generated, wall and process CPU seconds, engine
    steps, requests finished."""

    tokens: int
    seconds: float
    cpu_s: float
    steps: int
    finished: int

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan

    @property
    def tok_cpu_s(self) -> float:
        return self.tokens / self.cpu_s if self.cpu_s > 0 else math.nan


def _totals(windows: Sequence[_Window]) -> dict[str, float | int]:
    """Over ``windows``: tokens/s, tokens per engine step (how full the batch was) and the
    requests that finished."""
    tokens = sum(w.tokens for w in windows)
    seconds = sum(w.seconds for w in windows)
    steps = sum(w.steps for w in windows)
    finished = sum(w.finished for w in windows)
    return {
        "tok_s": tokens / seconds if seconds > 0 else math.nan,
        "tok_per_step": tokens / steps if steps else math.nan,
        "requests": finished,
    }


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and not math.isnan(a) else math.nan


_POLL_S: Final = 0.002
"""How often a throughput window looks at the engine's step counter."""


async def _throughput(
    names: Sequence[str],
    *,
    preset: str,
    seed: int,
    batch: int,
    window_s: float,
    warmup_s: float,
    rounds: int,
    max_tokens: int,
    bar: Progress,
    task: TaskID,
) -> dict[str, list[tuple[_Window, _Window]]]:
    """Per grammar, one (constrained, unconstrained) pair of adjacent windows per round; the
    unconstrained window comes first in even rounds and second in odd ones, so that a change
    in the machine's load between the two tends to cancel out over rounds."""
    engine, _ = build_engine(preset, seed=seed, max_batch=batch)
    assert engine.tokenizer is not None
    prompts = [engine.tokenizer.encode(f"Request {i}: the answer is") for i in range(batch)]
    requests = itertools.count()

    async def window(grammar: Grammar | None) -> _Window:
        finished = 0

        async def client(i: int) -> None:
            nonlocal finished
            while True:
                matcher = await engine.matcher(grammar) if grammar is not None else None
                params = SampleParams(max_tokens=max_tokens, temperature=1.0, seed=next(requests))
                await engine.complete(
                    EngineRequest(prompt=prompts[i], params=params, constraint=matcher)
                )
                finished += 1

        async with anyio.create_task_group() as clients:
            for i in range(batch):
                clients.start_soon(client, i)
            await anyio.sleep(warmup_s)  # the batch fills up
            # Watch the engine's step counter and measure from the first step that ends in the
            # window to the last: whole steps only (a window holds a few dozen steps of the
            # small model, so a partial one would weigh several percent).
            marks: list[tuple[float, float, int, int, int]] = []
            seen = engine.counters["steps"]
            end = time.perf_counter() + window_s
            while time.perf_counter() < end:
                await anyio.sleep(_POLL_S)
                if engine.counters["steps"] != seen:
                    seen = engine.counters["steps"]
                    marks.append(
                        (
                            time.perf_counter(),
                            time.process_time(),
                            engine.counters["generated_tokens"],
                            seen,
                            finished,
                        )
                    )
            if len(marks) < 2:  # no whole step in the window: nothing to measure
                now = (time.perf_counter(), time.process_time(), 0, 0, 0)
                marks = [now, now]
            first, last = marks[0], marks[-1]
            measured = _Window(
                tokens=last[2] - first[2],
                seconds=last[0] - first[0],
                cpu_s=last[1] - first[1],
                steps=last[3] - first[3],
                finished=last[4] - first[4],
            )
            clients.cancel_scope.cancel()
        # The aborted requests leave at the engine's next step (it has no idle event).
        while engine.running or engine.waiting:  # noqa: ASYNC110
            await anyio.sleep(0.005)
        bar.advance(task)
        return measured

    runs: dict[str, list[tuple[_Window, _Window]]] = {name: [] for name in names}
    async with anyio.create_task_group() as serving:
        await serving.start(engine.serve)
        for name in names:  # compiled once per engine, before any window
            await engine.matcher(Grammar.lark(name))
        for r in range(rounds):
            for name in names:
                grammar = Grammar.lark(name)
                if r % 2 == 0:
                    base = await window(None)
                    constrained = await window(grammar)
                else:
                    constrained = await window(grammar)
                    base = await window(None)
                runs[name].append((constrained, base))
        serving.cancel_scope.cancel()
    return runs


def measure(
    *,
    grammar_names: Sequence[str] | None = None,
    walk_masks: int = 2000,
    text_masks: int = 1000,
    mask_seconds: float = 5.0,
    step_budget: int = 200,
    compile_repeats: int = 3,
    preset: str = "small",
    batch: int = 8,
    window_s: float = 1.5,
    warmup_s: float = 0.3,
    rounds: int = 8,
    max_tokens: int = 64,
    seed: int = 0,
    console: Console | None = None,
) -> Report:
    """Run the benchmark (see the module doc) and return its report.

    Args:
        grammar_names: shipped grammars to measure (default: all of ``grammars.names()``).
        walk_masks, text_masks: mask timings to collect per grammar and vocabulary, for the
            random walk and the realistic texts; each stops early after ``mask_seconds``.
        step_budget: random-walk steps before a sequence prefers to end.
        compile_repeats: fresh compilers per grammar and vocabulary (medians reported).
        preset, batch, window_s, warmup_s, rounds, max_tokens: the throughput runs.
        seed: the made model's and tokenizers' seed, and the walks' seeds.
        console: where the progress bar goes (stderr by default).
    """
    names = list(grammar_names if grammar_names is not None else grammars.names())
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with progress(console=console, transient=True) as bar:
        setup = bar.add_task("tokenizers", total=1)
        vocabs = _load_vocabs(preset, seed)
        bar.advance(setup)
        cases = bar.add_task("masks, compiles", total=len(names) * len(vocabs))
        samples = {name: sample_outputs(name, seed + 1) for name in names}
        for name in names:
            grammar = Grammar.lark(name)
            for k, vocab in enumerate(vocabs):
                info_ms, cold_ms, cached_ms, compiled = _compile_times(
                    grammar, vocab, compile_repeats
                )
                walk = _walk(
                    compiled,
                    vocab.stop_ids,
                    masks=walk_masks,
                    seconds=mask_seconds,
                    step_budget=step_budget,
                    seed=seed * 1000 + k,
                )
                texts = [vocab.tokenizer.encode(s) for s in samples[name]]
                random.Random(seed).shuffle(texts)
                fed, rejected = _feed(compiled, texts, masks=text_masks, seconds=mask_seconds)
                w50, w99, wmax = _stats(walk)
                t50, t99, tmax = _stats(fed)
                rows.append(
                    {
                        "grammar": name,
                        "vocab": vocab.label,
                        "walk_n": len(walk),
                        "walk_p50_us": w50,
                        "walk_p99_us": w99,
                        "walk_max_us": wmax,
                        "text_n": len(fed),
                        "text_p50_us": t50,
                        "text_p99_us": t99,
                        "text_max_us": tmax,
                        "text_rejected": rejected,
                        "info_ms": info_ms,
                        "cold_ms": cold_ms,
                        "cached_ms": cached_ms,
                    }
                )
                bar.advance(cases)
        tp_task = bar.add_task(
            f"throughput ({preset}, batch {batch})", total=rounds * 2 * len(names)
        )
        runs = anyio.run(
            functools.partial(
                _throughput,
                names,
                preset=preset,
                seed=seed,
                batch=batch,
                window_s=window_s,
                warmup_s=warmup_s,
                rounds=rounds,
                max_tokens=max_tokens,
                bar=bar,
                task=tp_task,
            )
        )
    engine_vocab = f"{round(PRESETS[preset].vocab_size / 1000)}k"
    base = [b for pairs in runs.values() for _, b in pairs]
    rows.append({"grammar": "(unconstrained)", "vocab": engine_vocab, **_totals(base)})
    ratios: dict[str, float] = {}
    for name in names:
        arm = [w for w, _ in runs[name]]
        per_round = [_ratio(w.tok_s, b.tok_s) for w, b in runs[name]]
        per_cpu = [_ratio(w.tok_cpu_s, b.tok_cpu_s) for w, b in runs[name]]
        ratios[name] = _median(per_round)
        for row in rows:
            if row["grammar"] == name and row["vocab"] == engine_vocab:
                row.update(_totals(arm))
                row["tok_s_ratio"] = ratios[name]
                row["tok_s_ratio_rounds"] = per_round
                row["tok_cpu_s_ratio"] = _median(per_cpu)
    large = [r for r in rows if r["vocab"] == vocabs[-1].label and "walk_n" in r]

    def worst(key: str) -> float:
        values = [
            v for r in large for v in (r[f"walk_{key}"], r[f"text_{key}"]) if not math.isnan(v)
        ]
        return max(values, default=math.nan)

    config: dict[str, Any] = {
        "grammars": names,
        "vocabs": {
            v.label: {
                "size": v.size,
                "source": v.source,
                "stop_ids": v.stop_ids,
                "vocab_bytes_ms": round(v.vocab_bytes_ms, 1),
                **v.extra,
            }
            for v in vocabs
        },
        "walk_masks": walk_masks,
        "text_masks": text_masks,
        "mask_seconds": mask_seconds,
        "step_budget": step_budget,
        "text_samples": {name: len(s) for name, s in samples.items()},
        "compile_repeats": compile_repeats,
        "engine_model": preset,
        "batch": batch,
        "window_s": window_s,
        "warmup_s": warmup_s,
        "rounds": rounds,
        "max_tokens": max_tokens,
        "xgrammar": importlib.metadata.version("xgrammar"),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    ratio_min = min((r for r in ratios.values() if not math.isnan(r)), default=math.nan)
    targets = {
        "mask_p50_us_32k_max": Target(worst("p50_us"), 5.0, "lower"),
        "mask_p99_us_32k_max": Target(worst("p99_us"), 1000.0, "lower"),
        "constrained_throughput_ratio_min": Target(ratio_min, 0.9, "higher"),
    }
    return Report("grammar", config, rows, targets)


def print_report(report: Report, console: Console) -> None:
    """Print the report as readable tables: mask and compile times per grammar and vocabulary,
    the engine's throughput per grammar, and the targets (met or MISSED)."""
    config = report.config
    vocabs = config.get("vocabs", {})
    sizes = ", ".join(
        f"{label}={v['size']:,}" + (" (cached)" if v.get("cached") else "")
        for label, v in vocabs.items()
    )
    console.print(
        f"[bold]legato bench grammar[/bold]  [dim]vocabularies {sizes}; xgrammar "
        f"{config.get('xgrammar')}; load average {config.get('loadavg_before')} -> "
        f"{config.get('loadavg_after')} on {config.get('cpus')} CPUs; "
        f"{config.get('wall_s')} s[/dim]"
    )
    masks = Table(
        title="grammar: mask time per token (us; walk = random logits, text = realistic "
        "outputs) and compile time (ms)",
        title_justify="left",
    )
    columns = [
        ("grammar", "grammar"),
        ("vocab", "vocab"),
        ("walk n", "walk_n"),
        ("walk p50", "walk_p50_us"),
        ("walk p99", "walk_p99_us"),
        ("walk max", "walk_max_us"),
        ("text n", "text_n"),
        ("text p50", "text_p50_us"),
        ("text p99", "text_p99_us"),
        ("text max", "text_max_us"),
        ("info", "info_ms"),
        ("cold", "cold_ms"),
        ("cached", "cached_ms"),
    ]
    for i, (header, _) in enumerate(columns):
        masks.add_column(header, justify="left" if i < 2 else "right")
    for row in report.rows:
        if "walk_n" in row:
            masks.add_row(*(_cell(row.get(key)) for _, key in columns))
    console.print(masks)
    throughput = Table(
        title=f"grammar: embedded engine throughput ({config.get('engine_model')} model, batch "
        f"{config.get('batch')}, ratio = median over {config.get('rounds')} rounds vs the "
        "paired unconstrained window)",
        title_justify="left",
    )
    tp_columns = [
        ("grammar", "grammar"),
        ("tok/s", "tok_s"),
        ("tok/step", "tok_per_step"),
        ("requests", "requests"),
        ("ratio", "tok_s_ratio"),
        ("per round", "tok_s_ratio_rounds"),
        ("cpu ratio", "tok_cpu_s_ratio"),
    ]
    for i, (header, _) in enumerate(tp_columns):
        throughput.add_column(header, justify="left" if i in (0, 5) else "right")
    for row in report.rows:
        if "tok_s" in row:
            cells = []
            for _, key in tp_columns:
                value = row.get(key)
                if isinstance(value, list):
                    cells.append(" ".join(f"{v:.2f}" for v in value))
                else:
                    cells.append(_cell(value))
            throughput.add_row(*cells)
    console.print(throughput)
    targets = Table(title="grammar: targets", title_justify="left")
    for name in ("target", "value", "aim", "better", "status"):
        targets.add_column(name, justify="left" if name == "target" else "right")
    for name, t in report.targets.items():
        status = "[green]met[/green]" if t.met else "[bold red]MISSED[/bold red]"
        targets.add_row(name, _cell(t.value), _cell(t.aim), t.better, status)
    console.print(targets)


def main(json_path: str | None, *, quick: bool = False) -> int:
    """``legato bench grammar``: run, print the tables, write ``json_path`` if given; the exit
    code (0)."""
    console = Console() if sys.stdout.isatty() else Console(width=200)
    report = measure(console=Console(stderr=True), **(QUICK if quick else {}))
    print_report(report, console)
    if json_path is not None:
        report.write_json(json_path)
    return 0
