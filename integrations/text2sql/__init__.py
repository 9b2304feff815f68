"""Text-to-SQL with Legato: example databases and questions, and the multi-stage pipeline
(schema linking, parallel grammar-constrained SQL candidates, read-only execution,
self-correction, selection by result agreement) as a DSL program with a per-query SLO.

Answering::

    from integrations import text2sql
    answer = text2sql.ask("shop.sqlite", "How many orders were cancelled?", backend=URL)
    print(answer.sql, answer.rows)

- ``ask(db, question, backend=..., settings=..., slo=...)`` (blocking) and
  ``answer_question(orch, db, question, ...)`` (inside a running ``Orchestrator``, many at
  once) return an ``Answer``; ``Settings`` tunes the stages; ``text2sql`` is the program itself
  and ``prepare`` builds its input.
- ``evaluate`` / ``run_evaluation``: execution accuracy over question / gold-SQL pairs, with
  latency per stage (``EvalReport``).
- The database side: ``read_schema`` (``Schema``), ``execute`` (read-only, time-limited; an
  ``Execution``), ``DatabaseError``; grammars: ``scoped_grammar`` (every query runs),
  ``names_grammar`` (``sqlite_select`` specialised), ``literals_for``, ``link_values``,
  ``required_values``;
  selection: ``vote``, ``same_result``.

Example data (for demos, evaluation, and training corpora over the same schemas):

- ``SCHEMAS`` / ``databases()`` / ``database(name)``: the three example databases (``school``,
  ``shop``, ``flights``) as ``DatabaseSpec``s: tables, columns (type, description, value pool,
  foreign key, numeric range), foreign keys, row counts.
- ``VALUE_POOLS``: the fixed vocabularies their text columns draw from; ``CITY_COUNTRY``.
- ``build_database(name, path, seed=0)`` / ``build_all(out_dir, seed=0)``: write the SQLite
  files from seeded generators (same seed, same rows).
- ``questions(db=None)``: 69 shipped question / gold-SQL pairs (easy, medium, hard);
  ``load_questions(path)`` / ``write_questions(path, items)`` for question files.
"""

from integrations.text2sql._database import (
    DEFAULT_MAX_ROWS,
    DEFAULT_TIME_LIMIT,
    Column,
    DatabaseError,
    Execution,
    Schema,
    Table,
    connect_read_only,
    execute,
    read_schema,
)
from integrations.text2sql._eval import EvalItem, EvalReport, evaluate, run_evaluation
from integrations.text2sql._generate import build_all, build_database, create_table_sql
from integrations.text2sql._grammar import (
    Literals,
    Scope,
    SqlGrammar,
    link_values,
    literals_for,
    names_grammar,
    required_values,
    scoped_grammar,
    scopes,
)
from integrations.text2sql._pipeline import (
    STAGES,
    Answer,
    Candidate,
    Settings,
    Task,
    answer_question,
    ask,
    extract_sql,
    prepare,
    run_task,
    stage_times,
    text2sql,
)
from integrations.text2sql._prompts import SYSTEM
from integrations.text2sql._questions import (
    Difficulty,
    Question,
    load_questions,
    questions,
    write_questions,
)
from integrations.text2sql._schemas import (
    CITY_COUNTRY,
    SCHEMAS,
    VALUE_POOLS,
    ColumnSpec,
    DatabaseSpec,
    ForeignKey,
    TableSpec,
    database,
    databases,
)
from integrations.text2sql._vote import Vote, result_key, same_result, vote

__all__ = [
    "CITY_COUNTRY",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIME_LIMIT",
    "SCHEMAS",
    "STAGES",
    "SYSTEM",
    "VALUE_POOLS",
    "Answer",
    "Candidate",
    "Column",
    "ColumnSpec",
    "DatabaseError",
    "DatabaseSpec",
    "Difficulty",
    "EvalItem",
    "EvalReport",
    "Execution",
    "ForeignKey",
    "Literals",
    "Question",
    "Schema",
    "Scope",
    "Settings",
    "SqlGrammar",
    "Table",
    "TableSpec",
    "Task",
    "Vote",
    "answer_question",
    "ask",
    "build_all",
    "build_database",
    "connect_read_only",
    "create_table_sql",
    "database",
    "databases",
    "evaluate",
    "execute",
    "extract_sql",
    "link_values",
    "literals_for",
    "load_questions",
    "names_grammar",
    "prepare",
    "required_values",
    "questions",
    "read_schema",
    "result_key",
    "run_evaluation",
    "run_task",
    "same_result",
    "scoped_grammar",
    "scopes",
    "stage_times",
    "text2sql",
    "vote",
    "write_questions",
]
