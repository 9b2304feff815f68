"""The database side of Text-to-SQL: reading a SQLite file's schema, and running a candidate
query read-only, bounded in time, with anything that would write rejected before it runs."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIME_LIMIT",
    "Column",
    "DatabaseError",
    "Execution",
    "Schema",
    "Table",
    "connect_read_only",
    "execute",
    "read_schema",
]

DEFAULT_TIME_LIMIT = 2.0
"""Seconds a candidate query may run before it is interrupted."""
DEFAULT_MAX_ROWS = 1000
"""Rows kept of a result (the rest are dropped and ``Execution.truncated`` is set)."""
CATEGORICAL_VALUES = 25
"""A text column with at most this many distinct values lists them all in the schema."""

_SQLITE_HEADER = b"SQLite format 3\x00"


class DatabaseError(ConfigError):
    """The database cannot be used: the file is missing, is not SQLite, or has no tables.

    Attributes:
        path: the database file, as given.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# -- opening ---------------------------------------------------------------------------------
def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise DatabaseError(f"{p}: no such database file", path=str(path))
    if not p.is_file():
        raise DatabaseError(f"{p}: not a file (a SQLite database is one file)", path=str(path))
    with p.open("rb") as f:
        head = f.read(len(_SQLITE_HEADER))
    if head and head != _SQLITE_HEADER:
        raise DatabaseError(
            f"{p}: not a SQLite database (its first bytes are {head[:16]!r})", path=str(path)
        )
    return p


