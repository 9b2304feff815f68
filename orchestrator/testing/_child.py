"""Servers in child processes for tests and benchmarks: start, wait for health, stop."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import httpx

__all__ = ["ServerProcess"]

STARTUP_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 5.0
# The directory holding the ``orchestrator`` package, so the child can import it even when the
# package is not installed and the caller's working directory is elsewhere.
ROOT: Final = str(Path(__file__).resolve().parents[2])


class ServerProcess:
    """A server in a child process on 127.0.0.1, as a sync context manager.

    Subclasses say which command starts the child (``command(port)``); the child binds a free
    port itself and prints it as its first stdout line. Entering waits until ``/health``
    answers (``RuntimeError`` with the child's stderr if it dies or does not answer within
    ``startup_timeout`` seconds). Leaving terminates the child (killing it after 5 s), so no
    process outlives the block. ``start()``/``stop()`` do the same outside a ``with``.
    """

    label = "server"

    def __init__(self, *, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        where = self.base if self._port is not None else "not running"
        return f"{type(self).__name__}({where})"

    @property
    def port(self) -> int:
        """The TCP port the child serves on (``RuntimeError`` when not running)."""
        if self._port is None:
            raise RuntimeError(f"the {type(self).__name__} is not running; use `with` or start()")
        return self._port

    @property
    def base(self) -> str:
        """The server's root, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.base}/v1"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The child process of the latest start (kept after ``stop()`` to inspect its exit)."""
        return self._proc

    def command(self, port: int = 0) -> list[str]:
        """The command line that starts the child on ``port`` (0: a free one)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the child and wait until it answers ``/health``."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"{self!r} is already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._port = None
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        try:
            deadline = time.monotonic() + self.startup_timeout
            self._port = self._read_port(deadline)
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            self._port = None
            raise

    def stop(self) -> None:
        """Terminate the child (kill it if it lingers past 5 s) and release its pipes."""
        proc = self._proc
        try:
            if proc is not None:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _child_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text[-4000:] if text else "(nothing on stderr)"

    def _failure(self, what: str) -> RuntimeError:
        assert self._proc is not None
        code = self._proc.poll()
        status = f"exited with code {code}" if code is not None else "still running"
        return RuntimeError(
            f"the {self.label} {what} (child pid {self._proc.pid} {status}); "
            f"command: {' '.join(self.command())}\nchild stderr:\n{self._child_stderr()}"
        )

    def _read_port(self, deadline: float) -> int:
        """The port from the child's first stdout line (a thread, so a silent child times
        out instead of blocking forever)."""
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        lines: list[bytes] = []
        reader = threading.Thread(
            target=lambda: lines.append(stdout.readline()),
            daemon=True,
            name=f"{self.label}-port",
        )
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if reader.is_alive():
            raise self._failure(f"printed no port within {self.startup_timeout:g} s")
        line = lines[0].decode(errors="replace").strip() if lines else ""
        if not line.isdigit():
            # Let a dying child exit, so the error shows its exit code.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1)
            raise self._failure(f"did not start (first stdout line {line!r})")
        return int(line)

    def _wait_healthy(self, deadline: float) -> None:
        assert self._proc is not None
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while True:
                if self._proc.poll() is not None:
                    raise self._failure("died while starting")
                try:
                    if client.get(f"{self.base}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() >= deadline:
                    raise self._failure(f"did not answer /health within {self.startup_timeout:g} s")
                time.sleep(0.02)
