"""Backends: the ``Backend`` protocol and the adapters that carry LLM calls to engines."""

from orchestrator.backends._base import Backend, Completion, Hints, LLMRequest, Message
from orchestrator.backends._spec import backend_from_spec
from orchestrator.backends.local import LocalBackend
from orchestrator.backends.openai_compat import OpenAICompatible
from orchestrator.backends.replicas import PrefixHits, Replicas

__all__ = [
    "Backend",
    "Completion",
    "Hints",
    "LLMRequest",
    "LocalBackend",
    "Message",
    "OpenAICompatible",
    "PrefixHits",
    "Replicas",
    "backend_from_spec",
]
