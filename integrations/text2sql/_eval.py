"""Execution-accuracy evaluation: run the pipeline over question / gold-SQL pairs on one
database, many questions at once, and report accuracy, how many produced queries ran, and
latency per stage."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from integrations.text2sql._database import DatabaseError, Execution, execute
from integrations.text2sql._pipeline import STAGES, Answer, Settings, answer_question
from integrations.text2sql._questions import Question
from integrations.text2sql._vote import same_result

__all__ = ["EvalItem", "EvalReport", "evaluate", "run_evaluation"]

GOLD_TIME_LIMIT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalItem:
    """One question's outcome.

    Attributes:
        question: the question and its gold SQL.
        answer: the pipeline's answer, or None if the run raised (``error`` says what).
        correct: whether the answer's result matches the gold query's (``same_result``).
        gold_error: the gold query's own error, if it failed (then the item cannot be right).
        error: why there is no answer, if the run raised.
    """

    question: Question
    answer: Answer | None
    correct: bool
    gold_error: str = ""
    error: str = ""


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalReport:
    """Everything ``evaluate`` measured.

    Attributes:
        database: the database file.
        items: one per question, in the order given.
        slo: the per-question SLO in seconds, if one was set.
        wall_s: seconds the whole evaluation took.
        config: the settings, backend and policy used (for reports).
    """

    database: str
    items: tuple[EvalItem, ...]
    slo: float | None = None
    wall_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Execution accuracy: the share of questions whose answer's result matches gold."""
        return sum(i.correct for i in self.items) / len(self.items) if self.items else math.nan

    def _answers(self) -> list[Answer]:
        return [i.answer for i in self.items if i.answer is not None]

    @property
    def produced(self) -> int:
        """Complete queries the pipeline wrote (candidates and corrections; not ``invalid``)."""
        return sum(len(a.produced) for a in self._answers())

    @property
    def executed(self) -> int:
        """Produced queries that ran without error."""
        return sum(1 for a in self._answers() for c in a.produced if c.status == "ok")

    @property
    def execution_rate(self) -> float:
        """``executed / produced``: the share of produced queries that ran."""
        return self.executed / self.produced if self.produced else math.nan

    @property
    def invalid(self) -> int:
        """Outputs that were no complete query (e.g. cut off at ``max_tokens``)."""
        return sum(1 for a in self._answers() for c in a.candidates if c.status == "invalid")

    @property
    def answered(self) -> float:
        """The share of questions that got an answer (some query ran)."""
        n = sum(1 for a in self._answers() if a.status == "answered")
        return n / len(self.items) if self.items else math.nan

    @property
    def slo_attainment(self) -> float | None:
        """The share of questions answered within the SLO (None without one)."""
        if self.slo is None or not self.items:
            return None
        ok = sum(
            1
            for a in self._answers()
            if a.status == "answered" and a.latency is not None and a.latency <= self.slo
        )
        return ok / len(self.items)

    def latency(self) -> dict[str, dict[str, float]]:
        """Seconds per stage and end to end (``total``): mean, p50, p95 over the questions
        where the stage ran."""
        out: dict[str, dict[str, float]] = {}
        answers = self._answers()
        for stage in (*STAGES, "total"):
            xs = [
                (a.latency if stage == "total" else a.stages.get(stage))
                for a in answers
                if (a.latency if stage == "total" else a.stages.get(stage)) is not None
            ]
            values = [float(x) for x in xs if x is not None]
            if values:
                out[stage] = {
                    "n": float(len(values)),
                    "mean_s": statistics.fmean(values),
                    "p50_s": _percentile(values, 50),
                    "p95_s": _percentile(values, 95),
                }
        return out

    def by_difficulty(self) -> dict[str, tuple[int, int]]:
        """``(correct, questions)`` per difficulty."""
        out: dict[str, tuple[int, int]] = {}
        for item in self.items:
            c, n = out.get(item.question.difficulty, (0, 0))
            out[item.question.difficulty] = (c + item.correct, n + 1)
        return out

    def summary(self) -> dict[str, Any]:
        """The headline figures as plain values (for JSON)."""
        return {
            "database": self.database,
            "questions": len(self.items),
            "accuracy": self.accuracy,
            "answered": self.answered,
            "produced_queries": self.produced,
            "executed_queries": self.executed,
            "execution_rate": self.execution_rate,
            "invalid_outputs": self.invalid,
            "errors": sum(1 for i in self.items if i.error),
            "slo_s": self.slo,
            "slo_attainment": self.slo_attainment,
            "wall_s": self.wall_s,
            "by_difficulty": {
                k: {"correct": c, "n": n} for k, (c, n) in self.by_difficulty().items()
            },
            "latency": self.latency(),
        }


