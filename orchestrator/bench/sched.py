"""``legato bench sched``: program-level scheduling policies side by side on the same seeded
workloads, through the real runtime and the embedded engine's batcher, in virtual time.

Each policy runs the SAME arrivals (``orchestrator.bench.workloads``, same seed) on a fresh
``Orchestrator(LocalBackend(engine=virtual_engine(...)), policy=...)``: the engine has no model,
each step costs what the roofline ``CostModel`` says an 8B model on one H100 would take, and the
whole run goes under trio's mock clock, which jumps whenever every task waits (DESIGN.md
section 2). A program's completion time is its finish minus its arrival on that clock.

Per policy it reports completion time (mean, p50, p95, p99), throughput (programs completed over
the makespan), SLO attainment where the workload has SLOs, engine counters (preemptions, share
of prompt tokens found in the prefix cache), and each figure's ratio to ``fcfs`` run in the same
process (``fcfs`` is added to the policies if missing). ``--sweep`` finds, per policy, the
highest arrival rate the engine sustains with the mean completion time under a bound (twice the
unloaded mean, measured at a very low rate): throughput at equal latency, measured after a
warm-up window so that it is a steady state, not a burst draining (``sweep``).

Targets (DESIGN.md section 6), each only where the run can measure it:

- ``chat_p50_speedup_vs_fcfs`` (chat; aim 2.0, higher): fcfs p50 / the best program-level
  policy's p50 (the best among those meeting both chat aims if any does, else the best p50;
  the policy is named in the config);
- ``chat_p99_ratio_vs_fcfs`` (chat; aim 1.0, lower): that policy's p99 / fcfs p99. The config
  adds ``chat_p50_alone_s``, the p50 with every program alone on the engine, and
  ``chat_p50_speedup_bound`` = fcfs p50 / that: no policy's p50 speedup can exceed it, so at a
  load where it is below 2 the p50 aim cannot be met by any ordering;
- ``react_mean_speedup_program_fcfs_ttl_vs_fcfs`` (react with program_fcfs; aim 1.5, higher);
- ``mixed_throughput_at_equal_latency_vs_fcfs`` (mixed with ``--sweep``; aim 2.0, higher): the
  best policy's highest rate under the bound / fcfs's;
- ``adaptive_within_5pct_of_best`` (any workload with adaptive and another fixed policy; aim
  1.05, lower): adaptive mean completion time / the best other policy's.
"""

from __future__ import annotations

import functools
import importlib
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio
from rich.console import Console

from orchestrator.backends import Backend, LocalBackend, Replicas
from orchestrator.bench._report import Report, Target, progress
from orchestrator.bench._virtual import run_virtual
from orchestrator.bench.overhead import percentile
from orchestrator.bench.workloads import WORKLOADS, Arrival, make_workload
from orchestrator.engine import CostModel, virtual_engine
from orchestrator.errors import ConfigError
from orchestrator.runtime import Orchestrator
from orchestrator.scheduler import POLICIES, PriorityBatch, batch_policy_for

__all__ = [
    "BENCH_KV_TOKENS",
    "BENCH_MAX_BATCH",
    "DEFAULT_PROGRAMS",
    "DEFAULT_RATES",
    "SchedArgs",
    "drive",
    "main",
    "measure",
    "plot",
    "run_workload",
    "simulate",
    "sweep",
]

BENCH_MAX_BATCH = 64
BENCH_KV_TOKENS = 65_536
"""The benchmark's engine: the reference step costs (an 8B model on one H100, ``CostModel``)
with a quarter of a full-size engine's batch (vLLM's default is 256 sequences) and KV budget
(~262k tokens). Queueing then starts at a quarter of the load, so a run needs a quarter of the
programs (hundreds, not thousands) to reach it: the same regime, seconds of wall time instead of
minutes. ``--max-batch 256 --kv-tokens 262144`` runs the full-size engine (rates ~4x higher)."""

DEFAULT_RATES: dict[str, float] = {
    "chat": 10.0,
    "react": 20.0,
    "tree": 0.9,
    "dag": 3.0,
    "text2sql": 11.0,
    "mixed": 6.0,
}
"""Programs/s per workload that load the benchmark's engine (``BENCH_MAX_BATCH``,
``BENCH_KV_TOKENS``) enough for queueing to show (fcfs's mean completion time ~1.5-2x the
unloaded one); calibrated with fcfs at ``DEFAULT_PROGRAMS``. All but dag's are above what the
engine sustains: over a run twice as long at the same rate, fcfs's mean completion time grows
(chat 28.9 to 55.8 s, react 27.4 to 62.4 s, text2sql 4.85 to 9.09 s, tree 5.75 to 8.09 s; dag
5.49 to 5.13 s), so a run measures how a burst drains, not a steady state."""

DEFAULT_PROGRAMS: dict[str, int] = {
    "chat": 500,
    "react": 400,
    "tree": 60,
    "dag": 200,
    "text2sql": 300,
    "mixed": 300,
}
"""Programs per run by default: enough for the queue to build at ``DEFAULT_RATES``, each run
taking seconds to ~15 s of wall time."""

