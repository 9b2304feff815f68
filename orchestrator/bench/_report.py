"""What every benchmark hands back: its figures as a ``Report`` with ``Target``s, printed as rich
tables or written as the JSON of DESIGN.md section 6, and the progress bar shown while it runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["Report", "Target", "progress"]


@dataclass(frozen=True, slots=True)
class Target:
    """One aim a benchmark's issue names, with the value measured in this run.

    Attributes:
        value: the measured figure (NaN when it could not be measured; never met).
        aim: the figure to reach.
        better: ``"higher"`` if larger values are better, ``"lower"`` if smaller ones are.
    """

    value: float
    aim: float
    better: Literal["higher", "lower"]

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"better must be 'higher' or 'lower', got {self.better!r}")

    @property
    def met(self) -> bool:
        """Whether ``value`` reaches ``aim`` in the ``better`` direction."""
        if math.isnan(self.value):
            return False
        return self.value >= self.aim if self.better == "higher" else self.value <= self.aim


@dataclass(slots=True)
class Report:
    """A benchmark's results: its settings, one row per measured case, and its targets.

    ::

        report = Report("overhead", {"n": 300}, rows, {"added_p50_ms": Target(0.8, 1.0, "lower")})
        report.print(Console())
        report.write_json("overhead.json")

    Attributes:
        bench: the benchmark's name (``legato bench NAME``).
        config: the settings it ran with (sizes, versions, machine facts).
        rows: the figures, one flat dict per case (same keys across rows where possible).
        targets: every aim of the benchmark's issue, by a stable name.
    """

    bench: str
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: ``{"bench", "config", "rows", "targets": {name:
        {"value", "aim", "better", "met"}}}``; non-finite numbers become ``null``."""
        return {
            "bench": self.bench,
            "config": _plain(self.config),
            "rows": [_plain(row) for row in self.rows],
            "targets": {
                name: {
                    "value": _plain(t.value),
                    "aim": _plain(t.aim),
                    "better": t.better,
                    "met": t.met,
                }
                for name, t in self.targets.items()
            },
        }

    def write_json(self, path: str | Path) -> None:
        """Write ``to_json()`` to ``path`` (strict JSON, indented)."""
        text = json.dumps(self.to_json(), indent=2, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    def print(self, console: Console) -> None:
        """Print the rows and the targets (met or MISSED) as tables on ``console``."""
        settings = ", ".join(f"{k}={v}" for k, v in self.config.items())
        console.print(f"[bold]legato bench {self.bench}[/bold]  [dim]{settings}[/dim]")
        if self.rows:
            columns: list[str] = []
            for row in self.rows:
                columns.extend(k for k in row if k not in columns)
            table = Table(title=f"{self.bench}: results", title_justify="left")
            for i, name in enumerate(columns):
                table.add_column(name, justify="left" if i == 0 else "right")
            for row in self.rows:
                table.add_row(*(_cell(row.get(name)) for name in columns))
            console.print(table)
        if self.targets:
            table = Table(title=f"{self.bench}: targets", title_justify="left")
            for name in ("target", "value", "aim", "better", "status"):
                table.add_column(name, justify="left" if name == "target" else "right")
            for name, t in self.targets.items():
                status = "[green]met[/green]" if t.met else "[bold red]MISSED[/bold red]"
                table.add_row(name, _cell(t.value), _cell(t.aim), t.better, status)
            console.print(table)


def progress(*, console: Console | None = None, transient: bool = False) -> Progress:
    """A rich progress bar (on stderr unless ``console`` says otherwise) for a benchmark loop.

    ::

        with progress() as bar:
            task = bar.add_task("overhead", total=n)
            for _ in range(n):
                ...
                bar.advance(task)
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console if console is not None else Console(stderr=True),
        transient=transient,
    )


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None and tuples by lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)
