"""``legato bench model`` end to end on a few questions: every target of issue 8 is reported
with a value, and the report is the JSON of DESIGN.md section 6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    assert ("seen", "on") in cases
    assert {("plans_values", g) for g in ("grounded", "named")} <= cases
    agreement = [r for r in report.rows if r["case"] == "agreement"]
    assert agreement[0]["engine"] == "torch"
    assert agreement[0]["same_greedy"] == agreement[0]["prompts"] == len(SPLITS)
    report.write_json(tmp_path / "model.json")
    data = json.loads((tmp_path / "model.json").read_text())
    assert data["bench"] == "model" and set(data["targets"]) == TARGETS


def test_sql_eval_runs_the_held_out_splits_with_and_without_the_grammar(tmp_path: Path) -> None:
    from orchestrator.cli import main

    out = tmp_path / "splits.json"
    argv = ["sql", "eval", "--split", "seen,phrasings", "--limit", "2", "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    cases = {(r["case"], r.get("grammar")) for r in data["rows"]}
    assert cases >= {(s, g) for s in ("seen", "phrasings") for g in ("off", "on")}
    assert set(data["targets"]) == {
        "sql_exec_seen",
        "sql_exec_phrasings",
        "sql_executes_with_grammar",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split", "plans_seen"], "the Text-to-SQL splits are seen, values"),
        (["--split", "seen", "--backend", "http://127.0.0.1:9/v1"], "must be local[:MODEL]"),
        (["--split", "seen", "--backend", "local:tiny"], "was not trained here"),
        (["--split", "seen", "--db", "x.sqlite"], "drop --db"),
        ([], "--db FILE is required"),
    ],
)
def test_sql_eval_splits_reject_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    assert main(["sql", "eval", *argv]) != 0
    assert message in capsys.readouterr().err
