"""``legato sql ask|eval|databases``: the Text-to-SQL pipeline from the command line (the
argument parser lives in ``orchestrator.cli``; these handlers read its namespace)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from integrations.text2sql._database import DatabaseError
from integrations.text2sql._eval import EvalItem, EvalReport, run_evaluation
from integrations.text2sql._generate import build_all
from integrations.text2sql._pipeline import STAGES, Answer, Settings, ask
from integrations.text2sql._questions import Question, load_questions, questions, write_questions
from integrations.text2sql._schemas import SCHEMAS
from orchestrator.errors import ConfigError

__all__ = ["cmd_ask", "cmd_databases", "cmd_eval", "settings_from"]


def settings_from(ns: argparse.Namespace) -> Settings:
    """The pipeline settings the command line asks for (defaults where it says nothing)."""
    base = Settings()

    def given(name: str, default: Any) -> Any:  # 0 is a value (Settings refuses a bad one)
        value = getattr(ns, name, None)
        return default if value is None else value

    return Settings(
        candidates=given("candidates", base.candidates),
        rounds=given("rounds", base.rounds),
        grammar=given("grammar", base.grammar),
        literals=given("literals", base.literals),
        max_tokens=given("max_tokens", base.max_tokens),
        time_limit=given("time_limit", base.time_limit),
        model=getattr(ns, "model", None),
        link=not getattr(ns, "no_link", False),
    )


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=200)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "NULL" if v is None else str(v)


def _answer_json(a: Answer) -> dict[str, Any]:
    out = asdict(a)
    out["stages"] = dict(a.stages)
    return out


DEFAULT_BACKEND = "local:tiny"
"""The engine ``sql ask`` and ``sql eval`` use without ``--backend``: the embedded engine with
the ``tiny`` preset (random weights, a 2,048-token context). The shipped ``demo`` model's
512-token context cannot hold the pipeline's schema-linking and candidate prompts."""


def cmd_ask(ns: argparse.Namespace) -> int:
    """``legato sql ask --db FILE "question"``: print the selected SQL, its result, the
    agreement and the stage times; exit 1 with the reason when no candidate ran."""
    answer = ask(
        ns.db,
        ns.question,
        backend=ns.backend or DEFAULT_BACKEND,
        settings=settings_from(ns),
        slo=ns.slo,
        policy=ns.policy,
        timeout=ns.timeout,
    )
    if ns.json:
        print(json.dumps(_answer_json(answer), indent=2, default=str))
        return 0 if answer.status == "answered" else 1
    console = _console()
    if answer.status != "answered":
        print(f"legato sql: no answer: {answer.error}", file=sys.stderr)
        for c in answer.candidates:
            console.print(f"[dim]round {c.round} candidate {c.index}: {c.status}[/dim] {c.sql}")
        return 1
    console.print(f"[bold]SQL[/bold]  {answer.sql}")
    table = Table(*answer.columns, title_justify="left")
    shown = answer.rows[: ns.rows]
    for row in shown:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)
    more = len(answer.rows) - len(shown)
    if more > 0 or answer.truncated:
        console.print(
            f"[dim]... {more} more rows{' (result truncated)' if answer.truncated else ''}[/dim]"
        )
    stages = ", ".join(f"{s} {answer.stages[s]:.2f}s" for s in STAGES if s in answer.stages)
    ran = sum(1 for c in answer.candidates if c.status == "ok")
    console.print(
        f"[dim]{answer.votes} of {answer.voters} queries that ran agree; {ran} of "
        f"{len(answer.candidates)} candidates ran; linked: {', '.join(answer.linked_tables) or '-'}"
        f"; {stages}; total {answer.latency or 0.0:.2f}s[/dim]"
    )
    return 0


def _questions_for(ns: argparse.Namespace) -> list[Question]:
    db_name = Path(ns.db).stem
    if ns.questions is not None:
        items = list(load_questions(ns.questions))
    elif db_name in SCHEMAS:
        items = list(questions(db_name))
    else:
        raise ConfigError(
            f"--questions is needed: {ns.db} is not one of the example databases "
            f"({', '.join(SCHEMAS)}), whose questions are shipped"
        )
    named = {q.db for q in items if q.db}
    if len(named) > 1 or (named and db_name not in named):
        kept = [q for q in items if q.db in ("", db_name)]
        if not kept:
            raise ConfigError(
                f"{ns.questions}: no question is about {db_name!r} (they name "
                f"{', '.join(sorted(named))}); pass the matching --db"
            )
        print(
            f"legato sql eval: {len(kept)} of {len(items)} questions are about {db_name!r}",
            file=sys.stderr,
        )
        items = kept
    if ns.limit is not None:
        items = items[: ns.limit]
    if not items:
        raise ConfigError("no questions to evaluate")
    return items


