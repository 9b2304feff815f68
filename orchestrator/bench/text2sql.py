"""``legato bench text2sql``: many Text-to-SQL pipelines at once under a per-query SLO,
scheduling policies side by side, in virtual time; plus a small real run on llama-server.

**Virtual part.** Each query runs a DSL program with the same stages and node names as the real
pipeline (``integrations.text2sql.text2sql``): ``schema_linking`` -> ``focus_schema`` (tool) ->
N parallel ``candidate`` calls -> ``execute_sql`` (tool) each -> ``correction`` of the failing
candidates for up to ``rounds`` rounds -> selection. It runs on ``virtual_engine`` (the
reference cost model: an 8B model on one H100, with the scheduling benchmark's quarter-size
batch and KV cache) under trio's mock clock, through the real runtime, policies and batcher
(``orchestrator.bench.sched.simulate``). What is virtual: the engine produces no text and takes
no grammar, so the SQL is not written or run; instead each query's sizes come from the real
pipeline on the example databases: prompt lengths from the real prompts (the schema of its
database, the linked tables of its gold query, the rules and few-shot examples, the question;
one token per 4 characters, shared text as shared tokens so the prefix cache sees it), decode
lengths from its gold SQL (jittered per candidate), which candidates fail and need correcting
(``fail_rate``, seeded), and execution times (lognormal, mean 20 ms, seeded).

Each query's SLO is ``slo_scale`` times its latency alone on the idle engine (our definition,
as in the ``text2sql`` workload of ``bench sched``). Per policy: SLO attainment, p50/p95
latency, throughput, goodput (queries meeting the SLO per second), and ratios to ``fcfs`` run in
the same process on the same arrivals.

**The load where fcfs attains 50%.** Unless ``--no-search``, a bisection over the arrival rate
finds where ``fcfs`` attains the SLO for about half the queries; every policy runs there, and the
target ``slo_attainment_x_vs_fcfs_at_fcfs_half`` is the best of ``slo``/``adaptive`` divided by
fcfs's attainment there (aim 1.4, issue 7's "Done when").

**Real part.** When ``llama-server`` is built (``python3 -m integrations.llamacpp build``), a few
shipped questions run through the real pipeline (grammar-constrained SQL, real execution) on the
``tiny`` model behind llama-server, per policy, on the wall clock; otherwise it is skipped with a
note. The tiny model has random weights: these rows show the stages, latency and that every
produced query ran, not accuracy.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
from rich.console import Console

import dsl
from orchestrator.bench._report import Report, Target, progress
from orchestrator.bench.sched import BENCH_KV_TOKENS, BENCH_MAX_BATCH, simulate
from orchestrator.bench.workloads import Arrival, CallShape
from orchestrator.engine import CostModel
from orchestrator.errors import ConfigError
from orchestrator.scheduler import POLICIES

__all__ = [
    "AIMS",
    "DEFAULT_POLICIES",
    "DEFAULT_QUERIES",
    "DEFAULT_RATE",
    "PipelineSpec",
    "Text2SQLArgs",
    "find_half_rate",
    "main",
    "measure",
    "pipeline",
    "real_run",
    "real_slo",
    "workload",
]

DEFAULT_QUERIES: Final = 300
DEFAULT_RATE: Final = 30.0
"""Queries/s for the rows at a given rate: near the benchmark engine's saturation."""
DEFAULT_POLICIES: Final = ("fcfs", "slo", "adaptive")
DEFAULT_SLO_SCALE: Final = 3.0
DEFAULT_FAIL_RATE: Final = 0.25
CANDIDATES: Final = 4
ROUNDS: Final = 2
CHARS_PER_TOKEN: Final = 4.0
EXEC_MEAN_S: Final = 0.02

AIMS: dict[str, tuple[float, str]] = {
    "slo_attainment_x_vs_fcfs_at_fcfs_half": (1.4, "higher"),
}
"""Issue 7's aim: at the load where fcfs attains the SLO for 50% of queries, slo (or adaptive)
attains it for at least 1.4x as many."""


