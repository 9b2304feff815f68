"""Tool-use examples: LLMCompiler plans (the planner's prompt exactly as ``dsl.plan`` renders it),
the joiner's verdicts, and AsyncLM call frames (``dsl.cml``'s system prompt), over a catalog of
stand-in tools that includes the examples' own (``search``, ``math``, ``weather``,
``lookup_invoice``).

Every plan is one of a few shapes: independent look-ups then ``join()``; look-ups combined by
``math`` (the ParallelQA shape of ``legato bench tools``); a chain where one task reads another
(``get_weather($1)`` after ``get_capital("France")``); two different tools at once. The tools
offered in a prompt are the ones the plan needs plus one or two others, in a random order, so a
model has to read the list. Item names (cities, products, accounts...) are split into seen and
held-out ones (one in five, by a hash) for the unseen-values split.
"""

from __future__ import annotations

import inspect
import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import dsl
from dsl import cml
from dsl.plans import DEFAULT_JOINER, DEFAULT_PLANNER, END_OF_PLAN, ToolSignature, describe_tools
from orchestrator.train._synthetic import pseudo_code, pseudo_name, pseudo_word, unique

__all__ = ["CATALOG", "PlanExample", "Tool", "draw_cml", "draw_plan"]


@dataclass(frozen=True, slots=True)
class Tool:
    """A stand-in tool: its signature, what a question calls the thing it looks up, and the
    items it is asked about.

    Attributes:
        name: the tool's name.
        params: ``(name, kind)`` of its parameters (kinds as ``dsl.plans`` names them).
        doc: the first line of its docstring (shown in prompts).
        attr: what it returns, as a question says it ("population", "weather").
        items: the pool its first argument comes from.
        unit: how a result is written, with ``{x}`` for the number (None: text results).
    """

    name: str
    params: tuple[tuple[str, Literal["str", "expr", "float"]], ...]
    doc: str
    attr: str
    items: str
    unit: str | None = None

    def signature(self) -> ToolSignature:
        """Its ``dsl.plans`` signature (all parameters required)."""
        return ToolSignature(self.name, self.params, len(self.params), self.doc)

    def spec(self) -> cml.ToolSpec:
        """Its ``dsl.cml`` spec (parameters typed ``str``/``float``, returns ``str``)."""
        types = {"str": str, "expr": str, "float": float}
        params = [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=types[k])
            for n, k in self.params
        ]
        return cml.ToolSpec(self.name, inspect.Signature(params, return_annotation=str), self.doc)


