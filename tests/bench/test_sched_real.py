"""``legato bench sched --real``: the policies on two real llama-server replicas, compared with
the same arrivals in virtual time."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.bench.sched_real import _pair_agreement, real_run
from orchestrator.cli import main
from orchestrator.engine import CostModel
from orchestrator.errors import ConfigError


def test_pair_agreement_counts_pairs_ordered_the_same_way() -> None:
    a = {"fcfs": 3.0, "plas": 1.0, "atlas": 2.0}
    assert _pair_agreement(a, dict(a)) == 1.0
    assert _pair_agreement(a, {"fcfs": 1.0, "plas": 3.0, "atlas": 2.0}) == 0.0
    assert _pair_agreement(a, {"fcfs": 3.0, "plas": 2.0, "atlas": 1.0}) == pytest.approx(2 / 3)
    assert math.isnan(_pair_agreement({"fcfs": 1.0}, {"fcfs": 1.0}))


def test_an_unknown_policy_is_refused_before_any_server_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A misspelt policy used to surface only when its turn came, after the servers had started
    and the policies before it had run on the wall clock."""
    import integrations.llamacpp
    import orchestrator.engine

    class NoServer:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> NoServer:
            raise AssertionError("a llama-server was started")

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(integrations.llamacpp, "find", lambda: tmp_path / "llama-server")
    monkeypatch.setattr(integrations.llamacpp, "LlamaServer", NoServer)
    monkeypatch.setattr(
        orchestrator.engine, "cached_model", lambda model: SimpleNamespace(gguf=tmp_path / "m")
    )
    with pytest.raises(ConfigError, match="unknown policies 'plass'"):
        real_run(2, policies=("fcfs", "plass"))


@pytest.mark.http
@pytest.mark.llamacpp
@pytest.mark.timeout(600)
def test_real_run_drives_two_llama_server_replicas(tmp_path: Path) -> None:
    from integrations.llamacpp import find

    if find() is None:
        pytest.skip("llama-server is not built: python3 -m integrations.llamacpp build")
    out = tmp_path / "real.json"
    argv = ["bench", "sched", "--workload", "react", "--real", "3", "--rate", "3",
            "--policies", "fcfs,program_fcfs", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["bench"] == "sched-real"
    rows = report["rows"]
    assert {(r["clock"], r["policy"]) for r in rows} == {
        (c, p) for c in ("real", "virtual") for p in ("fcfs", "program_fcfs")
    }
    assert all(r["failed"] == 0 and r["mean_s"] > 0 for r in rows), report["config"]
    assert set(report["targets"]) == {"real_vs_virtual_pair_agreement", "real_best_is_virtual_best"}


def test_each_policy_runs_on_servers_started_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """llama-server keeps finished prompts in RAM: servers an earlier policy used would give a
    later one the same programs' prompts cached. Each policy's run gets two servers started for
    it, and stopped before the next policy's start."""
    import integrations.llamacpp
    import orchestrator.engine
    from orchestrator.bench import sched_real

    events: list[str] = []
    port = iter(range(40000, 40100))

    class Server:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.url = f"http://127.0.0.1:{next(port)}/v1"
            self.base = self.url[: -len("/v1")]

        def __enter__(self) -> Server:
            events.append(f"start {self.url}")
            return self

        def __exit__(self, *exc: object) -> None:
            events.append(f"stop {self.url}")

    async def drive(arrivals: object, backend: Any, *, policy: str, **kw: object) -> dict[str, Any]:
        urls = ",".join(str(b.base_url) for b in backend.backends)
        events.append(f"run {policy} on {urls}")
        return {"mean_s": 1.0, "p50_s": 1.0, "p99_s": 1.0, "failed": 0, "first_error": None}

    monkeypatch.setattr(integrations.llamacpp, "find", lambda: tmp_path / "llama-server")
    monkeypatch.setattr(integrations.llamacpp, "LlamaServer", Server)
    monkeypatch.setattr(
        orchestrator.engine, "cached_model", lambda model: SimpleNamespace(gguf=tmp_path / "m")
    )
    monkeypatch.setattr(sched_real, "fit_cost", lambda base: (CostModel(), {}))
    monkeypatch.setattr(sched_real, "drive", drive)
    real_run(2, policies=("fcfs", "program_fcfs"))
    runs = [e for e in events if e.startswith("run")]
    assert len(runs) == 2
    for run in runs:
        i = events.index(run)
        urls = run.split(" on ")[1].split(",")
        for url in urls:
            start, stop = events.index(f"start {url}"), events.index(f"stop {url}")
            assert start < i < stop  # started for this run, stopped after it
        assert not set(urls) & set(runs[0 if run != runs[0] else 1].split(" on ")[1].split(","))
