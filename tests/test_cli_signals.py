"""``legato`` stops what it started when it is terminated (SIGTERM), as on Ctrl-C; so does a test
run (``tests/conftest.py``): the servers its tests started are stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.testing import FakeOpenAIServer

PROGRAM = '''
import os
import subprocess

import anyio

import dsl


@dsl.tool
async def hold() -> str:
    """Start a child process and wait; stop the child however the wait ends."""
    child = subprocess.Popen(["sleep", "300"])
    with open(os.environ["LEGATO_TEST_PIDFILE"], "w") as f:
        f.write(str(child.pid))
    try:
        await anyio.sleep(300)
    finally:
        child.kill()
        child.wait()
    return "done"


@dsl.program
async def main() -> str:
    return await hold()
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM ``proc`` and its exit code (it has 20 s)."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Whatever happened, leave nothing running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _left_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still alive after up to 5 s."""
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


@pytest.mark.timeout(60)
def test_sigterm_runs_the_cleanup_of_a_running_command(tmp_path: Path) -> None:
    program = tmp_path / "hold.py"
    program.write_text(PROGRAM, encoding="utf-8")
    pidfile = tmp_path / "child.pid"
    env = {**os.environ, "LEGATO_TEST_PIDFILE": str(pidfile)}
    log = tmp_path / "legato.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "run", f"{program}:main"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        code = _terminate(proc)
    finally:
        _kill(proc)
    assert code == 128 + signal.SIGTERM, log.read_text()
    assert not _left_alive([child]), "the tool's child process was orphaned"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    not Path("/proc/self/task").exists() or (os.cpu_count() or 1) < 2,
    reason="needs /proc and two cores (the sweep's worker processes)",
)
def test_sigterm_stops_the_sweeps_worker_processes(tmp_path: Path) -> None:
    log = tmp_path / "legato.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "bench", "sched", "--workload", "mixed",
             "--sweep", "--policies", "fcfs,program_fcfs"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while len(children := _children(proc.pid)) < 3:  # the resource tracker, two workers
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the sweep never started its workers"
            time.sleep(0.1)
        time.sleep(1.0)  # the workers are searching: minutes of work each
        code = _terminate(proc)
    finally:
        _kill(proc)
    assert code == 128 + signal.SIGTERM, log.read_text()
    assert not _left_alive(children), "a sweep worker was orphaned"


HOLD = "LEGATO_TEST_HOLD_PIDFILE"
"""Set only in the child pytest run that ``test_sigterm_stops_the_servers_tests_started``
starts: then ``test_hold_servers`` runs there and waits to be terminated."""

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default="held") as server:
        yield server


@pytest.mark.skipif(HOLD not in os.environ, reason="only inside the terminated run below")
@pytest.mark.timeout(300)
def test_hold_servers(module_server: FakeOpenAIServer) -> None:
    """One server from a fixture, one from a ``with`` block; their pids, then a long wait."""
    with FakeOpenAIServer(default="held") as server:
        pids = [module_server.process, server.process]
        Path(os.environ[HOLD]).write_text(" ".join(str(p.pid) for p in pids if p), "utf-8")
        time.sleep(300)


@pytest.mark.timeout(90)
def test_sigterm_stops_the_servers_tests_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "servers.pid"
    log = tmp_path / "pytest.log"
    here = f"{Path(__file__).relative_to(ROOT)}::test_hold_servers"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", here],
            cwd=ROOT,
            env={**os.environ, HOLD: str(pidfile)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the servers never started"
            time.sleep(0.05)
        pids = [int(p) for p in pidfile.read_text().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        code = _terminate(proc)
        assert _left_alive(pids) == [], log.read_text()
        assert code == pytest.ExitCode.INTERRUPTED, log.read_text()
    finally:
        _kill(proc)
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