# -- the virtual pipeline ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSpec:
    """One query of the virtual workload, sized from the real pipeline (lengths in tokens).

    Attributes:
        tag: unique to the query (its question tokens are ``<tag>q0 <tag>q1 ...``).
        db: the example database it is about (its schema is shared by its queries' prompts).
        schema: tokens of the database's full schema.
        focus: the linked part of the schema the candidates see (shared by the queries that
            link the same tables): its name and tokens.
        question: tokens of the question.
        rules: tokens of the SQL rules and few-shot examples (shared by all queries).
        link_decode: tokens schema linking writes.
        candidate_decode: tokens each candidate writes.
        fails: per round (0 = first attempts), for each candidate, whether its query fails
            (an error to correct); a candidate corrected in round r uses ``fails[r]``.
        exec_s: per round, for each candidate, seconds its query runs.
    """

    tag: str
    db: str
    schema: int
    focus: tuple[str, int]
    question: int
    rules: int
    link_decode: int
    candidate_decode: tuple[int, ...]
    fails: tuple[tuple[bool, ...], ...]
    exec_s: tuple[tuple[float, ...], ...]

    def calls(self) -> tuple[CallShape, ...]:
        """The LLM calls the query makes, first attempts then corrections (in round order)."""
        out = [
            CallShape(
                stage="schema_linking", prefill=self.schema + self.question, decode=self.link_decode
            )
        ]
        cand = self.focus[1] + self.rules + self.question
        out.extend(
            CallShape(stage="candidate", prefill=cand, decode=d) for d in self.candidate_decode
        )
        failing = [i for i, f in enumerate(self.fails[0]) if f]
        for r in range(1, len(self.fails)):
            for i in failing:
                d = self.candidate_decode[i]
                out.append(CallShape(stage="correction", prefill=cand + d + 20, decode=d))
            failing = [i for i in failing if self.fails[r][i]]
        return tuple(out)

    def alone_latency(self, cost: CostModel | None = None) -> float:
        """Seconds the query takes alone on an idle engine (``cost``, default the reference
        model): each stage's prefill then its decode steps at its batch size, plus the slowest
        execution of each round."""
        cost = cost or CostModel()

        def stage(prefills: Sequence[int], decode: int) -> float:
            n = sum(prefills)
            t = cost.step_time(tokens=n, context_tokens=n)
            b = len(prefills)
            for k in range(decode):
                t += cost.step_time(tokens=b, context_tokens=n + b * k)
            return t

        cand = self.focus[1] + self.rules + self.question
        t = stage([self.schema + self.question], self.link_decode)
        t += stage([cand] * len(self.candidate_decode), max(self.candidate_decode))
        t += max(self.exec_s[0])
        failing = [i for i, f in enumerate(self.fails[0]) if f]
        for r in range(1, len(self.fails)):
            if not failing:
                break
            decode = max(self.candidate_decode[i] for i in failing)
            t += stage([cand + decode + 20] * len(failing), decode)
            t += max(self.exec_s[r][i] for i in failing)
            failing = [i for i in failing if self.fails[r][i]]
        return t


def _words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


@dsl.tool(name="focus_schema", expected_duration=0.001)
async def _focus(text: str, link: str) -> str:
    """The linked schema (its text is fixed by the spec; ``link`` orders it after linking)."""
    return text


@dsl.tool(name="execute_sql", expected_duration=EXEC_MEAN_S)
async def _execute(seconds: float, fails: bool, query: str) -> bool:
    """Stands in for running the query: sleeps ``seconds`` on the (virtual) clock."""
    await anyio.sleep(seconds)
    return not fails


