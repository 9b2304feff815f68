"""``legato model train``: the progress bar, the loss curve PNG and the summary around
``train_model``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from orchestrator.train._png import write_loss_png
from orchestrator.train._train import DEMO, TrainConfig, train_model

__all__ = ["train_main"]


def train_main(ns: argparse.Namespace) -> int:
    """Train with the command line's settings; print where the files are and the figures."""
    console = Console(stderr=True)
    try:  # a bad setting is refused before anything is made or written
        cfg = TrainConfig(
            preset=DEMO,
            seed=ns.seed,
            minutes=ns.minutes,
            steps=ns.steps,
            dtype=ns.dtype,
            threads=ns.threads,
            workers=ns.workers,
        )
        if ns.corpus_size is not None:
            cfg = dataclasses.replace(cfg, corpus_size=ns.corpus_size)
    except ValueError as exc:
        print(f"legato model train: error: {exc}", file=sys.stderr)
        return 2
    out = Path(ns.out)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("corpus, tokenizer", total=1000)

        def show(frac: float, step: int, loss: float, tps: float) -> None:
            bar.update(
                task,
                completed=int(frac * 1000),
                description=f"step {step} loss {loss:.3f} {tps:,.0f} tok/s",
            )

        result = train_model(out, cfg, progress=show)
    png = write_loss_png(out / "loss.png", [(s, loss) for s, _, loss in result.curve])
    files = result.files
    print(f"gguf: {files.gguf}\ntokenizer: {files.tokenizer}\nhf: {files.hf_dir}\nloss: {png}")
    phases = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    print(
        f"steps {result.steps}, tokens {result.tokens:,}, loss {result.first_loss:.3f} -> "
        f"{result.last_loss:.3f}; {phases}"
    )
    return 0
