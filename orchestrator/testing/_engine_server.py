"""``EngineServer``: ``legato engine serve`` in a child process, for tests and benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from orchestrator.testing._child import ServerProcess

__all__ = ["EngineServer"]


class EngineServer(ServerProcess):
    """The embedded engine's HTTP server on 127.0.0.1 in a child process, as a context manager.

    ::

        with EngineServer("tiny", policy="priority") as server:
            backend = OpenAICompatible(server.url)

    Args:
        model: a preset or a GGUF path.
        args: more ``legato engine serve`` options, e.g. ``("--max-batch", "2")``.
    """

    label = "engine server"

    def __init__(
        self,
        model: str = "tiny",
        *,
        policy: str = "fcfs",
        args: Sequence[str] = (),
        startup_timeout: float = 120.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.model = model
        self.policy = policy
        self.args = tuple(args)

    def command(self, port: int = 0) -> list[str]:
        """``python -m orchestrator.cli engine serve ... --announce-port``."""
        return [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "engine",
            "serve",
            "--model",
            self.model,
            "--policy",
            self.policy,
            "--port",
            str(port),
            "--announce-port",
            *self.args,
        ]
