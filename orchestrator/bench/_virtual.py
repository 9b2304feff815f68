"""Virtual time for the benchmarks: a coroutine run on trio's mock clock (DESIGN.md section 2),
the same way every time.

Trio wakes the tasks that became runnable at one instant in an order it randomises on purpose
(so that programs do not come to rely on one). Under a mock clock many tasks wake at the same
virtual instant (an engine step ends, every waiting call moves), and which runs first decides
who gets the next batch slot: the same workload and seed then gave figures about 1% apart from
one run to the next. ``run_virtual`` turns on the deterministic scheduling trio keeps for
reproducible tests (the same switch pytest-trio uses under Hypothesis), seeded, for the length of
the run. It is a private part of trio: if a trio release drops it, runs stay correct but vary
again by that much.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio

from orchestrator.errors import ConfigError

__all__ = ["run_virtual"]

T = TypeVar("T")

_SWITCH = "_ALLOW_DETERMINISTIC_SCHEDULING"
"""Trio's flag for a fixed task order (it then shuffles each batch with its seeded ``_r``)."""


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Trio's scheduler in a fixed, seeded order while the block runs (see the module
    docstring); the previous state afterwards."""
    try:
        from trio._core import _run as core
    except ImportError:  # pragma: no cover - a trio without the module: nothing to fix
        yield
        return
    rng = getattr(core, "_r", None)
    if rng is None or not hasattr(core, _SWITCH):
        yield  # pragma: no cover - see the module docstring
        return
    allowed, state = getattr(core, _SWITCH), rng.getstate()
    setattr(core, _SWITCH, True)
    rng.seed(seed)
    try:
        yield
    finally:
        setattr(core, _SWITCH, allowed)
        rng.setstate(state)


def run_virtual(
    fn: Callable[..., Awaitable[T]], *args: Any, what: str = "this benchmark", seed: int = 0
) -> T:
    """``fn(*args)`` in a fresh event loop under trio's mock clock, which jumps whenever every
    task waits, with trio's task order fixed by ``seed``: the same call gives the same figures.

    Raises:
        ConfigError: trio is not installed (``what`` names who needs it).
    """
    try:
        import trio.testing
    except ImportError as exc:  # pragma: no cover - trio is a development dependency
        raise ConfigError(
            f"{what} runs in virtual time on trio's mock clock: pip install trio"
        ) from exc
    with _deterministic(seed):
        result: T = anyio.run(
            fn,
            *args,
            backend="trio",
            backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
        )
    return result
