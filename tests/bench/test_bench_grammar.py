"""``legato bench grammar`` runs end to end in its quick configuration and reports in DESIGN.md
section 6's shape (no timing assertions: the figures depend on the machine)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import grammars
from dsl import Grammar
from orchestrator.bench.grammar import sample_outputs
from orchestrator.cli import main
from orchestrator.constrain import GrammarCompiler
from orchestrator.engine import EngineTokenizer, cached_model

TARGETS = {
    "mask_p50_us_32k_max": (5.0, "lower"),
    "mask_p99_us_32k_max": (1000.0, "lower"),
    "constrained_throughput_ratio_min": (0.9, "higher"),
}


@pytest.mark.parametrize("name", grammars.names())
def test_sample_outputs_are_sentences_of_their_grammar(name: str) -> None:
    tk = EngineTokenizer.from_file(cached_model("tiny").tokenizer)
    compiled = GrammarCompiler.for_tokenizer(tk.tk, tk.stop_ids()).compile(Grammar.lark(name))
    texts = sample_outputs(name, seed=1)
    assert len(texts) >= 20
    for text in texts:
        matcher = compiled.matcher()
        assert matcher.accept_text(text), text
        assert matcher.complete, text


def test_quick_run_reports_every_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grammar.json"
    assert main(["bench", "grammar", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for title in ("grammar: mask time", "grammar: embedded engine throughput", "grammar: targets"):
        assert title in printed

    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {"bench", "config", "rows", "targets"}
    assert report["bench"] == "grammar"
    config = report["config"]
    assert config["grammars"] == grammars.names()
    assert set(config["vocabs"]) == {"2k", "32k"}
    assert config["vocabs"]["2k"]["size"] == 2048
    assert config["vocabs"]["32k"]["size"] >= 30_000

    rows = report["rows"]
    cases = {(r["grammar"], r["vocab"]) for r in rows if "walk_n" in r}
    assert cases == {(g, v) for g in grammars.names() for v in ("2k", "32k")}
    for row in rows:
        if "walk_n" not in row:
            continue
        assert row["walk_n"] > 0
        assert row["text_n"] > 0
        assert row["text_rejected"] == 0
        for key in ("walk", "text"):
            p50, p99, top = (row[f"{key}_{s}_us"] for s in ("p50", "p99", "max"))
            assert 0 < p50 <= p99 <= top
        assert row["cold_ms"] > 0
        assert row["cached_ms"] < row["cold_ms"]
        if row["vocab"] == "2k":
            assert row["tok_s"] > 0
            assert row["tok_s_ratio"] > 0
            assert len(row["tok_s_ratio_rounds"]) == config["rounds"]
            assert row["tok_cpu_s_ratio"] > 0
    baseline = [r for r in rows if r["grammar"] == "(unconstrained)"]
    assert len(baseline) == 1
    assert baseline[0]["tok_s"] > 0

    assert set(report["targets"]) == set(TARGETS)
    for name, (aim, better) in TARGETS.items():
        target = report["targets"][name]
        assert target["value"] is not None
        assert math.isfinite(target["value"])
        assert target["aim"] == aim
        assert target["better"] == better
        assert isinstance(target["met"], bool)
