"""``legato bench model``: what the trained demo model can do, on held-out splits of its own
corpus, through the embedded engine (greedy), with and without grammars.

- **Text-to-SQL** on four held-out splits (``orchestrator.train.SPLITS``): ``seen`` (seen
  templates, new questions), ``values`` (literal values never in training), ``combos`` (a shape
  and bindings never combined in training), ``phrasings`` (question frames never in training).
  Each question is answered twice: without a grammar, and under the grammar built for that
  question (``orchestrator.train.sql_grammar``: the database's names, spans of the question as
  literals). Execution accuracy: the query runs (read-only, time-limited) and returns the same
  multiset of rows as the gold query (floats rounded to 6 places). Also reported: the share
  that executes at all, and exact matches.
- **Plans**: the planner prompt of ``dsl.plan`` for held-out questions (``plans_seen``,
  ``plans_values``), four ways: without a grammar (``off``), under the plan grammar built from
  the offered tools (``on``; ``math`` takes a ``dsl.Expression``), under the grounded one
  (``grounded``: also string arguments only from the question's words, ``dsl.plan(...,
  grounded=True)``), and grounded with the question's names required in order (``named``:
  ``dsl.plan(..., grounded=True, names="in_order")``, ``LLMRequest.require`` of
  ``dsl.plans.question_names`` with ``require_order``, and ``require_anywhere`` of
  ``dsl.plans.tool_words``); exact match with the gold plan. Under any grammar the task lines
  are also kept distinct, as ``dsl.plan`` asks (``LLMRequest.distinct_lines``: a repeated line
  is rewound and decoded again). The plan targets are read from ``named``, the way the demo
  model is meant to plan.
- **Agreement**: the same greedy generations (no grammar) from the embedded engine, from torch
  on the same weights, and from llama.cpp's ``llama-server`` if it is built, token for token.
- **Training time**: with ``--train``, a model is trained here with the recipe (``--minutes``)
  and that model is measured; otherwise the shipped model is measured and its training time is
  the one its manifest recorded when it was made.

Targets (issue 8): ``sql_exec_seen`` >= 0.97, ``sql_exec_values`` >= 0.80, ``sql_exec_phrasings``
>= 0.55 (with the grammar), ``plan_exact_seen`` >= 0.97, ``plan_exact_values`` >= 0.90,
``sql_executes_with_grammar`` = 1.0, ``train_minutes`` <= 15.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from rich.console import Console

import dsl
from dsl.plans import (
    grounding_runs,
    plan_grammar,
    question_lists,
    question_names,
    tool_words,
)
from integrations.text2sql import connect_read_only, execute, result_key
from orchestrator.backends import LLMRequest, LocalBackend, Message
from orchestrator.bench._report import Report, Target, progress
from orchestrator.errors import ConfigError
from orchestrator.train import (
    SPLITS,
    Corpus,
    Example,
    SqlWorld,
    heldout_split,
    make_corpus,
    sql_grammar,
    sql_required,
)

__all__ = [
    "SQL_SPLITS",
    "Mode",
    "Outcome",
    "evaluate",
    "main",
    "measure",
    "same_result",
    "sql_splits",
]

Mode = Literal["off", "on", "grounded", "named"]
"""How a generation was constrained: no grammar, its grammar, or (plans) the grounded one,
without or with the question's names required in order."""
PLAN_MODES: tuple[Mode, ...] = ("off", "on", "grounded", "named")
"""The modes each plan is decoded under (SQL: ``off`` and ``on``)."""

_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}
SQL_TOKENS = 96
PLAN_TOKENS = 160
QUERY_SECONDS = 2.0
QUERY_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """One generation, judged.

    Attributes:
        split: the held-out split.
        grammar: ``off``, ``on`` (its grammar), ``grounded`` (plans: the grounded grammar) or
            ``named`` (plans: grounded, the question's names required in order).
        text: what the model wrote.
        correct: SQL: same result as the gold query; plans: the gold plan exactly.
        executes: SQL: the query ran without error (plans: True).
        exact: the text equals the gold answer.
    """

    split: str
    grammar: Mode
    text: str
    correct: bool
    executes: bool
    exact: bool


