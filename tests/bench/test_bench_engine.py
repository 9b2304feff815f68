"""``legato bench engine``'s bookkeeping, with the servers and the timing stubbed out (the real
run needs minutes and llama-server)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

from orchestrator.bench import engine as bench


class _Server:
    url = "http://127.0.0.1:1/v1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


def test_the_progress_bar_counts_only_the_servers_that_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without llama-server only the embedded engine runs: the bar's total says so (it used to
    count both servers, so it stopped half way)."""
    import integrations.llamacpp
    import orchestrator.engine
    import orchestrator.testing

    bars: list[Progress] = []
    make_bar = bench.progress

    def recording(**options: Any) -> Progress:
        bar = make_bar(console=Console(file=io.StringIO()))
        bars.append(bar)
        return bar

    async def throughput(url: str, batch: int, max_tokens: int) -> float:
        return 100.0 * batch

    monkeypatch.setattr(integrations.llamacpp, "find", lambda: None)
    monkeypatch.setattr(
        orchestrator.engine, "cached_model", lambda preset: SimpleNamespace(gguf=tmp_path / "m")
    )
    monkeypatch.setattr(orchestrator.testing, "EngineServer", _Server)
    monkeypatch.setattr(bench, "_throughput", throughput)
    monkeypatch.setattr(bench, "progress", recording)
    report = bench.measure(models=("tiny",), batches=(1, 8), repeats=2)
    (task,) = bars[0].tasks
    assert task.completed == task.total == 1 * 2 * 2
    assert [r["legato_tok_s"] for r in report.rows] == [100.0, 800.0]
    assert math.isnan(report.targets["small_b8_ratio_vs_llama_server"].value)
