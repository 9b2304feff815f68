"""``ScriptedBackend``: a backend that answers from a script, for testing programs offline."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import anyio

from orchestrator.backends import Completion, LLMRequest
from orchestrator.errors import BackendRejected, GrammarUnsupported

__all__ = ["Reply", "ScriptedBackend", "ScriptedCall"]

Reply: TypeAlias = str | Completion | BaseException
"""A scripted answer: text, a full ``Completion``, or an exception to raise."""
Responder: TypeAlias = Callable[[LLMRequest], Reply | Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One request the backend received, with when it started and ended (runtime clock)."""

    request: LLMRequest
    start: float
    end: float
    reply: str | None


class ScriptedBackend:
    """Answers LLM requests from a script instead of an engine.

    ``script`` is either a mapping from a substring of the prompt to the reply (the first key
    found in the request's text wins; a list of replies is used in turn, its last item
    repeating), or a function of the ``LLMRequest`` returning the reply (sync or async). A
    reply is a string, a ``Completion``, or an exception instance to raise, e.g.
    ``BackendError("down", backend="x", retryable=True)`` to test retries.

    ::

        backend = ScriptedBackend({"capital of France": "Paris"}, default="I don't know")
        assert orchestrator.run(my_program, backend=backend) == ...
        assert backend.calls[0].request.hints.program.startswith("my_program")

    Args:
        script: the mapping or the function.
        default: the reply when no key matches; without one, an unmatched request raises
            ``BackendRejected`` naming the prompt.
        latency: seconds each call takes (so concurrency shows in timings).
        name: the backend's name in errors.
        grammars: whether it plays an engine that takes grammars (the default: constrained
            requests get their scripted reply, which the runtime validates) or one that has no
            field for them (a constrained request raises ``GrammarUnsupported``, so the runtime
            asks again without the grammar and validates).
    """

    def __init__(
        self,
        script: Mapping[str, Reply | Sequence[Reply]] | Responder | None = None,
        *,
        default: Reply | None = None,
        latency: float = 0.0,
        name: str = "scripted",
        grammars: bool = True,
    ) -> None:
        self.name = name
        self.grammars = grammars
        self.latency = latency
        self.default = default
        self.calls: list[ScriptedCall] = []
        self._fn: Responder | None = None
        self._table: dict[str, list[Reply]] = {}
        self._used: dict[str, int] = {}
        if callable(script):
            self._fn = script
        elif script is not None:
            for key, value in script.items():
                items = (
                    [value] if isinstance(value, str | Completion | BaseException) else list(value)
                )
                if not items:
                    raise ValueError(f"scripted replies for {key!r} are empty")
                self._table[key] = items

    async def _reply(self, request: LLMRequest) -> Reply:
        if self._fn is not None:
            out = self._fn(request)
            return await out if inspect.isawaitable(out) else out
        text = request.text
        for key, items in self._table.items():
            if key in text:
                i = self._used.get(key, 0)
                self._used[key] = i + 1
                return items[min(i, len(items) - 1)]
        if self.default is not None:
            return self.default
        raise BackendRejected(
            f"{self.name}: no scripted reply matches the prompt {text[:80]!r}",
            backend=self.name,
            status=404,
        )

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer from the script after ``latency`` seconds."""
        start = anyio.current_time()
        text: str | None = None
        try:
            if self.latency:
                await anyio.sleep(self.latency)
            if request.grammar is not None and not self.grammars:
                raise GrammarUnsupported(
                    f"{self.name}: this engine has no field for {request.grammar.describe()}",
                    backend=self.name,
                )
            reply = await self._reply(request)
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(reply, str):
                text = reply
                return Completion(
                    text=reply,
                    prompt_tokens=len(request.text.split()),
                    completion_tokens=len(reply.split()),
                    finish_reason="stop",
                )
            text = reply.text
            return reply
        finally:
            self.calls.append(ScriptedCall(request, start, anyio.current_time(), text))

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """The scripted reply, a word at a time."""
        completion = await self.complete(request)
        words = completion.text.split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "

    async def aclose(self) -> None:
        """Nothing to release."""
