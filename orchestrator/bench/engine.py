"""``legato bench engine``: decode throughput of the embedded engine against llama.cpp's
llama-server on the same GGUF files, both served over HTTP on loopback, in one run.

For each model (the ``tiny`` and ``small`` presets, f32) and batch size (1 and 8), each server
gets a warm-up request, then ``batch`` concurrent completions of ``max_tokens`` tokens each
(greedy, ``ignore_eos``); tokens/s is the completion tokens counted by the server's ``usage``
over the wall time. Each figure is the median of ``repeats`` rounds. The servers run one after
the other, never together, so each has both cores. The BLAS kernel numpy uses (threadpoolctl)
and the ``OPENBLAS_*`` variables are recorded: run once as is and once with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` to report both.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx
from rich.console import Console

from orchestrator.bench._report import Report, Target, progress
from orchestrator.errors import ConfigError

__all__ = ["main", "measure"]


async def _throughput(url: str, batch: int, max_tokens: int) -> float:
    async with httpx.AsyncClient(timeout=600, trust_env=False) as client:

        async def one(i: int) -> int:
            r = await client.post(
                f"{url}/completions",
                json={
                    "prompt": f"request {i}: the tides, the moon and the sea",
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "ignore_eos": True,
                },
            )
            r.raise_for_status()
            n: int = r.json()["usage"]["completion_tokens"]
            return n

        await one(0)  # warm-up: first-request costs are not throughput
        counts: list[int] = []
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(batch):

                async def run(i: int = i) -> None:
                    counts.append(await one(i))

                tg.start_soon(run)
        return sum(counts) / (time.perf_counter() - start)


def _blas() -> dict[str, Any]:
    info: dict[str, Any] = {
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    try:
        import numpy  # noqa: F401  (load BLAS so threadpoolctl sees it)
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            info["blas"] = (
                f"{p.get('internal_api')} {p.get('version')} "
                f"{p.get('architecture')} x{p.get('num_threads')}"
            )
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        info["blas"] = "unknown"
    return info


def measure(
    *,
    models: Sequence[str] = ("tiny", "small"),
    batches: Sequence[int] = (1, 8),
    max_tokens: int = 128,
    repeats: int = 3,
    console: Console | None = None,
) -> Report:
    """Measure both engines; the report's rows and the target for the small model at batch 8."""
    from integrations.llamacpp import LlamaServer, find
    from orchestrator.engine import cached_model
    from orchestrator.testing import EngineServer

    binary = find()
    rows: list[dict[str, Any]] = []
    ratios: dict[tuple[str, int], float] = {}
    servers_per_model = 2 if binary is not None else 1  # llama-server only when built
    steps = len(models) * len(batches) * repeats * servers_per_model
    with progress(console=console, transient=True) as bar:
        task = bar.add_task("engine", total=steps)
        for preset in models:
            gguf: Path = cached_model(preset).gguf
            servers: list[tuple[str, AbstractContextManager[Any]]] = [
                ("legato", EngineServer(str(gguf), args=("--max-batch", str(max(batches)))))
            ]
            if binary is not None:
                servers.append(
                    (
                        "llama-server",
                        LlamaServer(gguf, binary=binary, parallel=max(batches), threads=2),
                    )
                )
            figures: dict[tuple[str, int], float] = {}
            for name, server in servers:
                with server as s:
                    for batch in batches:
                        runs = []
                        for _ in range(repeats):
                            runs.append(anyio.run(_throughput, s.url, batch, max_tokens))
                            bar.advance(task)
                        figures[(name, batch)] = statistics.median(runs)
            for batch in batches:
                ours = figures[("legato", batch)]
                theirs = figures.get(("llama-server", batch), float("nan"))
                ratio = ours / theirs if theirs == theirs else float("nan")
                ratios[(preset, batch)] = ratio
                rows.append(
                    {
                        "model": preset,
                        "batch": batch,
                        "legato_tok_s": round(ours, 1),
                        "llama_server_tok_s": round(theirs, 1),
                        "ratio": round(ratio, 3),
                    }
                )
    config = {
        "max_tokens": max_tokens,
        "repeats": repeats,
        "threads": 2,
        "llama_server": str(binary)
        if binary
        else "not built (python3 -m integrations.llamacpp build)",
        **_blas(),
    }
    target = ratios.get(("small", 8), float("nan"))
    return Report(
        "engine",
        config,
        rows,
        {
            "small_b8_ratio_vs_llama_server": Target(target, 0.5, "higher"),
        },
    )


def main(
    json_path: str | None, *, models: Sequence[str] = ("tiny", "small"), repeats: int = 3
) -> int:
    """Run the benchmark, print its tables, write ``json_path`` if given; the exit code (0).

    Raises:
        ConfigError: no models, a model that is not a preset, or ``repeats`` below 1.
    """
    from orchestrator.engine import PRESETS

    unknown = [m for m in models if m not in PRESETS]
    if not models or unknown:
        raise ConfigError(
            f"bench engine: models must be presets ({', '.join(sorted(PRESETS))}), got "
            f"{', '.join(map(repr, models)) or 'none'}"
        )
    if repeats < 1:
        raise ConfigError(f"bench engine: repeats must be >= 1, got {repeats}")
    console = Console()
    report = measure(models=models, repeats=repeats, console=console)
    report.print(console)
    if json_path is not None:
        report.write_json(json_path)
    return 0
