"""Comparing query results: normalised result sets, selection by execution-result agreement
(the majority of result sets), and the execution-accuracy match with a gold query."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from integrations.text2sql._database import Execution

__all__ = ["Vote", "has_top_level_order_by", "result_key", "same_result", "vote"]

_FLOAT_DIGITS = 6
_ORDER_BY = re.compile(r"ORDER\s+BY\b")


def _norm(value: Any) -> Any:
    """A value as compared: floats rounded, whole floats as ints, bytes as hex, None kept."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return round(value, _FLOAT_DIGITS)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[int, str], ...]:
    # Rows mix types (NULL, numbers, text): sort on (type rank, text) so sorting never fails.
    return tuple(
        (0, "") if v is None else (1, f"{v:030.10f}") if isinstance(v, int | float) else (2, str(v))
        for v in row
    )


def result_key(rows: Sequence[Sequence[Any]], *, ordered: bool = False) -> tuple[Any, ...]:
    """A hashable form of a result set: values normalised (``1.0`` equals ``1``; floats to 6
    decimals), rows as a multiset (sorted) unless ``ordered``."""
    norm = [tuple(_norm(v) for v in r) for r in rows]
    if not ordered:
        norm.sort(key=_sort_key)
    return tuple(norm)


def has_top_level_order_by(sql: str) -> bool:
    """Whether ``sql`` orders its final result (an ``ORDER BY`` outside parentheses and
    quotes), so that row order is part of the answer."""
    depth, i, upper = 0, 0, sql.upper()
    quote: str | None = None
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif (
            depth == 0
            and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_"))
            and _ORDER_BY.match(upper, i)
        ):
            return True
        i += 1
    return False


def same_result(gold: Execution, predicted: Execution, *, gold_sql: str | None = None) -> bool:
    """Execution accuracy: whether ``predicted`` returns the same result as ``gold``.

    Rows compare as multisets, or in order when the gold query orders its result
    (``has_top_level_order_by``); values as ``result_key`` normalises them; the columns may
    come in another order (up to 5 columns are tried in every order). Both must have run.
    """
    if not (gold.ok and predicted.ok):
        return False
    ordered = has_top_level_order_by(gold_sql if gold_sql is not None else gold.sql)
    want = result_key(gold.rows, ordered=ordered)
    if result_key(predicted.rows, ordered=ordered) == want:
        return True
    width = len(predicted.rows[0]) if predicted.rows else len(predicted.columns)
    gold_width = len(gold.rows[0]) if gold.rows else len(gold.columns)
    if width != gold_width or width < 2 or width > 5:
        return False
    for perm in itertools.permutations(range(width)):
        rows = [tuple(r[i] for i in perm) for r in predicted.rows]
        if result_key(rows, ordered=ordered) == want:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Vote:
    """The outcome of selection by execution-result agreement.

    Attributes:
        winner: the index (into the executions given) of the chosen query, or None if none ran.
        votes: how many executions returned the winner's result.
        voters: how many executions ran (``ok``).
        groups: the size of each group of agreeing executions, largest first.
    """

    winner: int | None
    votes: int
    voters: int
    groups: tuple[int, ...]


def vote(executions: Sequence[Execution]) -> Vote:
    """Pick the query whose result most of the executions that ran agree on (self-consistency
    over result sets). Ties go to the group with a non-empty result, then to the group whose
    first member came first (the first candidate is the greedy one)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, ex in enumerate(executions):
        if ex.ok:
            groups.setdefault(result_key(ex.rows), []).append(i)
    if not groups:
        return Vote(None, 0, 0, ())
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), len(kv[0]) == 0, kv[1][0]))
    members = ranked[0][1]
    return Vote(
        winner=members[0],
        votes=len(members),
        voters=sum(len(m) for m in groups.values()),
        groups=tuple(len(m) for _, m in ranked),
    )
