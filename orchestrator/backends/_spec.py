"""Backends named by a string: ``"local[:MODEL]"`` or an ``http(s)://`` URL."""

from __future__ import annotations

from orchestrator.backends._base import Backend
from orchestrator.backends.local import LocalBackend
from orchestrator.backends.openai_compat import OpenAICompatible
from orchestrator.engine import DEFAULT_MODEL
from orchestrator.errors import ConfigError

__all__ = ["backend_from_spec"]


def backend_from_spec(spec: str) -> Backend:
    """``"local"`` (the shipped ``demo`` model) or ``"local:MODEL|PATH.gguf"`` for the embedded
    engine in-process, or the ``http(s)://`` URL of an OpenAI-compatible server;
    ``ConfigError`` for anything else."""
    if spec.startswith(("http://", "https://")):
        return OpenAICompatible(spec)
    if spec == "local" or spec.startswith("local:"):
        return LocalBackend(spec.partition(":")[2] or DEFAULT_MODEL)
    raise ConfigError(
        f"backend {spec!r} is neither 'local[:MODEL]' nor a URL; pass 'local', "
        "'http://host:port/v1' or a Backend object"
    )
