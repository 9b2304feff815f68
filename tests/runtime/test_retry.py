"""``RetryPolicy``'s checks and ``Retrying``'s waits, a server's ``Retry-After`` included."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from orchestrator import RetryPolicy
from orchestrator.runtime._retry import Retrying


def test_defaults_are_valid() -> None:
    p = RetryPolicy()
    assert p.retries == 2 and p.max_backoff == 10.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retries", -1, "RetryPolicy.retries must be an integer >= 0, got -1"),
        ("retries", 1.5, "RetryPolicy.retries must be an integer >= 0, got 1.5"),
        ("backoff", -0.1, "RetryPolicy.backoff must be finite and >= 0, got -0.1"),
        ("backoff", math.inf, "RetryPolicy.backoff must be finite and >= 0, got inf"),
        ("backoff", math.nan, "RetryPolicy.backoff must be finite and >= 0, got nan"),
        ("multiplier", 0.5, "RetryPolicy.multiplier must be finite and >= 1, got 0.5"),
        ("multiplier", math.inf, "RetryPolicy.multiplier must be finite and >= 1, got inf"),
        ("max_backoff", -1, "RetryPolicy.max_backoff must be finite and >= 0, got -1"),
        ("max_backoff", math.inf, "RetryPolicy.max_backoff must be finite and >= 0, got inf"),
        ("max_backoff", math.nan, "RetryPolicy.max_backoff must be finite and >= 0, got nan"),
        ("jitter", -0.1, "RetryPolicy.jitter must be in [0, 1), got -0.1"),
        ("jitter", 1.0, "RetryPolicy.jitter must be in [0, 1), got 1.0"),
        ("jitter", math.nan, "RetryPolicy.jitter must be in [0, 1), got nan"),
    ],
)
def test_each_bad_field_is_named_with_its_value(field: str, value: float, message: str) -> None:
    kw: dict[str, Any] = {field: value}
    with pytest.raises(ValueError) as info:
        RetryPolicy(**kw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kw",
    [
        {"retries": 0},
        {"backoff": 0},
        {"multiplier": 1},
        {"max_backoff": 0},
        {"jitter": 0},
        {"jitter": 0.99},
    ],
)
def test_range_edges_are_accepted(kw: dict[str, Any]) -> None:
    RetryPolicy(**kw)


def test_waits_grow_up_to_max_backoff_then_stop() -> None:
    r = Retrying(RetryPolicy(retries=4, backoff=1, multiplier=3, max_backoff=5, jitter=0))
    waits = [r.failed(retryable=True) for _ in range(5)]
    assert waits == [1, 3, 5, 5, None]


def test_not_retryable_stops_at_once() -> None:
    assert Retrying(RetryPolicy()).failed(retryable=False) is None


def test_retry_after_lengthens_the_wait() -> None:
    r = Retrying(RetryPolicy(backoff=0.2, max_backoff=10, jitter=0))
    assert r.failed(retryable=True, retry_after=3.0) == 3.0
    assert r.failed(retryable=True, retry_after=0.0) == 0.4  # shorter: the backoff stands


def test_retry_after_is_capped_at_max_backoff() -> None:
    r = Retrying(RetryPolicy(retries=3, backoff=0.2, max_backoff=10, jitter=0))
    assert r.failed(retryable=True, retry_after=1e12) == 10  # a far-future HTTP date
    assert r.failed(retryable=True, retry_after=10.5) == 10


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0, -math.inf])
def test_retry_after_that_is_not_a_finite_wait_is_ignored(bad: float) -> None:
    r = Retrying(RetryPolicy(backoff=0.2, jitter=0))
    assert r.failed(retryable=True, retry_after=bad) == 0.2


def test_jitter_stays_in_its_band() -> None:
    p = RetryPolicy(retries=50, backoff=1, multiplier=1, jitter=0.5)
    r = Retrying(p, rng=random.Random(7))
    waits = [r.failed(retryable=True) for _ in range(50)]
    assert all(w is not None and 0.5 <= w <= 1.5 for w in waits)


def test_node_retries_override_the_policy() -> None:
    r = Retrying(RetryPolicy(retries=5, jitter=0), retries=0)
    assert r.failed(retryable=True) is None