def _print_report(report: EvalReport, console: Console) -> None:
    s = report.summary()
    head = Table("questions", "accuracy", "answered", "produced", "ran", "exec_rate", "invalid")
    head.add_row(
        str(s["questions"]),
        _pct(s["accuracy"]),
        _pct(s["answered"]),
        str(s["produced_queries"]),
        str(s["executed_queries"]),
        _pct(s["execution_rate"]),
        str(s["invalid_outputs"]),
    )
    head.title = f"legato sql eval: {report.database}"
    head.title_justify = "left"
    console.print(head)
    lat = Table("stage", "n", "mean_s", "p50_s", "p95_s", title="latency per stage")
    lat.title_justify = "left"
    for stage, fig in report.latency().items():
        lat.add_row(
            stage, str(int(fig["n"])), f"{fig['mean_s']:.3f}", f"{fig['p50_s']:.3f}",
            f"{fig['p95_s']:.3f}",
        )  # fmt: skip
    console.print(lat)
    diff = ", ".join(f"{k} {c}/{n}" for k, (c, n) in sorted(report.by_difficulty().items()))
    extra = f"; SLO {report.slo:g}s attained {_pct(report.slo_attainment)}" if report.slo else ""
    console.print(f"[dim]correct by difficulty: {diff}{extra}; wall {report.wall_s:.1f}s[/dim]")
    errors = [i for i in report.items if i.error]
    if errors:
        console.print(f"[yellow]{len(errors)} questions raised; first: {errors[0].error}[/yellow]")


def _pct(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%"


def cmd_eval(ns: argparse.Namespace) -> int:
    """``legato sql eval --db FILE [--questions FILE]``: execution accuracy and latency per
    stage, with a progress bar; ``--json`` writes the figures."""
    from orchestrator.bench._report import progress

    items = _questions_for(ns)
    notes = Console(stderr=True)
    with progress(console=notes, transient=True) as bar:
        task = bar.add_task("sql eval", total=len(items))

        def done(_: EvalItem) -> None:
            bar.advance(task)

        report = run_evaluation(
            ns.db,
            items,
            backend=ns.backend or DEFAULT_BACKEND,
            settings=settings_from(ns),
            slo=ns.slo,
            policy=ns.policy,
            concurrency=ns.concurrency,
            call_timeout=ns.timeout,
            on_done=done,
        )
    _print_report(report, _console())
    if ns.json is not None:
        data = {
            **report.summary(),
            "config": report.config,
            "items": [
                {
                    "id": i.question.id,
                    "difficulty": i.question.difficulty,
                    "question": i.question.question,
                    "gold": i.question.sql,
                    "sql": i.answer.sql if i.answer else None,
                    "status": i.answer.status if i.answer else "error",
                    "correct": i.correct,
                    "error": i.error or (i.answer.error if i.answer else ""),
                    "gold_error": i.gold_error,
                    "latency_s": i.answer.latency if i.answer else None,
                    "stages": dict(i.answer.stages) if i.answer else {},
                }
                for i in report.items
            ],
        }
        text = json.dumps(_plain(data), indent=2, default=str, allow_nan=False)
        Path(ns.json).write_text(text + "\n", encoding="utf-8")
    return 0


def _plain(v: Any) -> Any:
    """``v`` with non-finite floats as None (strict JSON)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def cmd_databases(ns: argparse.Namespace) -> int:
    """``legato sql databases OUT_DIR``: write the example databases and question files."""
    out = Path(ns.out_dir)
    try:
        paths = build_all(out, seed=ns.seed)
    except OSError as e:
        raise DatabaseError(f"{out}: cannot write the databases: {e}", path=str(out)) from e
    for name, path in paths.items():
        qpath = write_questions(out / f"{name}.questions.json", questions(name))
        print(f"{path}  {qpath}")
    return 0
