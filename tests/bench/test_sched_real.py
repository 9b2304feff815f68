"""``legato bench sched --real``: the policies on two real llama-server replicas, compared with
the same arrivals in virtual time."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.bench.sched_real import _pair_agreement, real_run
from orchestrator.cli import main
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
