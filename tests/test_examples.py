"""Every program in examples/ runs: in-process on a scripted backend, and through the CLI over
real HTTP against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import orchestrator
from orchestrator.backends import LLMRequest
from orchestrator.cli import load_program
from orchestrator.testing import FakeOpenAIServer, ScriptedBackend

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def legato(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == {
        "async_tools.py",
        "parallel_qa.py",
        "research.py",
        "structured.py",
        "triage.py",
    }


def test_research_fans_out_and_joins() -> None:
    research = load_program(str(EXAMPLES / "research.py"))
    backend = ScriptedBackend(
        {
            "search query": "query",
            "Answer in one sentence": "answer",
            "three-sentence report": "the report",
        },
        latency=0.02,
    )

    async def go() -> tuple[str, dict[str, orchestrator.NodeStats]]:
        async with orchestrator.Orchestrator(backend) as orch:
            h = await orch.submit(research, "tides")
            return await h.result(), h.stats

    import anyio

    result, stats = anyio.run(go)
    assert result == "the report"
    questions = [s for s in stats.values() if s.node.startswith("question")]
    assert len(questions) == 3
    # the three question calls overlapped in time
    assert max(s.start for s in questions) < min(s.end for s in questions)  # type: ignore[type-var]
    report_prompt = backend.calls[-1].request.text
    assert report_prompt.splitlines()[1:] == ["answer", "answer", "answer"]
    assert "tides" in report_prompt


@pytest.mark.parametrize(
    ("label", "expected_node"),
    [("bug", "repro"), ("billing", "billing_reply"), ("other", "reply")],
)
def test_triage_branches_on_the_label(label: str, expected_node: str) -> None:
    triage = load_program(str(EXAMPLES / "triage.py"))
    backend = ScriptedBackend({"Classify": label}, default="handled")
    out = orchestrator.run(triage, "my ticket", backend=backend)
    assert out == {"label": label, "reply": "handled"}
    assert [c.request.node for c in backend.calls] == ["label", expected_node]
    if label == "billing":
        assert "refund issued" in backend.calls[1].request.text


def test_structured_outputs_parse_on_the_embedded_engine() -> None:
    # Random weights, yet every output parses: the grammars are hard token masks.
    proc = legato("run", str(EXAMPLES / "structured.py"), "--", "the last three orders of Ann")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["ticket"]) == {"topic", "urgent", "order_count"}
    assert 0 <= out["ticket"]["order_count"] <= 99 and len(out["ticket"]["topic"]) <= 24
    assert re.fullmatch(r"ORD-[0-9]{4}", out["order"])
    assert out["query"].startswith("SELECT ") and " FROM orders" in out["query"]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (id INTEGER, customer TEXT, day TEXT, total REAL)")
    db.execute(out["query"]).fetchall()  # the query runs


def test_structured_outputs_on_a_scripted_backend() -> None:
    structured = load_program(str(EXAMPLES / "structured.py"))
    backend = ScriptedBackend(
        {
            "JSON": '{"topic": "orders", "urgent": false, "order_count": 3}',
            "SELECT": "SELECT id FROM orders ORDER BY day DESC LIMIT 3",
            "Which order": "ORD-0042",
        }
    )
    out = orchestrator.run(structured, "last three orders", backend=backend)
    assert out == {
        "ticket": {"topic": "orders", "urgent": False, "order_count": 3},
        "query": "SELECT id FROM orders ORDER BY day DESC LIMIT 3",
        "order": "ORD-0042",
    }


def test_async_tools_on_the_embedded_engine() -> None:
    # Random weights (tiny, the model its seed was chosen on): whatever calls the model makes
    # are to known tools with valid arguments.
    proc = legato(
        "run",
        str(EXAMPLES / "async_tools.py"),
        "--backend",
        "local:tiny",
        "--",
        "Oslo",
        "Lisbon",
        "300",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert isinstance(out["answer"], str) and "[CALL]" not in out["answer"]
    arity = {"weather": 1, "flights": 2, "convert": 2}
    for call in out["calls"]:
        assert len(call["args"]) == arity[call["tool"]]
        if call["tool"] == "weather":
            assert call["error"] is None and isinstance(call["result"], str)


def test_async_tools_combine_results_on_a_scripted_backend() -> None:
    import anyio

    trip = load_program(str(EXAMPLES / "async_tools.py"))
    calls = (
        'Checking. [CALL] 1 [HEAD] weather("Oslo") [END] [CALL] 2 [HEAD] weather("Lisbon") '
        '[END] [CALL] 3 [HEAD] flights("Oslo", "Lisbon") [END] [CALL] 4 [HEAD] convert(300, '
        '"NOK") [END] [TRAP][END] never read'
    )

    def model(request: LLMRequest) -> str:
        results = dict(re.findall(r"\[INTR\] (\d+) \[HEAD\] (.*?) \[END\]", request.text))
        if not results:
            return calls
        weather = f" Oslo {results['1']}, Lisbon {results['2']}"
        return f"{weather}; flights {results['3']}; {results['4']} NOK."

    backend = ScriptedBackend(model)

    async def go() -> tuple[dict[str, Any], float]:
        async with orchestrator.Orchestrator(backend) as orch:
            start = anyio.current_time()
            out = await (await orch.submit(trip, "Oslo", "Lisbon", 300)).result()
            return out, anyio.current_time() - start

    out, took = anyio.run(go)
    assert out["answer"] == (
        'Checking. Oslo "4 C, rain", Lisbon "19 C, sun"; flights ["OSL-LIS 07:40", "13:15"]; '
        "3480.0 NOK."
    )
    assert [c["tool"] for c in out["calls"]] == ["weather", "weather", "flights", "convert"]
    assert took < 0.5  # four 0.2 s tools at once, not one after another
    first, resumed = backend.calls
    assert resumed.request.prompt is not None and first.request.prompt is not None
    assert resumed.request.prompt.startswith(first.request.prompt + calls[: calls.index(" never")])


def test_parallel_qa_runs_its_plan() -> None:
    qa = load_program(str(EXAMPLES / "parallel_qa.py"))
    plan = '1. get_population("Oslo")\n2. get_population("Lisbon")\n3. math("$1 - $2")\n4. join()\n'
    backend = ScriptedBackend(
        {
            "Plan and results": "Finish(164,000.0 people)",
            "plan of tool": plan + "<END_OF_PLAN>",
        }
    )

    async def go() -> tuple[str, dict[str, orchestrator.NodeStats]]:
        async with orchestrator.Orchestrator(backend) as orch:
            h = await orch.submit(
                qa, "What is the difference in population between Oslo and Lisbon?"
            )
            return await h.result(), h.stats

    import anyio

    answer, stats = anyio.run(go)
    assert answer == "164,000.0 people"
    lookups = [s for k, s in stats.items() if k.startswith("plan_get_population")]
    assert len(lookups) == 2
    assert max(s.start for s in lookups) < min(s.end for s in lookups)  # type: ignore[type-var]
    # the joiner reads each task as the plan wrote it ($k, not the parser's objects), with its
    # value: the lines the demo model's joiner was trained on
    joiner = backend.calls[-1].request.text
    assert '1. get_population("Oslo") -> "709,000 people"' in joiner
    assert '3. math("$1 - $2") -> "164,000.0 people"' in joiner


def example_module(name: str) -> Any:
    """An example file imported as a module (its tools, callable through ``.fn``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("709,000 people - 545,000 people", "164,000.0 people"),
        ("(545,000 people + 232,000 people) / 2", "388,500.0 people"),
        ("3 km/h * 2", "6.0 km/h"),
        ("10 / 2", "5.0"),  # the `/` is a division, not a unit
        ("max(1, 2)", "2.0"),  # the comma separates the arguments
        ("sum(1,2,3)", "6.0"),  # not the number 123
        ("max(709,000 people, 545,000 people)", "709,000.0 people"),
    ],
)
def test_parallel_qa_math_reads_numbers_units_and_arguments(expression: str, value: str) -> None:
    qa_math = example_module("parallel_qa.py").math
    assert qa_math.fn(expression) == value