def same_result(con: sqlite3.Connection, sql: str, gold: str) -> tuple[bool, bool]:
    """(``sql`` returns the same rows as ``gold``, ``sql`` executes) on ``con``, a connection
    from ``connect_read_only``. Both run under the Text-to-SQL executor's guards (read-only,
    ``QUERY_SECONDS`` each); rows compare as multisets with floats to 6 places
    (``result_key``)."""
    mine = execute(con, sql, time_limit=QUERY_SECONDS, max_rows=QUERY_ROWS)
    if not mine.ok:
        return False, False
    want = execute(con, gold, time_limit=QUERY_SECONDS, max_rows=QUERY_ROWS)
    return want.ok and result_key(mine.rows) == result_key(want.rows), True


def _request(ex: Example, mode: Mode, paths: dict[str, Path]) -> LLMRequest:
    g: dsl.Grammar | None = None
    if mode != "off" and ex.sql is not None:
        g = dsl.Grammar.lark(sql_grammar(ex.sql.db, ex.sql.question, path=paths[ex.sql.db]))
    elif mode != "off" and ex.plan is not None:
        runs = grounding_runs(ex.plan.question) if mode in ("grounded", "named") else None
        g = dsl.Grammar.lark(plan_grammar([t.signature() for t in ex.plan.tools], runs=runs))
    required = _required(ex, mode, paths)
    # as dsl.plan(names="in_order") asks: the question's names in order, its tool words
    # anywhere, its lists on alike lines
    named = ex.plan if mode == "named" else None
    return LLMRequest(
        messages=tuple(Message(_ROLES[role], content) for role, content in ex.messages),
        max_tokens=SQL_TOKENS if ex.kind == "sql" else PLAN_TOKENS,
        temperature=0.0,
        grammar=g,
        # As dsl.plan decodes a plan: under a grammar, its task lines distinct.
        distinct_lines=ex.plan is not None and mode != "off",
        # As the Text-to-SQL pipeline asks: under the grammar, the question's values all used.
        require=required,
        require_order=bool(required) and named is not None,
        require_anywhere=(
            tool_words(named.question, [t.name for t in named.tools]) if named else ()
        ),
        alike=question_lists(named.question) if named else (),
    )


def _required(ex: Example, mode: Mode, paths: dict[str, Path]) -> tuple[str, ...]:
    if ex.sql is not None and mode != "off":
        return sql_required(ex.sql.db, ex.sql.question, path=paths[ex.sql.db])
    if ex.plan is not None and mode == "named":
        return question_names(ex.plan.question)
    return ()


async def _generate(
    backend: LocalBackend,
    requests: Sequence[LLMRequest],
    on_done: Any = None,
    concurrency: int = 16,
) -> list[str]:
    out = [""] * len(requests)
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            out[i] = (await backend.complete(requests[i])).text
        if on_done is not None:
            on_done()

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    return out


def evaluate(
    model: str | Path,
    splits: dict[str, list[Example]],
    world: SqlWorld,
    *,
    grammars: Sequence[Mode] = PLAN_MODES,
    on_done: Any = None,
) -> list[Outcome]:
    """Answer every example of ``splits`` with the model on the embedded engine (greedy), once
    per entry of ``grammars`` (``grounded`` and ``named`` only for plans), and judge each
    answer."""
    cases = [
        (name, ex, g)
        for g in grammars
        for name, exs in splits.items()
        for ex in exs
        if g in ("off", "on") or ex.plan is not None
    ]

    async def run() -> list[str]:
        async with LocalBackend(model, max_batch=16, kv_tokens=16384) as backend:
            requests = [_request(ex, g, world.paths) for _, ex, g in cases]
            return await _generate(backend, requests, on_done)

    texts = anyio.run(run)
    cons = {db: connect_read_only(p) for db, p in world.paths.items()}
    out = []
    try:
        for (name, ex, g), text in zip(cases, texts, strict=True):
            text = text.strip()
            if ex.sql is not None:
                correct, executes = same_result(cons[ex.sql.db], text, ex.sql.sql)
                exact = text == ex.sql.sql
            else:
                exact = correct = text == ex.target.strip()
                executes = True
            out.append(Outcome(name, g, text, correct, executes, exact))
    finally:
        for con in cons.values():
            con.close()
    return out


