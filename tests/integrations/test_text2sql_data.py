"""The example Text-to-SQL data: schemas as data, seeded databases, shipped questions."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from integrations import text2sql

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return text2sql.build_all(tmp_path_factory.mktemp("t2s"))


def _digest(path: Path) -> str:
    con = sqlite3.connect(path)
    h = hashlib.sha256()
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"):
        for row in con.execute(f"SELECT * FROM {name} ORDER BY id"):
            h.update(repr(row).encode())
    con.close()
    return h.hexdigest()


def test_the_api_is_pinned_and_documented() -> None:
    module = importlib.import_module("integrations.text2sql")
    assert {"SCHEMAS", "databases", "build_database", "questions", "ask", "evaluate"} <= set(
        module.__all__
    )
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), f"text2sql.{name} has no docstring"


def test_schemas_are_data() -> None:
    specs = text2sql.databases()
    assert [s.name for s in specs] == ["school", "shop", "flights"]
    for spec in specs:
        assert 4 <= len(spec.tables) <= 8
        assert spec.foreign_keys
        for fk in spec.foreign_keys:
            assert fk.ref_table in spec.table_names
            assert fk.ref_column in spec.table(fk.ref_table).column_names
        for t in spec.tables:
            assert t.columns[0].name == "id"
            for c in t.columns:
                if c.pool not in (None, "person"):
                    assert c.pool in text2sql.VALUE_POOLS, (t.name, c.name)
    assert text2sql.database("shop") is text2sql.SCHEMAS["shop"]
    with pytest.raises(LookupError, match="known: school, shop, flights"):
        text2sql.database("nope")
    assert len(text2sql.VALUE_POOLS["product_nouns"]) == 4 * len(text2sql.VALUE_POOLS["categories"])
    assert set(text2sql.CITY_COUNTRY) == set(text2sql.VALUE_POOLS["cities"])
    assert set(text2sql.CITY_COUNTRY.values()) <= set(text2sql.VALUE_POOLS["countries"])


def test_databases_are_seeded_and_match_their_specs(dbs: dict[str, Path], tmp_path: Path) -> None:
    for name, path in dbs.items():
        spec = text2sql.database(name)
        con = sqlite3.connect(path)
        total = 0
        for t in spec.tables:
            (n,) = con.execute(f"SELECT COUNT(*) FROM {t.name}").fetchone()
            assert n == t.rows
            total += n
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({t.name})")]
            assert tuple(cols) == t.column_names
            for c in t.columns:
                if c.pool and c.pool != "person":
                    values = {r[0] for r in con.execute(f"SELECT DISTINCT {c.name} FROM {t.name}")}
                    assert values <= set(text2sql.VALUE_POOLS[c.pool]), (t.name, c.name)
                if c.low is not None and c.high is not None:
                    lo, hi = con.execute(
                        f"SELECT MIN({c.name}), MAX({c.name}) FROM {t.name}"
                    ).fetchone()
                    assert c.low <= lo <= hi <= c.high, (t.name, c.name)
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert 2000 <= total <= 20000
        con.close()
    again = text2sql.build_database("shop", tmp_path / "again.sqlite")
    assert _digest(again) == _digest(dbs["shop"])
    other = text2sql.build_database("shop", tmp_path / "other.sqlite", seed=1)
    assert _digest(other) != _digest(dbs["shop"])


def test_shipped_questions_run_and_are_nonempty(dbs: dict[str, Path]) -> None:
    qs = text2sql.questions()
    assert len(qs) >= 60
    assert len({q.id for q in qs}) == len(qs)
    assert {q.difficulty for q in qs} == {"easy", "medium", "hard"}
    assert {q.db for q in qs} == {"school", "shop", "flights"}
    for q in qs:
        ex = text2sql.execute(dbs[q.db], q.sql)
        assert ex.ok, (q.id, ex.error)
        assert ex.rows, f"{q.id}: the gold query returns nothing"
    with pytest.raises(LookupError):
        text2sql.questions("nope")


def test_gold_queries_are_in_the_grammar_layout(dbs: dict[str, Path]) -> None:
    from dsl._grammar import lark_parser

    # One grammar per database, with the literals of all its questions (one per question is
    # what the pipeline builds; the union keeps this test fast).
    for name, path in dbs.items():
        schema = text2sql.read_schema(path)
        qs = text2sql.questions(name)
        per_question = [text2sql.literals_for(q.question, schema) for q in qs]
        lits = text2sql.Literals(
            strings=tuple(dict.fromkeys(s for lit in per_question for s in lit.strings)),
            numbers=tuple(dict.fromkeys(n for lit in per_question for n in lit.numbers)),
        )
        parser = lark_parser(text2sql.names_grammar(schema, literals=lits))
        for q in qs:
            parser.parse(q.sql)


def test_a_failed_build_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "shop.sqlite"
    target.mkdir()  # a folder where the file should go: the final move fails
    with pytest.raises(OSError):
        text2sql.build_database("shop", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.sqlite"]
    assert target.is_dir()


def test_question_files_round_trip(tmp_path: Path) -> None:
    qs = text2sql.questions("school")
    path = text2sql.write_questions(tmp_path / "q.json", qs)
    assert text2sql.load_questions(path) == qs
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"question": q.question, "sql": q.sql}) for q in qs[:3]) + "\n"
    )
    loaded = text2sql.load_questions(jsonl)
    assert [q.sql for q in loaded] == [q.sql for q in qs[:3]]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"question": "x"}]')
    with pytest.raises(ValueError, match=r"bad.json\[0\]: missing or non-string sql"):
        text2sql.load_questions(bad)


def test_make_databases_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "text2sql" / "make_databases.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("school", "shop", "flights"):
        assert (tmp_path / f"{name}.sqlite").is_file()
        assert text2sql.load_questions(tmp_path / f"{name}.questions.json")
    assert proc.stdout.count("questions)") == 3
