"""Retries with exponential backoff, as a small sans-I/O state machine the runtime steps."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["RetryPolicy", "Retrying"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How failed attempts are retried.

    Attributes:
        retries: extra attempts after the first (a node's own ``retries=`` overrides it).
        backoff: seconds before the first retry.
        multiplier: each further wait is this many times longer.
        max_backoff: cap on one wait, a server's ``Retry-After`` included (before jitter).
        jitter: each wait is scaled by a random factor in ``[1 - jitter, 1 + jitter]``.

    Raises:
        ValueError: a field is out of range or not finite; the message names it.
    """

    retries: int = 2
    backoff: float = 0.2
    multiplier: float = 2.0
    max_backoff: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        checks = (
            ("retries", isinstance(self.retries, int) and self.retries >= 0, "an integer >= 0"),
            ("backoff", self.backoff >= 0, "finite and >= 0"),
            ("multiplier", self.multiplier >= 1, "finite and >= 1"),
            ("max_backoff", self.max_backoff >= 0, "finite and >= 0"),
            ("jitter", 0 <= self.jitter < 1, "in [0, 1)"),
        )
        for name, ok, want in checks:
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise ValueError(f"RetryPolicy.{name} must be {want}, got {value!r}")


class Retrying:
    """The retry state of one node: tell it each failure, it says how long to wait, or to stop.

    >>> r = Retrying(RetryPolicy(retries=1, jitter=0))
    >>> r.failed(retryable=True)
    0.2
    >>> r.failed(retryable=True) is None
    True
    """

    def __init__(
        self, policy: RetryPolicy, retries: int | None = None, rng: random.Random | None = None
    ) -> None:
        self.policy = policy
        self.retries = policy.retries if retries is None else retries
        self.attempts = 1
        self._rng = rng

    def failed(self, *, retryable: bool, retry_after: float | None = None) -> float | None:
        """Record a failed attempt; the seconds to wait before the next, or None to give up.

        ``retry_after`` (the server's ``Retry-After``, in seconds) lengthens the wait, up to the
        policy's ``max_backoff``; a negative or non-finite one is ignored.
        """
        if not retryable or self.attempts > self.retries:
            return None
        p = self.policy
        delay = min(p.max_backoff, p.backoff * p.multiplier ** (self.attempts - 1))
        if p.jitter:
            if self._rng is None:  # made on the first failure: most calls never need it
                self._rng = random.Random()
            delay *= 1 + self._rng.uniform(-p.jitter, p.jitter)
        if retry_after is not None and 0 <= retry_after < math.inf:  # not NaN either
            delay = max(delay, min(retry_after, p.max_backoff))
        self.attempts += 1
        return delay
