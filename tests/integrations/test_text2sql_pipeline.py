"""The Text-to-SQL pipeline end to end: on a scripted backend (every stage, correction,
selection, bad input, per-stage deadlines) and on the embedded engine (random weights: every
produced query runs)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from integrations import text2sql
from orchestrator.backends import LLMRequest
from orchestrator.errors import ConfigError
from orchestrator.runtime import Orchestrator
from orchestrator.scheduler import POLICIES, CallInfo
from orchestrator.testing import ScriptedBackend

Q = "How many students live in Tokyo?"
GOLD = "SELECT COUNT(*) FROM students WHERE city = 'Tokyo'"


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text2sql.build_database("school", tmp_path_factory.mktemp("t2s") / "school.sqlite")


def _by_node(replies: dict[str, Any]) -> Any:
    """A responder answering by node name (``candidate_2`` falls back to ``candidate``); a
    list is used in turn, its last item repeating."""
    used: dict[str, int] = {}

    def respond(request: LLMRequest) -> str:
        node = request.node or ""
        key = node if node in replies else node.rstrip("0123456789").rstrip("_")
        value = replies[key]
        if isinstance(value, list):
            i = used.get(node, 0)
            used[node] = i + 1
            return str(value[min(i, len(value) - 1)])
        return str(value)

    return respond


def test_the_stages_and_the_majority(school: Path) -> None:
    backend = ScriptedBackend(
        _by_node(
            {
                "schema_linking": "students",
                "candidate": GOLD,
                "candidate_3": "SELECT COUNT(*) FROM students WHERE year = 1",
            }
        )
    )
    answer = text2sql.ask(school, Q, backend=backend, slo=30.0)
    assert answer.status == "answered"
    assert answer.sql == GOLD and answer.rows == ((63,),)
    assert (answer.votes, answer.voters) == (3, 4)
    assert answer.linked_tables == ("students",)
    assert [c.status for c in answer.candidates] == ["ok"] * 4
    assert set(answer.stages) == {"schema_linking", "candidates", "execution"}
    assert answer.latency is not None and answer.latency >= sum(answer.stages.values()) * 0.99
    nodes = [c.request.node for c in backend.calls]
    assert (
        nodes[0] == "schema_linking"
        and nodes.count("candidate") + len([n for n in nodes if n and n.startswith("candidate_")])
        == 4
    )
    # the candidates saw only the linked table's schema; the grammar held every call
    cand = backend.calls[1].request
    assert "CREATE TABLE students" in cand.text and "CREATE TABLE courses" not in cand.text
    assert "other tables: departments, instructors, courses, enrollments" in cand.text
    assert cand.grammar is not None and "students AS T1 JOIN" in cand.grammar.source


def test_question_literals_ask_each_candidate_for_the_linked_values(school: Path) -> None:
    question = "How many students live in Tokyo and started in 2021?"
    settings = text2sql.Settings(candidates=2, literals="question")
    assert text2sql.prepare(school, question, settings).required == ("'Tokyo'", "2021")
    backend = ScriptedBackend(_by_node({"schema_linking": "students", "candidate": GOLD}))
    text2sql.ask(school, question, backend=backend, settings=settings)
    requires = {c.request.node: c.request.require for c in backend.calls}
    assert requires["schema_linking"] == ()
    assert requires["candidate"] == ("'Tokyo'", "2021")
    # free literals compile one grammar per database and require nothing
    assert text2sql.prepare(school, question, text2sql.Settings()).required == ()


def test_linking_that_breaks_its_grammar_degrades_to_the_whole_schema(school: Path) -> None:
    backend = ScriptedBackend(
        _by_node({"schema_linking": "I think: students", "candidate": GOLD, "correction": GOLD})
    )
    answer = text2sql.ask(school, Q, backend=backend, settings=text2sql.Settings(candidates=2))
    assert answer.status == "answered" and answer.rows == ((63,),)
    assert [c.status for c in answer.candidates] == ["invalid", "invalid", "ok", "ok"]
    assert "schema linking failed" in answer.candidates[0].error
    retry = next(c.request for c in backend.calls if c.request.node == "correction")
    assert "CREATE TABLE courses" in retry.text and "Examples, on another database" in retry.text


def test_linking_adds_the_tables_that_join_the_linked_ones(school: Path) -> None:
    backend = ScriptedBackend(
        _by_node({"schema_linking": "enrollments, departments", "candidate": GOLD})
    )
    text2sql.ask(school, Q, backend=backend, settings=text2sql.Settings(candidates=1))
    prompt = backend.calls[1].request.text
    for t in ("enrollments", "departments", "courses"):  # courses joins the two
        assert f"CREATE TABLE {t}" in prompt
    assert "CREATE TABLE instructors" not in prompt


def test_a_failing_candidate_is_corrected_with_the_error(school: Path) -> None:
    backend = ScriptedBackend(
        _by_node(
            {
                "schema_linking": "students",
                "candidate": "SELECT COUNT(*) FROM students WHERE budget > 3",
                "correction": GOLD,
            }
        )
    )
    settings = text2sql.Settings(candidates=2, grammar="names")
    answer = text2sql.ask(school, Q, backend=backend, settings=settings)
    assert answer.status == "answered" and answer.rows == ((63,),)
    assert [(c.round, c.status) for c in answer.candidates] == [
        (0, "error"),
        (0, "error"),
        (1, "ok"),
        (1, "ok"),
    ]
    fix = next(c.request for c in backend.calls if c.request.node == "correction")
    assert "no such column: budget" in fix.text and "WHERE budget > 3" in fix.text
    assert "correction" in answer.stages


def test_no_valid_candidate_within_the_rounds_is_a_clear_result(school: Path) -> None:
    backend = ScriptedBackend(
        _by_node({"schema_linking": "students", "candidate": "SELECT budget FROM students",
                  "correction": "SELECT salary FROM students"})
    )  # fmt: skip
    settings = text2sql.Settings(candidates=2, rounds=2, grammar="names")
    answer = text2sql.ask(school, Q, backend=backend, settings=settings)
    assert answer.status == "no_valid_candidate" and answer.sql is None and not answer.rows
    assert "no candidate ran after 2 correction round(s)" in answer.error
    assert "no such column: salary" in answer.error
    assert len(answer.candidates) == 6  # 2 first attempts, 2 rounds of 2 corrections


def test_output_that_breaks_the_grammar_is_an_invalid_candidate(school: Path) -> None:
    backend = ScriptedBackend(
        _by_node({"schema_linking": "students", "candidate": ["SELECT budget FROM students", GOLD],
                  "correction": GOLD})
    )  # fmt: skip
    # the scoped grammar has no `budget` in `students`: the runtime's re-parse refuses it
    answer = text2sql.ask(school, Q, backend=backend, settings=text2sql.Settings(candidates=1))
    assert [c.status for c in answer.candidates] == ["invalid", "ok"]
    assert "not a complete query" in answer.candidates[0].error
    assert answer.status == "answered" and answer.produced == (answer.candidates[1],)


def test_a_candidate_that_runs_too_long_times_out(school: Path) -> None:
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    backend = ScriptedBackend(
        _by_node({"schema_linking": "students", "candidate": slow, "correction": GOLD})
    )
    settings = text2sql.Settings(candidates=1, grammar="none", time_limit=0.2)
    answer = text2sql.ask(school, Q, backend=backend, settings=settings)
    assert [c.status for c in answer.candidates] == ["timeout", "ok"]
    assert "time limit" in answer.candidates[0].error
    assert answer.rows == ((63,),)


def test_a_writing_candidate_is_rejected_before_it_runs(school: Path) -> None:
    before = hashlib.sha256(school.read_bytes()).hexdigest()
    backend = ScriptedBackend(
        _by_node({"schema_linking": "students", "candidate": "```sql\nDELETE FROM students;\n```",
                  "correction": "WITH x AS (SELECT 1) DELETE FROM students"})
    )  # fmt: skip
    settings = text2sql.Settings(candidates=1, rounds=1, grammar="none")
    answer = text2sql.ask(school, Q, backend=backend, settings=settings)
    assert [c.status for c in answer.candidates] == ["rejected", "rejected"]
    assert "only SELECT" in answer.candidates[0].error
    assert "would do DELETE students" in answer.candidates[1].error
    assert answer.status == "no_valid_candidate"
    assert hashlib.sha256(school.read_bytes()).hexdigest() == before


def test_a_semicolon_in_a_string_literal_does_not_cut_the_query(school: Path) -> None:
    # the scoped grammar's free strings may hold a `;`: the query runs as written
    sql = "SELECT COUNT(*) FROM students WHERE city != 'Tokyo;'"
    backend = ScriptedBackend(_by_node({"schema_linking": "students", "candidate": sql}))
    answer = text2sql.ask(school, Q, backend=backend, settings=text2sql.Settings(candidates=1))
    assert [c.status for c in answer.candidates] == ["ok"]
    assert answer.status == "answered" and answer.sql == sql and answer.rows == ((1200,),)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rows": 0}, "max_rows must be >= 1, got 0"),
        ({"max_rows": -1}, "max_rows must be >= 1, got -1"),
        ({"temperature": -0.5}, "temperature must be >= 0, got -0.5"),
        ({"time_limit": float("nan")}, "time_limit must be > 0 seconds"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        text2sql.Settings(**options)


def test_bad_databases_fail_before_anything_is_sent(tmp_path: Path) -> None:
    backend = ScriptedBackend(default="SELECT 1")
    with pytest.raises(text2sql.DatabaseError, match="no such database file"):
        text2sql.ask(tmp_path / "missing.sqlite", Q, backend=backend)
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(text2sql.DatabaseError, match="has no tables"):
        text2sql.ask(tmp_path / "empty.sqlite", Q, backend=backend)
    assert backend.calls == []


def test_the_slo_is_split_over_the_stages(school: Path) -> None:
    """HEXGEN's rule through the runtime: schema linking's deadline is a share of the SLO,
    the candidates' deadlines come later, and the slo policy sees them."""
    seen: dict[str, CallInfo] = {}

    slo_policy: Any = POLICIES["slo"]

    class Recording(slo_policy):  # type: ignore[misc]
        def priority(self, call: CallInfo, now: float) -> int:
            seen[call.call.rsplit("/", 1)[1]] = call
            return int(super().priority(call, now))

    backend = ScriptedBackend(
        _by_node({"schema_linking": "students", "candidate": GOLD}), latency=0.05
    )

    async def main() -> text2sql.Answer:
        async with Orchestrator(backend, policy=Recording(), max_in_flight=1) as orch:
            return await text2sql.answer_question(
                orch, school, Q, settings=text2sql.Settings(candidates=3), slo=20.0
            )

    answer = anyio.run(main)
    assert answer.status == "answered"
    link = seen["schema_linking"]
    assert link.deadline is not None
    start = link.program_arrival
    assert start < link.deadline < start + 20.0 * 0.5  # linking gets a share, not the whole SLO
    cand = seen["candidate"]
    assert cand.deadline is not None and link.deadline < cand.deadline <= start + 20.0 + 1e-6


