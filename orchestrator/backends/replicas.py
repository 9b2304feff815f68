"""``Replicas``: one backend over several engine replicas, with a balancer choosing for each
call, and prefix-cache hits counted per program."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio

from orchestrator.backends._base import Backend, Completion, LLMRequest
from orchestrator.backends._spec import backend_from_spec
from orchestrator.errors import ConfigError
from orchestrator.scheduler import Balancer

__all__ = ["PrefixHits", "Replicas"]


@dataclass(slots=True)
class PrefixHits:
    """How much of a program's prompts the engines found cached.

    Each call after a program's first could reuse, at most, the prompt of the call before it
    (multi-turn programs resend their context); ``rate`` is the share of that the engines
    actually found, so 1.0 means every turn found the previous turn's prefix.
    """

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    reusable_tokens: int = 0
    _last_prompt: int = 0

    def record(self, prompt_tokens: int, cached_tokens: int) -> None:
        """Count one call."""
        if self.calls:
            self.reusable_tokens += min(self._last_prompt, prompt_tokens)
            self.cached_tokens += cached_tokens
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self._last_prompt = prompt_tokens

    @property
    def rate(self) -> float:
        """Found share of the reusable prefix tokens (1.0 when nothing was reusable)."""
        if not self.reusable_tokens:
            return 1.0
        return min(1.0, self.cached_tokens / self.reusable_tokens)


class Replicas:
    """Several replicas of one model behind one backend.

    Args:
        replicas: backends, URLs, or ``"local[:MODEL]"`` specs (two or more).
        balancer: the rule (``"locality"``, ``"autellix"``, ``"least_loaded"``,
            ``"round_robin"``) or a ``Balancer``.

    Entering starts the replicas that need starting (embedded engines), and leaving stops them
    and closes those made from specs; a backend the caller passed already started is left
    running (it is the caller's to close). ``prefix_hits`` holds,
    per program, the prompt tokens sent and the tokens the engines reported as cached.
    """

    def __init__(
        self, replicas: Sequence[Backend | str], *, balancer: str | Balancer = "locality"
    ) -> None:
        if len(replicas) < 2:
            raise ConfigError("Replicas needs at least two replicas")
        self.backends = [backend_from_spec(r) if isinstance(r, str) else r for r in replicas]
        self._owned = [isinstance(r, str) for r in replicas]
        try:
            self.balancer = balancer if isinstance(balancer, Balancer) else Balancer(balancer)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.name = f"replicas[{', '.join(b.name for b in self.backends)}]"
        self.loads = [0] * len(self.backends)
        self.calls = [0] * len(self.backends)
        self.prefix_hits: dict[str, PrefixHits] = {}
        self.started = False
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for b, owned in zip(self.backends, self._owned, strict=True):
                # Start a replica that needs starting, ours or one nobody has started; close
                # the others we made from a spec. A user's started backend is theirs to close.
                if getattr(b, "started", True) is False:
                    await stack.enter_async_context(b)  # type: ignore[arg-type]
                elif owned:
                    stack.push_async_callback(b.aclose)
            self._stack = stack.pop_all()
        self.started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the replicas it started and close those it made (see the class docstring)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self.started = False

    def _choose(self, request: LLMRequest) -> int:
        i = self.balancer.choose(request.hints.program, len(request.text) // 4, self.loads)
        self.loads[i] += 1
        self.calls[i] += 1
        return i

    async def complete(self, request: LLMRequest) -> Completion:
        """Send ``request`` to the replica the balancer picks."""
        i = self._choose(request)
        try:
            out = await self.backends[i].complete(request)
        finally:
            self.loads[i] -= 1
        hits = self.prefix_hits.setdefault(request.hints.program, PrefixHits())
        hits.record(out.prompt_tokens, out.cached_tokens)
        return out

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """Stream ``request`` from the replica the balancer picks."""
        i = self._choose(request)
        pieces = self.backends[i].stream(request)
        try:
            async for piece in pieces:
                yield piece
        finally:
            self.loads[i] -= 1
            # Close the replica's stream now (its engine request or HTTP response ends with
            # ours), not whenever the garbage collector finds it.
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    def follow(self, policy: object) -> None:
        """Pass ``policy`` to each replica that builds its own engine (``LocalBackend.follow``)."""
        for b in self.backends:
            follow = getattr(b, "follow", None)
            if follow is not None:
                follow(policy)

    async def release_program(self, program: str) -> None:
        """The program has ended: forget its replica and release its pins everywhere (all
        replicas at once, so one slow replica does not hold up the others)."""
        self.balancer.forget(program)
        async with anyio.create_task_group() as tg:
            for b in self.backends:
                release = getattr(b, "release_program", None)
                if release is not None:
                    tg.start_soon(release, program)
