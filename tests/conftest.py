"""Shared fixtures: runtime tests run on both of anyio's backends (asyncio and trio). A test run
that is terminated stops the way Ctrl-C stops it."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"terminated (signal {signum})")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (what CI runners and ``timeout`` send) raises ``KeyboardInterrupt``, as Ctrl-C
    does: pytest then stops the run and tears down fixtures, and ``with`` blocks exit, so the
    servers tests start in child processes (llama-server, engine servers) are stopped, not left
    running. Left to its default, SIGTERM ends pytest at once and runs no teardown."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per event loop."""
    return str(request.param)
