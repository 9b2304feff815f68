"""The ``Backend`` protocol and the request and completion values that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from dsl import Grammar

__all__ = ["Backend", "Completion", "Hints", "LLMRequest", "Message"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hints:
    """What the scheduler tells the engine about a call.

    Attributes:
        program: the program instance's id (``X-Legato-Program``).
        thread: the call's thread within the program (``X-Legato-Thread``).
        priority: Legato's priority, lower = sooner (``X-Legato-Priority``); each dialect
            converts it to the engine's own field and direction.
        kv_ttl: seconds the engine should keep this program's KV cache after the call
            (``X-Legato-KV-TTL``), or None.
        promote_after: anti-starvation at the engine: if the call has waited there this
            many seconds (``X-Legato-Promote-After``), its priority becomes ``promote_to``
            (``X-Legato-Promote-To``). None: its priority never changes. The embedded engine
            honours it; other engines' priority fields carry ``priority`` alone.
        promote_to: the priority after ``promote_after``.
        demote: demotion by quantum at the engine: ``(service, priority)`` steps, service
            ascending: once the call has spent ``service`` seconds in the engine's batch, its
            priority becomes ``priority`` (``X-Legato-Demote: 0.5:1,1.5:2``), so a call whose
            program passes its queue's quantum while it runs yields to better ones, as
            Autellix's engine-side scheduler demotes it. A promotion still wins. The embedded
            engine honours it; other engines' priority fields carry ``priority`` alone.
    """

    program: str
    thread: str
    priority: int = 0
    kv_ttl: float | None = None
    promote_after: float | None = None
    promote_to: int = 0
    demote: tuple[tuple[float, int], ...] = ()

    def headers(self) -> dict[str, str]:
        """Legato's own headers, sent on every request whatever the dialect."""
        h = {
            "X-Legato-Program": self.program,
            "X-Legato-Thread": self.thread,
            "X-Legato-Priority": str(self.priority),
        }
        if self.kv_ttl is not None:
            h["X-Legato-KV-TTL"] = f"{self.kv_ttl:g}"
        if self.promote_after is not None:
            h["X-Legato-Promote-After"] = f"{self.promote_after:g}"
            h["X-Legato-Promote-To"] = str(self.promote_to)
        if self.demote:
            # milliseconds, written out: ``g`` would round 123456.7 and 123456.9 alike
            h["X-Legato-Demote"] = ",".join(f"{after:.3f}:{to}" for after, to in self.demote)
        return h


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMRequest:
    """One LLM call: chat ``messages`` or a raw ``prompt`` (exactly one), sampling settings,
    an optional grammar the output must match, and the scheduler's hints.

    A backend that cannot enforce ``grammar`` raises ``GrammarUnsupported`` (before sending
    where it knows); the runtime then sends the request again with ``grammar=None``."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: Grammar | None = None
    distinct_lines: bool = False
    """No two lines of the output the same (list markers aside): the embedded engine rewinds
    a repeated line and decodes it again (``EngineRequest.distinct_lines``); other engines
    have no such field and ignore it."""
    require: tuple[str, ...] = ()
    """Strings the output must each contain (a query's values named in the question): on the
    embedded engine, an output about to end without one is rewound and decoded again
    (``EngineRequest.require``); other engines have no such field and ignore it."""
    require_order: bool = False
    """The ``require`` strings in their order (``EngineRequest.require_order``): a string
    written before an earlier one is rewound at once."""
    require_anywhere: tuple[str, ...] = ()
    """More strings the output must each contain, in any order even with ``require_order``
    (a plan's words that name a tool; ``EngineRequest.require_anywhere``); other engines
    ignore it."""
    alike: tuple[tuple[str, ...], ...] = ()
    """Groups of strings (a question's lists of names) written on consecutive lines that read
    alike, one string each (``EngineRequest.alike``); other engines ignore it."""
    hints: Hints = field(default_factory=lambda: Hints(program="-", thread="-"))
    node: str = "-"

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("LLMRequest needs exactly one of messages= or prompt=")

    @property
    def text(self) -> str:
        """The request's text: the prompt, or the messages' contents joined by newlines."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m.content for m in self.messages or ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """An engine's answer to one request."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached_tokens: int = 0
    """Prompt tokens the engine found in its prefix cache, where it says."""
    service_time: float | None = None
    """Seconds the request ran in the engine's batch (not counting its queue), where the engine
    says; program-level policies count it as the call's service."""


@runtime_checkable
class Backend(Protocol):
    """Something that carries LLM requests to an engine.

    Implementations raise ``orchestrator.errors.BackendError`` subclasses: ``BackendRejected``
    for requests the engine refuses, retryable ``BackendError``/``BackendTimeout`` for failures
    that may pass. Retrying is the runtime's job, not the backend's.
    """

    name: str

    async def complete(self, request: LLMRequest) -> Completion:
        """Send ``request`` and return the whole completion."""
        ...

    def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """Send ``request`` and yield the completion's text as it arrives."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...