@dsl.program
async def pipeline(spec: PipelineSpec) -> int:
    """The Text-to-SQL pipeline's stage structure for a virtual engine (no text, no grammar):
    the real pipeline's node names, sizes from ``spec``. Returns how many candidates ran."""
    question = _words(f"{spec.tag}q", spec.question)
    link = dsl.gen(
        "{{c}}",
        c=_words(f"sql.{spec.db}.schema", spec.schema) + " " + question,
        max_tokens=spec.link_decode,
        name="schema_linking",
    )
    focus = _focus(_words(f"sql.{spec.focus[0]}.", spec.focus[1]), link)
    rules = _words("sql.rules", spec.rules)
    drafts = [
        dsl.gen(
            "{{focus}} {{c}}", focus=focus, c=f"{rules} {question}", max_tokens=d, name="candidate"
        )
        for d in spec.candidate_decode
    ]
    runs = [_execute(spec.exec_s[0][i], spec.fails[0][i], d) for i, d in enumerate(drafts)]
    ok = [await r for r in runs]
    for r in range(1, len(spec.fails)):
        failing = [i for i, good in enumerate(ok) if not good]
        if not failing:
            break
        fixes = {
            i: dsl.gen(
                "{{focus}} {{c}}",
                focus=focus,
                c=" ".join(
                    (rules, question, _words(f"{spec.tag}r{r}c{i}.", spec.candidate_decode[i] + 20))
                ),
                max_tokens=spec.candidate_decode[i],
                name="correction",
            )
            for i in failing
        }
        reruns = {i: _execute(spec.exec_s[r][i], spec.fails[r][i], fixes[i]) for i in failing}
        for i in failing:
            ok[i] = await reruns[i]
    return sum(ok)


# -- the workload -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _QuestionShape:
    db: str
    schema: int
    focus: tuple[str, int]
    question: int
    rules: int
    link_decode: int
    sql: int


@functools.lru_cache(maxsize=1)
def _shapes() -> tuple[_QuestionShape, ...]:
    """Sizes (in tokens) of the real pipeline's prompts for each shipped question, from the
    example databases' specs (no database file is needed: the schema text comes from a
    database built in memory)."""
    import re
    import tempfile
    from pathlib import Path

    from integrations import text2sql
    from integrations.text2sql._prompts import (
        CANDIDATE_TEMPLATE,
        EXAMPLES,
        LINK_TEMPLATE,
        SQL_RULES,
    )

    def tokens(text: str) -> int:
        return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = text2sql.build_all(Path(tmp))
        schemas = {name: text2sql.read_schema(p) for name, p in paths.items()}
        for q in text2sql.questions():
            schema = schemas[q.db]
            full = schema.to_sql()
            tables = tuple(
                t for t in schema.table_names if re.search(rf"\b{re.escape(t)}\b", q.sql)
            )
            focus_schema = text2sql.Schema(
                path=schema.path,
                tables=tuple(t for t in schema.tables if t.name in tables),
                name=schema.name,
            ).to_sql()
            fixed = len(CANDIDATE_TEMPLATE) + len(SQL_RULES) + len(EXAMPLES) + len(text2sql.SYSTEM)
            out.append(
                _QuestionShape(
                    db=q.db,
                    schema=tokens(full + LINK_TEMPLATE + text2sql.SYSTEM),
                    focus=(f"{q.db}.{'.'.join(tables)}", tokens(focus_schema)),
                    question=tokens(q.question),
                    rules=tokens("x" * fixed),
                    link_decode=tokens(", ".join(tables)) + 1,
                    sql=tokens(q.sql),
                )
            )
    return tuple(out)


