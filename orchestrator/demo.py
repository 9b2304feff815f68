"""``legato demo``: Text-to-SQL questions about an example database, answered in parallel by
the embedded engine's trained demo model under a grammar built per question, each query run by
a tool and checked against a reference query; the program's graph and a timeline."""

from __future__ import annotations

from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

import dsl
from integrations.text2sql import execute, same_result
from orchestrator.runtime import NodeStats, Orchestrator

__all__ = ["DB", "QUESTIONS", "ask", "main"]

DB = "shop"
"""The example database the demo asks about (``integrations.text2sql``)."""

QUESTIONS: tuple[tuple[str, str], ...] = (
    (
        "How many customers from Paris are there?",
        "SELECT COUNT(*) FROM customers WHERE city = 'Paris'",
    ),
    (
        "What is the average price of products in the Electronics category?",
        "SELECT AVG(T1.price) FROM products AS T1 JOIN categories AS T2 "
        "ON T1.category_id = T2.id WHERE T2.name = 'Electronics'",
    ),
    (
        "Which country has the most suppliers?",
        "SELECT country FROM suppliers GROUP BY country ORDER BY COUNT(*) DESC LIMIT 1",
    ),
)
"""The demo's questions and the reference queries their answers are checked against."""


@dsl.tool(expected_duration=0.01)
def run_sql(db_path: str, sql: str) -> list[list[Any]]:
    """Run one SELECT on the SQLite file ``db_path`` under the Text-to-SQL executor's guards
    (read-only, time-limited); its rows (at most 10)."""
    result = execute(db_path, sql, max_rows=10)
    if not result.ok:
        raise ValueError(f"the query did not run ({result.status}): {result.error}")
    return [list(row) for row in result.rows]


@dsl.program
async def ask(db: str, db_path: str, questions: list[str]) -> list[dict[str, Any]]:
    """Write the SQL of each question (in parallel, each under its own grammar), run each query
    the moment it is written, and collect the answers."""
    from orchestrator.train import SQL_TEMPLATE, sql_grammar, sql_required

    queries = [
        dsl.gen(
            SQL_TEMPLATE,
            db=db,
            question=q,
            grammar=dsl.Grammar.lark(sql_grammar(db, q, path=db_path)),
            require=sql_required(db, q, path=db_path),  # its values and numbers, all used
            temperature=0.0,
            max_tokens=96,
            name="sql",
        )
        for q in questions
    ]
    rows = [run_sql(db_path, sql) for sql in queries]
    return [
        {"question": q, "sql": await sql, "rows": await r}
        for q, sql, r in zip(questions, queries, rows, strict=True)
    ]


def _same(db_path: str, sql: str, gold: str) -> bool:
    """Execution accuracy as the Text-to-SQL evaluation judges it (``same_result``)."""
    return same_result(execute(db_path, gold), execute(db_path, sql), gold_sql=gold)


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
    """Run the demo on ``backend`` (default: the embedded engine in-process, demo model);
    the exit code is 1 if a query did not return the reference query's result."""
    from orchestrator.train import example_database

    console = Console()
    db_path = str(example_database(DB))
    questions = [q for q, _ in QUESTIONS]
    console.rule(f"graph of ask(...) over the example database {DB!r} (mermaid)")
    console.print(ask.trace(DB, db_path, questions).to_mermaid(), markup=False, highlight=False)
    if backend.startswith("local"):
        console.print(
            f"[dim]backend {backend!r}: the embedded engine in this process, running the demo "
            "model (1.1M parameters, trained on CPU; see `legato bench model`); each query is "
            "held to a grammar of this database's names and the question's words[/dim]"
        )

    async def go() -> tuple[list[dict[str, Any]], dict[str, NodeStats]]:
        async with Orchestrator(backend) as orch:
            # A first run warms up (model load, grammar compiler), so the timeline shows the
            # program's own shape.
            await (await orch.submit(ask, DB, db_path, questions[:1])).result()
            handle = await orch.submit(ask, DB, db_path, questions)
            return await handle.result(), handle.stats

    answers, stats = anyio.run(go)
    console.rule("answers")
    right = 0
    for answer, (_, gold) in zip(answers, QUESTIONS, strict=True):
        ok = _same(db_path, answer["sql"], gold)
        right += ok
        mark = "[green]right[/green]" if ok else "[red]differs from the reference[/red]"
        console.print(f"[bold]{answer['question']}[/bold]", highlight=False)
        console.print(f"  SQL:    {answer['sql']}", markup=False, highlight=False)
        console.print(f"  result: {answer['rows']}", markup=False, highlight=False)
        console.print(f"  check:  {mark}")
    console.print(_timeline(stats))
    console.print(f"{right} of {len(QUESTIONS)} answers match the reference queries' results")
    return 0 if right == len(QUESTIONS) or not backend.startswith("local") else 1
