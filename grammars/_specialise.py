"""Specialising a grammar: replacing the bodies of named rules with lists of literals (a
database's real table and column names, a registry's tool names)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

__all__ = ["literal", "specialise"]


def literal(text: str) -> str:
    """``text`` as a Lark string literal."""
    return json.dumps(text, ensure_ascii=False)


def specialise(text: str, rules: Mapping[str, Sequence[str]]) -> str:
    """``text`` with the body of each rule named in ``rules`` replaced by its literals.

    A rule's definition is its ``name:`` line and the continuation lines after it that start
    with ``|``. ``specialise(grammars.load("sqlite_select"), {"table_name": ["singer"]})``
    allows only ``singer`` where a table name goes.

    Raises:
        LookupError: a rule is not defined in ``text``.
        ValueError: a rule is given no literals, or an empty one.
    """
    lines = text.splitlines()
    for name, values in rules.items():
        options = list(values)
        if not options or any(not isinstance(v, str) or not v for v in options):
            raise ValueError(f"rule {name!r} needs at least one non-empty literal")
        head = re.compile(rf"^[?!_]?{re.escape(name)}\s*:(?!:)")
        start = next((i for i, ln in enumerate(lines) if head.match(ln)), None)
        if start is None:
            raise LookupError(f"the grammar has no rule {name!r} to specialise")
        end = start + 1
        while end < len(lines) and re.match(r"^\s+\|", lines[end]):
            end += 1
        body = " | ".join(literal(v) for v in dict.fromkeys(options))
        lines[start:end] = [f"{name}: {body}"]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