async def evaluate(
    db: str | os.PathLike[str],
    questions: Sequence[Question],
    *,
    backend: Any = "local:tiny",
    settings: Settings | None = None,
    slo: float | None = None,
    policy: str = "slo",
    concurrency: int = 4,
    call_timeout: float | None = None,
    max_in_flight: int = 64,
    on_done: Callable[[EvalItem], None] | None = None,
) -> EvalReport:
    """Run the pipeline on every question (``concurrency`` at once, through one
    ``Orchestrator`` with ``policy``, ``max_in_flight`` LLM calls at the backend at once and
    ``call_timeout`` seconds per call attempt), run each gold query on the same read-only
    executor, and compare results.

    A question whose run raises (e.g. the backend failed) counts as wrong, with its error kept;
    the evaluation goes on.

    Raises:
        DatabaseError: ``db`` is missing, not SQLite, or has no tables (checked first).
    """
    from integrations.text2sql._database import read_schema
    from orchestrator.runtime import Orchestrator

    schema = await anyio.to_thread.run_sync(read_schema, db)
    if not schema.tables:
        raise DatabaseError(f"{db}: the database has no tables to ask about", path=str(db))
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    items: list[EvalItem | None] = [None] * len(questions)
    limiter = anyio.Semaphore(concurrency)
    start = anyio.current_time()

    async def one(k: int, q: Question, orch: Orchestrator) -> None:
        async with limiter:
            gold: Execution = await anyio.to_thread.run_sync(
                lambda: execute(db, q.sql, time_limit=GOLD_TIME_LIMIT, max_rows=10**6)
            )
            answer: Answer | None = None
            error = ""
            try:
                answer = await answer_question(orch, db, q.question, settings=settings, slo=slo)
            except Exception as exc:  # counted and reported: one failure does not stop the run
                error = f"{type(exc).__name__}: {exc}"
            correct = False
            if answer is not None and answer.sql is not None and gold.ok:
                predicted = Execution(
                    sql=answer.sql,
                    status="ok",
                    columns=answer.columns,
                    rows=answer.rows,
                    truncated=answer.truncated,
                )
                if answer.truncated:  # compare on the full result
                    predicted = await anyio.to_thread.run_sync(
                        lambda: execute(db, answer.sql or "", max_rows=10**6)
                    )
                correct = same_result(gold, predicted, gold_sql=q.sql)
            item = EvalItem(
                question=q,
                answer=answer,
                correct=correct,
                gold_error="" if gold.ok else f"{gold.status}: {gold.error}",
                error=error,
            )
            items[k] = item
            if on_done is not None:
                on_done(item)

    async with (
        Orchestrator(
            backend, policy=policy, timeout=call_timeout, max_in_flight=max_in_flight
        ) as orch,
        anyio.create_task_group() as tg,
    ):
        for k, q in enumerate(questions):
            tg.start_soon(one, k, q, orch)
    done = tuple(i for i in items if i is not None)
    return EvalReport(
        database=str(db),
        items=done,
        slo=slo,
        wall_s=anyio.current_time() - start,
        config={
            "settings": _settings_dict(settings or Settings()),
            "policy": policy,
            "concurrency": concurrency,
            "max_in_flight": max_in_flight,
            "backend": backend if isinstance(backend, str) else type(backend).__name__,
        },
    )


def _settings_dict(s: Settings) -> dict[str, Any]:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


def run_evaluation(
    db: str | os.PathLike[str], questions: Sequence[Question], **options: Any
) -> EvalReport:
    """``evaluate`` from synchronous code (runs its own event loop)."""

    async def main() -> EvalReport:
        return await evaluate(db, questions, **options)

    return anyio.run(main)