def _share(xs: Sequence[bool]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _agreement(
    gguf: Path, examples: Sequence[Example], texts: dict[int, str]
) -> list[dict[str, Any]]:
    """Greedy text of torch and llama-server against the embedded engine's, per prompt (the
    same token budget as the engine had)."""
    import numpy as np

    from orchestrator.engine import EngineTokenizer, load_gguf
    from orchestrator.train import TorchLlama, preset_of

    loaded = load_gguf(gguf)
    tok = EngineTokenizer.for_model(loaded)
    stop = tok.stop_ids()
    prompts = [tok.encode(tok.render_chat([{"role": r, "content": c} for r, c in ex.messages]))
               for ex in examples]  # fmt: skip
    # Compared as text: the engine's tokens are not kept, and re-encoding its text may split
    # a word differently from how the model wrote it (the same text, other tokens).
    ours = [texts[i] for i in range(len(examples))]
    budget = [SQL_TOKENS if ex.kind == "sql" else PLAN_TOKENS for ex in examples]  # as asked
    rows: list[dict[str, Any]] = []
    model = TorchLlama(preset_of(loaded))
    model.load_gguf_weights({k: np.asarray(v) for k, v in loaded.tensors.items()})
    model.eval()
    torch_out = []
    for p, n in zip(prompts, budget, strict=True):
        got = model.greedy(p, n, stop)
        torch_out.append(tok.tk.decode([t for t in got if t not in stop]))
    rows.append(
        {
            "case": "agreement",
            "engine": "torch",
            "prompts": len(prompts),
            "same_greedy": sum(
                a.strip() == b.strip() for a, b in zip(ours, torch_out, strict=True)
            ),
        }
    )
    from integrations.llamacpp import LlamaServer, find

    binary = find()
    if binary is None:
        missing = "not built (python3 -m integrations.llamacpp build)"
        rows.append({"case": "agreement", "engine": "llama-server", "same_greedy": missing})
        return rows
    import httpx

    same = 0
    with LlamaServer(gguf, binary=binary, parallel=1, threads=2, ctx=2048) as server:
        for p, mine, n in zip(prompts, ours, budget, strict=True):
            r = httpx.post(
                f"{server.base}/completion",
                timeout=120,
                trust_env=False,  # loopback: never through a proxy from the environment
                json={"prompt": p, "n_predict": n, "temperature": 0,
                      "return_tokens": True, "cache_prompt": False},
            )  # fmt: skip
            r.raise_for_status()
            theirs = tok.tk.decode([t for t in r.json()["tokens"] if t not in stop])
            same += theirs.strip() == mine.strip()
    rows.append(
        {
            "case": "agreement",
            "engine": "llama-server",
            "prompts": len(prompts),
            "same_greedy": same,
        }
    )
    return rows


def _trained(gguf: Path) -> dict[str, Any]:
    """What the manifest next to ``gguf`` says of its training (empty for made models)."""
    manifest = json.loads((gguf.parent / "legato-model.json").read_text(encoding="utf-8"))
    trained: dict[str, Any] = manifest.get("trained", {})
    return trained


def _own_corpus(world: SqlWorld, trained: dict[str, Any], size: int | None) -> Corpus:
    """The training corpus a model was trained on, made again from its manifest's seed and
    size (``size`` overrides it)."""
    config = trained.get("config", {})
    return make_corpus(
        world, seed=config.get("seed", 0), size=size or config.get("corpus_size", 150_000)
    )


def _split_rows(
    gguf: Path,
    corpus: Corpus,
    world: SqlWorld,
    names: Sequence[str],
    n: int,
    agreement: int,
    console: Console,
) -> tuple[list[dict[str, Any]], dict[tuple[str, Mode], float], list[bool]]:
    """Evaluate ``gguf`` on ``n`` questions of each split in ``names``: one row per split and
    mode, then the agreement rows (``agreement`` prompts across the splits); also the
    accuracies by (split, mode) and whether each SQL answer under its grammar executed."""
    splits = {name: heldout_split(corpus, name, n) for name in names}
    total = sum(
        (len(PLAN_MODES) if k.startswith("plans_") else 2) * len(v) for k, v in splits.items()
    )
    with progress(console=console, transient=True) as bar:
        task = bar.add_task("generate", total=total)
        outcomes = evaluate(gguf, splits, world, on_done=lambda: bar.advance(task))
    rows: list[dict[str, Any]] = []
    acc: dict[tuple[str, Mode], float] = {}
    executes_g: list[bool] = []
    for name in names:
        modes: tuple[Mode, ...] = PLAN_MODES if name.startswith("plans_") else ("off", "on")
        for g in modes:
            mine = [o for o in outcomes if o.split == name and o.grammar == g]
            acc[(name, g)] = _share([o.correct for o in mine])
            if g == "on" and not name.startswith("plans_"):
                executes_g += [o.executes for o in mine]
            rows.append(
                {
                    "case": name,
                    "grammar": g,
                    "n": len(mine),
                    "accuracy": round(acc[(name, g)], 3),
                    "executes": round(_share([o.executes for o in mine]), 3),
                    "exact": round(_share([o.exact for o in mine]), 3),
                }
            )
    if agreement:
        per = max(1, agreement // len(names))
        sample = [ex for name in names for ex in splits[name][:per]]
        idx = {id(ex): i for i, ex in enumerate(sample)}
        texts: dict[int, str] = {}
        for name in names:
            mine = [o for o in outcomes if o.split == name and o.grammar == "off"]
            for ex, o in zip(splits[name], mine, strict=True):
                if id(ex) in idx:
                    texts[idx[id(ex)]] = o.text
        rows += _agreement(gguf, sample, texts)
    return rows, acc, executes_g


def measure(
    *,
    model: str | Path = "demo",
    n: int = 200,
    train_minutes: float | None = None,
    agreement: int = 40,
    corpus_size: int | None = None,
    console: Console | None = None,
) -> Report:
    """Evaluate ``model`` (or, with ``train_minutes``, a model trained here first) on ``n``
    questions per split; the report's rows and targets.

    The held-out questions are drawn against the model's own training corpus, made again from
    the seed and size its manifest records (``corpus_size`` overrides the size: a smaller
    corpus is faster to make, and then fewer questions are known to be unseen).
    """
    from orchestrator.engine import resolve_model
    from orchestrator.train import TrainConfig, train_model

    console = console or Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="legato-bench-model-"))
    world = SqlWorld(work / "databases")
    train_seconds: float = math.nan
    if train_minutes is not None:
        cfg = TrainConfig(minutes=train_minutes)
        if corpus_size is not None:
            cfg = dataclasses.replace(cfg, corpus_size=corpus_size)
        corpus = make_corpus(world, seed=cfg.seed, size=cfg.corpus_size)
        with progress(console=console, transient=True) as bar:
            task = bar.add_task("train", total=1000)

            def show(frac: float, step: int, loss: float, tps: float) -> None:
                bar.update(task, completed=int(frac * 1000), description=f"train loss {loss:.3f}")

            result = train_model(work / "model", cfg, corpus=corpus, progress=show)
        gguf = result.files.gguf
        train_seconds = result.seconds["total"]
        trained: dict[str, Any] = {"steps": result.steps, "last_loss": result.last_loss}
    else:
        gguf = resolve_model(model)
        trained = _trained(gguf)
        train_seconds = trained.get("seconds", {}).get("total", math.nan)
        corpus = _own_corpus(world, trained, corpus_size)
    rows, acc, executes_g = _split_rows(gguf, corpus, world, SPLITS, n, agreement, console)
    config = {
        "model": str(model) if train_minutes is None else "trained in this run",
        "gguf": gguf.name,
        "per_split": n,
        "steps": trained.get("steps"),
        "last_loss": trained.get("last_loss"),
    }
    targets = {
        "sql_exec_seen": Target(acc[("seen", "on")], 0.97, "higher"),
        "sql_exec_values": Target(acc[("values", "on")], 0.80, "higher"),
        "sql_exec_phrasings": Target(acc[("phrasings", "on")], 0.55, "higher"),
        "plan_exact_seen": Target(acc[("plans_seen", "named")], 0.97, "higher"),
        "plan_exact_values": Target(acc[("plans_values", "named")], 0.90, "higher"),
        "sql_executes_with_grammar": Target(_share(executes_g), 1.0, "higher"),
        "train_minutes": Target(train_seconds / 60.0, 15.0, "lower"),
    }
    return Report("model", config, rows, targets)


