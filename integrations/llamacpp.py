"""llama.cpp's ``llama-server``: build it from source, find the cached binary, run it.

The binary is built from the llama.cpp sources vendored inside the ``llama-cpp-python`` sdist on
PyPI (the only source of llama.cpp reachable from these machines), as a single static executable
holding the server target only, and cached outside the repository under
``$LEGATO_CACHE_DIR/llama-server/<version>/llama-server``. ``LEGATO_CACHE_DIR`` defaults to
``$XDG_CACHE_HOME/legato``, then ``~/.cache/legato``.

``build`` and ``find`` use the standard library only, so CI can run
``python3 -m integrations.llamacpp build`` from the repository root before the project and its
dependencies are installed. ``LlamaServer`` imports ``httpx`` when it starts a server.

Usage::

    python3 -m integrations.llamacpp build   # build (or reuse) the binary; prints its path
    python3 -m integrations.llamacpp path    # print the cached binary's path, or exit 1

    with LlamaServer(model_gguf) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x")

Greedy token ids (to compare with another engine) come from llama-server's own route,
``POST {server.base}/completion`` with ``{"prompt": [ids], "n_predict": N, "temperature": 0,
"ignore_eos": true, "return_tokens": true, "cache_prompt": false}``: the answer's ``tokens`` holds
the generated ids, ``tokens_evaluated`` the prompt length. ``n_probs: K`` adds
``completion_probabilities`` (``top_logprobs``), but only for tokens after which the text is whole
UTF-8. ``/v1/completions`` accepts id prompts too but returns text, not ids. ``-c CTX`` is split
evenly between the ``-np`` slots.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "CMAKE_FLAGS",
    "LLAMA_CPP_COMMIT",
    "LLAMA_CPP_PYTHON_VERSION",
    "LlamaServer",
    "build",
    "cache_dir",
    "cached_binary_path",
    "find",
]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The ``llama-cpp-python`` sdist whose vendored llama.cpp is built."""

LLAMA_CPP_COMMIT = "0c1e570"
"""The llama.cpp commit vendored in that sdist (ggml 0.25.3), for reports."""

CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    # One self-contained executable: ggml and llama are linked in statically.
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    # The unified ``llama`` binary (app/) is not needed; tools/server is.
    "-DLLAMA_BUILD_APP=OFF",
    # No web UI: the sdist ships no prebuilt UI, building it needs npm, and the prebuilt one
    # would be downloaded from Hugging Face at build time (no network here).
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    # No HTTPS client (model downloads); LLAMA_CURL is deprecated and ignored in this version.
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_CCACHE=OFF",
)
"""Configure flags for the vendored llama.cpp. ``GGML_NATIVE`` stays on (``-march=native``):
the binary is built for, and cached on, the machine that runs it."""

_SERVER_TARGET = "llama-server"
_HOST = "127.0.0.1"