def test_many_questions_at_once_through_one_orchestrator(school: Path) -> None:
    backend = ScriptedBackend(_by_node({"schema_linking": "students", "candidate": GOLD}))
    questions = [Q, "How many students are there?", "What is the average GPA?"]

    async def main() -> list[text2sql.Answer]:
        out: list[text2sql.Answer] = []
        async with Orchestrator(backend, policy="slo") as orch, anyio.create_task_group() as tg:

            async def one(q: str) -> None:
                out.append(await text2sql.answer_question(orch, school, q, slo=10.0))

            for q in questions:
                tg.start_soon(one, q)
        return out

    answers = anyio.run(main)
    assert sorted(a.question for a in answers) == sorted(questions)
    # on failure, say why: each unanswered question's candidates and their errors
    unanswered = {
        a.question: [(c.status, c.error) for c in a.candidates]
        for a in answers
        if a.status != "answered"
    }
    assert not unanswered, unanswered


def test_evaluation_on_a_scripted_backend(school: Path) -> None:
    qs = text2sql.questions("school")[:3]
    golds = {q.question: q.sql for q in qs}

    def respond(request: LLMRequest) -> str:
        if request.node == "schema_linking":
            return "students"
        for question, sql in golds.items():
            if question in request.text:
                return sql if question != qs[2].question else "SELECT name FROM departments LIMIT 1"
        raise AssertionError(request.text)

    report = text2sql.run_evaluation(
        school, qs, backend=ScriptedBackend(respond), settings=text2sql.Settings(grammar="names")
    )
    assert [i.correct for i in report.items] == [True, True, False]
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.execution_rate == 1.0 and report.produced == 12
    s = report.summary()
    assert s["by_difficulty"]["easy"] == {"correct": 2, "n": 3}
    assert {"schema_linking", "candidates", "execution", "total"} <= set(s["latency"])


def test_on_the_embedded_engine_every_produced_query_runs(school: Path) -> None:
    """Random weights: the SQL means nothing, but the scoped grammar makes every query that
    the model completes run on the database."""
    settings = text2sql.Settings(candidates=2, rounds=1, max_tokens=96)
    qs = text2sql.questions("school")[:2]
    report = text2sql.run_evaluation(school, qs, backend="local:tiny", settings=settings, slo=120.0)
    assert not [i.error for i in report.items if i.error]
    assert report.produced >= 1
    assert report.execution_rate == 1.0
    for item in report.items:
        assert item.answer is not None
        for c in item.answer.produced:
            assert c.sql.startswith("SELECT ") and c.status == "ok"