POOLS: Final[dict[str, tuple[str, ...]]] = {
    "city": (
        "Paris", "Rome", "Oslo", "Lima", "Cairo", "Delhi", "Tokyo", "Quito", "Accra", "Hanoi",
        "Lisbon", "Kyoto", "Montreal", "Berlin", "Madrid", "Vienna", "Dublin", "Seoul",
        "Nairobi", "Sydney", "Boston", "Chicago", "Warsaw", "Prague", "Athens", "Havana",
        "Manila", "Dakar", "Bogota", "Helsinki", "Zurich", "Denver",
    ),
    "country": (
        "France", "Italy", "Norway", "Peru", "Egypt", "India", "Japan", "Ecuador", "Ghana",
        "Vietnam", "Portugal", "Canada", "Germany", "Spain", "Austria", "Ireland", "Korea",
        "Kenya", "Australia", "Poland", "Greece", "Cuba", "Chile", "Finland", "Mexico", "Brazil",
    ),
    "mountain": (
        "Everest", "K2", "Denali", "Elbrus", "Kilimanjaro", "Aconcagua", "Vinson", "Fuji",
        "Olympus", "Etna", "Rainier", "Matterhorn", "Kenya", "Cook", "Logan", "Blanc",
    ),
    "river": (
        "Nile", "Amazon", "Danube", "Rhine", "Volga", "Mekong", "Niger", "Yukon", "Indus",
        "Thames", "Seine", "Ganges", "Congo", "Zambezi", "Elbe", "Loire",
    ),
    "animal": (
        "cheetah", "lion", "horse", "greyhound", "ostrich", "zebra", "gazelle", "elk", "wolf",
        "bison", "kangaroo", "rabbit", "coyote", "hyena", "giraffe", "camel",
    ),
    "product": (
        "Smart Kettle", "Pro Camera", "Eco Lamp", "Mini Speaker", "Classic Guitar",
        "Ultra Helmet", "Deluxe Blender", "Basic Shovel", "Compact Charger", "Vintage Atlas",
        "Smart Robot", "Pro Racket", "Eco Planter", "Mini Drum", "Classic Jacket", "Ultra Bike",
    ),
    "account": (
        "ACME-42", "BOLT-7", "CREST-19", "DELTA-3", "ECHO-88", "FORGE-12", "GLOBE-5",
        "HARBOR-61", "IRIS-27", "JADE-9", "KITE-34", "LUMEN-2", "MAPLE-70", "NOVA-15",
        "ORBIT-44", "PINE-8",
    ),
    "topic": (
        "solar power", "tides", "wind farms", "batteries", "coral reefs", "bees", "volcanoes",
        "glaciers", "quantum computing", "vaccines", "railways", "desalination", "compost",
        "satellites", "earthquakes", "rice farming",
    ),
}  # fmt: skip

CATALOG: Final[tuple[Tool, ...]] = (
    Tool("get_population", (("city", "str"),), "The population of a city.", "population",
         "city", "{x} people"),
    Tool("get_weather", (("city", "str"),), "Today's weather in a city.", "weather", "city"),
    Tool("get_capital", (("country", "str"),), "The capital city of a country.", "capital",
         "country"),
    Tool("get_currency", (("country", "str"),), "The currency of a country.", "currency",
         "country"),
    Tool("get_elevation", (("mountain", "str"),), "The height of a mountain in metres.",
         "elevation", "mountain", "{x} metres"),
    Tool("get_length", (("river", "str"),), "The length of a river in km.", "length", "river",
         "{x} km"),
    Tool("get_speed", (("animal", "str"),), "The top speed of an animal in km/h.",
         "top speed", "animal", "{x} km/h"),
    Tool("get_price", (("product", "str"),), "The price of a product in dollars.", "price",
         "product", "{x} dollars"),
    Tool("get_stock", (("product", "str"),), "Units of a product in stock.", "stock",
         "product", "{x} units"),
    Tool("lookup_invoice", (("account", "str"),),
         "Find the latest invoice of ``account`` (stands in for a billing API).", "invoice",
         "account"),
    Tool("weather", (("city", "str"),),
         "A stand-in weather service (no network): a fixed forecast per city.", "weather",
         "city"),
)  # fmt: skip
"""The look-up tools plans and call frames use (``search`` and ``math`` are added apart)."""

SEARCH: Final = Tool(
    "search", (("query", "str"),), "Search the web; the snippet that answers ``query``.", "", ""
)
MATH: Final = Tool(
    "math",
    (("expression", "expr"),),
    "Evaluate an arithmetic expression (numbers may carry units).",
    "",
    "",
)
RESEARCH: Final = Tool(
    "search",
    (("query", "str"), ("angle", "str")),
    "Look ``angle`` up in the offline notes (stands in for a web search).",
    "",
    "topic",
)
_ANGLES: Final = ("history", "how it works", "open problems")
_WEATHER: Final = ("sunny", "clear", "cloudy", "rain", "snow", "fog", "windy", "showers")


def held_item(item: str) -> bool:
    """Whether ``item`` is held out of training plans (one in five, by a hash)."""
    return zlib.crc32(("item:" + item).encode("utf-8")) % 5 == 0


