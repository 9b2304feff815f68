"""The SQL grammar for one question about one example database (DESIGN.md, "Grammars specialised
per request"): the Text-to-SQL pipeline's *scoped* grammar (``integrations.text2sql``: every
``FROM`` clause a table or a foreign-key join, every column one that exists in it, so every query
it allows runs on the database), with its literals limited to spans copied from the question.

Strings may be any span of one to five consecutive words of the question that keeps names whole
(it neither starts nor ends between two capitalised words, but for a sentence's first word:
``'Tara Fischer'``, never ``'Fischer'``), a year also as a ``LIKE`` prefix (``'2023%'``);
numbers may be those written in the question (digits, or words such as "three") and 0 to 10.
Values are linked to columns (``link_values``): a text column compared by ``=``, ``!=`` or
``IN`` takes only those of the question's strings that are values in it. A query under this
grammar can still be wrong, but it runs, and it cannot name a value the question did not
mention, nor look a value up in a column that does not hold it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Final

__all__ = ["example_database", "question_literals", "sql_grammar", "sql_required"]

_NUMBER_WORDS: Final = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10,
}  # fmt: skip
_STRIP: Final = '?.,!:;"()'
_NUMBER: Final = re.compile(r"[0-9]+(\.[0-9]+)?")
_YEAR: Final = re.compile(r"(19|20)[0-9]{2}")
MAX_SPAN: Final = 5
MAX_TABLES: Final = 2


def question_literals(question: str) -> tuple[list[str], list[str]]:
    """The SQL string literals (quoted) and numbers a query about ``question`` may write."""
    raw = question.split()
    words = [w.strip(_STRIP) for w in raw]
    # glued[k]: word k continues a name begun before it (not after a sentence's first word)
    glued = [False] * (len(words) + 1)
    for k in range(1, len(words)):
        first = k == 1 or raw[k - 2][-1:] in (".", "?", "!")
        glued[k] = (
            not first and words[k - 1][:1].isupper() and words[k][:1].isupper() and bool(words[k])
        )
    strings: list[str] = []
    for n in range(1, MAX_SPAN + 1):
        for i in range(len(words) - n + 1):
            span = words[i : i + n]
            if all(span) and not glued[i] and not glued[i + n]:
                strings.append(" ".join(span))
    strings += [w + "%" for w in words if _YEAR.fullmatch(w)]
    numbers = [str(i) for i in range(11)]
    for w in words:
        if _NUMBER.fullmatch(w):
            numbers.append(w)
        elif w.lower() in _NUMBER_WORDS:
            numbers.append(str(_NUMBER_WORDS[w.lower()]))
    quoted = ["'" + s.replace("'", "''") + "'" for s in dict.fromkeys(strings)]
    return quoted, list(dict.fromkeys(numbers))


def example_database(name: str) -> Path:
    """The example database ``name`` (``school``, ``shop``, ``flights``), built from its seeded
    generator into Legato's cache on first use: no download, the rows come from the generator.

    Raises:
        LookupError: ``name`` is not an example database.
    """
    from integrations.text2sql import build_database
    from orchestrator.engine._make import cache_root

    path = cache_root() / "text2sql" / f"{name}-s0.sqlite"
    if not path.exists():
        build_database(name, path, seed=0)
    return path


@functools.lru_cache(maxsize=16)
def _schema(path: str) -> object:
    from integrations.text2sql._database import read_schema

    return read_schema(path)


@functools.lru_cache(maxsize=64)
def _literals(path: str, question: str) -> object:
    from integrations.text2sql._grammar import Literals, link_values

    strings, numbers = question_literals(question)
    return Literals(
        strings=tuple(strings) or ("''",),
        numbers=tuple(numbers),
        columns=link_values(_schema(path), strings),  # type: ignore[arg-type]
    )


def _path(db: str, path: str | Path | None) -> str:
    return str(path if path is not None else example_database(db))


def sql_required(db: str, question: str, *, path: str | Path | None = None) -> tuple[str, ...]:
    """What a query about ``question`` over ``db`` must write (``required_values``: its values
    linked to a column, its numbers in digits), for ``LLMRequest.require``.

    Raises:
        LookupError: ``db`` is not an example database and no ``path`` is given.
    """
    from integrations.text2sql._grammar import required_values

    literals = _literals(_path(db, path), question)
    return required_values(question, literals.columns or {})  # type: ignore[attr-defined]


def sql_grammar(db: str, question: str, *, path: str | Path | None = None) -> str:
    """Lark text of the queries about ``question`` over the example database ``db`` (its file
    at ``path``, else ``example_database(db)``) that the grammar allows: one table or two
    joined on a foreign key (aliases ``T1``, ``T2``), its columns, the question's literals.

    Raises:
        LookupError: ``db`` is not an example database and no ``path`` is given.
    """
    from integrations.text2sql._grammar import scoped_grammar

    where = _path(db, path)
    literals = _literals(where, question)
    return scoped_grammar(_schema(where), max_tables=MAX_TABLES, literals=literals).text  # type: ignore[arg-type]
