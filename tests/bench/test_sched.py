"""The scheduling benchmark: workloads are deterministic and match their parameters, and runs
through the real runtime on a virtual-time engine finish fast with sane figures (no assertions
on which policy wins: that is what the benchmark measures)."""

from __future__ import annotations

import io
import json
import math
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from orchestrator.bench import sched
from orchestrator.bench.sched import main, measure, simulate, sweep
from orchestrator.bench.workloads import (
    WORKLOADS,
    Arrival,
    CallShape,
    make_workload,
)
from orchestrator.errors import ConfigError


def _calls(arrivals: list[Arrival]) -> list[CallShape]:
    return [c for a in arrivals for c in a.calls]


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.mark.parametrize("name", WORKLOADS)
def test_workloads_are_deterministic_per_seed(name: str) -> None:
    a = make_workload(name, programs=20, rate=2.0, seed=7)
    b = make_workload(name, programs=20, rate=2.0, seed=7)
    c = make_workload(name, programs=20, rate=2.0, seed=8)
    assert a == b
    assert [x.args for x in a] != [x.args for x in c]
    assert a[0].time == 0.0
    times = [x.time for x in a]
    assert times == sorted(times)


def test_rate_only_rescales_arrival_times() -> None:
    slow = make_workload("mixed", programs=50, rate=1.0, seed=3)
    fast = make_workload("mixed", programs=50, rate=4.0, seed=3)
    assert [a.args for a in slow] == [a.args for a in fast]
    assert [a.time / 4.0 for a in slow] == pytest.approx([a.time for a in fast])
    # Poisson arrivals: the mean gap is 1/rate (50 gaps: within 40%).
    assert slow[-1].time / 49 == pytest.approx(1.0, rel=0.4)


@pytest.mark.parametrize(
    ("name", "programs", "calls", "prefill", "decode"),
    [
        ("chat", 400, 6.7, 256, 277),
        ("react", 300, 10.8, 735, 34),
        ("tree", 150, 160, None, 64),
        ("dag", 300, 11, None, None),
        ("text2sql", 100, 7, None, None),
    ],
)
def test_workloads_match_their_parameters(
    name: str, programs: int, calls: float, prefill: float | None, decode: float | None
) -> None:
    arrivals = make_workload(name, programs=programs, rate=1.0, seed=0)
    shapes = _calls(arrivals)
    assert len(shapes) / programs == pytest.approx(calls, rel=0.15)
    if prefill is not None:
        assert statistics.fmean(c.prefill for c in shapes) == pytest.approx(prefill, rel=0.2)
    if decode is not None:
        assert statistics.fmean(c.decode for c in shapes) == pytest.approx(decode, rel=0.15)
    assert max(c.prefill + c.decode for c in shapes) < 8192  # fits the engine's context