_REAL: Final = frozenset(x for items in POOLS.values() for x in items)
_MADE_UP: Final[dict[str, Callable[[random.Random], str]]] = {
    "product": lambda r: pseudo_name(r, 2),
    "account": pseudo_code,
    "animal": lambda r: pseudo_word(r, capital=False),
    "topic": lambda r: pseudo_name(r, 2, capital=False),
}


def _items(pool: str, rng: random.Random, k: int, held: bool, synthetic: float = 0.0) -> list[str]:
    """``k`` different items of ``pool``: held-out ones (topped up with seen ones where too
    few) or seen ones, each made up instead with probability ``synthetic``."""
    options = [x for x in POOLS[pool] if held_item(x) == held]
    if held and len(options) < k:  # held-out pools are small: top up with seen items
        options += rng.sample([x for x in POOLS[pool] if not held_item(x)], k - len(options))
    items = rng.sample(options, k)
    if synthetic and not held:
        make = _MADE_UP.get(pool, pseudo_word)
        for i in range(k):
            if rng.random() < synthetic:
                items[i] = unique(make, rng, _REAL | set(items))
    return items


def _value(tool: Tool, item: str, rng: random.Random) -> tuple[str, float | None]:
    """A made-up result for ``tool(item)``: its text and its number, if it has one."""
    if tool.unit is not None:
        ranges = {"population": (200_000, 9_000_000), "elevation": (1_000, 8_849),
                  "length": (300, 6_650), "top speed": (30, 120), "price": (5, 900),
                  "stock": (0, 500)}  # fmt: skip
        lo, hi = ranges[tool.attr]
        x = rng.randint(lo, hi)
        return tool.unit.format(x=f"{x:,}"), float(x)
    if tool.attr == "weather":
        return f"{rng.choice(_WEATHER)}, {rng.randint(-8, 32)}C", None
    if tool.attr == "capital":
        return rng.choice(POOLS["city"]), None
    if tool.attr == "currency":
        return rng.choice(("euro", "yen", "peso", "krone", "rupee", "dollar", "cedi")), None
    if tool.attr == "invoice":
        return f"{rng.randint(20, 900)} dollars, {rng.choice(('paid', 'due', 'overdue'))}", None
    raise AssertionError(tool.attr)