def connect_read_only(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` opened read-only (``mode=ro`` URI), with
    ``PRAGMA query_only`` on. Usable from any one thread at a time.

    Raises:
        DatabaseError: the file does not exist, is not a file, or is not SQLite.
    """
    p = _check_file(path)
    uri = "file:" + urllib.parse.quote(str(p.resolve())) + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, check_same_thread=False)
        con.execute("PRAGMA query_only = ON")
    except sqlite3.Error as e:
        raise DatabaseError(f"{p}: cannot open read-only: {e}", path=str(path)) from e
    return con


# -- the schema ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """A column as the database declares it.

    Attributes:
        name: its name.
        type: its declared type (``""`` if none).
        primary_key: whether it is (part of) the primary key.
        references: ``(table, column)`` for a foreign key, else None.
        values: every distinct value if it is a text column with few of them
            (``CATEGORICAL_VALUES``), else a few examples; empty for number columns.
        categorical: whether ``values`` lists every value.
        low: for a number column (not a key), its smallest value, else None.
        high: for a number column (not a key), its largest value, else None.
    """

    name: str
    type: str
    primary_key: bool = False
    references: tuple[str, str] | None = None
    values: tuple[str, ...] = ()
    categorical: bool = False
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """A table: its name, columns in order, and row count."""

    name: str
    columns: tuple[Column, ...]
    rows: int

    def column(self, name: str) -> Column:
        """The column called ``name``.

        Raises:
            KeyError: there is no such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Schema:
    """What the pipeline knows about one database: its file and tables."""

    path: str
    tables: tuple[Table, ...]
    name: str = field(default="")

    @property
    def table_names(self) -> tuple[str, ...]:
        """The table names, in the database's order."""
        return tuple(t.name for t in self.tables)

    def table(self, name: str) -> Table:
        """The table called ``name``.

        Raises:
            KeyError: there is no such table; the message lists the tables.
        """
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r}; the tables are {', '.join(self.table_names)}")

    @property
    def foreign_keys(self) -> tuple[tuple[str, str, str, str], ...]:
        """Every foreign key as ``(table, column, ref_table, ref_column)``."""
        return tuple(
            (t.name, c.name, *c.references) for t in self.tables for c in t.columns if c.references
        )

    def to_sql(self, *, values: bool = True) -> str:
        """The schema as ``CREATE TABLE`` statements (what prompts show), each column with a
        comment listing its values or examples when ``values``."""
        out = []
        for t in self.tables:
            lines = []
            for c in t.columns:
                decl = f"  {quote_name(c.name)} {c.type}".rstrip()
                if c.primary_key:
                    decl += " PRIMARY KEY"
                if c.references:
                    decl += (
                        f" REFERENCES {quote_name(c.references[0])}({quote_name(c.references[1])})"
                    )
                note = ""
                if values and c.values:
                    shown = ", ".join(sql_string(v) for v in c.values)
                    note = f"  -- {'values' if c.categorical else 'e.g.'} {shown}"
                elif values and c.low is not None:
                    note = f"  -- {c.low:g} to {c.high:g}"
                lines.append((decl, note))
            body = "\n".join(d + n for d, n in _commas(lines))
            out.append(f"CREATE TABLE {quote_name(t.name)} (  -- {t.rows} rows\n{body}\n);")
        return "\n".join(out)


def _commas(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # The comma goes after the declaration, before its comment.
    return [(d + ("," if i < len(lines) - 1 else ""), n) for i, (d, n) in enumerate(lines)]


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# SQLite's keywords (https://sqlite.org/lang_keywords.html): a name spelled like one is quoted.
_KEYWORDS = frozenset(
    """ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE
    BEGIN BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE
    CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE
    DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE
    EXISTS EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP
    GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD
    INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT
    NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA
    PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX RELEASE RENAME
    REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP
    TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM
    VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT""".split()  # noqa: SIM905
)


def quote_name(name: str) -> str:
    """``name`` as SQLite reads it: bare if it is a plain identifier and no keyword, else in
    double quotes (``""`` for a quote inside)."""
    if _PLAIN_NAME.fullmatch(name) and name.upper() not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal (``''`` for a quote inside)."""
    return "'" + value.replace("'", "''") + "'"


def read_schema(path: str | os.PathLike[str], *, examples: int = 3) -> Schema:
    """The tables, columns, keys, row counts and sample values of the SQLite file ``path``,
    read through a read-only connection.

    A text column with at most ``CATEGORICAL_VALUES`` distinct values lists them all (so
    prompts and grammars can use the real values); other text columns give ``examples``.

    Raises:
        DatabaseError: the file is missing or not SQLite (a database with no tables is
            returned with ``tables == ()``; the pipeline reports it).
    """
    con = connect_read_only(path)
    try:
        try:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
                )
            ]
        except sqlite3.DatabaseError as e:
            raise DatabaseError(
                f"{path}: not a readable SQLite database: {e}", path=str(path)
            ) from e
        tables = [_read_table(con, name, examples) for name in names]
    finally:
        con.close()
    return Schema(path=str(path), tables=tuple(tables), name=Path(path).stem)


def _read_table(con: sqlite3.Connection, name: str, examples: int) -> Table:
    q = quote_name(name)
    fks = {
        row[3]: (row[2], row[4] or "")
        for row in con.execute(f"PRAGMA foreign_key_list({q})")  # (id, seq, table, from, to...)
    }
    columns = []
    for _, cname, ctype, _, _, pk in con.execute(f"PRAGMA table_info({q})"):
        ref = fks.get(cname)
        if ref is not None and not ref[1]:  # REFERENCES t without a column: its primary key
            pks = [r[1] for r in con.execute(f"PRAGMA table_info({quote_name(ref[0])})") if r[5]]
            ref = (ref[0], pks[0] if pks else "rowid")
        values: tuple[str, ...] = ()
        categorical = False
        low = high = None
        c = quote_name(cname)
        numeric = any(k in ctype.upper() for k in ("INT", "REAL", "FLOA", "DOUB", "NUM", "DEC"))
        if not pk and ref is None and numeric:
            low, high = con.execute(f"SELECT MIN({c}), MAX({c}) FROM {q}").fetchone()
            if not isinstance(low, int | float) or not isinstance(high, int | float):
                low = high = None
        elif not pk and ref is None:
            found = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT {c} FROM {q} WHERE typeof({c}) = 'text' "
                    f"ORDER BY {c} LIMIT {CATEGORICAL_VALUES + 1}"
                )
            ]
            categorical = 0 < len(found) <= CATEGORICAL_VALUES
            values = tuple(found if categorical else found[:examples])
        columns.append(
            Column(
                name=cname,
                type=ctype,
                primary_key=bool(pk),
                references=ref,
                values=values,
                categorical=categorical,
                low=low,
                high=high,
            )
        )
    (rows,) = con.execute(f"SELECT COUNT(*) FROM {q}").fetchone()
    return Table(name=name, columns=tuple(columns), rows=rows)


# -- running a candidate ---------------------------------------------------------------------
ExecutionStatus = Literal["ok", "rejected", "timeout", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """The outcome of running one query read-only.

    Attributes:
        sql: the query as run.
        status: ``ok``; ``rejected`` (it would write, or is not one read-only statement: it
            never ran); ``timeout`` (interrupted at the time limit); ``error`` (SQLite refused
            it or failed: ``error`` says why).
        columns: the result's column names.
        rows: the result rows (at most ``max_rows``).
        truncated: whether rows were dropped at ``max_rows``.
        error: SQLite's message or ours, for the correction prompt; ``""`` when ok.
        seconds: wall time spent, preparing and stepping.
    """

    sql: str
    status: ExecutionStatus
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the query ran to completion."""
        return self.status == "ok"


# Actions a read-only query needs; the authorizer denies every other one while the statement
# is prepared, so a write is refused before a single row is touched.
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION})
_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_ACTION_NAMES = {
    getattr(sqlite3, n): n.removeprefix("SQLITE_").replace("_", " ")
    for n in (
        "SQLITE_CREATE_INDEX", "SQLITE_CREATE_TABLE", "SQLITE_CREATE_TEMP_INDEX",
        "SQLITE_CREATE_TEMP_TABLE", "SQLITE_CREATE_TEMP_TRIGGER", "SQLITE_CREATE_TEMP_VIEW",
        "SQLITE_CREATE_TRIGGER", "SQLITE_CREATE_VIEW", "SQLITE_DELETE", "SQLITE_DROP_INDEX",
        "SQLITE_DROP_TABLE", "SQLITE_DROP_TEMP_INDEX", "SQLITE_DROP_TEMP_TABLE",
        "SQLITE_DROP_TEMP_TRIGGER", "SQLITE_DROP_TEMP_VIEW", "SQLITE_DROP_TRIGGER",
        "SQLITE_DROP_VIEW", "SQLITE_INSERT", "SQLITE_PRAGMA", "SQLITE_TRANSACTION",
        "SQLITE_UPDATE", "SQLITE_ATTACH", "SQLITE_DETACH", "SQLITE_ALTER_TABLE",
        "SQLITE_REINDEX", "SQLITE_ANALYZE", "SQLITE_CREATE_VTABLE", "SQLITE_DROP_VTABLE",
        "SQLITE_SAVEPOINT",
    )
    if hasattr(sqlite3, n)
}  # fmt: skip
# Functions that reach outside the database or are not deterministic reads.
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_FIRST_WORD = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+)", re.DOTALL)
_PROGRESS_STEPS = 2000


def _statement_problem(sql: str) -> str | None:
    """Why ``sql`` is not one read-only statement, judged from its text alone, or None."""
    m = _FIRST_WORD.match(sql)
    word = m.group(1).upper() if m else ""
    if word not in ("SELECT", "WITH", "VALUES"):
        shown = word or sql.strip()[:20] or "an empty statement"
        return f"only SELECT queries may run; this statement starts with {shown}"
    if not sqlite3.complete_statement(sql + "\n;"):
        return "the statement is incomplete (an open quote, parenthesis or comment)"
    return None


def execute(
    database: str | os.PathLike[str] | sqlite3.Connection,
    sql: str,
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Execution:
    """Run ``sql`` on ``database`` read-only and say what happened; never raises for a bad
    query (its ``Execution`` says ``rejected``, ``timeout`` or ``error``).

    Guards, in order: the text must start with ``SELECT``, ``WITH`` or ``VALUES``; while
    SQLite prepares the statement, an authorizer denies every action but reading tables and
    calling functions (so ``INSERT``, ``UPDATE``, ``DELETE``, ``ATTACH``, any ``PRAGMA``,
    ``CREATE``... are refused before anything runs); the connection itself is opened
    ``mode=ro`` with ``query_only``; a progress handler interrupts the query once it has run
    ``time_limit`` seconds.

    Args:
        database: a SQLite file (opened read-only here and closed after) or a connection from
            ``connect_read_only`` (not used by two threads at once).
        sql: one statement (a trailing ``;`` is allowed).
        time_limit: seconds the query may run.
        max_rows: rows kept of the result.

    Raises:
        DatabaseError: ``database`` is a path that is missing or not SQLite.
        ValueError: ``time_limit`` is not above 0 or ``max_rows`` is negative.
    """
    if not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    start = time.perf_counter()
    problem = _statement_problem(sql)
    if problem is not None:
        return Execution(sql=sql, status="rejected", error=problem)
    own = not isinstance(database, sqlite3.Connection)
    con = connect_read_only(database) if not isinstance(database, sqlite3.Connection) else database
    denied: list[str] = []

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action in _ALLOWED_ACTIONS or action == _RECURSIVE:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
                denied.append(f"the function {arg2}()")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        what = _ACTION_NAMES.get(action, f"action {action}")
        target = " ".join(a for a in (arg1, arg2) if a)
        denied.append(f"{what} {target}".strip())
        return sqlite3.SQLITE_DENY

    deadline = start + time_limit
    timed_out = False

    def progress() -> int:
        nonlocal timed_out
        if time.perf_counter() > deadline:
            timed_out = True
            return 1
        return 0

    con.set_authorizer(authorize)
    con.set_progress_handler(progress, _PROGRESS_STEPS)
    try:
        cur = con.execute(sql.rstrip().rstrip(";"))
        columns = tuple(d[0] for d in cur.description or ())
        rows = cur.fetchmany(max_rows + 1)
        cur.close()
    except (sqlite3.Error, sqlite3.Warning) as e:
        seconds = time.perf_counter() - start
        if denied:
            return Execution(
                sql=sql,
                status="rejected",
                error=f"read-only: the statement would do {denied[0]}; only reads may run",
                seconds=seconds,
            )
        if isinstance(e, sqlite3.ProgrammingError) and "one statement" in str(e):
            return Execution(
                sql=sql,
                status="rejected",
                error="only one statement may run; this text holds several",
                seconds=seconds,
            )
        if timed_out:
            return Execution(
                sql=sql,
                status="timeout",
                error=f"the query ran longer than its {time_limit:g} s time limit",
                seconds=seconds,
            )
        return Execution(sql=sql, status="error", error=str(e) or type(e).__name__, seconds=seconds)
    finally:
        con.set_authorizer(None)
        con.set_progress_handler(None, 0)
        if own:
            con.close()
    return Execution(
        sql=sql,
        status="ok",
        columns=columns,
        rows=tuple(tuple(r) for r in rows[:max_rows]),
        truncated=len(rows) > max_rows,
        seconds=time.perf_counter() - start,
    )