SQL_SPLITS: tuple[str, ...] = tuple(s for s in SPLITS if not s.startswith("plans_"))
"""The Text-to-SQL held-out splits (``legato sql eval --split``)."""


def sql_splits(
    model: str | Path = "demo",
    splits: Sequence[str] = SQL_SPLITS,
    *,
    n: int = 200,
    agreement: int = 8,
    console: Console | None = None,
) -> Report:
    """``legato sql eval --split``: execution accuracy of a trained model on held-out
    Text-to-SQL splits of its own corpus, with and without the grammar, and whether torch and
    llama-server (if built) write the same greedy SQL as the embedded engine on ``agreement``
    of the questions.

    Raises:
        ConfigError: an unknown split, or a model with no training manifest.
    """
    from orchestrator.engine import resolve_model

    unknown = [s for s in splits if s not in SQL_SPLITS]
    if unknown or not splits:
        raise ConfigError(
            f"--split {','.join(unknown) or '(none)'}: the Text-to-SQL splits are "
            f"{', '.join(SQL_SPLITS)}"
        )
    gguf = resolve_model(model)
    trained = _trained(gguf)
    if not trained:
        raise ConfigError(
            f"{gguf.name} was not trained here (its manifest has no training record): the "
            "held-out splits are drawn against a trained model's own corpus"
        )
    console = console or Console(stderr=True)
    world = SqlWorld(Path(tempfile.mkdtemp(prefix="legato-sql-eval-")) / "databases")
    corpus = _own_corpus(world, trained, None)
    rows, acc, executes_g = _split_rows(gguf, corpus, world, splits, n, agreement, console)
    targets = {
        f"sql_exec_{s}": Target(acc[(s, "on")], aim, "higher")
        for s, aim in (("seen", 0.97), ("values", 0.80), ("phrasings", 0.55))
        if s in splits
    }
    targets["sql_executes_with_grammar"] = Target(_share(executes_g), 1.0, "higher")
    config = {"model": str(model), "gguf": gguf.name, "per_split": n}
    return Report("sql-eval", config, rows, targets)


def main(
    json_path: str | None,
    *,
    model: str = "demo",
    n: int = 200,
    quick: bool = False,
    train_minutes: float | None = None,
) -> int:
    """Run the benchmark, print its tables, write ``json_path`` if given; the exit code (0).

    Raises:
        ConfigError: ``n`` below 1, or ``train_minutes`` given and not above 0.
    """
    if n < 1:
        raise ConfigError(f"bench model: n must be >= 1, got {n}")
    if train_minutes is not None and not train_minutes > 0:
        raise ConfigError(f"bench model: train_minutes must be > 0, got {train_minutes}")
    console = Console() if sys.stdout.isatty() else Console(width=160)
    report = measure(
        model=model,
        n=30 if quick else n,
        train_minutes=train_minutes,
        agreement=8 if quick else 40,
        console=Console(stderr=True),
    )
    report.print(console)
    if json_path is not None:
        report.write_json(json_path)
    return 0
