"""``legato bench overhead``: the latency Legato adds to one LLM call, measured against the same
call made directly with the openai SDK on the same fake OpenAI-compatible server.

Both paths send ``hello`` (16 tokens at most) to a ``FakeOpenAIServer`` in a child process (no
delay), each through its own ``httpx.AsyncClient``. Iterations interleave the two paths and
alternate which goes first, so drifts in the machine's speed hit both alike; the figure that
counts is the median of the per-iteration differences (legato minus direct).
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from typing import Any

import anyio
import httpx
import openai
from rich.console import Console

import dsl
from orchestrator._cli_options import positive_int
from orchestrator.backends import OpenAICompatible
from orchestrator.bench._report import Report, Target, progress
from orchestrator.errors import ConfigError
from orchestrator.runtime import Orchestrator
from orchestrator.testing import FakeOpenAIServer

__all__ = ["main", "measure"]

PROMPT = "hello"
MAX_TOKENS = 16
ADDED_P50_AIM_MS = 1.0


@dsl.program
async def one() -> str:
    """The smallest Legato program: one LLM call, its text returned."""
    return await dsl.gen(PROMPT, max_tokens=MAX_TOKENS)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolating linearly between ranks
    (numpy's default method); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples_ms, 50),
        "p90_ms": percentile(samples_ms, 90),
        "p99_ms": percentile(samples_ms, 99),
        "mean_ms": statistics.fmean(samples_ms) if samples_ms else math.nan,
    }


async def measure(n: int, *, warmup: int = 20, console: Console | None = None) -> Report:
    """Time ``n`` interleaved pairs of calls (direct SDK, then Legato, or the reverse) after
    ``warmup`` untimed pairs, and report both latency distributions and the difference.

    Rows: ``direct`` and ``legato`` (p50/p90/p99/mean in ms; ``legato`` also
    ``ratio_p50`` = legato p50 / direct p50), ``added (percentiles)`` (legato's percentile
    minus direct's) and ``added (paired)`` (percentiles of the per-iteration differences).
    Target ``added_p50_ms``: the median paired difference, aim 1.0 ms or less.

    Args:
        n: timed iterations (each times one call on each path).
        warmup: untimed iterations first (connections, imports, caches).
        console: where the progress bar is drawn; stderr by default.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    server = FakeOpenAIServer()
    await anyio.to_thread.run_sync(server.start)
    try:
        direct_ms, legato_ms = await _run(server, n, warmup, console)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)

    paired = [leg - dir_ for leg, dir_ in zip(legato_ms, direct_ms, strict=True)]
    direct, legato = _summary(direct_ms), _summary(legato_ms)
    by_percentile = {k: legato[k] - direct[k] for k in direct}
    ratio = legato["p50_ms"] / direct["p50_ms"] if direct["p50_ms"] > 0 else math.nan
    rows: list[dict[str, Any]] = [
        {"path": "direct", "n": n, **direct},
        {"path": "legato", "n": n, **legato, "ratio_p50": ratio},
        {"path": "added (percentiles)", "n": n, **by_percentile},
        {"path": "added (paired)", "n": n, **_summary(paired)},
    ]
    config: dict[str, Any] = {
        "n": n,
        "warmup": warmup,
        "order": "interleaved, alternating which path goes first",
        "server": "FakeOpenAIServer (uvicorn, child process, no delay)",
        "request": f"chat {PROMPT!r}, max_tokens={MAX_TOKENS}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "openai": openai.__version__,
        "httpx": httpx.__version__,
        "anyio": version("anyio"),
    }
    targets = {
        "added_p50_ms": Target(statistics.median(paired), ADDED_P50_AIM_MS, "lower"),
    }
    return Report("overhead", config, rows, targets)


async def _run(
    server: FakeOpenAIServer, n: int, warmup: int, console: Console | None
) -> tuple[list[float], list[float]]:
    """The two paths' latencies in ms, one pair per timed iteration."""
    url = server.url
    async with (
        httpx.AsyncClient() as direct_http,
        httpx.AsyncClient() as legato_http,
        openai.AsyncOpenAI(
            base_url=url, api_key="x", http_client=direct_http, max_retries=0
        ) as client,
        Orchestrator(
            OpenAICompatible(url, dialect="openai", model=server.model, http_client=legato_http)
        ) as orch,
    ):

        async def direct() -> str:
            chat = await client.chat.completions.create(
                model=server.model,
                messages=[{"role": "user", "content": PROMPT}],
                max_tokens=MAX_TOKENS,
            )
            return chat.choices[0].message.content or ""

        async def legato() -> str:
            handle = await orch.submit(one)
            return await handle.result()

        # Both paths must do the same work: check they get the same answer.
        expected, got = await direct(), await legato()
        if expected != got:
            raise RuntimeError(f"the paths disagree: direct {expected!r}, legato {got!r}")

        async def timed(fn: Callable[[], Awaitable[str]]) -> float:
            start = time.perf_counter()
            await fn()
            return (time.perf_counter() - start) * 1000.0

        direct_ms: list[float] = []
        legato_ms: list[float] = []
        with progress(console=console) as bar:
            task = bar.add_task("overhead", total=warmup + n)
            for i in range(warmup + n):
                if i % 2 == 0:
                    d = await timed(direct)
                    g = await timed(legato)
                else:
                    g = await timed(legato)
                    d = await timed(direct)
                if i >= warmup:
                    direct_ms.append(d)
                    legato_ms.append(g)
                bar.advance(task)
    return direct_ms, legato_ms


def main(n: int, json_path: str | None) -> int:
    """Run the benchmark, print its tables, write ``json_path`` if given; the exit code (0).

    Raises:
        ConfigError: ``n`` is below 1.
    """
    if n < 1:
        raise ConfigError(f"bench overhead: n must be >= 1, got {n}")
    report = anyio.run(functools.partial(measure, n))
    report.print(Console())
    if json_path is not None:
        report.write_json(json_path)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m orchestrator.bench.overhead")
    parser.add_argument("-n", type=positive_int, default=300, help="timed iterations")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    options = parser.parse_args()
    sys.exit(main(options.n, options.json))
