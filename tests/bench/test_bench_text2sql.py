"""``legato bench text2sql`` in a tiny configuration: the virtual pipeline, the workload, the
50%-load search and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.progress import Progress

from orchestrator.bench import text2sql as bench
from orchestrator.bench.sched import simulate

ROOT = Path(__file__).resolve().parents[2]


def test_the_workload_is_seeded_and_sized_from_the_real_pipeline() -> None:
    a = bench.workload(20, 10.0, seed=1)
    b = bench.workload(20, 10.0, seed=1)
    assert [x.args for x in a] == [x.args for x in b]
    faster = bench.workload(20, 20.0, seed=1)
    assert [x.args for x in faster] == [x.args for x in a]  # the rate only rescales time
    assert faster[-1].time == a[-1].time / 2
    for arrival in a:
        spec = arrival.args[0]
        assert spec.db in ("school", "shop", "flights")
        assert spec.schema > spec.focus[1] > 0
        assert arrival.slo == bench.DEFAULT_SLO_SCALE * spec.alone_latency()
        stages = [c.stage for c in arrival.calls]
        assert stages[0] == "schema_linking" and stages.count("candidate") == bench.CANDIDATES


def test_the_virtual_pipeline_has_the_real_stages() -> None:
    arrivals = bench.workload(6, 50.0, seed=3, fail_rate=0.5)
    m = simulate(arrivals, policy="slo")
    assert m["failed"] == 0 and m["completed"] == 6
    assert m["slo_attainment"] is not None
    spec = arrivals[0].args[0]
    corrections = sum(1 for c in arrivals[0].calls if c.stage == "correction")
    assert corrections == sum(spec.fails[0]) + sum(
        1 for i, f in enumerate(spec.fails[0]) if f and spec.fails[1][i]
    )


def test_bench_text2sql_quick_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "t2s.json"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "bench", "text2sql", "--quick", "--queries",
         "30", "--real", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["bench"] == "text2sql"
    policies = {(r["load"], r["policy"]) for r in data["rows"]}
    for load in ("given", "fcfs~50%"):
        assert {(load, p) for p in ("fcfs", "slo", "adaptive")} <= policies
    target = data["targets"]["slo_attainment_x_vs_fcfs_at_fcfs_half"]
    assert target["aim"] == 1.4 and target["better"] == "higher"
    assert data["config"]["fcfs_half_rate"] > 0
    assert "text2sql: targets" in proc.stdout


def test_the_progress_bar_ends_full_when_the_search_is_not_bracketed(
    progress_bars: Callable[[ModuleType], list[Progress]],
) -> None:
    """A handful of queries meet their SLO even at the search's highest rate: the search stops
    after its two ends, and the bar's total counts the runs made, not the bisection's too."""
    bars = progress_bars(bench)
    report = bench.measure(
        ["fcfs"], queries=4, rate=None, repeats=1, search_steps=3, console=Console(quiet=True)
    )
    assert report.config["fcfs_half_search_att"] > 0.5  # not bracketed: the closest end
    (task,) = bars[0].tasks
    assert task.completed == task.total == 2 + 1  # the two ends, then fcfs at the rate found


def test_the_real_run_s_slo_is_three_times_the_median_alone() -> None:
    assert bench.real_slo([2.0, 4.0]) == 9.0  # the mean of the middle two, not the slower
    assert bench.real_slo([3.0, None, 1.0, 2.0]) == 6.0  # unanswered ones left out
    assert bench.real_slo([None]) == 10.0
