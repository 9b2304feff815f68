"""``legato bench engine``'s bookkeeping, with the servers and the timing stubbed out (the real
run needs minutes and llama-server)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from rich.progress import Progress

from orchestrator.bench import engine as bench


def _server(*args: Any, **kwargs: Any) -> contextlib.nullcontext[SimpleNamespace]:
    """A stand-in for the embedded engine's server: only its URL is read."""
    return contextlib.nullcontext(SimpleNamespace(url="http://127.0.0.1:1/v1"))


def test_the_progress_bar_counts_only_the_servers_that_run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    progress_bars: Callable[[ModuleType], list[Progress]],
) -> None:
    """Without llama-server only the embedded engine runs: the bar's total says so (it used to
    count both servers, so it stopped half way)."""
    import integrations.llamacpp
    import orchestrator.engine
    import orchestrator.testing

    bars = progress_bars(bench)

    async def throughput(url: str, batch: int, max_tokens: int) -> float:
        return 100.0 * batch

    monkeypatch.setattr(integrations.llamacpp, "find", lambda: None)
    monkeypatch.setattr(
        orchestrator.engine, "cached_model", lambda preset: SimpleNamespace(gguf=tmp_path / "m")
    )
    monkeypatch.setattr(orchestrator.testing, "EngineServer", _server)
    monkeypatch.setattr(bench, "_throughput", throughput)
    report = bench.measure(models=("tiny",), batches=(1, 8), repeats=2)
    (task,) = bars[0].tasks
    assert task.completed == task.total == 1 * 2 * 2
    assert [r["legato_tok_s"] for r in report.rows] == [100.0, 800.0]
    assert math.isnan(report.targets["small_b8_ratio_vs_llama_server"].value)
