"""A terminated test run stops the servers its tests started (``tests/conftest.py``)."""

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if _alive(p)] == [], log.read_text()
        assert code == pytest.ExitCode.INTERRUPTED, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
