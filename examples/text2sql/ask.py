"""Many Text-to-SQL questions at once, each with an SLO, through one orchestrator.

    python examples/text2sql/ask.py [--backend local:tiny|http://host:port/v1] [--slo 30]

Builds the example ``shop`` database in a temporary folder, then answers a few of its shipped
questions concurrently with the ``slo`` policy: each question's budget is split over its stages
(schema linking, parallel candidates, execution, correction), and the calls with the least
slack go first. On the embedded engine (the default, ``local:tiny``: random weights, and a
context that holds these prompts, which the ``demo`` model's does not) the SQL is noise, but
every query it completes runs on the database, since the grammar holds it to the schema;
pass ``--backend`` with a capable model's OpenAI-compatible URL for real answers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio

try:
    from integrations import text2sql
except ModuleNotFoundError:  # run from a clone where Legato is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from integrations import text2sql

from orchestrator import Orchestrator


async def answer_all(
    db: Path, questions: list[str], *, backend: str, slo: float, settings: text2sql.Settings
) -> list[text2sql.Answer]:
    """Answer ``questions`` on ``db`` concurrently; the answers in question order."""
    answers: dict[int, text2sql.Answer] = {}
    async with Orchestrator(backend, policy="slo") as orch, anyio.create_task_group() as tg:

        async def one(k: int, q: str) -> None:
            answers[k] = await text2sql.answer_question(orch, db, q, settings=settings, slo=slo)

        for k, q in enumerate(questions):
            tg.start_soon(one, k, q)
    return [answers[k] for k in range(len(questions))]


def main(argv: list[str] | None = None) -> int:
    """Build the database, answer, print each answer and its stage times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="local:tiny", help="local:tiny (default) or a URL")
    parser.add_argument("--slo", type=float, default=60.0, help="seconds per question")
    parser.add_argument("--questions", type=int, default=3, help="how many questions")
    parser.add_argument("--candidates", type=int, default=3, help="parallel SQL candidates")
    parser.add_argument("--rounds", type=int, default=1, help="self-correction rounds")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per candidate")
    args = parser.parse_args(argv)
    settings = text2sql.Settings(
        candidates=args.candidates, rounds=args.rounds, max_tokens=args.max_tokens
    )
    questions = [q.question for q in text2sql.questions("shop")[: args.questions]]
    with tempfile.TemporaryDirectory() as tmp:
        db = text2sql.build_database("shop", Path(tmp) / "shop.sqlite")
        answers = anyio.run(
            lambda: answer_all(db, questions, backend=args.backend, slo=args.slo, settings=settings)
        )
    for a in answers:
        print(f"Q: {a.question}")
        if a.status == "answered":
            print(f"   SQL: {a.sql}")
            print(f"   rows: {list(a.rows[:3])}{' ...' if len(a.rows) > 3 else ''}")
            print(f"   {a.votes} of {a.voters} queries that ran agree")
        else:
            print(f"   no answer: {a.error}")
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in a.stages.items())
        late = "" if a.latency is not None and a.latency <= args.slo else " (SLO missed)"
        print(f"   {stages}; total {a.latency or 0.0:.2f}s{late}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
