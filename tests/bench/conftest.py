"""Benchmark test helpers."""

from __future__ import annotations

import io
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress


@pytest.fixture
def progress_bars(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModuleType], list[Progress]]:
    """``record(module)`` makes ``module.progress`` build its bars on a console that writes
    nowhere and keep them in the list it returns (to read each task's total and completed)."""

    def record(module: ModuleType) -> list[Progress]:
        bars: list[Progress] = []
        make_bar = module.progress

        def recording(**options: Any) -> Progress:
            bar: Progress = make_bar(console=Console(file=io.StringIO()))
            bars.append(bar)
            return bar

        monkeypatch.setattr(module, "progress", recording)
        return bars

    return record
