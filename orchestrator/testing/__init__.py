"""Test helpers for Legato users: a scripted backend and a fake OpenAI-compatible server."""

from orchestrator.testing._fake_server import FakeOpenAIServer, fake_openai_app
from orchestrator.testing._scripted import Reply, ScriptedBackend, ScriptedCall

__all__ = ["FakeOpenAIServer", "Reply", "ScriptedBackend", "ScriptedCall", "fake_openai_app"]
