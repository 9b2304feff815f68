"""Bridges from Legato to other ecosystems (OpenAI SDK clients, LangGraph, engine launchers)."""

__all__: list[str] = []
