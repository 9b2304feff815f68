"""A ParallelQA-style question answered with an LLMCompiler plan: independent lookups run in
parallel while the plan is still being written, then a calculation reads their results.

The planner writes, under a grammar built from the tools below, something like::

    1. population("Oslo")
    2. population("Lisbon")
    3. ratio($1, $2)
    4. join()
    <END_OF_PLAN>

Tasks 1 and 2 start as soon as their lines are complete, side by side; task 3 receives their
values (numbers, not text) when both are done; the joiner then answers ``Finish(...)``.

    legato run examples/parallel_qa.py --backend URL -- "How many times bigger is Oslo than Lisbon?"

On the embedded engine's random-weight ``tiny`` model the plan is well-formed (the grammar sees
to that) but meaningless, and the joiner rarely closes its ``Finish(...)`` within its tokens. The
trained ``demo`` model learnt other tools (``get_population``, ``math``: see
``orchestrator.train``). The tests run this example on a scripted backend.
"""

from __future__ import annotations

import anyio

import dsl

_POPULATION = {"oslo": 709_000, "lisbon": 545_000, "bergen": 291_000, "porto": 232_000}


@dsl.tool
async def population(city: str) -> int:
    """The population of a city (stands in for a slow web lookup)."""
    await anyio.sleep(0.05)
    return _POPULATION.get(city.strip().lower(), 0)


@dsl.tool
def ratio(a: float, b: float) -> float:
    """a divided by b, rounded to two decimals (0 if b is 0)."""
    return round(a / b, 2) if b else 0.0


@dsl.program
async def parallel_qa(question: str) -> str:
    """Answer ``question`` with a plan over ``population`` and ``ratio``."""
    return await dsl.plan(
        question, tools=[population, ratio], max_tasks=4, max_tokens=96, name="plan"
    )
