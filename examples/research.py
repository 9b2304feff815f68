"""Parallel fan-out / fan-in: a research program.

Three angles on a topic are drafted as questions in parallel, each question is searched (a tool)
and answered as soon as its own search returns, and one final call writes the report from all
answers. The graph has three independent branches that join at the end:

    legato graph examples/research.py -- "solar power"
    legato run examples/research.py --backend http://127.0.0.1:8000/v1 -- "solar power"
"""

from __future__ import annotations

import dsl

ANGLES = ("history", "how it works", "open problems")

# A tiny offline "search index" so the example needs no network.
_NOTES = {
    "history": "First developed in the 19th century; widely adopted in the 20th.",
    "how it works": "Converts one form of energy into another with measurable efficiency.",
    "open problems": "Cost, storage, and supply chains remain the main obstacles.",
}


@dsl.tool(expected_duration=0.05)
def search(query: str, angle: str) -> str:
    """Look ``angle`` up in the offline notes (stands in for a web search)."""
    return f"[{angle}] {_NOTES.get(angle, 'no notes')} (query: {query.strip()[:60]})"


@dsl.program
async def research(topic: str) -> str:
    """Research ``topic`` from three angles in parallel and write a short report."""
    answers = []
    for angle in ANGLES:
        question = dsl.gen(
            "Write one search query about the {{angle}} of {{topic}}.",
            angle=angle,
            topic=topic,
            max_tokens=32,
            name="question",
        )
        notes = search(question, angle)
        answers.append(
            dsl.gen(
                "Using these notes: {{notes}}\nAnswer in one sentence: {{question}}",
                notes=notes,
                question=question,
                max_tokens=64,
                name="answer",
            )
        )
    report = dsl.gen(
        "Write a three-sentence report on {{topic}} from these answers:\n{{answers}}",
        topic=topic,
        answers=answers,
        max_tokens=128,
        name="report",
    )
    return await report