def _log(message: str) -> None:
    print(f"llamacpp: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Legato's cache folder: ``$LEGATO_CACHE_DIR``, ``$XDG_CACHE_HOME/legato`` or
    ``~/.cache/legato``."""
    explicit = os.environ.get("LEGATO_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "legato"


def cached_binary_path(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """Where ``build`` puts the binary for ``version`` (whether or not it exists yet)."""
    return cache_dir() / "llama-server" / version / "llama-server"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _runs(binary: Path) -> bool:
    """Whether ``binary --version`` exits cleanly (catches truncated files and foreign CPUs)."""
    if not _is_executable(binary):
        return False
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find() -> Path | None:
    """The ``llama-server`` binary to use, or ``None`` when none has been built.

    ``LEGATO_LLAMA_SERVER``, when set, names the binary explicitly (``FileNotFoundError`` if it
    is not an executable file); otherwise the binary cached by ``build`` is returned if present.
    Nothing is built or run.
    """
    explicit = os.environ.get("LEGATO_LLAMA_SERVER")
    if explicit:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
            raise FileNotFoundError(f"LEGATO_LLAMA_SERVER={explicit!r} is not an executable file")
        return path
    cached = cached_binary_path()
    return cached if _is_executable(cached) else None


def _run(cmd: Sequence[str], *, cwd: Path | None = None) -> None:
    """Run a build step with its output on our stderr; raise on failure."""
    _log("+ " + " ".join(cmd))
    sys.stderr.flush()
    subprocess.run(
        list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=None, check=True
    )


def _pip() -> list[str]:
    """A pip command line: this interpreter's pip module, else ``pip3``/``pip`` on PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise RuntimeError("building llama-server needs pip (to download the llama-cpp-python sdist)")


def _extract(archive: Path, into: Path) -> Path:
    """Unpack the sdist and return its vendored llama.cpp folder."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(into)
    roots = [p for p in into.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise RuntimeError(f"unexpected sdist layout in {archive.name}: {roots}")
    source = roots[0] / "vendor" / "llama.cpp"
    if not (source / "CMakeLists.txt").is_file():
        raise RuntimeError(f"{archive.name} has no vendor/llama.cpp/CMakeLists.txt")
    return source


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so that concurrent builds wait for each other."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(*, jobs: int = 2, force: bool = False) -> Path:
    """Build ``llama-server`` (or reuse the cached one) and return the binary's path.

    Downloads the ``llama-cpp-python`` sdist (pinned to ``LLAMA_CPP_PYTHON_VERSION``) with pip,
    configures its vendored llama.cpp with ``CMAKE_FLAGS`` and builds the server target only, with
    ``jobs`` parallel compile jobs (about 3.5 minutes with 2 on these machines). The binary is
    checked with ``--version`` and moved into place atomically. A cached binary that runs is
    returned without building unless ``force``. Progress goes to stderr.
    """
    target = cached_binary_path()
    if not force and _runs(target):
        _log(f"using cached {target}")
        return target
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"building llama-server needs {tool!r} on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / ".lock"):
        if not force and _runs(target):  # another process built it while we waited
            _log(f"using cached {target}")
            return target
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="legato-llama-build-") as tmp:
            work = Path(tmp)
            spec = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
            _log(f"downloading the {spec} sdist")
            download = [*_pip(), "download", "--no-binary", ":all:", "--no-deps"]
            _run([*download, "-q", spec, "-d", str(work / "dl")])
            archives = sorted((work / "dl").glob("*.tar.gz"))
            if len(archives) != 1:
                raise RuntimeError(f"expected one sdist from pip, got {archives}")
            source = _extract(archives[0], work / "src")
            _log(f"configuring {source}")
            build_dir = work / "build"
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            _run(["cmake", "-S", str(source), "-B", str(build_dir), *generator, *CMAKE_FLAGS])
            _log(f"building {_SERVER_TARGET} with {jobs} jobs (several minutes)")
            _run(["cmake", "--build", str(build_dir), "--target", _SERVER_TARGET, "-j", str(jobs)])
            built = build_dir / "bin" / _SERVER_TARGET
            if not built.is_file():
                raise RuntimeError(f"the build finished without producing {built}")
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                shutil.copy2(built, partial)
                partial.chmod(0o755)
                if not _runs(partial):
                    raise RuntimeError(f"the built {_SERVER_TARGET} does not run --version")
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        minutes = (time.monotonic() - started) / 60
        _log(f"built {target} in {minutes:.1f} min ({target.stat().st_size / 2**20:.1f} MiB)")
    return target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """Whether ``port`` can be bound on ``_HOST`` now (as a server binds it, reusing an address
    a closed connection left in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


class LlamaServerError(RuntimeError):
    """``llama-server`` exited or did not become healthy; the message ends with its log tail."""


class LlamaServer:
    """Run ``llama-server`` on 127.0.0.1 for the duration of a ``with`` block.

    ``__enter__`` starts ``llama-server -m MODEL --host 127.0.0.1 --port PORT -c CTX -np PARALLEL
    -t THREADS *extra_args`` (a free port when ``port`` is 0) and waits until ``GET /health``
    answers 200; ``__exit__`` terminates it (SIGTERM, then SIGKILL after 10 s) and waits for it.
    Its output goes to a temporary log file (``log_path``), removed on exit. ``ctx`` is the total
    context, shared between the ``parallel`` slots.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        port: int = 0,
        ctx: int = 8192,
        parallel: int = 4,
        threads: int = 2,
        extra_args: Sequence[str] = (),
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.model = Path(model)
        self.ctx = ctx
        self.parallel = parallel
        self.threads = threads
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._binary = Path(binary) if binary is not None else None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.log_path: Path | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("LlamaServer is not running")
        return self._port

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``: for llama-server's own routes (``/health``,
        ``/completion``, ``/tokenize``, ``/slots``)."""
        return f"http://{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI-compatible base URL."""
        return f"{self.base}/v1"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running ``llama-server`` process."""
        if self._process is None:
            raise RuntimeError("LlamaServer is not running")
        return self._process

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the server's output."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-chars:]
        return data.decode("utf-8", errors="replace")

    # -- lifecycle --------------------------------------------------------------------------

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

    def start(self) -> None:
        """Start the server and wait until it is healthy (see the class docstring)."""
        if self._process is not None:
            raise RuntimeError("LlamaServer is already running")
        binary = self._binary or find()
        if binary is None:
            raise FileNotFoundError(
                "llama-server is not built: run `python3 -m integrations.llamacpp build` "
                "or set LEGATO_LLAMA_SERVER"
            )
        if not self.model.is_file():
            raise FileNotFoundError(f"model file {self.model} does not exist")
        if self._requested_port and not _port_free(self._requested_port):
            # Another server there would answer our /health checks while ours fails to bind.
            raise LlamaServerError(f"port {self._requested_port} on {_HOST} is already in use")
        # A port picked here may be taken by someone else before the server binds it: retry.
        attempts = 3 if self._requested_port == 0 else 1
        for attempt in range(attempts):
            try:
                self._launch(binary)
                return
            except LlamaServerError as error:
                self.stop()
                if attempt + 1 == attempts or "couldn't bind" not in str(error):
                    raise
            except BaseException:
                self.stop()
                raise

    def _launch(self, binary: Path) -> None:
        import httpx  # lazily: build() and find() must work without the project's dependencies

        self._port = self._requested_port or _free_port()
        fd, name = tempfile.mkstemp(prefix="legato-llama-server-", suffix=".log")
        self.log_path = Path(name)
        self._log_file = os.fdopen(fd, "wb")
        cmd = [
            str(binary),
            "-m",
            str(self.model),
            "--host",
            _HOST,
            "--port",
            str(self._port),
            "-c",
            str(self.ctx),
            "-np",
            str(self.parallel),
            "-t",
            str(self.threads),
            *self.extra_args,
        ]
        self._process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise LlamaServerError(
                        f"llama-server exited with code {code} during startup:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.base}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise LlamaServerError(
                        f"llama-server did not answer /health with 200 within "
                        f"{self.startup_timeout:.0f} s:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the server (SIGTERM, SIGKILL after 10 s), wait for it, remove its log."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None
        self._port = None


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m integrations.llamacpp {build,path}``."""
    parser = argparse.ArgumentParser(
        prog="python3 -m integrations.llamacpp", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build (or reuse) llama-server; print its path")
    build_cmd.add_argument("-j", "--jobs", type=int, default=2, help="parallel compile jobs")
    build_cmd.add_argument("--force", action="store_true", help="rebuild even if cached")
    commands.add_parser("path", help="print the llama-server binary's path (exit 1 if none)")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(jobs=args.jobs, force=args.force))
        return 0
    found = find()
    if found is None:
        _log(f"no llama-server at {cached_binary_path()}; run `build` first")
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