def workload(
    queries: int,
    rate: float,
    seed: int = 0,
    *,
    slo_scale: float = DEFAULT_SLO_SCALE,
    fail_rate: float = DEFAULT_FAIL_RATE,
    candidates: int = CANDIDATES,
    rounds: int = ROUNDS,
    cost: CostModel | None = None,
) -> list[Arrival]:
    """``queries`` Text-to-SQL queries arriving as a Poisson process of ``rate`` per second,
    drawn from ``seed`` (the same arguments give the same arrivals; ``rate`` only rescales
    the arrival times). Query ``i`` asks a shipped question drawn at random; each carries the
    SLO ``slo_scale * alone latency``.

    Raises:
        ValueError: a count or rate out of range.
    """
    if queries < 0 or not rate > 0:
        raise ValueError(f"need queries >= 0 and rate > 0, got {queries}, {rate}")
    if not 0.0 <= fail_rate <= 1.0:
        raise ValueError(f"fail_rate must be in [0, 1], got {fail_rate}")
    shapes = _shapes()
    gaps = random.Random(f"legato/bench-text2sql/{seed}/arrivals")
    rng = random.Random(f"legato/bench-text2sql/{seed}/queries")
    cost = cost or CostModel()
    out: list[Arrival] = []
    t = 0.0
    for i in range(queries):
        if i:
            t += gaps.expovariate(1.0) / rate
        shape = rng.choice(shapes)
        decode = tuple(max(4, round(shape.sql * rng.uniform(0.8, 1.3))) for _ in range(candidates))
        fails = tuple(
            tuple(rng.random() < fail_rate for _ in range(candidates)) for _ in range(rounds + 1)
        )
        exec_s = tuple(
            tuple(rng.lognormvariate(math.log(EXEC_MEAN_S) - 0.125, 0.5) for _ in range(candidates))
            for _ in range(rounds + 1)
        )
        spec = PipelineSpec(
            tag=f"t{seed}n{i}",
            db=shape.db,
            schema=shape.schema,
            focus=shape.focus,
            question=shape.question,
            rules=shape.rules,
            link_decode=shape.link_decode,
            candidate_decode=decode,
            fails=fails,
            exec_s=exec_s,
        )
        out.append(
            Arrival(
                time=t,
                program=pipeline,
                args=(spec,),
                slo=slo_scale * spec.alone_latency(cost),
                kind="text2sql",
                calls=spec.calls(),
            )
        )
    return out


# -- measuring --------------------------------------------------------------------------------
def _row(
    metrics: dict[str, Any], base: dict[str, Any], *, rate: float, load: str
) -> dict[str, Any]:
    def ratio(a: Any, b: Any) -> float:
        if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
            return math.nan
        return float(a) / float(b)

    goodput = (
        (metrics["slo_attainment"] or 0.0) * metrics["programs"] / metrics["makespan_s"]
        if metrics["makespan_s"]
        else math.nan
    )
    base_goodput = (
        (base["slo_attainment"] or 0.0) * base["programs"] / base["makespan_s"]
        if base["makespan_s"]
        else math.nan
    )
    return {
        "load": load,
        "policy": metrics["policy"],
        "rate": rate,
        "slo_att": metrics["slo_attainment"],
        "p50_s": metrics["p50_s"],
        "p95_s": metrics["p95_s"],
        "thru": metrics["throughput"],
        "goodput": goodput,
        "slo_x": ratio(metrics["slo_attainment"], base["slo_attainment"]),
        "p95_x": ratio(metrics["p95_s"], base["p95_s"]),
        "thru_x": ratio(metrics["throughput"], base["throughput"]),
        "goodput_x": ratio(goodput, base_goodput),
        "failed": metrics["failed"],
        "wall_s": metrics["wall_s"],
    }


def _policies(names: Sequence[str], console: Console) -> list[str]:
    out = ["fcfs"]
    for name in names:
        if name in out:
            continue
        if name not in POLICIES:
            console.print(f"[yellow]note:[/yellow] policy {name!r} does not exist; skipped")
            continue
        out.append(name)
    return out


