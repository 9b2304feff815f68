"""Continuum's KV-cache time-to-live: how long to keep a program's KV cache pinned while it runs
a tool, from the history of that tool's durations.

Between two turns of an agent, a tool runs. If the engine evicts the program's KV cache, the next
turn pays the prefill again (``reload_cost``) and waits in the queue again (``queue_delay``); a
pin avoids both if the tool returns before the pin expires, and costs the pinned memory for its
duration. Continuum chooses

    TTL = argmax_t  P(duration <= t) * (queue_delay * eta + reload_cost) - t

over the observed durations ``t`` of that tool (``eta`` weighs queueing against memory time).
The expected saving of pinning for ``t`` is the chance the tool is back by then times what a
miss costs; the ``- t`` charges the memory held. No pin (0) when no candidate saves anything.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

__all__ = ["TTLPredictor"]


@dataclass
class TTLPredictor:
    """Per-tool duration history and the TTL rule above. Pure: durations are told to it.

    Args:
        window: durations kept per tool (the most recent).
        eta: weight of queueing delay against pinned time.
        min_samples: durations needed before a tool gets a TTL (before: no pin).
    """

    window: int = 200
    eta: float = 1.0
    min_samples: int = 3
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    _sorted: dict[str, list[float]] = field(default_factory=dict)

    def observe(self, tool: str, duration: float) -> None:
        """Record one run of ``tool`` that took ``duration`` seconds."""
        recent = self._recent.setdefault(tool, deque(maxlen=self.window))
        recent.append(max(0.0, duration))
        self._sorted[tool] = sorted(recent)

    def ttl(self, tool: str, *, queue_delay: float, reload_cost: float) -> float:
        """Seconds to pin the KV cache of a program about to run ``tool`` (0: do not pin)."""
        samples = self._sorted.get(tool)
        if not samples or len(samples) < self.min_samples:
            return 0.0
        miss_cost = queue_delay * self.eta + reload_cost
        best_t, best_value = 0.0, 0.0
        n = len(samples)
        for t in dict.fromkeys(samples):
            value = bisect.bisect_right(samples, t) / n * miss_cost - t
            if value > best_value:
                best_t, best_value = t, value
        return best_t
