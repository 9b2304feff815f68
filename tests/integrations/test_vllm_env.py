"""Finding vLLM's python and refusing a broken ``LEGATO_VLLM_PYTHON`` before installing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from integrations.vllm_cpu import find_python, install


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEGATO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LEGATO_VLLM_PYTHON", raising=False)
    return tmp_path / "cache"


def test_a_python_that_cannot_run_is_not_found(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that is not executable: running it fails with an OSError, which is 'not found',
    not an exception out of ``find_python``."""
    broken = tmp_path / "python"
    broken.write_text("not a program\n")
    monkeypatch.setenv("LEGATO_VLLM_PYTHON", str(broken))
    assert find_python() is None


def test_a_python_without_vllm_is_not_found(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if any(Path(p, "vllm").is_dir() for p in sys.path if p):
        pytest.skip("vLLM is importable here")
    monkeypatch.setenv("LEGATO_VLLM_PYTHON", sys.executable)
    assert find_python() is None


def test_install_refuses_a_broken_explicit_python_before_installing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It would be used instead of whatever ``install`` puts in the cache, so installing
    there could only end in a false failure: refuse at once, naming the variable."""
    missing = tmp_path / "nowhere" / "python"
    monkeypatch.setenv("LEGATO_VLLM_PYTHON", str(missing))
    with pytest.raises(RuntimeError, match=r"LEGATO_VLLM_PYTHON=.*cannot import vllm"):
        install()
    assert not cache.exists()