def test_parallel_qa_plans_right_on_the_demo_model() -> None:
    """On the default engine and model, greedy: the plan looks up both cities and averages
    them; the joiner is shown each result (what it then writes is the small model's)."""
    import anyio

    from orchestrator.backends import Completion, LocalBackend

    qa = load_program(str(EXAMPLES / "parallel_qa.py"))
    seen: list[str] = []

    class Recording(LocalBackend):
        async def complete(self, request: LLMRequest) -> Completion:
            seen.append(request.text)
            return await super().complete(request)

    async def go() -> dict[str, orchestrator.NodeStats]:
        async with orchestrator.Orchestrator(Recording("demo")) as orch:
            h = await orch.submit(qa, "What is the average population of Lisbon and Porto?")
            await h.result()
            return h.stats

    stats = anyio.run(go)
    tasks = sorted(k for k in stats if k.startswith("plan_"))
    assert tasks == ["plan_get_population_1", "plan_get_population_2", "plan_math_1"], tasks
    joiner = next(t for t in seen if "Plan and results" in t)
    assert '1. get_population("Lisbon") -> "545,000 people"' in joiner, joiner
    assert '2. get_population("Porto") -> "232,000 people"' in joiner, joiner
    assert '3. math("($1 + $2) / 2") -> "388,500.0 people"' in joiner, joiner


