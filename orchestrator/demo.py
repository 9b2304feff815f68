"""``legato demo``: a fan-out/fan-in program shown as a graph, run, and drawn as a timeline."""

from __future__ import annotations

import anyio
from rich.console import Console
from rich.table import Table

import dsl
from orchestrator.runtime import NodeStats, Orchestrator

__all__ = ["main", "trip"]

CITIES = ("Lisbon", "Kyoto", "Montreal")


@dsl.tool(expected_duration=0.05)
async def weather(city: str) -> str:
    """A stand-in weather service (no network): a fixed forecast per city."""
    await anyio.sleep(0.05)
    return {"Lisbon": "sunny, 19C", "Kyoto": "clear, 14C", "Montreal": "snow, -3C"}.get(
        city, "unknown"
    )


@dsl.program
async def trip(cities: list[str]) -> str:
    """Describe each city and fetch its weather in parallel, then pick one."""
    notes = [
        dsl.gen("In one sentence, why visit {{city}}?", city=c, max_tokens=48, name="pitch")
        for c in cities
    ]
    forecasts = [weather(c) for c in cities]
    choice = dsl.gen(
        "Pick the best city for a week in November.\nPitches:\n{{notes}}\nWeather:\n{{forecasts}}",
        notes=notes,
        forecasts=forecasts,
        max_tokens=48,
        name="choice",
    )
    return await choice


def _timeline(stats: dict[str, NodeStats], width: int = 24) -> Table:
    rows = [s for s in stats.values() if s.start is not None and s.end is not None]
    t0 = min(s.start for s in rows if s.start is not None)
    t1 = max(s.end for s in rows if s.end is not None)
    span = max(t1 - t0, 1e-9)
    table = Table(title="timeline (overlapping bars ran in parallel)")
    for col in ("node", "kind", "start ms", "end ms", "tokens"):
        table.add_column(col)
    table.add_column("", no_wrap=True, min_width=width)
    for s in sorted(rows, key=lambda s: (s.start or 0.0, s.node)):
        assert s.start is not None and s.end is not None
        a = int((s.start - t0) / span * width)
        b = max(a + 1, int((s.end - t0) / span * width))
        bar = " " * a + "█" * (b - a)
        table.add_row(
            s.node,
            s.kind,
            f"{(s.start - t0) * 1e3:.0f}",
            f"{(s.end - t0) * 1e3:.0f}",
            str(s.completion_tokens),
            bar,
        )
    return table


def main(backend: str = "local") -> int:
    """Run the demo on ``backend`` (default: the embedded engine in-process)."""
    console = Console()
    cities = list(CITIES)
    console.rule("graph of trip(...) (mermaid)")
    console.print(trip.trace(cities).to_mermaid(), markup=False, highlight=False)
    if backend.startswith("local"):
        console.print(
            f"[dim]backend {backend!r}: the embedded engine in this process, on a model made "
            "locally (the tiny preset has random weights, so its text is noise)[/dim]"
        )

    async def go() -> tuple[str, dict[str, NodeStats]]:
        async with Orchestrator(backend) as orch:
            # A first run warms up (connections, lazy imports, the engine's first steps), so
            # the timeline shows the program's own shape.
            await (await orch.submit(trip, cities[:1])).result()
            handle = await orch.submit(trip, cities)
            return await handle.result(), handle.stats

    result, stats = anyio.run(go)
    console.rule("result")
    console.print(result, markup=False)
    console.print(_timeline(stats))
    return 0
