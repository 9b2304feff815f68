"""The tokenizer training corpus: deterministic, generated text in the shapes Legato's models see.

Models cannot be downloaded, so the model maker trains its byte-level BPE tokenizer on text made
here from word lists and templates: English prose, SQL over a few invented schemas, JSON tool
calls, LLMCompiler plans, AsyncLM call/interrupt frames and ChatML turns. Nothing large is
committed; the same seed always gives the same text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

__all__ = ["CORPUS_CHARS", "corpus_text"]

CORPUS_CHARS = 360_000
"""Approximate length of the corpus in characters (it stops at the first piece past this)."""

_NAMES = (
    "Ada",
    "Boris",
    "Chen",
    "Dalia",
    "Emeka",
    "Farah",
    "Goran",
    "Hana",
    "Ines",
    "Jonas",
    "Kiri",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tomas",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zara",
)
_PLACES = (
    "the harbour",
    "the old mill",
    "the library",
    "the northern valley",
    "the market square",
    "the river delta",
    "the mountain pass",
    "the train station",
    "the research station",
    "the village school",
    "the coastal road",
    "the lighthouse",
    "the city archive",
    "the workshop",
    "the greenhouse",
    "the observatory",
)
_NOUNS = (
    "river",
    "storm",
    "engine",
    "letter",
    "garden",
    "bridge",
    "report",
    "signal",
    "forest",
    "window",
    "machine",
    "question",
    "answer",
    "map",
    "record",
    "lantern",
    "network",
    "harvest",
    "theory",
    "experiment",
    "schedule",
    "budget",
    "compiler",
    "server",
    "program",
    "request",
    "message",
    "database",
    "query",
    "result",
    "planet",
    "ocean",
    "glacier",
    "tide",
    "battery",
    "circuit",
    "recipe",
    "journey",
    "market",
    "festival",
    "painting",
    "melody",
    "language",
    "pattern",
    "window",
    "ticket",
    "council",
    "library",
    "museum",
    "satellite",
    "telescope",
)
_ADJECTIVES = (
    "quiet",
    "bright",
    "ancient",
    "curious",
    "heavy",
    "narrow",
    "distant",
    "careful",
    "sudden",
    "gentle",
    "broken",
    "golden",
    "silent",
    "crowded",
    "hidden",
    "simple",
    "complex",
    "rapid",
    "patient",
    "stubborn",
    "fragile",
    "steady",
    "wild",
    "modern",
    "familiar",
    "strange",
    "reliable",
    "noisy",
    "empty",
    "generous",
    "elegant",
    "precise",
)
_VERBS_PAST = (
    "found",
    "opened",
    "measured",
    "repaired",
    "described",
    "followed",
    "carried",
    "noticed",
    "built",
    "studied",
    "answered",
    "scheduled",
    "compared",
    "wrote",
    "tested",
    "painted",
    "counted",
    "collected",
    "improved",
    "explained",
    "discovered",
    "checked",
    "moved",
    "sent",
)
_VERBS_PRESENT = (
    "finds",
    "opens",
    "measures",
    "repairs",
    "describes",
    "follows",
    "carries",
    "notices",
    "builds",
    "studies",
    "answers",
    "schedules",
    "compares",
    "writes",
    "tests",
    "explains",
)
_ADVERBS = (
    "slowly",
    "quickly",
    "carefully",
    "quietly",
    "suddenly",
    "eventually",
    "patiently",
    "gladly",
    "rarely",
    "often",
    "finally",
    "almost",
    "nearly",
    "again",
    "together",
)
_CONNECTIVES = (
    "Meanwhile",
    "Later",
    "After a while",
    "Before dawn",
    "In the evening",
    "At first",
    "Because of this",
    "However",
    "Even so",
    "Years later",
    "Then",
    "By noon",
    "Still",
)
_TOPICS = (
    "solar power",
    "tidal energy",
    "the history of printing",
    "coral reefs",
    "volcanoes",
    "bread baking",
    "chess openings",
    "migratory birds",
    "bridge design",
    "rainfall in deserts",
    "the printing press",
    "ancient roads",
    "quantum computing",
    "urban gardens",
    "glaciers",
    "the silk road",
    "jazz improvisation",
    "bee colonies",
    "electric trains",
    "sea ice",
    "paper making",
    "wind turbines",
    "the moon landing",
    "medieval castles",
    "honey bees",
)
_QUESTIONS = (
    "What is {t}?",
    "How does {t} work?",
    "Why does {t} matter?",
    "Who first studied {t}?",
    "When did {t} become common?",
    "Summarize the main facts about {t}.",
    "Give three questions about {t}.",
    "Explain {t} to a child.",
    "What are the risks of {t}?",
    "Compare {t} with {u}.",
)

# Small invented schemas for SQL: table -> columns.
_SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    "shop": {
        "customers": ("id", "name", "city", "country", "signup_date"),
        "orders": ("id", "customer_id", "order_date", "status", "total"),
        "products": ("id", "name", "category", "price", "stock"),
        "order_items": ("order_id", "product_id", "quantity", "unit_price"),
    },
    "school": {
        "students": ("id", "name", "year", "major", "gpa"),
        "courses": ("id", "title", "department", "credits", "teacher_id"),
        "enrollments": ("student_id", "course_id", "grade", "semester"),
        "teachers": ("id", "name", "department", "hired"),
    },
    "flights": {
        "airports": ("code", "name", "city", "country"),
        "airlines": ("id", "name", "country"),
        "flights": ("id", "airline_id", "origin", "destination", "departure", "seats", "price"),
    },
    "library": {
        "books": ("id", "title", "author_id", "year", "genre", "pages"),
        "authors": ("id", "name", "born", "country"),
        "members": ("id", "name", "joined", "city"),
        "loans": ("book_id", "member_id", "loan_date", "returned"),
    },
}
_JOINS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "shop": (
        ("customers", "id", "orders", "customer_id"),
        ("orders", "id", "order_items", "order_id"),
        ("products", "id", "order_items", "product_id"),
    ),
    "school": (
        ("students", "id", "enrollments", "student_id"),
        ("courses", "id", "enrollments", "course_id"),
        ("teachers", "id", "courses", "teacher_id"),
    ),
    "flights": (
        ("airlines", "id", "flights", "airline_id"),
        ("airports", "code", "flights", "origin"),
    ),
    "library": (
        ("authors", "id", "books", "author_id"),
        ("books", "id", "loans", "book_id"),
        ("members", "id", "loans", "member_id"),
    ),
}
_NUMERIC = {
    "total",
    "price",
    "stock",
    "quantity",
    "unit_price",
    "year",
    "gpa",
    "credits",
    "seats",
    "pages",
    "born",
}
_TEXT_VALUES = (
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Lima",
    "Osaka",
    "Toronto",
    "Berlin",
    "Quito",
    "Hanoi",
    "shipped",
    "pending",
    "returned",
    "physics",
    "history",
    "biology",
    "poetry",
    "fiction",
    "travel",
    "books",
    "garden",
    "tools",
    "science",
    "Portugal",
    "Kenya",
    "Japan",
    "Peru",
)
_TOOLS = ("search", "math", "weather", "calendar", "lookup", "translate", "sql", "fetch")


def _sentence(rng: random.Random) -> str:
    """One templated English sentence."""
    name, other = rng.sample(_NAMES, 2)
    noun, noun2 = rng.sample(_NOUNS, 2)
    adj, adj2 = rng.sample(_ADJECTIVES, 2)
    place = rng.choice(_PLACES)
    match rng.randrange(9):
        case 0:
            return f"{name} {rng.choice(_VERBS_PAST)} the {adj} {noun} near {place}."
        case 1:
            verb = rng.choice(_VERBS_PRESENT)
            return f"The {adj} {noun} {verb} the {noun2} {rng.choice(_ADVERBS)}."
        case 2:
            return (
                f"{rng.choice(_CONNECTIVES)}, {name} and {other} {rng.choice(_VERBS_PAST)} a "
                f"{adj2} {noun2} at {place}."
            )
        case 3:
            return (
                f'"Where is the {noun}?" asked {name}. "It is {rng.choice(_ADVERBS)} {adj}," '
                f"said {other}."
            )
        case 4:
            return (
                f"In {rng.randint(1850, 2024)}, {rng.randint(2, 900)} people "
                f"{rng.choice(_VERBS_PAST)} the {noun} of {place}."
            )
        case 5:
            return (
                f"It was {adj}, {adj2} and {rng.choice(_ADVERBS)} {rng.choice(_ADJECTIVES)}, "
                f"like a {noun} in {place}."
            )
        case 6:
            return (
                f"{name}'s {noun} weighed {rng.randint(1, 99)}.{rng.randint(0, 9)} kg; "
                f"{other}'s weighed {rng.randint(1, 99)} kg."
            )
        case 7:
            return f"Nobody {rng.choice(_VERBS_PAST)} why the {noun} was so {adj}."
        case _:
            return f"Notes on {rng.choice(_TOPICS)}: the {noun} is {adj}, and the {noun2} isn't."


def _prose(rng: random.Random) -> str:
    """A paragraph of a few sentences."""
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))


def _value(rng: random.Random, column: str) -> str:
    """A literal for a WHERE clause on this column."""
    if column in _NUMERIC:
        return str(rng.randint(1, 500))
    if "date" in column or column in {"departure", "joined", "hired", "semester"}:
        return f"'{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}'"
    return f"'{rng.choice(_TEXT_VALUES)}'"


def _where(rng: random.Random, table: str, columns: tuple[str, ...], alias: str = "") -> str:
    """A WHERE condition of one or two comparisons."""
    prefix = f"{alias}." if alias else ""
    parts = []
    for column in rng.sample(columns, rng.randint(1, min(2, len(columns)))):
        op = rng.choice((">", "<", ">=", "=")) if column in _NUMERIC else "="
        parts.append(f"{prefix}{column} {op} {_value(rng, column)}")
    return f" {rng.choice(('AND', 'OR'))} ".join(parts)


def _sql(rng: random.Random) -> str:
    """One SQL query over an invented schema, sometimes with its question and schema."""
    db = rng.choice(sorted(_SCHEMAS))
    schema = _SCHEMAS[db]
    table = rng.choice(sorted(schema))
    columns = schema[table]
    numeric = [c for c in columns if c in _NUMERIC]
    kind = rng.randrange(6)
    if kind == 0:
        cols = ", ".join(rng.sample(columns, rng.randint(1, len(columns))))
        query = f"SELECT {cols} FROM {table} WHERE {_where(rng, table, columns)};"
    elif kind == 1:
        left, lkey, right, rkey = rng.choice(_JOINS[db])
        lcol = rng.choice(schema[left])
        rcol = rng.choice(schema[right])
        query = (
            f"SELECT a.{lcol}, b.{rcol} FROM {left} AS a JOIN {right} AS b ON a.{lkey} = b.{rkey}"
            f" WHERE {_where(rng, right, schema[right], 'b')};"
        )
    elif kind == 2:
        group = rng.choice(columns)
        agg = rng.choice(
            ("COUNT(*)", *(f"{f}({c})" for f in ("AVG", "SUM", "MAX") for c in numeric))
        )
        query = f"SELECT {group}, {agg} AS n FROM {table} GROUP BY {group}"
        if rng.random() < 0.4:
            query += f" HAVING COUNT(*) > {rng.randint(1, 20)}"
        query += f" ORDER BY n {rng.choice(('DESC', 'ASC'))};"
    elif kind == 3:
        order = rng.choice(columns)
        query = (
            f"SELECT * FROM {table} ORDER BY {order} {rng.choice(('DESC', 'ASC'))} "
            f"LIMIT {rng.randint(1, 50)};"
        )
    elif kind == 4:
        left, lkey, right, rkey = rng.choice(_JOINS[db])
        query = (
            f"SELECT {', '.join(rng.sample(schema[left], 2))} FROM {left} WHERE {lkey} IN "
            f"(SELECT {rkey} FROM {right} WHERE {_where(rng, right, schema[right])});"
        )
    else:
        col = rng.choice(numeric) if numeric else rng.choice(columns)
        query = (
            f"SELECT COUNT(*) FROM {table} WHERE {col} > (SELECT AVG({col}) FROM {table});"
            if numeric
            else f"SELECT DISTINCT {col} FROM {table};"
        )
    if rng.random() < 0.3:
        ddl = "\n".join(
            f"CREATE TABLE {t} ({', '.join(cols)});" for t, cols in sorted(schema.items())
        )
        return f"-- database: {db}\n{ddl}\n{query}"
    if rng.random() < 0.5:
        return f"-- Question: list {rng.choice(columns)} of {table} ({db})\n{query}"
    return query


def _arg(rng: random.Random, tool: str) -> str:
    """A plausible string argument for a tool."""
    match tool:
        case "math":
            return f"{rng.randint(1, 999)} {rng.choice('+-*/')} {rng.randint(1, 99)}"
        case "weather" | "lookup":
            return rng.choice(_TEXT_VALUES[:9])
        case "calendar":
            return f"{rng.randint(2024, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        case "sql":
            return f"SELECT COUNT(*) FROM {rng.choice(('orders', 'books', 'flights'))}"
        case "fetch":
            return f"https://example.org/{rng.choice(_NOUNS)}/{rng.randint(1, 999)}"
        case _:
            return rng.choice(_TOPICS) + rng.choice(("", " facts", " history", " 2024"))


def _tool_call(rng: random.Random) -> str:
    """A JSON tool call, alone or as a list."""
    calls = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        tool = rng.choice(_TOOLS)
        args: dict[str, object] = {"query": _arg(rng, tool)}
        if rng.random() < 0.3:
            args["limit"] = rng.randint(1, 20)
        calls.append({"name": tool, "arguments": args})
    if len(calls) == 1:
        return json.dumps(calls[0], separators=(", ", ": ") if rng.random() < 0.7 else (",", ":"))
    return json.dumps(calls)


def _plan(rng: random.Random) -> str:
    """An LLMCompiler plan: numbered tasks with $n references, then join()<END_OF_PLAN>."""
    lines = []
    if rng.random() < 0.5:
        lines.append(f"Question: {rng.choice(_QUESTIONS).format(t=rng.choice(_TOPICS), u='x')}")
    n = rng.randint(1, 5)
    for i in range(1, n + 1):
        tool = rng.choice(_TOOLS)
        if i > 1 and rng.random() < 0.5:
            refs = rng.sample(range(1, i), min(i - 1, rng.randint(1, 2)))
            arg = f" {rng.choice('+-*')} ".join(f"${r}" for r in refs)
            tool = "math" if rng.random() < 0.6 else tool
        else:
            arg = _arg(rng, tool)
        if rng.random() < 0.2:
            lines.append(f"Thought: I need the {rng.choice(_NOUNS)} first.")
        lines.append(f'{i}. {tool}("{arg}")')
    lines.append("join()<END_OF_PLAN>")
    return "\n".join(lines)


def _frames(rng: random.Random) -> str:
    """AsyncLM text: [CALL] frames, a [TRAP], and injected [INTR] results."""
    out = [_sentence(rng)]
    pending = []
    for call_id in range(1, rng.randint(2, 5)):
        tool = rng.choice(_TOOLS)
        out.append(f'[CALL] {call_id} [HEAD] {tool}("{_arg(rng, tool)}") [END]')
        pending.append(call_id)
        if rng.random() < 0.4:
            out.append(_sentence(rng))
    if rng.random() < 0.7:
        out.append("[TRAP][END]")
    rng.shuffle(pending)
    for call_id in pending:
        result = rng.choice(
            (
                str(rng.randint(0, 99999)),
                f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                rng.choice(_TEXT_VALUES),
                _sentence(rng),
            )
        )
        out.append(f"[INTR] {call_id} [HEAD] {result} [END]")
    out.append(_sentence(rng))
    return " ".join(out) if rng.random() < 0.5 else "\n".join(out)


def _chat(rng: random.Random) -> str:
    """A ChatML conversation of one or two turns."""
    turns = []
    if rng.random() < 0.4:
        system = rng.choice(
            (
                "You are a helpful assistant.",
                "You write SQL for the given schema. Answer with one query.",
                "You plan tool calls. Use search, math and lookup.",
                "Answer briefly.",
            )
        )
        turns.append(f"<|im_start|>system\n{system}<|im_end|>")
    for _ in range(rng.choice((1, 1, 2))):
        topic, other = rng.sample(_TOPICS, 2)
        question = rng.choice(_QUESTIONS).format(t=topic, u=other)
        answer = rng.choice((_prose, _prose, _sql, _tool_call, _plan, _frames))(rng)
        turns.append(f"<|im_start|>user\n{question}<|im_end|>")
        turns.append(f"<|im_start|>assistant\n{answer}<|im_end|>")
    return "\n".join(turns) + "\n"


_PIECES: tuple[tuple[Callable[[random.Random], str], int], ...] = (
    (_prose, 30),
    (_sql, 20),
    (_tool_call, 10),
    (_plan, 10),
    (_frames, 10),
    (_chat, 20),
)


def corpus_text(seed: int = 0) -> str:
    """Return the tokenizer corpus for ``seed``: about 360 KB of mixed text, same seed same text.

    The text mixes English prose, SQL, JSON tool calls, LLMCompiler plans, AsyncLM frames and
    ChatML turns (``<|im_start|>``/``<|im_end|>`` appear literally), pieces separated by blank
    lines.
    """
    rng = random.Random(seed)
    makers = [maker for maker, _ in _PIECES]
    weights = [weight for _, weight in _PIECES]
    pieces: list[str] = []
    size = 0
    while size < CORPUS_CHARS:
        piece = rng.choices(makers, weights)[0](rng)
        pieces.append(piece)
        size += len(piece) + 2
    return "\n\n".join(pieces) + "\n"
