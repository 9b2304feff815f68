"""The database side of Text-to-SQL: schemas read from files, the read-only executor (writes
rejected before they run, a time limit), bad database files, the grammars, and voting."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

import pytest

from dsl._grammar import lark_parser
from integrations import text2sql
from integrations.text2sql import Execution


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return text2sql.build_all(tmp_path_factory.mktemp("t2s"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- reading the schema ------------------------------------------------------------------------
def test_read_schema(dbs: dict[str, Path]) -> None:
    schema = text2sql.read_schema(dbs["flights"])
    assert schema.table_names == text2sql.database("flights").table_names
    flights = schema.table("flights")
    assert flights.rows == 1500
    assert flights.column("origin_id").references == ("airports", "id")
    assert flights.column("id").primary_key
    seat = schema.table("bookings").column("seat_class")
    assert seat.categorical and set(seat.values) == {"economy", "premium", "business", "first"}
    assert schema.table("aircraft").column("seats").low == 78
    assert ("flights", "destination_id", "airports", "id") in schema.foreign_keys
    sql = schema.to_sql()
    assert "CREATE TABLE bookings (  -- 4000 rows" in sql
    assert "seat_class TEXT,  -- values 'business', 'economy', 'first', 'premium'" in sql
    # the text is itself valid SQLite (comments and all)
    sqlite3.connect(":memory:").executescript(sql)


def test_names_that_need_quotes(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite"
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE "order" ("group" TEXT, "song name" TEXT, plain INTEGER)')
    con.execute("INSERT INTO \"order\" VALUES ('a', 'b', 1)")
    con.commit()
    con.close()
    schema = text2sql.read_schema(path)
    assert 'CREATE TABLE "order"' in schema.to_sql() and '"song name" TEXT' in schema.to_sql()
    grammar = text2sql.scoped_grammar(schema)
    rng = random.Random(0)
    for _ in range(50):
        assert text2sql.execute(path, grammar.sample(rng)).ok


# -- bad database files --------------------------------------------------------------------------
def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(text2sql.DatabaseError, match=r"missing\.sqlite: no such database file"):
        text2sql.read_schema(tmp_path / "missing.sqlite")
    with pytest.raises(text2sql.DatabaseError, match="no such database file"):
        text2sql.execute(tmp_path / "missing.sqlite", "SELECT 1")
    with pytest.raises(text2sql.DatabaseError, match="not a file"):
        text2sql.read_schema(tmp_path)
    assert not (tmp_path / "missing.sqlite").exists()  # read-only: nothing was created


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("these are notes, not a database\n")
    with pytest.raises(text2sql.DatabaseError, match=r"notes\.sqlite: not a SQLite database"):
        text2sql.read_schema(path)
    with pytest.raises(text2sql.DatabaseError, match="not a SQLite database"):
        text2sql.prepare(path, "how many?")


def test_an_empty_database(tmp_path: Path) -> None:
    zero = tmp_path / "zero.sqlite"
    zero.write_bytes(b"")  # SQLite reads an empty file as an empty database
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("PRAGMA user_version = 1").connection.close()
    for path in (zero, empty):
        assert text2sql.read_schema(path).tables == ()
        with pytest.raises(text2sql.DatabaseError, match="the database has no tables"):
            text2sql.prepare(path, "How many students are there?")
        with pytest.raises(ValueError, match="no tables"):
            text2sql.scoped_grammar(text2sql.read_schema(path))


# -- the read-only executor ---------------------------------------------------------------------
WRITES = [
    ("INSERT INTO students (name) VALUES ('x')", "only SELECT"),
    ("UPDATE students SET gpa = 4.0", "only SELECT"),
    ("DELETE FROM students", "only SELECT"),
    ("DROP TABLE students", "only SELECT"),
    ("ATTACH DATABASE 'other.db' AS other", "only SELECT"),
    ("PRAGMA journal_mode = WAL", "only SELECT"),
    ("  -- a comment\n  delete from students", "only SELECT"),
    ("WITH x AS (SELECT 1) DELETE FROM students", "would do DELETE students"),
    ("WITH x AS (SELECT 1) UPDATE students SET gpa = 0", "would do UPDATE students"),
    (
        "WITH x AS (SELECT 1) INSERT INTO students (name) SELECT 'x' FROM x",
        "would do INSERT students",
    ),
    ("SELECT 1; DELETE FROM students", "only one statement"),
    ("SELECT load_extension('x')", "load_extension"),
    ("SELECT 'unterminated", "incomplete"),
]


@pytest.mark.parametrize(("sql", "reason"), WRITES)
def test_writes_are_rejected_before_they_run(dbs: dict[str, Path], sql: str, reason: str) -> None:
    before = _sha(dbs["school"])
    ex = text2sql.execute(dbs["school"], sql)
    assert ex.status == "rejected" and not ex.ok
    assert reason in ex.error
    assert _sha(dbs["school"]) == before
    assert text2sql.execute(dbs["school"], "SELECT COUNT(*) FROM students").rows == ((1200,),)


def test_the_connection_itself_is_read_only(dbs: dict[str, Path]) -> None:
    con = text2sql.connect_read_only(dbs["school"])
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
        con.execute("DELETE FROM students")
    con.close()


def test_a_query_that_runs_too_long_is_interrupted(dbs: dict[str, Path]) -> None:
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    ex = text2sql.execute(dbs["school"], slow, time_limit=0.2)
    assert ex.status == "timeout"
    assert "0.2 s time limit" in ex.error
    assert 0.15 < ex.seconds < 2.0


def test_results_errors_and_truncation(dbs: dict[str, Path]) -> None:
    ex = text2sql.execute(dbs["school"], "SELECT name, budget FROM departments ORDER BY id;")
    assert ex.ok and ex.columns == ("name", "budget") and len(ex.rows) == 8
    bad = text2sql.execute(dbs["school"], "SELECT budget FROM students")
    assert bad.status == "error" and "no such column: budget" in bad.error
    cut = text2sql.execute(dbs["school"], "SELECT id FROM students", max_rows=10)
    assert cut.ok and len(cut.rows) == 10 and cut.truncated


def test_bad_limits_are_refused(dbs: dict[str, Path]) -> None:
    # a negative max_rows returned every row but the last, marked truncated; a time limit of 0
    # or less reported every query as timed out
    with pytest.raises(ValueError, match="max_rows must be >= 0, got -1"):
        text2sql.execute(dbs["school"], "SELECT id FROM students", max_rows=-1)
    for limit in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="time_limit must be > 0 seconds"):
            text2sql.execute(dbs["school"], "SELECT id FROM students", time_limit=limit)
    none = text2sql.execute(dbs["school"], "SELECT id FROM students", max_rows=0)
    assert none.ok and none.rows == () and none.truncated


def test_extract_sql() -> None:
    assert text2sql.extract_sql("```sql\nSELECT 1;\n```") == "SELECT 1"
    assert text2sql.extract_sql("Here it is: SELECT a FROM t; -- done") == "SELECT a FROM t"
    assert text2sql.extract_sql("SELECT 2") == "SELECT 2"


def test_extract_sql_keeps_literals_and_skips_prose() -> None:
    # a `;` inside a string literal is part of the query, not its end
    quoted = "SELECT COUNT(*) FROM students WHERE city != 'a;b'"
    assert text2sql.extract_sql(quoted) == quoted
    assert text2sql.extract_sql("SELECT 'it''s; here' FROM t; DROP TABLE t") == (
        "SELECT 'it''s; here' FROM t"
    )
    # the fence's language tag is not part of the query (the error would name "ITE")
    assert text2sql.extract_sql("```sqlite\nDELETE FROM t\n```") == "DELETE FROM t"
    # "with" in prose is not a WITH clause; a real one is kept
    assert text2sql.extract_sql("Sure, with pleasure: SELECT 1") == "SELECT 1"
    cte = "WITH RECURSIVE c(x) AS (SELECT 1) SELECT x FROM c"
    assert text2sql.extract_sql(f"Here it is, with a CTE: {cte};") == cte
    assert text2sql.extract_sql("WITH x AS (SELECT 1) DELETE FROM t") == (
        "WITH x AS (SELECT 1) DELETE FROM t"
    )


# -- grammars ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["school", "shop", "flights"])
def test_every_query_of_the_scoped_grammar_runs(dbs: dict[str, Path], name: str) -> None:
    schema = text2sql.read_schema(dbs[name])
    grammar = text2sql.scoped_grammar(schema)
    names = lark_parser(
        text2sql.names_grammar(
            schema,
            literals=text2sql.Literals(
                strings=("''", "'Paris'", "'2024%'", "'%a%'", "'x y z'", "'" + "w" * 40 + "'",
                         "'%Y'", "'%m'", "'%Y-%m'", "'%d'"),
                numbers=("0", "1", "2", "3", "4", "7", "10", "3.5", "2024", "999",
                         "9999999.999"),
            ),
        )
    )  # fmt: skip
    rng = random.Random(name)
    con = text2sql.connect_read_only(dbs[name])
    for k in range(120):
        sql = grammar.sample(rng)
        ex = text2sql.execute(con, sql)
        assert ex.ok, (sql, ex.error)
        if k < 12:  # (Earley parsing is slow) a sub-language of sqlite_select specialised
            names.parse(sql)
    con.close()
    assert all(s.from_sql for s in grammar.scopes)
    assert "students AS T1 JOIN departments AS T2 ON T1.department_id = T2.id" in {
        s.from_sql for s in text2sql.scopes(text2sql.read_schema(dbs["school"]))
    }


def test_question_literals(dbs: dict[str, Path]) -> None:
    schema = text2sql.read_schema(dbs["shop"])
    lits = text2sql.literals_for("How many orders were placed in March 2024 from Paris?", schema)
    for s in ("'Paris'", "'March 2024'", "'2024%'", "'2024-03%'", "'%Paris%'", "'delivered'"):
        assert s in lits.strings
    assert "2024" in lits.numbers and "10" in lits.numbers
    three = text2sql.literals_for("the three most expensive", schema)
    assert "3" in three.numbers
    grammar = text2sql.scoped_grammar(schema, literals=lits)
    parser = lark_parser(grammar.text)
    parser.parse("SELECT COUNT(*) FROM orders WHERE order_date LIKE '2024-03%'")
    with pytest.raises(Exception, match=r"Unexpected|No terminal"):
        parser.parse("SELECT COUNT(*) FROM orders WHERE status = 'Lisbon?'")
    with pytest.raises(Exception, match=r"Unexpected|No terminal"):
        parser.parse("SELECT budget FROM orders")


def test_literals_a_query_cannot_be_written_with_are_refused(dbs: dict[str, Path]) -> None:
    # without them the grammar allowed `... LIMIT ` and `LIKE ` with nothing after: queries
    # that do not run, in the grammar whose every sentence should
    schema = text2sql.read_schema(dbs["school"])
    with pytest.raises(ValueError, match="holds no positive whole number"):
        text2sql.scoped_grammar(schema, literals=text2sql.Literals(("'x'",), ("0",)))
    with pytest.raises(ValueError, match=r"literals\.strings is empty"):
        text2sql.scoped_grammar(schema, literals=text2sql.Literals((), ("1",)))
    grammar = text2sql.scoped_grammar(schema, literals=text2sql.Literals(("'x'",), ("0", "2")))
    lark_parser(grammar.text).parse("SELECT * FROM students LIMIT 2")


# -- selection -----------------------------------------------------------------------------------
def _ex(rows: list[tuple[object, ...]], status: str = "ok", sql: str = "SELECT x") -> Execution:
    return Execution(sql=sql, status=status, rows=tuple(rows), columns=("a",))  # type: ignore[arg-type]


def test_values_are_linked_to_their_columns(dbs: dict[str, Path]) -> None:
    schema = text2sql.read_schema(dbs["shop"])
    lits = text2sql.literals_for("How many customers from Paris have delivered orders?", schema)
    assert lits.columns is not None
    assert "'Paris'" in lits.columns["customers.city"]
    assert "'Paris'" not in lits.columns["orders.status"]
    assert sorted(lits.columns["orders.status"]) == ["'cancelled'", "'delivered'", "'pending'",
                                                     "'returned'", "'shipped'"]  # fmt: skip
    assert "customers.id" not in lits.columns  # numbers are not linked
    parser = lark_parser(text2sql.scoped_grammar(schema, max_tables=1, literals=lits).text)
    for ok in (
        "SELECT COUNT(*) FROM customers WHERE city = 'Paris'",
        "SELECT COUNT(*) FROM customers WHERE city != 'Paris' AND name > 'Paris'",  # < is free
        "SELECT COUNT(*) FROM customers WHERE city IN ('Paris', 'Paris')",
        "SELECT COUNT(*) FROM customers WHERE city = country",  # a text column
        "SELECT COUNT(*) FROM orders WHERE status = 'delivered'",
        "SELECT COUNT(*) FROM orders WHERE LOWER(status) = 'Paris'",  # an expression is free
        "SELECT COUNT(*) FROM orders WHERE status LIKE '%Paris%'",
    ):
        parser.parse(ok)
    for bad in (
        "SELECT COUNT(*) FROM orders WHERE status = 'Paris'",  # not a status
        "SELECT COUNT(*) FROM customers WHERE city = 'delivered'",  # not a city
        "SELECT COUNT(*) FROM customers WHERE name = 'Paris'",  # no name in the question
        "SELECT COUNT(*) FROM customers WHERE city IN ('Paris', 'shipped')",
        "SELECT COUNT(*) FROM customers WHERE city = id",  # a number column
    ):
        with pytest.raises(Exception, match=r"Unexpected|No terminal"):
            parser.parse(bad)
    unlinked = text2sql.literals_for("from Paris", schema, link=False)
    assert unlinked.columns is None
    free = lark_parser(text2sql.scoped_grammar(schema, max_tables=1, literals=unlinked).text)
    free.parse("SELECT COUNT(*) FROM orders WHERE status = 'Paris'")


def test_required_values_are_the_longest_linked_strings_and_the_digits() -> None:
    columns = {
        "courses.title": ("'Introduction to Physics I'",),
        "departments.name": ("'Physics'",),
        "enrollments.grade": ("'C'",),
        "students.city": (),
        "departments.building": ("'Hall B'",),  # a categorical value the question does not write
    }
    q = "Count the enrollments for Introduction to Physics I with grade C in year 2 or 3.5 GPA."
    assert text2sql.required_values(q, columns) == (
        "'Introduction to Physics I'", "'C'", "2", "3.5",
    )  # fmt: skip
    assert text2sql.required_values("Which has at least one order?", {}) == ()


def test_vote_picks_the_majority_result() -> None:
    v = text2sql.vote(
        [_ex([(1,)]), _ex([(2,)]), _ex([(2.0,)]), _ex([], "error"), _ex([(2,)], "timeout")]
    )
    assert (v.winner, v.votes, v.voters, v.groups) == (1, 2, 3, (2, 1))
    tie = text2sql.vote([_ex([]), _ex([(5,)])])
    assert tie.winner == 1  # a non-empty result wins a tie
    first = text2sql.vote([_ex([(1,)]), _ex([(2,)])])
    assert first.winner == 0  # then the first candidate (the greedy one)
    assert text2sql.vote([_ex([], "error")]).winner is None


def test_same_result() -> None:
    gold = _ex([(1, "a"), (2, "b")], sql="SELECT x, y FROM t")
    assert text2sql.same_result(gold, _ex([(2, "b"), (1, "a")]))
    assert text2sql.same_result(gold, _ex([("a", 1), ("b", 2)]))  # columns in another order
    assert not text2sql.same_result(gold, _ex([(1, "a")]))
    ordered = _ex([(1,), (2,)], sql="SELECT x FROM t ORDER BY x")
    assert not text2sql.same_result(ordered, _ex([(2,), (1,)]))
    nested = _ex([(1,), (2,)], sql="SELECT x FROM (SELECT x FROM t ORDER BY x)")
    assert text2sql.same_result(nested, _ex([(2,), (1,)]))
    assert text2sql.same_result(_ex([(0.1 + 0.2,)]), _ex([(0.3,)]))
    assert not text2sql.same_result(gold, _ex([], "error"))


def test_order_by_over_lines_orders_the_gold_result() -> None:
    # a question file's gold SQL may break ORDER BY over lines; a column named like
    # `sort_order` before BY-something is no ORDER BY
    for sql in ("SELECT x FROM t\nORDER\n  BY x DESC", "SELECT x FROM t ORDER  BY x DESC"):
        gold = _ex([(2,), (1,)], sql=sql)
        assert not text2sql.same_result(gold, _ex([(1,), (2,)])), sql
        assert text2sql.same_result(gold, _ex([(2,), (1,)])), sql
    unordered = _ex([(2,), (1,)], sql="SELECT sort_order BY_x FROM t")
    assert text2sql.same_result(unordered, _ex([(1,), (2,)]))
