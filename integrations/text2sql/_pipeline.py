"""The Text-to-SQL pipeline as a DSL program (after HEXGEN-TEXT2SQL): schema linking, parallel
SQL candidates held to a grammar built from the database, read-only execution, self-correction
with SQLite's error, selection by execution-result agreement; and ``ask``/``answer_question``
to run it with a per-query SLO."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

import dsl
import grammars
from integrations.text2sql._database import (
    DEFAULT_MAX_ROWS,
    DEFAULT_TIME_LIMIT,
    DatabaseError,
    Execution,
    Schema,
    execute,
    quote_name,
    read_schema,
)
from integrations.text2sql._grammar import (
    literals_for,
    names_grammar,
    required_values,
    scoped_grammar,
)
from integrations.text2sql._prompts import (
    CANDIDATE_TEMPLATE,
    CORRECTION_TEMPLATE,
    EXAMPLES,
    LINK_TEMPLATE,
    SQL_RULES,
    SYSTEM,
)
from integrations.text2sql._vote import vote
from orchestrator.errors import ConfigError, ConstraintViolation, DependencyFailed

__all__ = [
    "STAGES",
    "Answer",
    "Candidate",
    "Settings",
    "Task",
    "answer_question",
    "ask",
    "extract_sql",
    "prepare",
    "run_task",
    "stage_times",
    "text2sql",
]

GrammarMode = Literal["scoped", "names", "none"]
LiteralMode = Literal["free", "question"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How the pipeline runs (a small frozen object: pass one, never mutate it).

    Attributes:
        candidates: SQL candidates written in parallel (the first greedy, the rest sampled).
        rounds: self-correction rounds at most; each rewrites every failing candidate with
            SQLite's error message.
        grammar: what holds each candidate: ``"scoped"`` (default: ``scoped_grammar``, in which
            every query runs on the database), ``"names"`` (the shipped ``sqlite_select``
            specialised to the database's names) or ``"none"`` (free text, for engines without
            grammar support; the SQL is cut out of the reply).
        literals: ``"free"`` (any string/number; the grammar depends on the database only and
            is compiled once) or ``"question"`` (spans of the question and the database's
            categorical values, linked to the columns that hold them: one grammar per
            question; and each candidate is asked to write the question's linked values and
            numbers, ``required_values``, which the embedded engine searches for).
        max_tables: tables a ``scoped`` query may join (1 to 4).
        link: run schema linking (otherwise candidates see the whole schema).
        temperature: sampling temperature of every candidate but the first (greedy).
        seed: base seed; candidate ``i`` uses ``seed + i``.
        max_tokens: tokens per candidate or correction.
        link_max_tokens: tokens for schema linking.
        time_limit: seconds each query may run on the database.
        max_rows: rows kept per result.
        model: the model name sent to the engine (the backend's default if None).
    """

    candidates: int = 4
    rounds: int = 2
    grammar: GrammarMode = "scoped"
    literals: LiteralMode = "free"
    max_tables: int = 3
    link: bool = True
    temperature: float = 0.7
    seed: int = 0
    max_tokens: int = 200
    link_max_tokens: int = 48
    time_limit: float = DEFAULT_TIME_LIMIT
    max_rows: int = DEFAULT_MAX_ROWS
    model: str | None = None

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ConfigError(f"candidates must be >= 1, got {self.candidates}")
        if self.rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {self.rounds}")
        if self.grammar not in ("scoped", "names", "none"):
            raise ConfigError(f"grammar must be scoped, names or none, got {self.grammar!r}")
        if self.literals not in ("free", "question"):
            raise ConfigError(f"literals must be free or question, got {self.literals!r}")
        if not 1 <= self.max_tables <= 4:
            raise ConfigError(f"max_tables must be 1 to 4, got {self.max_tables}")
        if not self.time_limit > 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.max_rows < 1:
            raise ConfigError(f"max_rows must be >= 1, got {self.max_rows}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_tokens < 8 or self.link_max_tokens < 4:
            raise ConfigError("max_tokens must be >= 8 and link_max_tokens >= 4")


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One question, prepared for the program: the database's schema read, the grammars built
    (``prepare`` makes it; everything that can be wrong with the input fails there, before any
    request is sent)."""

    question: str
    db: str
    schema: Schema
    schema_sql: str
    settings: Settings
    sql_grammar: dsl.Grammar | None
    link_grammar: dsl.Grammar | None
    required: tuple[str, ...] = ()
    """What each candidate must write (``LLMRequest.require``), under ``literals="question"``."""


CandidateStatus = Literal["ok", "rejected", "timeout", "error", "invalid"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One query the pipeline wrote and what became of it.

    Attributes:
        index: which of the parallel candidates (0 is the greedy one).
        round: 0 for the first attempt, then the correction round that wrote it.
        sql: the query (for ``invalid``, the text the model wrote).
        status: the execution's status (``ok``, ``rejected``, ``timeout``, ``error``), or
            ``invalid`` when the model's output was no complete query (so nothing ran).
        error: what went wrong (``""`` when ok).
        rows: rows it returned.
    """

    index: int
    round: int
    sql: str
    status: CandidateStatus
    error: str = ""
    rows: int = 0


AnswerStatus = Literal["answered", "no_valid_candidate"]

STAGES = ("schema_linking", "candidates", "execution", "correction")
"""The stages ``Answer.stages`` reports, in pipeline order."""
_STAGE_OF_NODE = {
    "schema_linking": "schema_linking",
    "focus_schema": "schema_linking",
    "candidate": "candidates",
    "execute_sql": "execution",
    "correction": "correction",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The pipeline's answer to one question.

    Attributes:
        question: the question.
        database: the database file.
        status: ``answered``, or ``no_valid_candidate`` when no query ran within the rounds
            (``error`` then says why, from the last errors).
        sql: the selected query, or None.
        columns: its result's column names.
        rows: its result rows (at most ``Settings.max_rows``).
        truncated: whether rows were dropped.
        votes: how many of the queries that ran returned this same result.
        voters: how many queries ran.
        linked_tables: the tables schema linking chose (empty without linking).
        candidates: every query written, first attempts then corrections.
        error: why there is no answer (``""`` when answered).
        stages: seconds per stage (``STAGES``; from ready to done), filled by ``ask``.
        latency: seconds from submission to the answer, filled by ``ask``.
    """

    question: str
    database: str
    status: AnswerStatus
    sql: str | None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    votes: int = 0
    voters: int = 0
    linked_tables: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    error: str = ""
    stages: Mapping[str, float] = field(default_factory=dict)
    latency: float | None = None

    @property
    def produced(self) -> tuple[Candidate, ...]:
        """The candidates that were complete queries (everything but ``invalid``)."""
        return tuple(c for c in self.candidates if c.status != "invalid")


# -- preparing --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _scoped(schema: Schema, max_tables: int) -> dsl.Grammar:
    return dsl.Grammar.lark(scoped_grammar(schema, max_tables=max_tables).text)


@functools.lru_cache(maxsize=32)
def _names(schema: Schema) -> dsl.Grammar:
    return dsl.Grammar.lark(names_grammar(schema))


@functools.lru_cache(maxsize=32)
def _link_grammar(schema: Schema) -> dsl.Grammar:
    names = " | ".join(grammars.literal(quote_name(t)) for t in schema.table_names)
    n = len(schema.table_names)
    return dsl.Grammar.lark(f'start: table (", " table) ~ 0..{n - 1}\ntable: {names}\n')


def _sql_grammar(
    schema: Schema, question: str, settings: Settings
) -> tuple[dsl.Grammar | None, tuple[str, ...]]:
    """The candidates' grammar and the strings each must write."""
    if settings.grammar == "none":
        return None, ()
    if settings.literals == "free":
        if settings.grammar == "scoped":
            return _scoped(schema, settings.max_tables), ()
        return _names(schema), ()
    lits = literals_for(question, schema)
    if settings.grammar == "scoped":
        text = scoped_grammar(schema, max_tables=settings.max_tables, literals=lits).text
    else:
        text = names_grammar(schema, literals=lits)
    return dsl.Grammar.lark(text), required_values(question, lits.columns or {})


def prepare(db: str | os.PathLike[str], question: str, settings: Settings | None = None) -> Task:
    """Read ``db``'s schema and build the grammars for ``question``. Blocking (reads the file;
    the first grammar of a database takes a second or two to build, then it is cached).

    Raises:
        DatabaseError: ``db`` is missing, not SQLite, or has no tables.
        ConfigError: the question is empty.
    """
    settings = settings or Settings()
    if not question.strip():
        raise ConfigError("the question is empty")
    schema = read_schema(db)
    if not schema.tables:
        raise DatabaseError(
            f"{db}: the database has no tables, so no query can answer {question!r}",
            path=str(db),
        )
    sql_grammar, required = _sql_grammar(schema, question, settings)
    return Task(
        question=question.strip(),
        db=str(db),
        schema=schema,
        schema_sql=schema.to_sql(),
        settings=settings,
        sql_grammar=sql_grammar,
        required=required,
        link_grammar=_link_grammar(schema) if settings.grammar != "none" else None,
    )


# -- the program's tools ----------------------------------------------------------------------
def linked_tables(schema: Schema, text: str) -> tuple[str, ...]:
    """The table names ``text`` mentions, in the order written (names of ``schema`` only)."""
    found: dict[str, int] = {}
    for t in schema.table_names:
        m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(t)}(?![A-Za-z0-9_])", text)
        if m:
            found[t] = m.start()
    return tuple(sorted(found, key=found.__getitem__))


def _connect_tables(schema: Schema, tables: tuple[str, ...]) -> list[str]:
    """``tables`` plus those on the shortest foreign-key paths between them."""
    adj: dict[str, set[str]] = {t: set() for t in schema.table_names}
    for t, _, rt, _ in schema.foreign_keys:
        if t in adj and rt in adj:
            adj[t].add(rt)
            adj[rt].add(t)
    keep = list(tables)
    for a in tables[1:]:
        # BFS from the first table to each other one; add the path's tables
        prev: dict[str, str | None] = {tables[0]: None}
        queue = deque([tables[0]])
        while queue:
            cur = queue.popleft()
            if cur == a:
                break
            for nxt in sorted(adj[cur]):
                if nxt not in prev:
                    prev[nxt] = cur
                    queue.append(nxt)
        node: str | None = a if a in prev else None
        while node is not None:
            if node not in keep:
                keep.append(node)
            node = prev[node]
    return keep


@dsl.tool(expected_duration=0.001)
async def focus_schema(task: Task, link: str) -> str:
    """The part of the schema the candidates see: the linked tables and those joining them,
    with the rest named in one line (the whole schema when linking named no table)."""
    tables = linked_tables(task.schema, link)
    if not tables:
        return task.schema_sql
    keep = _connect_tables(task.schema, tables)
    sub = Schema(
        path=task.schema.path,
        tables=tuple(t for t in task.schema.tables if t.name in keep),
        name=task.schema.name,
    )
    others = [t for t in task.schema.table_names if t not in keep]
    tail = f"\n-- other tables: {', '.join(others)}" if others else ""
    return sub.to_sql() + tail


_FENCE = re.compile(r"```(?:sqlite|sql)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
# Where a query starts: SELECT, or WITH opening a common table expression (``WITH [RECURSIVE]
# name [(columns)] AS [[NOT] MATERIALIZED] (``), not the word "with" in prose before the query.
_QUERY_START = re.compile(
    r"\bSELECT\b|\bWITH\s+(?:RECURSIVE\s+)?(?:\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?:\([^()]*\)\s*)?AS\s+(?:(?:NOT\s+)?MATERIALIZED\s*)?\(",
    re.IGNORECASE,
)


def _first_statement(sql: str) -> str:
    """``sql`` up to its first ``;`` outside quotes (a ``;`` in a string literal stays)."""
    quote: str | None = None
    for i, ch in enumerate(sql):
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == ";":
            return sql[:i]
    return sql


def extract_sql(text: str) -> str:
    """The SQL in a model's reply: inside a code fence if there is one, from the first
    ``SELECT`` or ``WITH ... AS (`` on, up to the first ``;`` outside a quoted string."""
    m = _FENCE.search(text)
    body = m.group(1) if m else text
    start = _QUERY_START.search(body)
    if start is not None:
        body = body[start.start() :]
    return _first_statement(body).strip()


@dsl.tool(expected_duration=0.05)
def execute_sql(db: str, text: str, time_limit: float, max_rows: int) -> Execution:
    """Run a candidate read-only on the database (``execute``); never raises for a bad query."""
    return execute(db, extract_sql(text), time_limit=time_limit, max_rows=max_rows)


async def _settle(
    index: int, round: int, run: dsl.Var[Execution], own: str
) -> tuple[Candidate, Execution | None, bool]:
    """What became of one candidate: its record, its execution (None if nothing ran), and
    whether it failed upstream of its own call ``own`` (schema linking broke its grammar)."""
    try:
        ex = await run
    except DependencyFailed as e:
        cause = e.error
        if not isinstance(cause, ConstraintViolation):
            raise
        upstream = cause.node != own
        what = "schema linking failed" if upstream else "the output is not a complete query"
        candidate = Candidate(
            index=index,
            round=round,
            sql="" if upstream else cause.text,
            status="invalid",
            error=f"{cause.node}: {what} ({cause.reason})",
        )
        return candidate, None, upstream
    candidate = Candidate(
        index=index, round=round, sql=ex.sql, status=ex.status, error=ex.error, rows=len(ex.rows)
    )
    return candidate, ex, False


# -- the program ------------------------------------------------------------------------------
@dsl.program
async def text2sql(task: Task) -> Answer:
    """HEXGEN-TEXT2SQL's stages as one program: ``schema_linking`` (a grammar lists the real
    table names) -> ``focus_schema`` -> ``candidate`` x N in parallel (each held to the SQL
    grammar) -> ``execute_sql`` each, read-only -> ``correction`` of the failing ones with
    SQLite's message, for a bounded number of rounds -> selection by the majority of result
    sets. Until the corrections, the whole graph is known at submission, so an SLO given to
    ``submit`` is split over the stages by their expected cost (``deadline = now + (SLO -
    elapsed) * t(stage) / sum(t(remaining))``); correction calls, added when a candidate fails,
    get what remains."""
    s = task.settings
    focus: dsl.Var[str] | str = task.schema_sql
    focus_var: dsl.Var[str] | None = None
    link: dsl.Var[str] | None = None
    if s.link:
        link = dsl.gen(
            LINK_TEMPLATE,
            db_schema=task.schema_sql,
            question=task.question,
            system=SYSTEM,
            grammar=task.link_grammar,
            max_tokens=s.link_max_tokens,
            temperature=0.0,
            model=s.model,
            name="schema_linking",
        )
        focus = focus_var = focus_schema(task, link)
    drafts = [
        dsl.gen(
            CANDIDATE_TEMPLATE,
            db_schema=focus,
            rules=SQL_RULES,
            examples=EXAMPLES,
            question=task.question,
            system=SYSTEM,
            grammar=task.sql_grammar,
            require=task.required,
            max_tokens=s.max_tokens,
            temperature=0.0 if i == 0 else s.temperature,
            seed=s.seed + i,
            model=s.model,
            name="candidate",
        )
        for i in range(s.candidates)
    ]
    runs = [execute_sql(task.db, d, s.time_limit, s.max_rows) for d in drafts]
    executions: list[Execution | None] = [None] * s.candidates
    latest: list[Candidate] = []
    fresh: list[bool] = []  # failed before writing anything: ask again rather than correct
    for i, run in enumerate(runs):
        candidate, executions[i], upstream = await _settle(i, 0, run, drafts[i].id)
        latest.append(candidate)
        fresh.append(upstream)
    history = list(latest)
    linked: tuple[str, ...] = ()
    shown = task.schema_sql
    if link is not None and focus_var is not None:
        try:
            linked = linked_tables(task.schema, await link)
            shown = await focus_var
        except (DependencyFailed, ConstraintViolation):
            pass  # linking broke its grammar: corrections see the whole schema
    for r in range(1, s.rounds + 1):
        failing = [i for i, c in enumerate(latest) if c.status != "ok"]
        if not failing:
            break
        fixes = {}
        for i in failing:
            inputs: dict[str, Any] = (
                {"examples": EXAMPLES}
                if fresh[i]
                else {"sql": latest[i].sql or "(no query)", "error": latest[i].error}
            )
            fixes[i] = dsl.gen(
                CANDIDATE_TEMPLATE if fresh[i] else CORRECTION_TEMPLATE,
                db_schema=shown,
                rules=SQL_RULES,
                question=task.question,
                system=SYSTEM,
                grammar=task.sql_grammar,
                require=task.required,
                max_tokens=s.max_tokens,
                temperature=s.temperature if (i or r > 1) else 0.0,
                seed=s.seed + 100 * r + i,
                model=s.model,
                name="correction",
                **inputs,
            )
        fixed = {i: execute_sql(task.db, fixes[i], s.time_limit, s.max_rows) for i in failing}
        for i in failing:
            latest[i], executions[i], fresh[i] = await _settle(i, r, fixed[i], fixes[i].id)
            history.append(latest[i])
    ran = [e if e is not None else Execution(sql="", status="error") for e in executions]
    chosen = vote(ran)
    if chosen.winner is None:
        last = "; ".join(f"candidate {c.index}: {c.error}" for c in latest)
        return Answer(
            question=task.question,
            database=task.db,
            status="no_valid_candidate",
            sql=None,
            linked_tables=linked,
            candidates=tuple(history),
            error=f"no candidate ran after {s.rounds} correction round(s); {last}",
        )
    best = ran[chosen.winner]
    return Answer(
        question=task.question,
        database=task.db,
        status="answered",
        sql=best.sql,
        columns=best.columns,
        rows=best.rows,
        truncated=best.truncated,
        votes=chosen.votes,
        voters=chosen.voters,
        linked_tables=linked,
        candidates=tuple(history),
    )


# -- running it -------------------------------------------------------------------------------
def stage_times(stats: Mapping[str, Any]) -> dict[str, float]:
    """Seconds each pipeline stage (``STAGES``) adds to a query's latency, from a handle's node
    statistics: a stage ends when its last node finishes, and takes the time from the end of
    the stages before it (from the first node being ready, for the first stage). Queueing for
    the engine counts; the times add up to the program's span. Stages that did not run are
    absent."""
    ends: dict[str, float] = {}
    first: float | None = None
    for node_id, st in stats.items():
        stage = _STAGE_OF_NODE.get(re.sub(r"_[0-9]+$", "", node_id))
        begin = st.ready if st.ready is not None else st.start
        if stage is None or begin is None or st.end is None:
            continue
        first = begin if first is None else min(first, begin)
        ends[stage] = max(ends.get(stage, st.end), st.end)
    out: dict[str, float] = {}
    prev = first
    for stage in STAGES:
        if stage in ends and prev is not None:
            out[stage] = max(0.0, ends[stage] - prev)
            prev = max(prev, ends[stage])
    return out


async def answer_question(
    orch: Any,
    db: str | os.PathLike[str],
    question: str,
    *,
    settings: Settings | None = None,
    slo: float | None = None,
) -> Answer:
    """Answer ``question`` on ``db`` through the running ``orchestrator.Orchestrator``
    ``orch`` (shared by many questions at once), with an optional SLO in seconds that the
    ``slo`` policy splits over the stages. The answer carries its stage times and latency.

    Raises:
        DatabaseError, ConfigError: as ``prepare`` (before anything is sent).
        orchestrator.RunError: the backend failed (an invalid or failing query is not an
            error: see ``Answer.status``).
    """
    task = await anyio.to_thread.run_sync(prepare, db, question, settings)
    return await run_task(orch, task, slo=slo)


async def run_task(orch: Any, task: Task, *, slo: float | None = None) -> Answer:
    """Run a prepared ``task`` through ``orch`` (see ``answer_question``)."""
    start = anyio.current_time()
    handle = await orch.submit(text2sql, task, slo=slo)
    result: Answer = await handle.result()
    return dataclasses.replace(
        result, stages=stage_times(handle.stats), latency=anyio.current_time() - start
    )


def ask(
    db: str | os.PathLike[str],
    question: str,
    *,
    backend: Any = "local:tiny",
    settings: Settings | None = None,
    slo: float | None = None,
    policy: str = "slo",
    timeout: float | None = None,
) -> Answer:
    """Answer one question on the SQLite file ``db`` (blocking; starts and stops its own
    ``Orchestrator``).

    ::

        from integrations import text2sql
        a = text2sql.ask("shop.sqlite", "How many orders were cancelled?")
        print(a.sql, a.rows)

    Args:
        db: the database file (opened read-only).
        question: the question.
        backend: ``"local:MODEL"`` (the embedded engine; by default the ``tiny`` preset, whose
            2,048-token context holds the pipeline's prompts, where the shipped ``demo``
            model's 512 tokens do not), an OpenAI-compatible URL, or a Backend.
        settings: ``Settings`` (defaults otherwise).
        slo: seconds the answer should take, split over the stages.
        policy: the scheduling policy (``slo`` orders calls by least slack).
        timeout: seconds per LLM call attempt.
    """
    from orchestrator.runtime import Orchestrator

    task = prepare(db, question, settings)  # a bad database fails here, before any backend

    async def main() -> Answer:
        async with Orchestrator(backend, policy=policy, timeout=timeout) as orch:
            return await run_task(orch, task, slo=slo)

    return anyio.run(main)
