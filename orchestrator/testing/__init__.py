"""Test helpers for Legato users: a scripted backend, a fake OpenAI-compatible server, and the
embedded engine's server in a child process."""

from orchestrator.testing._child import ServerProcess
from orchestrator.testing._engine_server import EngineServer
from orchestrator.testing._fake_server import FakeOpenAIServer, fake_openai_app
from orchestrator.testing._scripted import Reply, ScriptedBackend, ScriptedCall

__all__ = [
    "EngineServer",
    "FakeOpenAIServer",
    "Reply",
    "ScriptedBackend",
    "ScriptedCall",
    "ServerProcess",
    "fake_openai_app",
]
