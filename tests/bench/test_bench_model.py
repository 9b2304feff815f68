"""``legato bench model`` end to end on a few questions: every target of issue 8 is reported
with a value, and the report is the JSON of DESIGN.md section 6."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.bench.model import measure
from orchestrator.train import SPLITS

TARGETS = {
    "sql_exec_seen",
    "sql_exec_values",
    "sql_exec_phrasings",
    "plan_exact_seen",
    "plan_exact_values",
    "sql_executes_with_grammar",
    "train_minutes",
}


def test_bench_model_reports_every_target(tmp_path: Path) -> None:
    report = measure(n=1, agreement=1, corpus_size=1500)
    assert set(report.targets) == TARGETS
    # with the grammar on, every query the model writes runs
    assert report.targets["sql_executes_with_grammar"].value == 1.0
    assert report.targets["train_minutes"].value == report.targets["train_minutes"].value
    cases = {(r["case"], r.get("grammar")) for r in report.rows}
    assert ("seen", "on") in cases and ("plans_values", "grounded") in cases
    agreement = [r for r in report.rows if r["case"] == "agreement"]
    assert agreement[0]["engine"] == "torch"
    assert agreement[0]["same_greedy"] == agreement[0]["prompts"] == len(SPLITS)
    report.write_json(tmp_path / "model.json")
    data = json.loads((tmp_path / "model.json").read_text())
    assert data["bench"] == "model" and set(data["targets"]) == TARGETS