def _names(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PlanExample:
    """A planner prompt and its gold plan, the joiner prompt that follows it and its verdict.

    Attributes:
        question: the question.
        prompt: the planner's prompt, as ``dsl.plan`` renders it.
        plan: the gold plan (what ``plan_grammar`` accepts).
        join_prompt: the joiner's prompt after the plan ran.
        verdict: the joiner's gold answer (``Finish(...)``).
        tools: the tools offered.
        held: whether an item in it is held out.
    """

    question: str
    prompt: str
    plan: str
    join_prompt: str
    verdict: str
    tools: tuple[Tool, ...]
    held: bool


_LOOKUP_FORMS: Final = (
    "What is the {attr} of {names}?",
    "Find the {attr} of {names}.",
    "Look up the {attr} of {names}.",
    "Tell me the {attr} of {names}.",
)
_WEATHER_FORMS: Final = (
    "What is the weather in {names}?",
    "How is the weather today in {names}?",
    "Check the weather in {names}.",
)
_MATH_FORMS: Final = (
    ("What is the total {attr} of {names}?", "sum"),
    ("What is the combined {attr} of {names}?", "sum"),
    ("What is the average {attr} of {names}?", "mean"),
    ("How much greater is the largest {attr} among {names} than the smallest?", "range"),
    ("What is the difference in {attr} between {names}?", "diff"),
)
_CHAIN_FORMS: Final = (
    "What is the {attr} in the capital of {x}?",
    "Find the {attr} of the capital of {x}.",
)


def _render_plan(calls: list[tuple[Tool, list[str]]]) -> str:
    lines = [f"{i}. {t.name}({', '.join(args)})" for i, (t, args) in enumerate(calls, start=1)]
    lines.append(f"{len(calls) + 1}. join()\n{END_OF_PLAN}")
    return "\n".join(lines)


def _offered(needed: list[Tool], rng: random.Random) -> list[Tool]:
    names = {t.name for t in needed}
    others = [t for t in CATALOG if t.name not in names and t.name != "weather"]
    extra = rng.sample(others, rng.choice((1, 1, 2)))
    tools = list(dict.fromkeys([*needed, *extra]))
    rng.shuffle(tools)
    return tools


def draw_plan(rng: random.Random, *, held: bool, synthetic: float = 0.0) -> PlanExample:
    """One plan example; with ``held`` an item in it is a held-out one; with ``synthetic``
    (training), each item is a made-up one with that probability."""
    kind = rng.choices(("lookup", "math", "chain", "two", "research"), (4, 4, 2, 2, 1))[0]
    calls: list[tuple[Tool, list[str]]] = []
    results: list[str] = []
    numbers: list[float] = []
    use_search = False
    if kind in ("lookup", "math"):
        pool_tools = [t for t in CATALOG if kind == "lookup" or t.unit is not None]
        tool = rng.choice(pool_tools)
        k = rng.choice((2, 2, 3, 4)) if kind == "math" else rng.choice((1, 2, 2, 3))
        items = _items(tool.items, rng, k, held, synthetic)
        use_search = kind == "math" and rng.random() < 0.5
        for item in items:
            text, x = _value(tool, item, rng)
            arg = _q(f"{tool.attr} of {item}") if use_search else _q(item)
            calls.append((SEARCH if use_search else tool, [arg]))
            results.append(text)
            if x is not None:
                numbers.append(x)
        if kind == "lookup":
            forms = _WEATHER_FORMS if tool.attr == "weather" else _LOOKUP_FORMS
            question = rng.choice(forms).format(attr=tool.attr, names=_names(items))
            verdict = "; ".join(f"{i}: {r}" for i, r in zip(items, results, strict=True))
        else:
            form, op = rng.choice(_MATH_FORMS)
            if op == "diff":
                items, calls, results, numbers = items[:2], calls[:2], results[:2], numbers[:2]
            question = form.format(attr=tool.attr, names=_names(items))
            refs = [f"${i}" for i in range(1, len(items) + 1)]
            if op == "sum":
                expr, answer = " + ".join(refs), sum(numbers)
            elif op == "mean":
                expr, answer = f"({' + '.join(refs)}) / {len(refs)}", sum(numbers) / len(refs)
            elif op == "range":
                expr = f"max({', '.join(refs)}) - min({', '.join(refs)})"
                answer = max(numbers) - min(numbers)
            else:
                expr, answer = "$1 - $2", numbers[0] - numbers[1]
            calls.append((MATH, [_q(expr)]))
            assert tool.unit is not None
            results.append(tool.unit.format(x=f"{answer:,.1f}"))
            verdict = results[-1]
        needed = [MATH, SEARCH] if use_search else ([tool, MATH] if kind == "math" else [tool])
    elif kind == "chain":
        tool = rng.choice([t for t in CATALOG if t.items == "city" and t.name != "weather"])
        (country,) = _items("country", rng, 1, held, synthetic)
        capital = rng.choice(POOLS["city"])
        text, _ = _value(tool, capital, rng)
        question = rng.choice(_CHAIN_FORMS).format(attr=tool.attr, x=country)
        cap_tool = next(t for t in CATALOG if t.name == "get_capital")
        calls = [(cap_tool, [_q(country)]), (tool, ["$1"])]
        results = [capital, text]
        verdict = f"{capital}: {text}"
        needed = [cap_tool, tool]
    elif kind == "two":
        t1, t2 = rng.sample([t for t in CATALOG if t.name != "weather"], 2)
        (a,) = _items(t1.items, rng, 1, held, synthetic)
        (b,) = _items(t2.items, rng, 1, held, synthetic)
        ra, _ = _value(t1, a, rng)
        rb, _ = _value(t2, b, rng)
        question = f"What is the {t1.attr} of {a} and the {t2.attr} of {b}?"
        calls = [(t1, [_q(a)]), (t2, [_q(b)])]
        results = [ra, rb]
        verdict = f"{a}: {ra}; {b}: {rb}"
        needed = [t1, t2]
    else:
        (topic,) = _items("topic", rng, 1, held, synthetic)
        angles = rng.sample(_ANGLES, rng.choice((2, 3)))
        question = f"Research the {_names(angles)} of {topic}."
        calls = [(RESEARCH, [_q(f"{a} of {topic}"), _q(a)]) for a in angles]
        results = [f"[{a}] notes on {a} of {topic}" for a in angles]
        verdict = " ".join(results)
        needed = [RESEARCH]
    tools = _offered(needed, rng) if kind != "research" else [RESEARCH]
    if kind == "lookup" and calls[0][0].name == "weather":
        tools = [calls[0][0]] + ([MATH] if rng.random() < 0.5 else [])
    prompt = dsl.render(
        DEFAULT_PLANNER,
        {
            "question": question,
            "tools": describe_tools(t.signature() for t in tools),
            "context": "",
        },
    )
    plan = _render_plan(calls)
    shown = "\n".join(
        f"{i}. {t.name}({', '.join(args)}) -> {_q(r)}"
        for i, ((t, args), r) in enumerate(zip(calls, results, strict=True), start=1)
    )
    join_prompt = dsl.render(
        DEFAULT_JOINER, {"question": question, "results": f"{plan.strip()}\n\n{shown}"}
    )
    return PlanExample(
        question, prompt, plan, join_prompt, f"Finish({verdict})", tuple(tools), held
    )


@dataclass(frozen=True, slots=True)
class CmlExample:
    """An AsyncLM turn: the system prompt, the user's question, and the assistant's text in
    pieces: ``(text, trained)``, where untrained pieces are the ``[INTR]`` frames the runtime
    injects."""

    system: str
    user: str
    pieces: tuple[tuple[str, bool], ...]


_CML_OPEN: Final = (
    "Let me look those up.",
    "I will check them at once.",
    "Checking all of them in parallel.",
    "One moment.",
)


def draw_cml(rng: random.Random, *, synthetic: float = 0.0) -> CmlExample:
    """One AsyncLM example: several calls issued without waiting, a trap, the results, an
    answer that uses them (items made up with probability ``synthetic``)."""
    tool = rng.choice([t for t in CATALOG if t.items in ("city", "country", "product")])
    k = rng.choice((1, 2, 2, 3))
    items = _items(tool.items, rng, k, False, synthetic)
    interrupt: Literal["each", "trap"] = rng.choice(("each", "trap"))
    others = rng.sample([t for t in CATALOG if t.name != tool.name], rng.choice((0, 1, 2)))
    tools = [tool, *others]
    rng.shuffle(tools)
    system = cml.system_prompt([t.spec() for t in tools], interrupt=interrupt)
    forms = _WEATHER_FORMS if tool.attr == "weather" else _LOOKUP_FORMS
    user = rng.choice(forms).format(attr=tool.attr, names=_names(items))
    frames = " ".join(
        f"{cml.CALL} {i} {cml.HEAD} {tool.name}({_q(item)}) {cml.END}"
        for i, item in enumerate(items, start=1)
    )
    values = [_value(tool, item, rng)[0] for item in items]
    injected = "".join(cml.format_result(str(i), v) for i, v in enumerate(values, start=1))
    answer = " ".join(f"The {tool.attr} of {i} is {v}." for i, v in zip(items, values, strict=True))
    pieces = (
        (f"{rng.choice(_CML_OPEN)} {frames} {cml.TRAP_FRAME}", True),
        (injected, False),
        (f" {answer}", True),
    )
    return CmlExample(system, user, pieces)
