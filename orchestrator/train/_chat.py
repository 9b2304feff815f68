"""Short chat answers for the prompts of the shipped examples (``examples/research.py``,
``examples/triage.py``, ``examples/structured.py``): a search query from an angle and a topic,
a one-sentence answer from notes, a report from answers, a ticket's label and replies, a
request as JSON. Templated, so a small model can learn them; they make the examples' output
read as answers instead of noise."""

from __future__ import annotations

import json
import random
from typing import Final

from orchestrator.train._tools import POOLS

__all__ = ["draw_chat"]

_ANGLES: Final = ("history", "how it works", "open problems")
_NOTES: Final = {
    "history": "First developed in the 19th century; widely adopted in the 20th.",
    "how it works": "Converts one form of energy into another with measurable efficiency.",
    "open problems": "Cost, storage, and supply chains remain the main obstacles.",
}
_TICKETS: Final = {
    "bug": (
        "The app crashes when I open {thing}.",
        "Clicking {thing} does nothing.",
        "I get an error page when I try to open {thing}.",
        "{thing} shows the wrong data after the update.",
        "The {thing} screen freezes on my phone.",
    ),
    "billing": (
        "I was charged twice this month.",
        "My invoice shows the wrong amount.",
        "Why was my card charged for {thing}?",
        "I want a refund for my last payment.",
        "The bill for {thing} is higher than expected.",
    ),
    "other": (
        "How do I change my email address?",
        "Can I use {thing} offline?",
        "Where can I find the user guide for {thing}?",
        "Do you have an office in {city}?",
        "Thanks for the quick help yesterday.",
    ),
}
_THINGS: Final = (
    "settings", "the dashboard", "the login page", "my profile", "the reports tab", "search",
    "the export button", "notifications", "the calendar", "the upload form",
)  # fmt: skip
_REQUESTS: Final = (
    ("a customer asks for their last {n} orders", "orders", False),
    ("a customer says order {n} never arrived and it is urgent", "delivery", True),
    ("someone wants to cancel {n} orders today, urgently", "cancellation", True),
    ("a shopper asks about the total of {n} orders", "billing", False),
    ("a buyer wants to return {n} items", "returns", False),
)
_SQL: Final = {
    "orders": "SELECT * FROM orders ORDER BY day DESC LIMIT {n}",
    "delivery": "SELECT * FROM orders WHERE id = {n}",
    "cancellation": "SELECT id FROM orders ORDER BY day DESC LIMIT {n}",
    "billing": "SELECT total FROM orders ORDER BY day DESC LIMIT {n}",
    "returns": "SELECT * FROM orders ORDER BY day DESC LIMIT {n}",
}


def _ticket(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(sorted(_TICKETS))
    text = rng.choice(_TICKETS[label]).format(
        thing=rng.choice(_THINGS), city=rng.choice(POOLS["city"])
    )
    return label, text[0].upper() + text[1:]


def draw_chat(rng: random.Random) -> tuple[str, str]:
    """One (prompt, answer) pair in the shape of one of the examples' calls."""
    kind = rng.randrange(9)
    if kind == 0:
        angle, topic = rng.choice(_ANGLES), rng.choice(POOLS["topic"])
        return f"Write one search query about the {angle} of {topic}.", f"{angle} of {topic}"
    if kind == 1:
        angle, topic = rng.choice(_ANGLES), rng.choice(POOLS["topic"])
        query = f"{angle} of {topic}"
        notes = f"[{angle}] {_NOTES[angle]} (query: {query})"
        return f"Using these notes: {notes}\nAnswer in one sentence: {query}", _NOTES[angle]
    if kind == 2:
        topic = rng.choice(POOLS["topic"])
        answers = [_NOTES[a] for a in _ANGLES]
        prompt = f"Write a three-sentence report on {topic} from these answers:\n" + "\n".join(
            answers
        )
        return prompt, " ".join(answers)
    label, ticket = _ticket(rng)
    if kind == 3:
        return f"Classify this support ticket as bug, billing or other:\n{ticket}", label
    if kind == 4:
        return (
            f"List the steps to reproduce: {ticket}",
            "1. Sign in. 2. Do what the ticket describes. 3. Note the error and the time.",
        )
    if kind == 5:
        invoice = rng.choice(("paid twice on 2026-11-02; refund issued", "no invoice found"))
        prompt = (
            f"Answer the customer using the invoice record.\nTicket: {ticket}\nInvoice: {invoice}"
        )
        return prompt, f"Thank you for writing. Our records say: {invoice}."
    if kind == 6:
        return f"Reply helpfully: {ticket}", "Thank you for your message. We will look into it."
    n = rng.randint(1, 9)
    form, topic, urgent = rng.choice(_REQUESTS)
    request = form.format(n=n)
    if kind == 7:
        record = {"topic": topic, "urgent": urgent, "order_count": n}
        return f"Describe this request as JSON: {request}", json.dumps(record)
    return f"Write one SQLite SELECT for: {request}", _SQL[topic].format(n=n)
