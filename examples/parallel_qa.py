"""A ParallelQA-style question answered with an LLMCompiler plan: independent lookups run in
parallel while the plan is still being written, then a calculation reads their results.

On the embedded engine's default ``demo`` model (trained on plans over tools like these), "What
is the difference in population between Oslo and Lisbon?" gets the plan::

    1. get_population("Oslo")
    2. get_population("Lisbon")
    3. math("$1 - $2")
    4. join()
    <END_OF_PLAN>

Tasks 1 and 2 start as soon as their lines are complete, side by side; task 3 receives their
values when both are done (``math`` gets ``"709,000 people - 545,000 people"``); the joiner then
answers ``Finish(...)``. The plan is written under a grammar of the tools and the question's own
words (``grounded=True``), with the question's names in order and its lists on alike lines
(``names="in_order"``), which a model this small needs. Its joiner copies long numbers poorly:
the plan and the tools' results are right, the final sentence may garble the figure.

    legato run examples/parallel_qa.py -- "What is the average population of Oslo and Porto?"
"""

from __future__ import annotations

import ast
import operator
import re

import anyio

import dsl

_POPULATION = {"oslo": 709_000, "lisbon": 545_000, "bergen": 291_000, "porto": 232_000}


@dsl.tool
async def get_population(city: str) -> str:
    """The population of a city."""
    await anyio.sleep(0.05)  # stands in for a slow web lookup
    return f"{_POPULATION.get(city.strip().lower(), 0):,} people"


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.USub: operator.neg}  # fmt: skip
_FUNCS = {"max": max, "min": min, "abs": abs, "round": round, "sum": lambda *xs: sum(xs)}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        return _FUNCS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"not arithmetic: {ast.unparse(node)}")


# A number (thousands may be grouped by commas: "709,000") and the unit after it, if any. A
# unit starts with a letter ("km/h"), so "10 / 2" stays a division, and a comma that groups no
# three digits separates arguments ("max(1,2)").
_WITH_UNIT = re.compile(r"((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)(?:\s+([A-Za-z][A-Za-z/]*))?")


@dsl.tool
def math(expression: dsl.Expression) -> str:
    """Evaluate an arithmetic expression (numbers may carry units)."""
    units = {m.group(2) for m in _WITH_UNIT.finditer(expression) if m.group(2)}
    bare = _WITH_UNIT.sub(lambda m: m.group(1).replace(",", ""), expression)
    value = _evaluate(ast.parse(bare, mode="eval").body)
    unit = f" {units.pop()}" if len(units) == 1 else ""  # one unit throughout: the result's
    return f"{value:,.1f}{unit}"


@dsl.program
async def parallel_qa(question: str) -> str:
    """Answer ``question`` with a plan over ``get_population`` and ``math``."""
    return await dsl.plan(
        question,
        tools=[get_population, math],
        grounded=True,
        names="in_order",
        temperature=0.0,
        name="plan",
    )
