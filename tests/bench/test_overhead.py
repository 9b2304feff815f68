"""The overhead benchmark runs end to end and reports in DESIGN.md section 6's shape (no timing
assertions: the figures depend on the machine)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.bench import Report, Target
from orchestrator.bench.overhead import measure, percentile


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_target_met_follows_direction() -> None:
    assert Target(0.5, 1.0, "lower").met
    assert not Target(1.5, 1.0, "lower").met
    assert Target(2.4, 2.0, "higher").met
    assert not Target(math.nan, 1.0, "lower").met
    with pytest.raises(ValueError, match="better"):
        Target(1.0, 1.0, "sideways")  # type: ignore[arg-type]


def test_report_json_shape(tmp_path: Path) -> None:
    report = Report(
        "demo",
        {"n": 2},
        [{"path": "a", "p50_ms": 1.0}, {"path": "b", "p50_ms": math.inf}],
        {"x": Target(3.0, 2.0, "higher")},
    )
    assert report.to_json() == {
        "bench": "demo",
        "config": {"n": 2},
        "rows": [{"path": "a", "p50_ms": 1.0}, {"path": "b", "p50_ms": None}],
        "targets": {"x": {"value": 3.0, "aim": 2.0, "better": "higher", "met": True}},
    }
    out = tmp_path / "demo.json"
    report.write_json(out)
    assert json.loads(out.read_text()) == report.to_json()


@pytest.mark.http
@pytest.mark.anyio
async def test_measure_reports_finite_positive_figures() -> None:
    bar = io.StringIO()
    report = await measure(30, warmup=5, console=Console(file=bar, force_terminal=False))
    assert "overhead" in bar.getvalue()
    data = report.to_json()
    assert set(data) == {"bench", "config", "rows", "targets"}
    assert data["bench"] == "overhead"
    assert data["config"]["n"] == 30
    assert data["config"]["warmup"] == 5
    assert "python" in data["config"]

    rows = {row["path"]: row for row in data["rows"]}
    assert set(rows) == {"direct", "legato", "added (percentiles)", "added (paired)"}
    for path in ("direct", "legato"):
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
            value = rows[path][key]
            assert isinstance(value, float)
            assert math.isfinite(value)
            assert value > 0
        assert rows[path]["p50_ms"] <= rows[path]["p90_ms"] <= rows[path]["p99_ms"]
    assert math.isfinite(rows["legato"]["ratio_p50"])
    assert rows["legato"]["ratio_p50"] > 0
    for key in ("p50_ms", "p99_ms"):  # differences may be negative, but must be numbers
        assert math.isfinite(rows["added (percentiles)"][key])
        assert math.isfinite(rows["added (paired)"][key])

    target = data["targets"]["added_p50_ms"]
    assert target["aim"] == 1.0
    assert target["better"] == "lower"
    assert math.isfinite(target["value"])
    assert target["value"] == rows["added (paired)"]["p50_ms"]
    assert isinstance(target["met"], bool)

    console = Console(record=True, width=120)
    report.print(console)
    text = console.export_text()
    assert "added_p50_ms" in text
    assert "met" in text or "MISSED" in text