def test_graph_command_prints_mermaid() -> None:
    proc = legato("graph", str(EXAMPLES / "research.py"), "--", "tides")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("flowchart TD")
    # per branch: question -> search, question -> answer, search -> answer; answers -> report
    assert proc.stdout.count("-->") == 3 * 3 + 3
    proc_json = legato("graph", str(EXAMPLES / "research.py"), "--format", "json", "--", "tides")
    data = json.loads(proc_json.stdout)
    assert len(data["nodes"]) == 10
    assert data["critical_path"]["nodes"][-1] == "report"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    script = {"Classify": "billing", "search query": "q", "report": "final report"}
    with FakeOpenAIServer(script, default="fine") as s:
        yield s


@pytest.mark.http
def test_cli_runs_examples_over_http(server: FakeOpenAIServer) -> None:
    proc = legato("run", str(EXAMPLES / "research.py"), "--backend", server.url, "--", "tides")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "final report"
    proc = legato(
        "run",
        f"{EXAMPLES / 'triage.py'}:triage",
        "--backend",
        server.url,
        "--",
        "I was charged twice",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"label": "billing", "reply": "fine"}


def test_cli_reports_bad_targets_clearly(tmp_path: Path) -> None:
    proc = legato("graph", str(tmp_path / "missing.py"))
    assert proc.returncode == 1
    assert "missing.py: no such file" in proc.stderr
    proc = legato("graph", f"{EXAMPLES / 'triage.py'}:nope")
    assert proc.returncode == 1
    assert "no @dsl.program named 'nope'" in proc.stderr and "triage" in proc.stderr


@pytest.mark.http
def test_cli_reports_an_unreachable_backend() -> None:
    proc = legato(
        "run", str(EXAMPLES / "triage.py"), "--backend", "http://127.0.0.1:9/v1", "--", "hi"
    )
    assert proc.returncode == 1
    assert "BackendUnavailable" in proc.stderr and "127.0.0.1:9" in proc.stderr


def test_help_lists_the_commands() -> None:
    proc = legato("--help")
    assert proc.returncode == 0
    for cmd in ("run", "graph", "demo", "bench"):
        assert cmd in proc.stdout