def test_chat_is_heavy_tailed_and_multi_turn_prompts_grow() -> None:
    arrivals = make_workload("chat", programs=400, rate=1.0, seed=0)
    turns = sorted(len(a.calls) for a in arrivals)
    assert turns[len(turns) // 2] < statistics.fmean(turns)  # median below mean
    assert turns[-1] >= 5 * turns[len(turns) // 2]
    for a in arrivals[:20]:
        prefills = [c.prefill for c in a.calls]
        assert prefills == sorted(prefills)


def test_text2sql_stages_and_slo() -> None:
    arrivals = make_workload("text2sql", programs=30, rate=1.0, seed=0)
    for a in arrivals:
        stages = [c.stage for c in a.calls]
        assert stages == ["schema_linking", *["candidate"] * 4, "correction", "evaluation"]
        spec = a.args[0]
        assert a.slo is not None and a.slo == pytest.approx(3.0 * spec.alone_latency())
        assert 0.5 < spec.alone_latency() < 10.0
    tight = make_workload("text2sql", programs=30, rate=1.0, seed=0, slo_scale=2.0)
    assert [t.slo for t in tight] == pytest.approx([2.0 / 3.0 * (a.slo or 0) for a in arrivals])


def test_mixed_draws_several_kinds_and_only_text2sql_has_an_slo() -> None:
    arrivals = make_workload("mixed", programs=200, rate=1.0, seed=0)
    kinds = {a.kind for a in arrivals}
    assert kinds == {"chat", "react", "tree", "dag", "text2sql"}
    assert all((a.slo is not None) == (a.kind == "text2sql") for a in arrivals)


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("nope", programs=1, rate=1.0, seed=0)
    with pytest.raises(ValueError, match="rate"):
        make_workload("chat", programs=1, rate=0.0, seed=0)


def test_engine_sees_exactly_the_declared_calls() -> None:
    """Prompt and decode lengths of ``Arrival.calls`` are what the engine computes (plus the
    chat role word per call)."""
    arrivals = [
        a for name in WORKLOADS[:-1] for a in make_workload(name, programs=2, rate=0.5, seed=1)
    ]
    arrivals = [
        Arrival(time=i * 0.5, program=a.program, args=a.args, slo=a.slo, kind=a.kind, calls=a.calls)
        for i, a in enumerate(arrivals)
    ]
    m = simulate(arrivals, policy="fcfs")
    shapes = _calls(arrivals)
    assert m["failed"] == 0
    assert m["prompt_tokens"] == sum(c.prefill + 1 for c in shapes)
    assert m["generated_tokens"] == sum(c.decode for c in shapes)


def test_a_virtual_run_gives_the_same_figures_every_time() -> None:
    """Trio wakes tasks that become runnable at one virtual instant in a random order; the
    benchmark fixes that order, so the same workload and policy give identical figures. (A
    small engine, so that calls contend for its slots: here, unfixed, two runs differed.)"""
    arrivals = make_workload("react", programs=60, rate=20.0, seed=0)
    first, second = (
        simulate(arrivals, policy="program_fcfs", max_batch=8, kv_tokens=8192) for _ in range(2)
    )
    assert first["completion_times"] == second["completion_times"]
    assert first["preemptions"] == second["preemptions"]


def test_run_workload_small_run_is_fast_and_sane() -> None:
    arrivals = make_workload("react", programs=30, rate=5.0, seed=0)
    start = time.perf_counter()
    m = simulate(arrivals, policy="fcfs")
    assert time.perf_counter() - start < 20.0
    assert m["programs"] == m["completed"] == 30 and m["failed"] == 0
    assert 0 < m["p50_s"] <= m["p95_s"] <= m["p99_s"] <= m["max_s"]
    assert m["mean_s"] > 0 and m["throughput"] > 0
    assert m["makespan_s"] >= arrivals[-1].time
    assert m["slo_attainment"] is None
    assert 0.0 <= m["cached_share"] <= 1.0
    assert len(m["completion_times"]) == 30
    # Alone, a react program takes at least its tools' time.
    spec = arrivals[0].args[0]
    assert min(m["completion_times"]) > 0.0
    assert m["completion_times"][0] >= sum(t.seconds for t in spec.turns)


def test_slo_attainment_is_reported_for_text2sql() -> None:
    m = simulate(make_workload("text2sql", programs=10, rate=0.5, seed=0), policy="fcfs")
    assert m["slo_attainment"] == 1.0  # an idle engine meets every SLO (3x the alone latency)


def test_replicas_run_behind_the_balancer() -> None:
    m = simulate(make_workload("chat", programs=4, rate=1.0, seed=0), policy="fcfs", replicas=2)
    assert m["failed"] == 0 and sum(m["replica_calls"]) > 0 and 0.0 <= m["prefix_hits"] <= 1.0
    with pytest.raises(ConfigError, match="replicas must be >= 1"):
        simulate(make_workload("chat", programs=1, rate=1.0, seed=0), policy="fcfs", replicas=0)


def test_each_policy_s_slowdown_against_each_program_alone_is_reported() -> None:
    report, runs = measure("chat", ["plas"], rate=4.0, programs=30, console=_quiet())
    for row in report.rows:
        # no program finishes sooner shared than alone (the engine is the same, only busier)
        assert 0.99 <= row["slow_p99"] <= row["slow_max"]
    alone = report.config["chat_p50_alone_s"]
    assert report.config["chat_p50_speedup_bound"] == pytest.approx(runs["fcfs"]["p50_s"] / alone)
    react, _ = measure("react", ["program_fcfs"], rate=8.0, programs=5, console=_quiet())
    for row in react.rows:
        assert 0.99 <= row["slow_p99"] <= row["slow_max"]
    assert "chat_p50_speedup_bound" not in react.config  # the p50 bound is chat's target


def test_measure_compares_policies_on_the_same_arrivals() -> None:
    report, runs = measure(
        "react", ["program_fcfs", "no_such_policy"], rate=8.0, programs=25, console=_quiet()
    )
    assert [r["policy"] for r in report.rows] == ["fcfs", "program_fcfs"]
    base = report.rows[0]
    assert base["mean_x"] == 1.0 and base["thru_x"] == 1.0
    assert set(runs) == {"fcfs", "program_fcfs"}
    assert runs["fcfs"]["programs"] == runs["program_fcfs"]["programs"] == 25
    target = report.targets["react_mean_speedup_program_fcfs_ttl_vs_fcfs"]
    assert target.value == pytest.approx(runs["fcfs"]["mean_s"] / runs["program_fcfs"]["mean_s"])
    assert "chat_p50_speedup_vs_fcfs" not in report.targets
    assert "adaptive_within_5pct_of_best" not in report.targets


def test_main_writes_json_and_skips_the_plot_without_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sched.json"
    args = SimpleNamespace(
        workload="chat",
        policies="fcfs,program_fcfs",
        rate=2.0,
        programs=12,
        seed=0,
        sweep=False,
        json=str(out),
        plot=str(tmp_path / "sched.png"),
        micro=False,
    )
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert data["bench"] == "sched" and data["config"]["workload"] == "chat"
    assert {"chat_p50_speedup_vs_fcfs", "chat_p99_ratio_vs_fcfs"} <= set(data["targets"])
    # running alone bounds every policy's p50 from below
    alone = data["config"]["chat_p50_alone_s"]
    assert 0 < alone <= min(r["p50_s"] for r in data["rows"]) + 1e-9
    assert data["targets"]["chat_p50_speedup_vs_fcfs"]["value"] <= (
        data["config"]["chat_p50_speedup_bound"] + 1e-9
    )
    for t in data["targets"].values():
        assert set(t) == {"value", "aim", "better", "met"}


def test_sweep_finds_a_rate_per_policy() -> None:
    report, curves = sweep("dag", ["fcfs"], rate=1.0, programs=8, seed=0, steps=1, console=_quiet())
    (row,) = report.rows
    assert row["policy"] == "fcfs" and row["max_rate"] > 0
    assert not math.isnan(row["throughput"])
    assert len(curves["fcfs"]) == row["runs"] >= 2
    assert report.config["sweep_bound_s"] == pytest.approx(2.0 * report.config["unloaded_mean_s"])
    # three windows of arrivals, measured over the second: the first warms the engine up
    assert report.config["arrivals_s"] == pytest.approx(3 * report.config["window_s"])
    assert row["mean_s"] <= report.config["sweep_bound_s"]
    assert row["first_mean_s"] > 0 and row["last_mean_s"] > 0
    # throughput over the measured window too: programs finished per second in it
    window = report.config["window_s"]
    again = simulate(sched._sweep_arrivals("dag", row["max_rate"], window, 0), policy="fcfs")
    assert row["throughput"] == pytest.approx(sched._completion_rate(again, window, 2 * window))
    # what the engine completes when overloaded, against fcfs's highest rate
    assert report.config["saturation_rate"] > 0
    assert report.config["saturation_x"] == pytest.approx(
        report.config["saturation_rate"] / row["max_rate"]
    )


def test_plot_without_matplotlib_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr("importlib.import_module", missing)
    out = io.StringIO()
    path = tmp_path / "x.png"
    runs = {"fcfs": {"completion_times": [1.0, 2.0]}}
    assert not sched.plot(str(path), runs=runs, console=Console(file=out, width=200))
    assert "matplotlib is not installed" in out.getvalue()
    assert not path.exists()


def test_balance_compares_the_rules_on_two_replicas() -> None:
    from orchestrator.bench.sched import BALANCE_RULES, balance

    report = balance("react", programs=30, rate=20.0, console=Console(quiet=True))
    assert [r["balancer"] for r in report.rows] == list(BALANCE_RULES)
    for row in report.rows:
        assert row["failed"] == 0 and 0.0 <= row["prefix_hits"] <= 1.0
        assert all(int(n) > 0 for n in row["calls_per_replica"].split("/"))
    assert set(report.targets) == {"balancer_speedup_vs_round_robin", "prefix_hits_within_program"}


def test_balance_loads_each_replica_as_one_engine_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rates: list[float] = []

    def workload(name: str, *, programs: int, rate: float, seed: int) -> list[Arrival]:
        rates.append(rate)
        raise RuntimeError("stop here")

    monkeypatch.setattr(sched, "make_workload", workload)
    for replicas in (2, 3):
        with pytest.raises(RuntimeError, match="stop here"):
            sched.balance("react", replicas=replicas, console=Console(quiet=True))
    assert rates == [2 * sched.DEFAULT_RATES["react"], 3 * sched.DEFAULT_RATES["react"]]
    with pytest.raises(ConfigError, match="replicas must be >= 1"):
        sched.balance("react", replicas=0, console=Console(quiet=True))


def test_a_scaled_react_workload_keeps_its_steps_and_shortens_its_prompts() -> None:
    full = make_workload("react", programs=6, rate=1.0, seed=2)
    short = make_workload("react", programs=6, rate=1.0, seed=2, prompt_scale=0.1)
    assert [a.time for a in full] == [a.time for a in short]
    assert [[c.decode for c in a.calls] for a in full] == [
        [c.decode for c in a.calls] for a in short
    ]
    ratio = sum(c.prefill for c in _calls(short)) / sum(c.prefill for c in _calls(full))
    assert 0.07 < ratio < 0.16
    # the engine sees exactly the scaled prompts
    m = simulate(short, policy="fcfs")
    assert m["failed"] == 0
    assert m["prompt_tokens"] == sum(c.prefill + 1 for c in _calls(short))
    with pytest.raises(ValueError, match="prompt_scale"):
        make_workload("react", programs=1, rate=1.0, seed=0, prompt_scale=0.0)


def test_micro_times_every_policy_on_a_small_queue() -> None:
    from orchestrator.bench.sched_micro import measure_micro
    from orchestrator.scheduler import POLICIES

    report = measure_micro(queued=400, programs=40, repeats=30)
    assert {r["policy"] for r in report.rows} == set(POLICIES)
    assert all(r["decision_us"] > 0 for r in report.rows)
    worst = report.targets["decision_us_at_10k_queued"].value
    assert worst == pytest.approx(max(r["decision_us"] for r in report.rows), abs=0.1)


def test_sweep_in_processes_finds_what_one_process_finds() -> None:
    args = ("dag", ["fcfs", "program_fcfs"])
    kwargs: dict[str, Any] = {"rate": 1.0, "programs": 8, "seed": 0, "steps": 1}
    serial, serial_curves = sweep(*args, workers=1, console=_quiet(), **kwargs)
    parallel, parallel_curves = sweep(*args, workers=2, console=_quiet(), **kwargs)
    assert [r["policy"] for r in parallel.rows] == ["fcfs", "program_fcfs"]
    assert parallel.rows == serial.rows and parallel_curves == serial_curves


def test_window_means_split_programs_by_arrival() -> None:
    metrics = {
        "arrival_times": [0.0, 4.0, 5.0, 9.0, 70.0],
        "completion_times": [1.0, 3.0, 10.0, 20.0, 6.0],
    }
    assert sched._window_means(metrics, 5.0, 2) == [2.0, 12.0]  # the last takes later ones
    first, second, third = sched._window_means(metrics, 20.0, 3)
    assert first == pytest.approx(8.5) and math.isnan(second) and third == 6.0


def test_completion_rate_counts_programs_finishing_in_the_span() -> None:
    metrics = {"arrival_times": [0.0, 1.0, 2.0, 8.0], "completion_times": [3.0, 9.0, 1.0, 1.0]}
    # finishes at 3, 10, 3, 9: three of them in [2, 10)
    assert sched._completion_rate(metrics, 2.0, 10.0) == pytest.approx(3 / 8)


def test_a_mixed_workload_reports_each_kind_s_mean() -> None:
    report, runs = measure("mixed", ["adaptive"], rate=1.0, programs=20, console=_quiet())
    for row in report.rows:
        kinds = runs[row["policy"]]["by_kind"]
        assert len(kinds) > 1 and {f"{k}_s" for k in kinds} <= set(row)
        # the kinds' means, weighted by their programs, make the mean
        total = sum(row[f"{k}_s"] * v["programs"] for k, v in kinds.items())
        assert total / sum(v["programs"] for v in kinds.values()) == pytest.approx(row["mean_s"])
    single, _ = measure("react", ["fcfs"], rate=8.0, programs=5, console=_quiet())
    assert "react_s" not in single.rows[0]  # one kind: the mean says it already


def test_micro_honours_the_seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``legato bench sched --micro --seed S`` draws its queue from S (it always used 0) and
    says so in the report."""
    from orchestrator.bench import sched_micro

    seeds: list[int] = []
    real = sched_micro.measure_micro

    def small(**options: Any) -> Any:
        seeds.append(options.get("seed", 0))
        return real(queued=200, programs=20, repeats=5, **options)

    monkeypatch.setattr(sched_micro, "measure_micro", small)
    out = tmp_path / "micro.json"
    args = SimpleNamespace(micro=True, seed=5, json=str(out))
    assert main(args) == 0
    assert seeds == [5]
    assert json.loads(out.read_text())["config"]["seed"] == 5


@pytest.mark.parametrize(
    "weights", [{}, {"chat": 0.0}, {"chat": -1.0, "react": 2.0}, {"chat": math.inf}]
)
def test_mixed_refuses_weights_it_cannot_draw_from(weights: dict[str, float]) -> None:
    """Empty weights used to fall back to the default mix, and a negative one skewed the draw."""
    with pytest.raises(ValueError, match="weights must be"):
        make_workload("mixed", programs=5, rate=1.0, seed=0, weights=weights)
    only_chat = make_workload("mixed", programs=5, rate=1.0, seed=0, weights={"chat": 1.0})
    assert {a.kind for a in only_chat} == {"chat"}


def test_sweep_with_replicas_is_refused() -> None:
    """``--sweep --replicas 2`` used to run the balancer comparison and drop the sweep."""
    args = SimpleNamespace(
        workload="react", policies="fcfs", rate=None, programs=None, seed=0, sweep=True,
        json=None, plot=None, micro=False, replicas=2,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--sweep"):
        main(args)