REQUEST_LEVEL: frozenset[str] = frozenset({"fcfs", "mlfq"})
"""Policies that do not look at programs (excluded from "best program-level policy")."""

AIMS: dict[str, tuple[float, str]] = {
    "chat_p50_speedup_vs_fcfs": (2.0, "higher"),
    "chat_p99_ratio_vs_fcfs": (1.0, "lower"),
    "react_mean_speedup_program_fcfs_ttl_vs_fcfs": (1.5, "higher"),
    "mixed_throughput_at_equal_latency_vs_fcfs": (2.0, "higher"),
    "adaptive_within_5pct_of_best": (1.05, "lower"),
}
"""Every aim of issue 5's scheduling benchmark: (aim, better) by target name."""

SWEEP_BOUND = 2.0
"""--sweep: the mean completion time bound, as a multiple of the unloaded mean."""
SWEEP_WINDOWS = 3
"""--sweep: each run's arrivals last this many windows; the second is measured (see ``sweep``)."""


# -- one run --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Record:
    kind: str
    arrival: float
    finish: float
    slo: float | None
    ok: bool

    @property
    def completion(self) -> float:
        return self.finish - self.arrival


async def run_workload(
    arrivals: Sequence[Arrival],
    *,
    policy: str,
    engine_policy: str = "priority",
    max_in_flight: int = 256,
    replicas: int = 1,
    balancer: str = "locality",
    cost: CostModel | None = None,
    max_batch: int = BENCH_MAX_BATCH,
    kv_tokens: int = BENCH_KV_TOKENS,
    on_done: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``arrivals`` through a real ``Orchestrator`` on a virtual-time engine and measure
    each program. Meant for a mock clock (``simulate`` sets one up); on a real clock it takes
    as long as the workload says.

    Each arrival gets its own task, which sleeps until the arrival's time, submits the program
    (with its ``slo=``, which SLO-aware policies split over its stages), and waits for its
    result.

    Args:
        arrivals: the workload (``make_workload``).
        policy: the orchestrator's policy by name (``orchestrator.scheduler.POLICIES``).
        engine_policy: the engine's batch policy: ``"priority"`` honours the policy's hints
            (with the policy's ``preempt_threshold``, if it declares one), ``"fcfs"`` ignores
            them (any ``virtual_engine`` policy name works).
        max_in_flight: LLM calls at the engine at once; the policy orders the rest.
        replicas: engines; more than one go behind ``Replicas`` with ``balancer``
            (then the metrics add ``prefix_hits`` and ``replica_calls``).
        balancer: the replica rule (``locality``, ``autellix``, ``least_loaded``,
            ``round_robin``).
        cost: the step cost model (default: 8B model on one H100).
        max_batch, kv_tokens: the engine's batch and KV cache sizes (default: the benchmark's
            quarter-size engine, ``BENCH_MAX_BATCH``).
        on_done: called after each program finishes (progress bars).

    Returns:
        ``{"policy", "programs", "completed", "failed", "mean_s", "p50_s", "p95_s", "p99_s",
        "max_s", "throughput", "makespan_s", "virtual_s", "slo_attainment" (None without SLOs),
        "preemptions", "cached_share", "engine_steps", "prompt_tokens", "generated_tokens",
        "by_kind": {kind: {"programs", "mean_s", "p99_s"}},
        "completion_times": [seconds per completed program, in arrival order],
        "arrival_times": [each of those programs' arrival, seconds from the start],
        "first_error": the first failed program's error, or None}``.
    """
    if replicas < 1:
        raise ConfigError(f"replicas must be >= 1, got {replicas}")
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; known: {', '.join(sorted(POLICIES))}")

    def batcher() -> str | PriorityBatch:
        # the engine's preemption threshold as the policy's hints want it (see PriorityBatch)
        return batch_policy_for(POLICIES[policy]) if engine_policy == "priority" else engine_policy

    engines = [
        virtual_engine(
            cost=cost or CostModel(),
            policy=batcher(),
            max_batch=max_batch,
            kv_tokens=kv_tokens,
        )
        for _ in range(replicas)
    ]
    locals_ = [LocalBackend(engine=e) for e in engines]
    group = Replicas(locals_, balancer=balancer) if replicas > 1 else None
    backend: Backend = group if group is not None else locals_[0]
    counters: dict[str, int] = {}
    metrics = await drive(
        arrivals, backend, policy=policy, max_in_flight=max_in_flight, on_done=on_done
    )
    for e in engines:
        for k, v in e.counters.items():
            counters[k] = counters.get(k, 0) + v
    metrics.update(_counter_metrics(counters))
    if group is not None:
        hits = list(group.prefix_hits.values())
        reusable = sum(h.reusable_tokens for h in hits)
        metrics["prefix_hits"] = sum(h.cached_tokens for h in hits) / reusable if reusable else 1.0
        metrics["replica_calls"] = list(group.calls)
    return metrics


async def drive(
    arrivals: Sequence[Arrival],
    backend: Backend,
    *,
    policy: str,
    max_in_flight: int,
    on_done: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``arrivals`` through an ``Orchestrator`` on ``backend`` with ``policy`` (on whatever
    clock the event loop has) and measure each program: every arrival gets its own task, which
    sleeps until the arrival's time, submits the program (with its ``slo=``), and waits for its
    result. Returns ``_metrics``' figures plus ``first_error``."""
    records: list[_Record] = []
    errors: list[str] = []
    async with Orchestrator(backend, policy=policy, max_in_flight=max_in_flight) as orch:
        t0 = anyio.current_time()

        async def one(a: Arrival) -> None:
            await anyio.sleep_until(t0 + a.time)
            arrival = anyio.current_time()
            handle = await orch.submit(a.program, *a.args, slo=a.slo)
            ok = True
            try:
                await handle.result()
            except Exception as exc:  # counted and reported: a benchmark does not stop
                ok = False
                errors.append(f"{type(exc).__name__}: {exc}")
            records.append(_Record(a.kind, arrival, anyio.current_time(), a.slo, ok))
            if on_done is not None:
                on_done()

        async with anyio.create_task_group() as tg:
            for a in arrivals:
                tg.start_soon(one, a)
        end = anyio.current_time()
    metrics = _metrics(policy, records, t0, end)
    metrics["first_error"] = errors[0] if errors else None
    return metrics


def _counter_metrics(counters: dict[str, int]) -> dict[str, Any]:
    """The engines' counters as figures: preemptions, the share of prompt tokens found cached,
    steps, prompt and generated tokens."""
    prompt = counters.get("prompt_tokens", 0)
    return {
        "preemptions": counters.get("preemptions", 0),
        "cached_share": counters.get("cached_prompt_tokens", 0) / prompt if prompt else math.nan,
        "engine_steps": counters.get("steps", 0),
        "prompt_tokens": prompt,
        "generated_tokens": counters.get("generated_tokens", 0),
    }


def _metrics(policy: str, records: list[_Record], t0: float, end: float) -> dict[str, Any]:
    records.sort(key=lambda r: r.arrival)
    done = [r for r in records if r.ok]
    times = [r.completion for r in done]
    with_slo = [r for r in records if r.slo is not None]
    makespan = max((r.finish for r in records), default=t0) - t0
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted({r.kind for r in done}):
        ks = [r.completion for r in done if r.kind == kind]
        by_kind[kind] = {
            "programs": len(ks),
            "mean_s": statistics.fmean(ks),
            "p99_s": percentile(ks, 99),
        }
    return {
        "policy": policy,
        "programs": len(records),
        "completed": len(done),
        "failed": len(records) - len(done),
        "mean_s": statistics.fmean(times) if times else math.nan,
        "p50_s": percentile(times, 50),
        "p95_s": percentile(times, 95),
        "p99_s": percentile(times, 99),
        "max_s": max(times, default=math.nan),
        "throughput": len(done) / makespan if makespan > 0 else math.nan,
        "makespan_s": makespan,
        "virtual_s": end - t0,
        "slo_attainment": (
            sum(1 for r in with_slo if r.ok and r.slo is not None and r.completion <= r.slo)
            / len(with_slo)
            if with_slo
            else None
        ),
        "by_kind": by_kind,
        "completion_times": times,
        "arrival_times": [r.arrival - t0 for r in done],
    }


def simulate(arrivals: Sequence[Arrival], **options: Any) -> dict[str, Any]:
    """``run_workload(arrivals, **options)`` in a fresh event loop under trio's mock clock
    (virtual time, the same figures every time: ``run_virtual``); adds ``wall_s``, the
    wall-clock seconds it took. Needs ``trio``."""
    start = time.perf_counter()
    result: dict[str, Any] = run_virtual(
        functools.partial(run_workload, arrivals, **options), what="legato bench sched"
    )
    result["wall_s"] = time.perf_counter() - start
    return result


# -- side by side ---------------------------------------------------------------------------
def _available(policies: Sequence[str], console: Console) -> list[str]:
    """``policies`` that exist, fcfs first (added if missing); notes for the others."""
    out = ["fcfs"]
    for name in policies:
        if name in out:
            continue
        if name not in POLICIES:
            console.print(f"[yellow]note:[/yellow] policy {name!r} is not implemented yet; skipped")
            continue
        out.append(name)
    return out


def _ratio(value: Any, base: Any) -> float:
    if not isinstance(value, int | float) or not isinstance(base, int | float):
        return math.nan
    if base == 0 or math.isnan(base) or math.isnan(value):
        return math.nan
    return float(value) / float(base)


_COLUMNS = (  # row column: metrics key
    ("mean_s", "mean_s"),
    ("p50_s", "p50_s"),
    ("p95_s", "p95_s"),
    ("p99_s", "p99_s"),
    ("thru", "throughput"),
    ("slo", "slo_attainment"),
)
_RATIOS = ("mean_s", "p50_s", "p99_s", "thru", "slo")


def _row(metrics: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """One policy's row: its figures, then ``X_x`` = X / fcfs's X for the main ones."""
    row: dict[str, Any] = {"policy": metrics["policy"]}
    keys = dict(_COLUMNS)
    for column, key in _COLUMNS:
        if metrics[key] is not None:
            row[column] = metrics[key]
    for column in _RATIOS:
        key = keys[column]
        if metrics[key] is not None:
            row[f"{column.removesuffix('_s')}_x"] = _ratio(metrics[key], base[key])
    if metrics.get("slowdown_p99") is not None:
        row["slow_p99"] = metrics["slowdown_p99"]
        row["slow_max"] = metrics["slowdown_max"]
    kinds = metrics.get("by_kind") or {}
    if len(kinds) > 1:  # mixed: what each kind's programs pay for the order
        for kind in sorted(kinds):
            row[f"{kind}_s"] = kinds[kind]["mean_s"]
    row["preempt"] = metrics["preemptions"]
    row["cached"] = metrics["cached_share"]
    row["failed"] = metrics["failed"]
    row["wall_s"] = metrics["wall_s"]
    return row


def _best(
    runs: dict[str, dict[str, Any]], figure: str, *, exclude: set[str]
) -> tuple[str, float] | None:
    scored = [
        (m[figure], name)
        for name, m in runs.items()
        if name not in exclude and not math.isnan(m[figure])
    ]
    if not scored:
        return None
    value, name = min(scored)
    return name, value


def _targets(
    workload: str, runs: dict[str, dict[str, Any]], config: dict[str, Any]
) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    base = runs["fcfs"]

    def target(name: str, value: float) -> None:
        aim, better = AIMS[name]
        targets[name] = Target(value, aim, "higher" if better == "higher" else "lower")

    if workload == "chat":
        # The policy judged: the best p50 among those meeting both aims (p50 and p99) if any
        # does, else the best p50 (so a miss shows the best speedup and what it costs at p99).
        program_level = {n: m for n, m in runs.items() if n not in REQUEST_LEVEL}
        aim = AIMS["chat_p50_speedup_vs_fcfs"][0]
        both = {
            n: m
            for n, m in program_level.items()
            if m["p99_s"] <= base["p99_s"] and m["p50_s"] * aim <= base["p50_s"]
        }
        best = _best(both or program_level, "p50_s", exclude=set())
        if best is not None:
            name, p50 = best
            config["chat_best_program_policy"] = name
            target("chat_p50_speedup_vs_fcfs", _ratio(base["p50_s"], p50))
            target("chat_p99_ratio_vs_fcfs", _ratio(runs[name]["p99_s"], base["p99_s"]))
    if workload == "react" and "program_fcfs" in runs:
        target(
            "react_mean_speedup_program_fcfs_ttl_vs_fcfs",
            _ratio(base["mean_s"], runs["program_fcfs"]["mean_s"]),
        )
    if "adaptive" in runs and len(runs) > 1:
        best = _best(runs, "mean_s", exclude={"adaptive"})
        if best is not None:
            config["best_fixed_policy"] = best[0]
            target("adaptive_within_5pct_of_best", _ratio(runs["adaptive"]["mean_s"], best[1]))
    return targets


def measure(
    workload: str,
    policies: Sequence[str],
    *,
    rate: float | None = None,
    programs: int | None = None,
    seed: int = 0,
    console: Console | None = None,
    **options: Any,
) -> tuple[Report, dict[str, dict[str, Any]]]:
    """Run every policy in ``policies`` (fcfs added first if missing; names not in
    ``POLICIES`` skipped with a note) on the same arrivals of ``workload``, and compare.

    Args:
        workload: a name from ``WORKLOADS``.
        policies: policy names.
        rate: programs/s (default ``DEFAULT_RATES[workload]``).
        programs: programs per run (default ``DEFAULT_PROGRAMS[workload]``).
        seed: the workload's seed.
        console: where notes and the progress bar go (stderr by default).
        **options: passed to ``run_workload`` (``engine_policy``, ``max_in_flight``...).

    Returns:
        The report and the raw metrics per policy (with completion times, for plots). A row:
        ``mean_s``, ``p50_s``, ``p95_s``, ``p99_s`` (completion time, virtual seconds),
        ``thru`` (programs/s), ``slo`` (attainment, SLO workloads only), then ``mean_x``,
        ``p50_x``, ``p99_x``, ``thru_x``, ``slo_x``: the figure divided by fcfs's (below 1 is
        better for times, above 1 for throughput and SLO attainment), ``slow_p99`` and
        ``slow_max`` (p99 and worst of each program's completion time over its time alone: a
        run of fcfs with the programs far apart, which on chat also bounds the p50 speedup),
        on a workload of several kinds (``mixed``) each kind's mean completion time
        (``chat_s``, ``tree_s``...), then ``preempt`` (engine preemptions), ``cached`` (share
        of prompt tokens found in the prefix cache),
        ``failed`` (programs that raised) and ``wall_s``.
    """
    console = console or Console(stderr=True)
    if workload not in WORKLOADS:
        raise ConfigError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    rate = DEFAULT_RATES[workload] if rate is None else rate
    programs = DEFAULT_PROGRAMS[workload] if programs is None else programs
    names = _available(policies, console)
    arrivals = make_workload(workload, programs=programs, rate=rate, seed=seed)
    runs: dict[str, dict[str, Any]] = {}
    with progress(console=console) as bar:
        for name in names:
            task = bar.add_task(f"{workload} {name}", total=len(arrivals))
            runs[name] = simulate(
                arrivals, policy=name, on_done=functools.partial(bar.advance, task), **options
            )
            _note_failures(runs[name], console)
    config = _config(workload, rate, programs, seed, arrivals, options)
    alone_times = _alone(arrivals, options, console)
    for m in runs.values():
        m.update(_slowdowns(m, alone_times))
    if workload == "chat":
        alone = percentile(alone_times, 50)
        config["chat_p50_alone_s"] = alone
        config["chat_p50_speedup_bound"] = _ratio(runs["fcfs"]["p50_s"], alone)
    rows = [_row(runs[n], runs["fcfs"]) for n in names]
    return Report("sched", config, rows, _targets(workload, runs, config)), runs


ALONE_GAP_S = 1000.0
"""Seconds between programs when each runs alone (longer than any program of the workloads
takes alone)."""


def _alone(arrivals: Sequence[Arrival], options: dict[str, Any], console: Console) -> list[float]:
    """Each program's completion time alone on the engine (``ALONE_GAP_S`` apart), in arrival
    order. No policy can beat it: sharing the engine never makes a program faster, so each
    program's completion time is at least its time alone, and so is the median. ``fcfs p50 /
    the p50 of these`` bounds the chat p50 speedup any policy can reach at the load."""
    spaced = [replace(a, time=i * ALONE_GAP_S) for i, a in enumerate(arrivals)]
    with progress(console=console) as bar:
        task = bar.add_task("alone", total=len(spaced))
        done = simulate(
            spaced, policy="fcfs", on_done=functools.partial(bar.advance, task), **options
        )
    return [float(t) for t in done["completion_times"]]


def _slowdowns(metrics: dict[str, Any], alone: Sequence[float]) -> dict[str, float | None]:
    """Slowdown (each program's completion time over its time alone), p99 and worst: what
    anti-starvation is meant to bound. None where a program failed (the lists do not pair)."""
    times = metrics["completion_times"]
    if metrics["failed"] or len(times) != len(alone) or not times:
        return {"slowdown_p99": None, "slowdown_max": None}
    ratios = [t / a for t, a in zip(times, alone, strict=True) if a > 0]
    return {"slowdown_p99": percentile(ratios, 99), "slowdown_max": max(ratios)}


def _note_failures(metrics: dict[str, Any], console: Console) -> None:
    if metrics["failed"]:
        console.print(
            f"[yellow]note:[/yellow] {metrics['policy']}: {metrics['failed']} of "
            f"{metrics['programs']} programs failed; first: {metrics['first_error']}"
        )


def _config(
    workload: str,
    rate: float,
    programs: int,
    seed: int,
    arrivals: Sequence[Arrival],
    options: dict[str, Any],
) -> dict[str, Any]:
    calls = [c for a in arrivals for c in a.calls]
    n = max(len(arrivals), 1)
    return {
        "workload": workload,
        "rate": rate,
        "programs": programs,
        "seed": seed,
        "calls_per_program": len(calls) / n,
        "mean_prefill": statistics.fmean(c.prefill for c in calls) if calls else math.nan,
        "mean_decode": statistics.fmean(c.decode for c in calls) if calls else math.nan,
        "engine": "virtual: 8B model on one H100 (CostModel), max_batch "
        f"{options.get('max_batch', BENCH_MAX_BATCH)}, "
        f"kv_tokens {options.get('kv_tokens', BENCH_KV_TOKENS)}, "
        f"batch policy {options.get('engine_policy', 'priority')}",
        "max_in_flight": options.get("max_in_flight", 256),
    }


# -- replicas -------------------------------------------------------------------------------
BALANCE_RULES = ("round_robin", "least_loaded", "autellix", "locality")


def balance(
    workload: str = "react",
    *,
    replicas: int = 2,
    policy: str = "program_fcfs",
    rate: float | None = None,
    programs: int | None = None,
    seed: int = 0,
    console: Console | None = None,
    **options: Any,
) -> Report:
    """The same arrivals on ``replicas`` virtual engines under each balancer rule: completion
    times, and the share of each program's reusable prefix its engines found cached. Targets:
    the locality rule's mean completion time against round-robin's (aim 1.3x), and its prefix
    hits (aim 0.9)."""
    console = console or Console(stderr=True)
    if workload not in WORKLOADS:
        raise ConfigError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    if replicas < 1:
        raise ConfigError(f"replicas must be >= 1, got {replicas}")
    # one engine's default load per replica (the default rates load one engine)
    rate = replicas * DEFAULT_RATES[workload] if rate is None else rate
    programs = DEFAULT_PROGRAMS[workload] if programs is None else programs
    arrivals = make_workload(workload, programs=programs, rate=rate, seed=seed)
    runs: dict[str, dict[str, Any]] = {}
    with progress(console=console) as bar:
        for rule in BALANCE_RULES:
            task = bar.add_task(f"{workload} {rule}", total=len(arrivals))
            runs[rule] = simulate(
                arrivals,
                policy=policy,
                replicas=replicas,
                balancer=rule,
                on_done=functools.partial(bar.advance, task),
                **options,
            )
    base = runs["round_robin"]
    rows = [
        {
            "balancer": rule,
            "mean_s": m["mean_s"],
            "p99_s": m["p99_s"],
            "mean_x": _ratio(m["mean_s"], base["mean_s"]),
            "prefix_hits": m["prefix_hits"],
            "calls_per_replica": "/".join(str(c) for c in m["replica_calls"]),
            "failed": m["failed"],
        }
        for rule, m in runs.items()
    ]
    config = {
        "workload": workload,
        "replicas": replicas,
        "policy": policy,
        "rate": rate,
        "programs": programs,
        "seed": seed,
        **options,
    }
    loc = runs["locality"]
    return Report(
        "sched-balance",
        config,
        rows,
        {
            "balancer_speedup_vs_round_robin": Target(
                _ratio(base["mean_s"], loc["mean_s"]), 1.3, "higher"
            ),
            "prefix_hits_within_program": Target(loc["prefix_hits"], 0.9, "higher"),
        },
    )


# -- sweep ----------------------------------------------------------------------------------
def sweep(
    workload: str,
    policies: Sequence[str],
    *,
    rate: float | None = None,
    programs: int | None = None,
    seed: int = 0,
    bound: float = SWEEP_BOUND,
    steps: int = 3,
    workers: int | None = None,
    console: Console | None = None,
    **options: Any,
) -> tuple[Report, dict[str, list[tuple[float, float]]]]:
    """Per policy, the highest arrival rate the engine sustains with the mean completion time
    under ``bound`` times the unloaded mean (fcfs on ``programs`` programs at 1/20 of ``rate``,
    where programs rarely meet): throughput at equal latency, in a steady state.

    Every run lasts the same time: arrivals for ``SWEEP_WINDOWS`` (3) windows of
    ``programs / rate`` seconds (at rate ``r``, ``3 * r * window`` programs, the first ones of
    the same seeded stream), and the figure is the mean completion time of the programs that
    arrive in the second window. The first window warms the engine up (queues build, caches
    fill); the third keeps the load on while the second's programs finish. A rate passes when
    every program completes and that mean is under the bound. Why: at a rate above what the
    engine sustains the queue grows for as long as programs arrive, so a program's wait depends
    on when it arrived. A single window measures how a burst drains instead (a finite burst's
    mean stays bounded however high the rate), with its first programs finding an empty engine
    and its last ones an engine no longer receiving work. Search: from ``rate`` (default
    ``DEFAULT_RATES[workload]``), multiply or divide by 1.5 until the bound is crossed, then
    bisect ``steps`` times in log space (to ~5% with 3). The policies' searches run in
    ``workers`` processes (default: one per core, at most one per policy); virtual time makes
    the figures the same however many.

    Returns the report (config ``sweep: true``; per policy: ``max_rate``; there, the measured
    window's mean (``mean_s``), the first's and the last's (``first_mean_s``, ``last_mean_s``:
    the warm-up, and the drain after the last arrival), ``throughput`` (programs finished per
    second during the measured window) and ``cached_share``; ``max_rate_x``, its ratio to
    fcfs's; how many runs it took) and the (rate, mean) points per policy (latency-vs-load
    curves). The config adds
    ``saturation_rate``: the programs per second the engine completes, in arrival order
    (``program_fcfs``), with arrivals at twice fcfs's highest rate, over the second and third
    windows, where it is overloaded throughout; and ``saturation_x``, its ratio to fcfs's
    highest rate. That is what the engine can do for this mix: a policy sustains more only by
    finishing small programs first while big ones wait longer (a finite run's mean may not
    show the wait growing), so the throughput target cannot go much beyond ``saturation_x``.
    """
    console = console or Console(stderr=True)
    if workload not in WORKLOADS:
        raise ConfigError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    rate = DEFAULT_RATES[workload] if rate is None else rate
    programs = DEFAULT_PROGRAMS[workload] if programs is None else programs
    names = _available(policies, console)

    window = programs / rate
    unloaded_arrivals = make_workload(workload, programs=programs, rate=rate / 20.0, seed=seed)
    unloaded = simulate(unloaded_arrivals, policy="fcfs", **options)["mean_s"]
    limit = bound * unloaded
    found: dict[str, tuple[float, dict[str, Any] | None, list[tuple[float, float]]]] = {}
    workers = min(len(names), os.cpu_count() or 1) if workers is None else max(1, workers)
    search = functools.partial(
        _sweep_policy, workload, seed=seed, window=window, start=rate, limit=limit, steps=steps,
        options=options,
    )  # fmt: skip
    with progress(console=console) as bar:
        task = bar.add_task(f"sweep {workload}", total=None)
        if workers > 1 and len(names) > 1:  # one policy per process: the runs are independent
            # multiprocessing's Pool, not concurrent.futures: leaving its block terminates the
            # workers, so Ctrl-C (or SIGTERM, which the command line turns into an exit) stops
            # the sweep at once instead of waiting for every search under way to finish
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for name, result in pool.imap_unordered(search, names):
                    found[name] = result
                    bar.advance(task, len(result[2]))
        else:
            for name in names:
                found[name] = search(name, on_run=lambda: bar.advance(task))[1]
        curves = {name: found[name][2] for name in names}
        base_rate = found["fcfs"][0]
        saturation = math.nan
        if not math.isnan(base_rate):
            overload = _sweep_arrivals(workload, 2 * base_rate, window, seed)
            over = simulate(overload, policy="program_fcfs", **options)
            saturation = _completion_rate(over, window, SWEEP_WINDOWS * window)
            bar.advance(task)
    rows = []
    for name in names:
        best, m, points = found[name]
        rows.append(
            {
                "policy": name,
                "max_rate": best,
                "mean_s": m["mean_s"] if m else math.nan,
                "first_mean_s": m["first_mean_s"] if m else math.nan,
                "last_mean_s": m["last_mean_s"] if m else math.nan,
                # over the measured window, as the mean: programs finished per second in it
                "throughput": _completion_rate(m, window, 2 * window) if m else math.nan,
                "cached_share": m["cached_share"] if m else math.nan,
                "programs": m["programs"] if m else 0,
                "max_rate_x": _ratio(best, base_rate),
                "runs": len(points),
            }
        )
    config = _config(
        workload, rate, programs, seed, _sweep_arrivals(workload, rate, window, seed), options
    )
    config.update(
        {
            "sweep": True,
            "window_s": window,
            "arrivals_s": SWEEP_WINDOWS * window,
            "sweep_bound_s": limit,
            "unloaded_mean_s": unloaded,
            "bound_factor": bound,
            "saturation_rate": saturation,
            "saturation_x": _ratio(saturation, base_rate),
        }
    )
    targets: dict[str, Target] = {}
    if workload == "mixed" and len(names) > 1:
        others = [(found[n][0], n) for n in names if n != "fcfs" and not math.isnan(found[n][0])]
        if others:
            value, name = max(others)
            config["mixed_best_policy"] = name
            aim, _ = AIMS["mixed_throughput_at_equal_latency_vs_fcfs"]
            targets["mixed_throughput_at_equal_latency_vs_fcfs"] = Target(
                _ratio(value, base_rate), aim, "higher"
            )
    return Report("sched", config, rows, targets), curves


def _sweep_arrivals(workload: str, rate: float, window: float, seed: int) -> list[Arrival]:
    """A sweep run's arrivals: ``SWEEP_WINDOWS`` windows' worth at ``rate``."""
    n = max(1, round(SWEEP_WINDOWS * rate * window))
    return make_workload(workload, programs=n, rate=rate, seed=seed)


def _sweep_policy(
    workload: str,
    name: str,
    *,
    seed: int,
    window: float,
    start: float,
    limit: float,
    steps: int,
    options: dict[str, Any],
    on_run: Callable[[], None] | None = None,
) -> tuple[str, tuple[float, dict[str, Any] | None, list[tuple[float, float]]]]:
    """One policy's search (``_search``) for ``sweep``, with the policy's name; a module-level
    function, so that a worker process can run it."""

    def run(r: float) -> dict[str, Any]:
        m = simulate(_sweep_arrivals(workload, r, window, seed), policy=name, **options)
        m["first_mean_s"], m["mean_s"], m["last_mean_s"] = _window_means(m, window, SWEEP_WINDOWS)
        if on_run is not None:
            on_run()
        return m

    return name, _search(run, start, limit, steps)


def _window_means(metrics: dict[str, Any], window: float, windows: int) -> list[float]:
    """The mean completion time of the programs that arrived in each of ``windows`` windows of
    ``window`` seconds (the last takes any later ones; NaN where none arrived)."""
    groups: list[list[float]] = [[] for _ in range(windows)]
    for arrived, took in zip(metrics["arrival_times"], metrics["completion_times"], strict=True):
        groups[min(windows - 1, int(arrived // window))].append(took)
    return [statistics.fmean(g) if g else math.nan for g in groups]


def _completion_rate(metrics: dict[str, Any], start: float, end: float) -> float:
    """Programs finished per second between ``start`` and ``end`` (seconds from the run's
    start)."""
    done = sum(
        1
        for arrived, took in zip(metrics["arrival_times"], metrics["completion_times"], strict=True)
        if start <= arrived + took < end
    )
    return done / (end - start)


def _search(
    run: Callable[[float], dict[str, Any]], start: float, limit: float, steps: int
) -> tuple[float, dict[str, Any] | None, list[tuple[float, float]]]:
    """The highest rate whose run keeps every program and a mean completion time (its
    ``mean_s``) within ``limit`` (NaN if none of the tried rates does), that run's metrics, and
    every (rate, mean) tried, sorted by rate."""
    points: list[tuple[float, float]] = []
    good: dict[float, dict[str, Any]] = {}

    def within(r: float) -> bool:
        m = run(r)
        points.append((r, m["mean_s"]))
        if m["failed"] == 0 and m["mean_s"] <= limit:
            good[r] = m
            return True
        return False

    lo: float | None = None
    hi: float | None = None
    r = start
    for _ in range(12):  # 1.5**12 ~ 130x either way
        if within(r):
            lo = r
            if hi is not None:
                break
            r *= 1.5
        else:
            hi = r
            if lo is not None:
                break
            r /= 1.5
    if lo is not None and hi is not None:
        for _ in range(steps):
            mid = math.sqrt(lo * hi)
            if within(mid):
                lo = mid
            else:
                hi = mid
    if lo is None:
        return math.nan, None, sorted(points)
    return lo, good[lo], sorted(points)


# -- plots ----------------------------------------------------------------------------------
def plot(
    path: str,
    *,
    runs: dict[str, dict[str, Any]] | None = None,
    curves: dict[str, list[tuple[float, float]]] | None = None,
    title: str = "",
    bound: float | None = None,
    console: Console | None = None,
) -> bool:
    """Draw completion-time CDFs (``runs``) and latency-vs-load curves (``curves``, with the
    sweep's latency ``bound`` as a line) into ``path`` with matplotlib; if matplotlib is not
    installed, say so and draw nothing. Returns whether a file was written."""
    console = console or Console(stderr=True)
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
        ticker: Any = importlib.import_module("matplotlib.ticker")
    except ImportError:
        console.print(f"[yellow]note:[/yellow] matplotlib is not installed; no plot ({path})")
        return False
    panels = [p for p in (runs, curves) if p]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    ax_iter = iter(axes[0])
    if runs:
        ax = next(ax_iter)
        for name, m in runs.items():
            xs = sorted(m["completion_times"])
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=name)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("program completion time (s, virtual)")
        ax.set_ylabel("fraction of programs")
        ax.set_title(f"{title} completion-time CDF")
        ax.legend()
    if curves:
        ax = next(ax_iter)
        for name, points in curves.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        if bound is not None:
            ax.axhline(bound, color="grey", linestyle="--", label="bound")
        ax.set_xlabel("arrival rate (programs/s)")
        ax.set_ylabel("mean completion time (s)")
        ax.set_title(f"{title} latency vs load")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# -- command line ---------------------------------------------------------------------------
class SchedArgs(Protocol):
    """What ``main`` reads from the parsed command line (an ``argparse.Namespace``). Also read
    when present (else the defaults): ``max_batch``, ``kv_tokens``, ``max_in_flight``,
    ``engine_policy``."""

    workload: str
    policies: str
    rate: float | None
    programs: int | None
    seed: int
    sweep: bool
    json: str | None
    plot: str | None
    micro: bool


def _micro(args: SchedArgs) -> int:
    """``--micro``: the policy-decision micro-benchmark (``orchestrator.bench.sched_micro``)."""
    from orchestrator.bench.sched_micro import main as micro_main

    return micro_main(args)


def main(args: SchedArgs) -> int:
    """``legato bench sched``: run the comparison (or ``--sweep``, or ``--micro``), print the
    tables, write ``--json`` and ``--plot`` if asked; the exit code (0)."""
    if getattr(args, "micro", False):
        return _micro(args)
    replicas = getattr(args, "replicas", None)
    replicas = 1 if replicas is None else int(replicas)
    for name in ("programs", "max_batch", "kv_tokens", "max_in_flight"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"bench sched: {name} must be >= 1, got {value}")
    if args.rate is not None and not args.rate > 0:
        raise ConfigError(f"bench sched: rate must be > 0, got {args.rate}")
    if replicas < 1:
        raise ConfigError(f"bench sched: replicas must be >= 1, got {replicas}")
    if replicas > 1 and args.sweep:
        raise ConfigError("bench sched: --sweep runs one engine; it does not take --replicas")
    real_programs: int | None = getattr(args, "real", None)
    if real_programs is not None and real_programs < 0:
        raise ConfigError(f"bench sched: real must be >= 0, got {real_programs}")
    # Rich sizes tables to the terminal, 80 columns when there is none: keep them whole in files.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    notes = Console(stderr=True)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if real_programs:
        from orchestrator.bench.sched_real import REAL_POLICIES, real_run

        chosen = REAL_POLICIES if getattr(args, "policies_default", False) else policies
        real = real_run(
            real_programs, workload=args.workload, policies=chosen, rate=args.rate, seed=args.seed,
            console=notes,
        )  # fmt: skip
        real.print(console)
        if args.json is not None:
            real.write_json(args.json)
        return 0
    common: dict[str, Any] = {"rate": args.rate, "programs": args.programs, "seed": args.seed}
    for name in ("max_batch", "kv_tokens", "max_in_flight", "engine_policy"):
        value = getattr(args, name, None)
        if value is not None:
            common[name] = value
    runs: dict[str, dict[str, Any]] | None = None
    curves: dict[str, list[tuple[float, float]]] | None = None
    if replicas > 1:
        report = balance(args.workload, replicas=replicas, console=notes, **common)
    elif args.sweep:
        report, curves = sweep(args.workload, policies, console=notes, **common)
    else:
        report, runs = measure(args.workload, policies, console=notes, **common)
    report.print(console)
    if args.json is not None:
        report.write_json(args.json)
    if args.plot is not None:
        bound = report.config.get("sweep_bound_s")
        plot(args.plot, runs=runs, curves=curves, title=args.workload, bound=bound, console=notes)
    return 0
