"""``legato sql ask|eval|databases`` and the examples in ``examples/text2sql/``, run as users
run them (subprocesses, the embedded engine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from integrations import text2sql

ROOT = Path(__file__).resolve().parents[2]


def legato(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text2sql.build_database("school", tmp_path_factory.mktemp("cli") / "school.sqlite")


# The embedded engine with the random-weight `tiny` model, named explicitly (fast, made locally).
FAST = ("--backend", "local:tiny", "--candidates", "2", "--rounds", "0", "--max-tokens", "64")


def test_sql_ask_on_the_embedded_engine(school: Path) -> None:
    # No --backend: the default engine's context must hold the pipeline's prompts (the demo
    # model's 512 tokens did not, and every question failed).
    proc = legato(
        "sql", "ask", "--db", str(school), "How many students are there?", *FAST[2:], "--json"
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "context holds" not in proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["question"] == "How many students are there?"
    for c in answer["candidates"]:
        assert c["status"] in ("ok", "invalid"), c  # whatever the model wrote ran
    if answer["status"] == "answered":
        assert answer["sql"].startswith("SELECT ") and "candidates" in answer["stages"]


def test_sql_eval_writes_its_figures(school: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    proc = legato(
        "sql", "eval", "--db", str(school), "--limit", "2", *FAST, "--slo", "120",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "legato sql eval" in proc.stdout and "latency per stage" in proc.stdout
    data = json.loads(out.read_text())
    assert data["questions"] == 2 and len(data["items"]) == 2
    assert data["execution_rate"] in (1.0, None)  # None only if nothing completed
    assert {"schema_linking", "candidates", "total"} <= set(data["latency"])
    assert data["items"][0]["gold"] == text2sql.questions("school")[0].sql


def test_sql_eval_needs_questions_for_other_databases(tmp_path: Path) -> None:
    other = text2sql.build_database("shop", tmp_path / "mine.sqlite")
    proc = legato("sql", "eval", "--db", str(other))
    assert proc.returncode == 1
    assert "--questions is needed" in proc.stderr
    qfile = tmp_path / "q.json"
    text2sql.write_questions(qfile, text2sql.questions("school")[:2])
    proc = legato("sql", "eval", "--db", str(other), "--questions", str(qfile))
    assert proc.returncode == 1 and "no question is about 'mine'" in proc.stderr


def test_sql_commands_report_bad_databases(tmp_path: Path) -> None:
    proc = legato("sql", "ask", "--db", str(tmp_path / "missing.sqlite"), "How many?")
    assert proc.returncode == 1
    assert "DatabaseError" in proc.stderr and "missing.sqlite: no such database file" in proc.stderr
    notdb = tmp_path / "notes.sqlite"
    notdb.write_text("hello")
    proc = legato("sql", "ask", "--db", str(notdb), "How many?")
    assert proc.returncode == 1 and "not a SQLite database" in proc.stderr
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    proc = legato("sql", "eval", "--db", str(empty), "--questions", str(ROOT / "README.md"))
    assert proc.returncode == 1


def test_sql_databases(tmp_path: Path) -> None:
    proc = legato("sql", "databases", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    for name in ("school", "shop", "flights"):
        assert (tmp_path / "out" / f"{name}.sqlite").is_file()
        assert (tmp_path / "out" / f"{name}.questions.json").is_file()


def test_the_ask_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "text2sql" / "ask.py"), "--questions", "2",
         "--candidates", "1", "--rounds", "0", "--max-tokens", "64", "--backend", "local:tiny"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Q: ") == 2
    assert "candidates" in proc.stdout and "total" in proc.stdout
