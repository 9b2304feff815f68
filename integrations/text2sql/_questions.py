"""Question / gold-SQL pairs: the shipped set over the example databases (package data
``data/questions.json``) and the file format ``legato sql eval --questions`` reads."""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Difficulty", "Question", "load_questions", "questions", "write_questions"]

Difficulty = Literal["easy", "medium", "hard"]
_DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    """A natural-language question and the gold SQL that answers it.

    Attributes:
        id: a stable name, ``<db>-NN`` for the shipped set.
        db: the example database it is asked of (``school``, ``shop``, ``flights``), or ``""``
            when unknown (a user's file).
        question: the question in English.
        sql: the gold query, in the ``sqlite_select`` grammar's layout (uppercase keywords,
            single spaces, ``AS`` aliases ``T1``, ``T2``...).
        difficulty: ``easy`` (one table), ``medium`` (a join, a group, an order/limit) or
            ``hard`` (several joins, HAVING, nested queries, compound selects).
    """

    id: str
    db: str
    question: str
    sql: str
    difficulty: Difficulty = "medium"


def _parse(item: Any, where: str) -> Question:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object with 'question' and 'sql', got {item!r}")
    missing = [k for k in ("question", "sql") if not isinstance(item.get(k), str)]
    if missing:
        raise ValueError(f"{where}: missing or non-string {', '.join(missing)}")
    difficulty = item.get("difficulty", "medium")
    if difficulty not in _DIFFICULTIES:
        raise ValueError(f"{where}: difficulty must be one of {_DIFFICULTIES}, got {difficulty!r}")
    return Question(
        id=str(item.get("id", where)),
        db=str(item.get("db", "")),
        question=item["question"],
        sql=item["sql"],
        difficulty=difficulty,
    )


def load_questions(path: str | os.PathLike[str]) -> tuple[Question, ...]:
    """Read questions from ``path``: a JSON list of objects, or JSON Lines (one object a
    line), each with ``question`` and ``sql`` and optionally ``id``, ``db``, ``difficulty``.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is not JSON of that shape; the message names the entry.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
        where = [f"{p}[{i}]" for i in range(len(items))]
    except json.JSONDecodeError:
        items, where = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: not JSON (nor a JSON list): {e.msg}") from None
            where.append(f"{p}:{n}")
    return tuple(_parse(item, w) for item, w in zip(items, where, strict=True))


def write_questions(path: str | os.PathLike[str], items: Iterable[Question]) -> Path:
    """Write ``items`` to ``path`` as a JSON list (one object a line), readable by
    ``load_questions``; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(asdict(q), ensure_ascii=False) for q in items]
    p.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    return p


def questions(db: str | None = None) -> tuple[Question, ...]:
    """The shipped questions (69 over ``school``, ``shop`` and ``flights``), or those of the
    example database ``db``.

    Raises:
        LookupError: ``db`` is not an example database.
    """
    text = (
        importlib.resources.files("integrations.text2sql")
        .joinpath("data", "questions.json")
        .read_text(encoding="utf-8")
    )
    items = tuple(_parse(item, f"questions.json[{i}]") for i, item in enumerate(json.loads(text)))
    if db is None:
        return items
    chosen = tuple(q for q in items if q.db == db)
    if not chosen:
        known = sorted({q.db for q in items})
        raise LookupError(f"no shipped questions for database {db!r}; known: {', '.join(known)}")
    return chosen