def find_half_rate(
    queries: int,
    seed: int,
    *,
    lo: float = 4.0,
    hi: float = 120.0,
    steps: int = 7,
    on_run: Any = None,
    **options: Any,
) -> tuple[float, dict[str, Any]]:
    """The arrival rate at which ``fcfs`` attains the SLO for about half the queries (a
    bisection on the log of the rate, ``steps`` runs after bracketing), and fcfs's metrics
    there. ``options`` go to ``workload``."""
    sim: dict[str, Any] = {
        k: options.pop(k) for k in ("max_batch", "kv_tokens", "max_in_flight") if k in options
    }

    def attain(rate: float) -> dict[str, Any]:
        m = simulate(workload(queries, rate, seed, **options), policy="fcfs", **sim)
        if on_run is not None:
            on_run()
        return m

    best: tuple[float, float, dict[str, Any]] | None = None

    def consider(rate: float, m: dict[str, Any]) -> None:
        nonlocal best
        gap = abs((m["slo_attainment"] or 0.0) - 0.5)
        if best is None or gap < best[0]:
            best = (gap, rate, m)

    m_lo, m_hi = attain(lo), attain(hi)
    consider(lo, m_lo)
    consider(hi, m_hi)
    if (m_lo["slo_attainment"] or 0.0) < 0.5 or (m_hi["slo_attainment"] or 0.0) > 0.5:
        assert best is not None
        return best[1], best[2]  # not bracketed: the closest end
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        m = attain(mid)
        consider(mid, m)
        if (m["slo_attainment"] or 0.0) >= 0.5:
            lo = mid
        else:
            hi = mid
    assert best is not None
    return best[1], best[2]


