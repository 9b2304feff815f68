"""``LocalBackend`` hands the scheduler's hints to the embedded engine's request."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.backends import Hints, LLMRequest, LocalBackend
from orchestrator.engine import EngineRequest, virtual_engine


@pytest.mark.anyio
async def test_the_engine_request_carries_every_hint() -> None:
    engine = virtual_engine()
    seen: list[EngineRequest] = []
    complete = engine.complete

    async def spy(req: EngineRequest, **kw: Any) -> Any:
        seen.append(req)
        return await complete(req, **kw)

    engine.complete = spy  # type: ignore[method-assign]
    hints = Hints(
        program="p",
        thread="t",
        priority=3,
        kv_ttl=1.5,
        promote_after=2.0,
        promote_to=0,
        demote=((0.5, 4), (1.5, 5)),
    )
    async with LocalBackend(engine=engine) as backend:
        await backend.complete(LLMRequest(prompt="a b c", max_tokens=2, hints=hints))
    (req,) = seen
    assert (req.priority, req.program, req.thread, req.kv_ttl) == (3, "p", "t", 1.5)
    assert (req.promote_after, req.promote_to) == (2.0, 0)
    assert req.demote == ((0.5, 4), (1.5, 5))
