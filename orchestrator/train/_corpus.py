"""The demo model's training corpus and its held-out test splits: seeded, deterministic chat
examples in ChatML, the template the embedded engine renders.

An example is the messages before the assistant's turn and the assistant's answer in pieces,
each marked trained or not (the ``[INTR]`` frames of AsyncLM turns are written by the runtime,
not the model). Kinds: ``sql`` (a question about an example database and its gold query),
``plan`` (an LLMCompiler planner prompt and its plan), ``join`` (the joiner's verdict), ``cml``
(an AsyncLM turn) and ``chat`` (short answers for the examples' prompts).

Splits (``SPLITS``): the training set, then test sets none of whose questions is in it:
``seen`` (seen templates, combinations, phrasings and values), ``values`` (at least one literal
value never in training), ``combos`` (a shape and bindings never combined in training),
``phrasings`` (a question frame never used in training), ``plans_seen`` and ``plans_values``.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import dsl
from orchestrator.train._chat import draw_chat
from orchestrator.train._sql import Mode, SqlPair, SqlWorld, draw_pair
from orchestrator.train._tools import PlanExample, draw_cml, draw_plan

__all__ = [
    "SPLITS",
    "SQL_TEMPLATE",
    "Corpus",
    "Example",
    "Kind",
    "make_corpus",
    "render_chatml",
    "sql_prompt",
    "heldout_split",
]

Kind = Literal["sql", "plan", "join", "cml", "chat"]

SQL_TEMPLATE: Final = "SQL for the {{db}} database: {{question}}"
"""The user message of a Text-to-SQL call the demo model was trained on (``dsl.gen`` template:
fill ``db`` with the example database's name and ``question``)."""

SPLITS: Final[tuple[str, ...]] = (
    "seen",
    "values",
    "combos",
    "phrasings",
    "plans_seen",
    "plans_values",
)
"""The held-out test splits, by name."""

_MIX: Final[dict[Kind, float]] = {
    "sql": 0.70,
    "plan": 0.23,
    "join": 0.02,
    "cml": 0.015,
    "chat": 0.035,
}


def sql_prompt(db: str, question: str) -> str:
    """The user message asking for the SQL of ``question`` about the example database ``db``."""
    return dsl.render(SQL_TEMPLATE, {"db": db, "question": question})


@dataclass(frozen=True, slots=True)
class Example:
    """One chat example.

    Attributes:
        kind: see ``Kind``.
        messages: ``(role, content)`` before the assistant's turn.
        answer: the assistant's turn in pieces ``(text, trained)``.
        sql: the pair it was made from (``sql`` examples).
        plan: the plan it was made from (``plan`` and ``join`` examples).
    """

    kind: Kind
    messages: tuple[tuple[str, str], ...]
    answer: tuple[tuple[str, bool], ...]
    sql: SqlPair | None = None
    plan: PlanExample | None = None

    @property
    def target(self) -> str:
        """The assistant's whole answer, as text."""
        return "".join(t for t, _ in self.answer)


def render_chatml(messages: Sequence[tuple[str, str]]) -> str:
    """The prompt the embedded engine renders for ``messages``: ChatML, ending where the
    assistant's answer begins."""
    turns = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    return turns + "<|im_start|>assistant\n"


def _sql_example(pair: SqlPair) -> Example:
    return Example(
        "sql", (("user", sql_prompt(pair.db, pair.question)),), ((pair.sql, True),), sql=pair
    )


def _plan_example(p: PlanExample) -> Example:
    return Example("plan", (("user", p.prompt),), ((p.plan, True),), plan=p)


def _join_example(p: PlanExample) -> Example:
    return Example("join", (("user", p.join_prompt),), ((p.verdict, True),), plan=p)


@dataclass(slots=True)
class Corpus:
    """The training examples and the world (databases) they were drawn over."""

    world: SqlWorld
    seed: int
    train: list[Example] = field(default_factory=list)

    def texts(self) -> Iterator[str]:
        """Every training example as one ChatML text (for the tokenizer)."""
        for ex in self.train:
            yield render_chatml(ex.messages) + ex.target + "<|im_end|>\n"

    def seen_questions(self) -> set[str]:
        """The user messages of every training example (test splits exclude them)."""
        return {ex.messages[-1][1] for ex in self.train}


SYNTHETIC: Final = 0.5
"""The share of values in SQL training examples that are made up (``_synthetic``): they teach
the model to copy values from the question rather than remember the databases' few."""
SYNTHETIC_PLANS: Final = 0.7
"""The same for plans, whose pools are small (16 items a kind): with fewer made-up items the
model completes an unseen ``Mini Drum`` as the ``Mini Speaker`` it saw in training. More did
worse: 0.8, with half the made-up names recombined from real names' parts (``Smart Drum``),
measured 0.40 exact plans on seen items and 0.15 on unseen ones against 0.70 and 0.13 (40 per
split), the model then writing such recombinations where the question had none."""


def make_corpus(world: SqlWorld, *, seed: int = 0, size: int = 150_000) -> Corpus:
    """``size`` training examples drawn from ``seed`` (the same arguments give the same
    corpus), in the mix ``sql`` 70%, ``plan`` 23%, ``join`` 2%, ``cml`` 1.5%, ``chat`` 3.5%,
    with ``SYNTHETIC`` (SQL) or ``SYNTHETIC_PLANS`` (the others) of their values made up."""
    rng = random.Random(f"legato/train/corpus/{seed}")
    kinds: list[Kind] = list(_MIX)
    weights = [_MIX[k] for k in kinds]
    corpus = Corpus(world, seed)
    for _ in range(size):
        kind = rng.choices(kinds, weights)[0]
        if kind == "sql":
            pair = draw_pair(world, rng, "train", synthetic=SYNTHETIC)
            corpus.train.append(_sql_example(pair))
        elif kind == "plan":
            corpus.train.append(
                _plan_example(draw_plan(rng, held=False, synthetic=SYNTHETIC_PLANS))
            )
        elif kind == "join":
            corpus.train.append(
                _join_example(draw_plan(rng, held=False, synthetic=SYNTHETIC_PLANS))
            )
        elif kind == "cml":
            c = draw_cml(rng, synthetic=SYNTHETIC_PLANS)
            corpus.train.append(Example("cml", (("system", c.system), ("user", c.user)), c.pieces))
        else:
            prompt, answer = draw_chat(rng)
            corpus.train.append(Example("chat", (("user", prompt),), ((answer, True),)))
    return corpus


def _answers(con: sqlite3.Connection, sql: str) -> bool:
    """Whether the gold query returns something worth comparing (rows, not only NULL or 0)."""
    rows = con.execute(sql).fetchmany(2)
    return bool(rows) and rows != [(None,)]


def heldout_split(corpus: Corpus, split: str, n: int, *, seed: int = 0) -> list[Example]:
    """``n`` examples of the test split ``split`` (see ``SPLITS``): none of their questions is
    in ``corpus``'s training set, no two are the same, and every SQL one has a gold query
    whose result is not empty.

    Raises:
        ValueError: unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    rng = random.Random(f"legato/train/test/{split}/{seed}")
    seen = corpus.seen_questions()
    out: list[Example] = []
    cons = {db: sqlite3.connect(p) for db, p in corpus.world.paths.items()}
    try:
        for _ in range(n * 200):
            if len(out) >= n:
                break
            if split.startswith("plans_"):
                ex = _plan_example(draw_plan(rng, held=split == "plans_values"))
            else:
                mode: Mode = "train" if split == "seen" else split  # type: ignore[assignment]
                pair = draw_pair(corpus.world, rng, mode)
                if not _answers(cons[pair.db], pair.sql):
                    continue
                ex = _sql_example(pair)
            question = ex.messages[-1][1]
            if question in seen:
                continue
            seen.add(question)
            out.append(ex)
    finally:
        for con in cons.values():
            con.close()
    return out


def world_in(folder: str | Path) -> SqlWorld:
    """The example databases built (once) in ``folder``."""
    return SqlWorld(folder)