def measure(
    policies: Sequence[str] = DEFAULT_POLICIES,
    *,
    queries: int = DEFAULT_QUERIES,
    rate: float | None = DEFAULT_RATE,
    seed: int = 0,
    search: bool = True,
    slo_scale: float = DEFAULT_SLO_SCALE,
    fail_rate: float = DEFAULT_FAIL_RATE,
    search_steps: int = 7,
    repeats: int = 3,
    console: Console | None = None,
    max_batch: int = BENCH_MAX_BATCH,
    kv_tokens: int = BENCH_KV_TOKENS,
) -> Report:
    """The virtual part: every policy on the same arrivals at ``rate`` (if given) and, with
    ``search``, at the rate where fcfs attains 50%; rows and the target. Each policy runs
    ``repeats`` times on the same arrivals (the runtime is not bit-reproducible on the mock
    clock); the row is the run with the median SLO attainment, the config lists them all. See
    the module docstring."""
    console = console or Console(stderr=True)
    names = _policies(policies, console)
    if rate is None and not search:
        raise ConfigError("bench text2sql: give --rate, or let it search the 50% load")
    opts: dict[str, Any] = {"slo_scale": slo_scale, "fail_rate": fail_rate}
    sim = {"max_batch": max_batch, "kv_tokens": kv_tokens}
    rows: list[dict[str, Any]] = []
    targets: dict[str, Target] = {}
    config: dict[str, Any] = {
        "queries": queries,
        "seed": seed,
        "slo_scale": slo_scale,
        "fail_rate": fail_rate,
        "candidates": CANDIDATES,
        "rounds": ROUNDS,
        "engine": f"virtual: 8B model on one H100 (CostModel), max_batch {max_batch}, "
        f"kv_tokens {kv_tokens}",
        "time": "virtual (trio MockClock); sizes from the real pipeline's prompts",
    }
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    config["repeats"] = repeats
    runs_needed = len(names) * repeats * ((rate is not None) + search) + (2 + search_steps) * search
    with progress(console=console) as bar:
        task = bar.add_task("text2sql", total=runs_needed)

        def advance() -> None:
            bar.advance(task)

        def run_all(r: float, load: str) -> dict[str, Any]:
            arrivals = workload(queries, r, seed, **opts)
            runs: dict[str, dict[str, Any]] = {}
            spread: dict[str, list[float]] = {}
            for name in names:
                # The runtime is not bit-reproducible on the mock clock (program ids are random
                # tokens): repeat, keep the run with the median attainment, report the spread.
                tries = []
                for _ in range(repeats):
                    tries.append(simulate(arrivals, policy=name, **sim))
                    advance()
                tries.sort(key=lambda m: m["slo_attainment"] or 0.0)
                runs[name] = tries[len(tries) // 2]
                spread[name] = [round(m["slo_attainment"] or 0.0, 4) for m in tries]
                if runs[name]["failed"]:
                    console.print(
                        f"[yellow]note:[/yellow] {name}: {runs[name]['failed']} queries failed; "
                        f"first: {runs[name]['first_error']}"
                    )
            for name in names:
                rows.append(_row(runs[name], runs["fcfs"], rate=r, load=load))
            if repeats > 1:
                config[f"slo_att_runs_{load}"] = spread
            return runs

        if rate is not None:
            run_all(rate, "given")
            config["rate"] = rate
        if search:
            searched = 0

            def search_run() -> None:
                nonlocal searched
                searched += 1
                advance()

            half, fcfs = find_half_rate(
                queries, seed, steps=search_steps, on_run=search_run, **opts, **sim
            )
            # an unbracketed search stops after its two ends: the bar counts the runs made
            bar.update(task, total=runs_needed - (2 + search_steps) + searched)
            config["fcfs_half_search_att"] = round(fcfs["slo_attainment"] or 0.0, 4)
            runs = run_all(half, "fcfs~50%")
            config["fcfs_half_rate"] = round(half, 3)
            base = runs["fcfs"]["slo_attainment"] or 0.0
            others = [n for n in ("slo", "adaptive") if n in runs]
            if others:
                best = max(others, key=lambda n: runs[n]["slo_attainment"] or 0.0)
                config["fcfs_half_best_policy"] = best
                value = (runs[best]["slo_attainment"] or 0.0) / base if base else math.nan
                aim, better = AIMS["slo_attainment_x_vs_fcfs_at_fcfs_half"]
                targets["slo_attainment_x_vs_fcfs_at_fcfs_half"] = Target(
                    value, aim, "higher" if better == "higher" else "lower"
                )
    return Report("text2sql", config, rows, targets)


# -- the real run -----------------------------------------------------------------------------
def real_slo(latencies: Sequence[float | None]) -> float:
    """The real run's SLO: 3x the median of the questions' latencies alone (the mean of the
    middle two for an even count); 10 s if none finished."""
    done = [t for t in latencies if t]
    return 3.0 * statistics.median(done) if done else 10.0


def real_run(
    questions: int = 6,
    *,
    policies: Sequence[str] = ("fcfs", "slo"),
    console: Console | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The real part: ``questions`` shipped ``shop`` questions through the real pipeline on the
    ``tiny`` model behind llama-server (4 slots, and 4 calls at once from the orchestrator, so
    the policy orders the queue), all at once, per policy, on the wall clock. Returns the rows
    and a note (why it was skipped, or None). llama-server takes no priority hint: only the
    orchestrator's admission order differs between policies."""
    import tempfile
    from pathlib import Path

    from integrations import text2sql
    from integrations.llamacpp import LlamaServer, find
    from orchestrator.engine import cached_model

    console = console or Console(stderr=True)
    binary = find()
    if binary is None:
        return [], "llama-server is not built (python3 -m integrations.llamacpp build): skipped"
    gguf = cached_model("tiny").gguf
    settings = text2sql.Settings(candidates=2, rounds=1, max_tokens=96)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = text2sql.build_database("shop", Path(tmp) / "shop.sqlite")
        qs = text2sql.questions("shop")[:questions]
        with LlamaServer(gguf, binary=binary, parallel=4, threads=2) as server:
            # the SLO: 3x the median latency of a question alone (measured here, same server)
            alone = text2sql.run_evaluation(
                db, qs[:2], backend=server.url, settings=settings, concurrency=1, policy="fcfs"
            )
            slo = real_slo([a.answer.latency for a in alone.items if a.answer])
            for name in policies:
                r = text2sql.run_evaluation(
                    db,
                    qs,
                    backend=server.url,
                    settings=settings,
                    concurrency=len(qs),
                    policy=name,
                    slo=slo,
                    # as many calls at once as llama-server has slots: the policy orders the rest
                    max_in_flight=4,
                )
                total = r.latency().get("total", {})
                rows.append(
                    {
                        "load": "real llama-server",
                        "policy": name,
                        "rate": None,
                        "slo_att": r.slo_attainment,
                        "p50_s": total.get("p50_s", math.nan),
                        "p95_s": total.get("p95_s", math.nan),
                        "thru": len(qs) / r.wall_s if r.wall_s else math.nan,
                        "exec_rate": r.execution_rate,
                        "produced": r.produced,
                        "wall_s": r.wall_s,
                    }
                )
            console.print(
                f"[dim]real run: {len(qs)} shop questions at once, tiny model on llama-server, "
                f"SLO {slo:.2f} s (3x the median alone)[/dim]"
            )
    return rows, None


# -- command line -----------------------------------------------------------------------------
class Text2SQLArgs(Protocol):
    """What ``main`` reads from the parsed command line. Also read when present: ``queries``,
    ``slo_scale``, ``fail_rate``, ``no_search``, ``real``, ``quick``."""

    policies: str
    rate: float | None
    seed: int
    json: str | None


def main(args: Text2SQLArgs) -> int:
    """``legato bench text2sql``: the virtual comparison, then the real run; tables, JSON."""
    console = Console() if sys.stdout.isatty() else Console(width=200)
    notes = Console(stderr=True)
    raw = getattr(args, "policies", None) or ""
    names = [p.strip() for p in raw.split(",") if p.strip()]
    if getattr(args, "policies_default", False) or not names:
        names = list(DEFAULT_POLICIES)
    quick = bool(getattr(args, "quick", False))
    queries = getattr(args, "queries", None)
    queries = (40 if quick else DEFAULT_QUERIES) if queries is None else queries
    rate = args.rate if args.rate is not None else DEFAULT_RATE
    slo_scale = getattr(args, "slo_scale", None)
    slo_scale = DEFAULT_SLO_SCALE if slo_scale is None else slo_scale
    fail_rate = getattr(args, "fail_rate", None)
    fail_rate = DEFAULT_FAIL_RATE if fail_rate is None else float(fail_rate)
    real = getattr(args, "real", None)
    for name, value, ok, aim in (
        ("queries", queries, queries >= 1, ">= 1"),
        ("rate", rate, rate > 0, "> 0"),
        ("slo_scale", slo_scale, slo_scale > 0, "> 0"),
        ("fail_rate", fail_rate, 0 <= fail_rate <= 1, "between 0 and 1"),
        ("real", real, real is None or real >= 0, ">= 0"),
    ):
        if not ok:
            raise ConfigError(f"bench text2sql: {name} must be {aim}, got {value}")
    report = measure(
        names,
        queries=queries,
        rate=rate,
        seed=args.seed,
        search=not getattr(args, "no_search", False),
        slo_scale=slo_scale,
        fail_rate=fail_rate,
        search_steps=3 if quick else 7,
        repeats=1 if quick else 3,
        console=notes,
    )
    n_real = (0 if quick else 6) if real is None else int(real)
    if n_real > 0:
        rows, note = real_run(n_real, console=notes)
        report.rows.extend(rows)
        report.config["real_run"] = note or f"{n_real} shop questions on llama-server (tiny)"
        if note:
            notes.print(f"[yellow]note:[/yellow] {note}")
    else:
        report.config["real_run"] = "not run (--real 0)"
    report.print(console)
    if args.json is not None:
        report.write_json(args.json)
    return 0
