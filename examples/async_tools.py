"""Asynchronous tool calls (AsyncLM), BFCL style: several independent calls whose results the
model combines, made from the model's own text while it keeps writing.

With ``async_calls=True`` the model writes ``[CALL] 1 [HEAD] weather("Oslo") [END]`` frames; each
tool starts the moment its arguments are complete and runs while the model goes on (here the
three tools overlap instead of taking 0.2 s each in turn). Results come back into the text as
``[INTR] 1 [HEAD] "..." [END]`` frames, at once (``interrupt="each"``) or when the model writes
``[TRAP][END]`` to wait for them (``interrupt="trap"``). On the embedded engine a grammar built
from the tools' signatures holds every frame to a known tool with the right arguments, so even
a model with random weights only makes valid calls. Run it on one (``local:tiny``): the trained
``demo`` model was taught to write SQL, never a call frame, so it makes no calls at all.

    legato run examples/async_tools.py --backend local:tiny -- "Oslo" "Lisbon" 300
"""

from __future__ import annotations

import anyio

import dsl
from dsl.cml import CMLText

WEATHER = {"oslo": "4 C, rain", "lisbon": "19 C, sun", "paris": "11 C, cloud"}
EUR_TO = {"NOK": 11.6, "USD": 1.08, "GBP": 0.85}


@dsl.tool(timeout=5)
async def weather(city: str) -> str:
    """Today's weather in a city."""
    await anyio.sleep(0.2)  # a remote API
    return WEATHER.get(city.lower(), "unknown")


@dsl.tool(timeout=5)
async def flights(origin: str, destination: str) -> list[str]:
    """Direct flights between two cities today."""
    await anyio.sleep(0.2)
    return [f"{origin[:3].upper()}-{destination[:3].upper()} 07:40", "13:15"]


@dsl.tool(timeout=5)
async def convert(amount: float, currency: str) -> float:
    """An amount in euros, in another currency."""
    await anyio.sleep(0.2)
    if currency.upper() not in EUR_TO:
        raise ValueError(f"unknown currency {currency!r}")  # the model gets an error frame
    return round(amount * EUR_TO[currency.upper()], 2)


@dsl.program
async def trip(origin: str, destination: str, budget: float = 300.0) -> dict[str, object]:
    """Plan a day trip: weather at both ends, flights, the budget in local money."""
    answer = await dsl.gen(
        "I fly from {{origin}} to {{destination}} today with {{budget}} EUR. What is the "
        "weather in both cities, which flights are there, and what is my budget in NOK? "
        "Call the tools you need, then answer in two sentences.",
        origin=origin,
        destination=destination,
        budget=budget,
        tools=[weather, flights, convert],
        async_calls=True,
        interrupt="each",
        max_tokens=160,
        seed=64,
        name="trip",
    )
    assert isinstance(answer, CMLText)  # the text, with .calls and .transcript attached
    return {
        "answer": str(answer),
        "calls": [
            {"tool": c.fn, "args": list(c.args), "result": c.result, "error": c.error}
            for c in answer.calls
        ],
    }
