"""llama-server launcher: the cache layout, the binary, and a real server on a tiny GGUF."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from integrations import llamacpp
from integrations.llamacpp import LlamaServer, LlamaServerError

pytestmark = pytest.mark.llamacpp

REPO = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- no binary needed -----------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LEGATO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert llamacpp.cache_dir() == tmp_path / "xdg" / "legato"
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path / "mine"))
    assert llamacpp.cached_binary_path() == (
        tmp_path / "mine" / "llama-server" / llamacpp.LLAMA_CPP_PYTHON_VERSION / "llama-server"
    )


def test_find_honours_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("LEGATO_LLAMA_SERVER", raising=False)
    assert llamacpp.find() is None
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("LEGATO_LLAMA_SERVER", str(fake))
    with pytest.raises(FileNotFoundError, match="not an executable"):
        llamacpp.find()
    fake.chmod(0o755)
    assert llamacpp.find() == fake


def test_import_needs_only_the_standard_library() -> None:
    """CI runs `python3 -m integrations.llamacpp build` before the project is installed."""
    code = (
        "import sys, integrations.llamacpp\n"
        "third = {'httpx', 'openai', 'numpy', 'anyio', 'gguf'} & set(sys.modules)\n"
        "assert not third, third\n"
    )
    subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, check=True)


def test_cli_path_without_binary(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEGATO_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "integrations.llamacpp", "path"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "build" in done.stderr


def test_server_needs_a_model(tmp_path: Path) -> None:
    server = LlamaServer(tmp_path / "missing.gguf", binary=tmp_path / "llama-server")
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"), server:
        pass


def test_server_refuses_a_port_in_use(tmp_path: Path) -> None:
    """Another server on the port would answer /health while ours fails to bind: refused
    before anything starts."""
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LlamaServer(model, port=port, binary=tmp_path / "llama-server")
        with pytest.raises(LlamaServerError, match=f"port {port} .* in use"), server:
            pass
    assert server.log_path is None


# -- the real binary ------------------------------------------------------------------------


def test_binary_reports_its_version(llama_server_binary: Path) -> None:
    done = subprocess.run(
        [str(llama_server_binary), "--version"], capture_output=True, text=True, check=True
    )
    assert "version" in (done.stdout + done.stderr)


@pytest.mark.http
def test_openai_completion_then_clean_exit(llama_server_binary: Path, tiny_gguf: Path) -> None:
    with LlamaServer(tiny_gguf, ctx=1024, parallel=2, binary=llama_server_binary) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        assert server.base == f"http://127.0.0.1:{server.port}"
        process, port = server.process, server.port
        with (
            httpx.Client() as http,
            openai.OpenAI(base_url=server.url, api_key="x", http_client=http) as client,
        ):
            done = client.completions.create(
                model="tiny",
                prompt="the cat sat on the",
                max_tokens=8,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
        assert done.usage is not None
        assert done.usage.prompt_tokens > 0
        assert done.usage.completion_tokens == 8
        log_path = server.log_path
        assert log_path is not None
        assert log_path.exists()
    assert process.poll() is not None
    assert not _port_open(port)
    assert not log_path.exists()


@pytest.mark.http
def test_native_completion_is_greedy_over_token_ids(
    llama_server_binary: Path, tiny_gguf: Path
) -> None:
    """The route used to compare greedy tokens with other engines: ids in, ids out."""
    server = LlamaServer(tiny_gguf, ctx=1024, parallel=2, binary=llama_server_binary)
    with server, httpx.Client(base_url=server.base, timeout=30) as http:
        tokenized = http.post("/tokenize", json={"content": "the cat sat on the"})
        prompt = tokenized.raise_for_status().json()["tokens"]
        body = {
            "prompt": prompt,
            "n_predict": 6,
            "temperature": 0,
            "ignore_eos": True,
            "return_tokens": True,
            "cache_prompt": False,
            "n_probs": 2,
        }
        first = http.post("/completion", json=body).raise_for_status().json()
        second = http.post("/completion", json=body).raise_for_status().json()
    tokens = first["tokens"]
    assert len(tokens) == 6
    assert all(isinstance(t, int) for t in tokens)
    assert second["tokens"] == tokens
    assert first["tokens_evaluated"] == len(prompt)
    assert first["tokens_predicted"] == 6
    # Probabilities are reported only for tokens after which the text is whole UTF-8; random
    # weights can emit a lone lead byte, so compare tokens, not this list, across engines.
    probs = first.get("completion_probabilities", [])
    assert len(probs) <= len(tokens)
    for p in probs:
        assert len(p["top_logprobs"]) == 2
        assert p["top_logprobs"][0]["id"] == p["id"]  # greedy: the most likely token


@pytest.mark.http
def test_startup_failure_reports_the_log(llama_server_binary: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file" * 64)
    server = LlamaServer(bogus, binary=llama_server_binary)
    with pytest.raises(LlamaServerError, match="exited with code"), server:
        pass
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.process
