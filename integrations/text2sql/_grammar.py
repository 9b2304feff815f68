"""SQL grammars built per database and per question: the shipped ``sqlite_select`` grammar
specialised to a database's names (``names_grammar``), and a scoped sub-language of it in which
every query also runs on that database (``scoped_grammar``)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import grammars
from integrations.text2sql._database import Schema, connect_read_only, quote_name, sql_string

__all__ = [
    "ALIASES",
    "Literals",
    "Scope",
    "SqlGrammar",
    "link_values",
    "literals_for",
    "names_grammar",
    "required_values",
    "scoped_grammar",
    "scopes",
]

ALIASES = ("T1", "T2", "T3", "T4")
"""Table aliases a query may use, in join order."""
COLUMN_ALIASES = ("n", "total", "average", "count", "value")
"""Result column names the ``names`` grammar allows after ``AS``."""
SMALL_NUMBERS = tuple(str(i) for i in range(11))
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "hundred": 100,
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
}  # fmt: skip
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'_-]*(?:\.[0-9]+)?")
_STRFTIME_FORMATS = ("'%Y'", "'%m'", "'%Y-%m'", "'%d'")


# -- literals ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Literals:
    """The literals a query may write: SQL string literals (quoted) and numbers (as text).

    ``columns`` links values to columns (``link_values``): for each text column
    (``"table.column"``), the quoted strings that are among its values. With it, a text column
    compared by ``=``, ``!=`` or ``IN`` takes only those (``semester = 'Spring 2024'``, never
    ``semester = 'Count'``; a column with none takes no string there); ``<``, ``LIKE`` and the
    rest stay free. None: no linking."""

    strings: tuple[str, ...]
    numbers: tuple[str, ...]
    columns: Mapping[str, tuple[str, ...]] | None = None


def _is_text(declared: str) -> bool:
    """SQLite's text affinity: the declared type names CHAR, CLOB or TEXT."""
    t = declared.upper()
    return any(k in t for k in ("CHAR", "CLOB", "TEXT"))


def link_values(schema: Schema, strings: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """For each text column of ``schema`` (``"table.column"``), the quoted SQL string literals
    of ``strings`` that are values in it: one read-only query per column on ``schema.path``.
    ``LIKE`` patterns (with ``%``) are never linked."""
    plain: dict[str, str] = {}
    for q in strings:
        if len(q) >= 2 and q[0] == q[-1] == "'" and "%" not in q:
            plain[q[1:-1].replace("''", "'")] = q
    out: dict[str, tuple[str, ...]] = {}
    con = connect_read_only(schema.path)
    try:
        for t in schema.tables:
            for c in t.columns:
                if not _is_text(c.type):
                    continue
                found: set[str] = set()
                values = list(plain)
                for i in range(0, len(values), 500):  # under SQLite's bound on parameters
                    chunk = values[i : i + 500]
                    sql = (
                        f"SELECT DISTINCT {quote_name(c.name)} FROM {quote_name(t.name)} "
                        f"WHERE {quote_name(c.name)} IN ({', '.join('?' * len(chunk))})"
                    )
                    found.update(str(v) for (v,) in con.execute(sql, chunk))
                out[f"{t.name}.{c.name}"] = tuple(plain[v] for v in plain if v in found)
    finally:
        con.close()
    return out


def required_values(question: str, columns: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """What a query about ``question`` must write, given ``columns`` (``link_values``): each
    string the question writes that is linked to a column and is not part of a longer one
    linked too (``'Introduction to Physics I'``, not also ``'Physics'``), and each number the
    question writes in digits. (Numbers in words are left out: "at least one" rarely means
    ``1``; a column's other values, offered by ``literals_for``, are not in the question.) The
    engine rewinds an answer without one of them (``LLMRequest.require``)."""
    linked = [
        s
        for s in dict.fromkeys(s for values in columns.values() for s in values)
        if s[1:-1].replace("''", "'") in question
    ]
    strings = [s for s in linked if not any(s != o and s[1:-1] in o for o in linked)]
    numbers = [w for w in _WORD.findall(question) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", w)]
    return tuple(dict.fromkeys([*strings, *numbers]))


def literals_for(
    question: str,
    schema: Schema,
    *,
    max_span: int = 3,
    max_strings: int = 600,
    link: bool = True,
) -> Literals:
    """The literals a query about ``question`` may need, per DESIGN.md ("literals limited to
    spans copied from the question"):

    - strings: every span of 1 to ``max_span`` words of the question as written, the values of
      the database's categorical text columns, ``LIKE`` patterns (``'%word%'``, ``'YYYY%'``
      for a year, ``'YYYY-MM%'`` for a month named with a year), and ``strftime`` formats;
    - numbers: those written in the question (digits or words such as ``three``), and 0 to 10;
    - with ``link``, which strings are values of which text column (``link_values``: it reads
      ``schema.path``), so that ``scoped_grammar`` compares a column only to its own values.
    """
    words = _WORD.findall(question)
    strings: list[str] = []
    for n in range(1, max_span + 1):
        for i in range(len(words) - n + 1):
            strings.append(" ".join(words[i : i + n]))
    for t in schema.tables:
        for c in t.columns:
            if c.categorical:
                strings.extend(c.values)
    numbers = list(SMALL_NUMBERS)
    years = []
    for i, w in enumerate(words):
        lw = w.lower()
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", w):
            numbers.append(w)
            if re.fullmatch(r"(19|20)[0-9]{2}", w):
                years.append(w)
                strings.append(f"{w}%")
        elif lw in _NUMBER_WORDS:
            numbers.append(str(_NUMBER_WORDS[lw]))
        if lw in _MONTHS and i + 1 < len(words) and re.fullmatch(r"(19|20)[0-9]{2}", words[i + 1]):
            strings.append(f"{words[i + 1]}-{_MONTHS.index(lw) + 1:02d}%")
        if len(w) > 2 and not w.isdigit():
            strings.append(f"%{w}%")
    for y in years:
        strings.append(f"%{y}%")
    quoted = [sql_string(s) for s in dict.fromkeys(strings) if s][:max_strings]
    return Literals(
        strings=tuple(dict.fromkeys([*quoted, *_STRFTIME_FORMATS])),
        numbers=tuple(dict.fromkeys(numbers)),
        columns=link_values(schema, quoted) if link else None,
    )


# -- scopes -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scope:
    """One ``FROM`` clause a query may use: a table, or tables joined along foreign keys.

    Attributes:
        tables: the tables in join order.
        from_sql: the clause as written (``students AS T1 JOIN departments AS T2 ON
            T1.department_id = T2.id``; a single table has no alias).
        columns: the column references valid in it (bare names for one table, ``T1.name``
            for a join).
    """

    tables: tuple[str, ...]
    from_sql: str
    columns: tuple[str, ...]


def scopes(schema: Schema, *, max_tables: int = 3) -> list[Scope]:
    """Every table alone, then every join of up to ``max_tables`` tables along foreign keys:
    each next table joins one already there, through a key not used yet (either direction; a
    table may appear twice through two keys, as an airport is both origin and destination).
    Join conditions put the referencing column first: ``ON T2.department_id = T1.id``."""
    out = [
        Scope(
            (t.name,),
            quote_name(t.name),
            tuple(quote_name(c.name) for c in t.columns),
        )
        for t in schema.tables
    ]
    tables = set(schema.table_names)
    edges = [fk for fk in schema.foreign_keys if fk[0] in tables and fk[2] in tables]
    max_tables = min(max_tables, len(ALIASES))

    def extend(path: list[str], used: list[int], conds: list[str]) -> None:
        if len(path) >= 2:
            parts = [f"{quote_name(path[0])} AS {ALIASES[0]}"]
            for k in range(1, len(path)):
                parts.append(f"JOIN {quote_name(path[k])} AS {ALIASES[k]} ON {conds[k - 1]}")
            columns = tuple(
                f"{ALIASES[k]}.{quote_name(c.name)}"
                for k, name in enumerate(path)
                for c in schema.table(name).columns
            )
            out.append(Scope(tuple(path), " ".join(parts), columns))
        if len(path) == max_tables:
            return
        nxt = ALIASES[len(path)]
        # the next table joins any table already there (a path or a star: `courses AS T1 JOIN
        # departments AS T2 ON ... JOIN instructors AS T3 ON T1.instructor_id = T3.id`)
        for k, table in enumerate(path):
            here = ALIASES[k]
            for i, (t, col, rt, rcol) in enumerate(edges):
                if i in used or t == rt:
                    continue
                if t == table:  # it references the next one
                    cond = f"{here}.{quote_name(col)} = {nxt}.{quote_name(rcol)}"
                    extend([*path, rt], [*used, i], [*conds, cond])
                if rt == table:  # the next one references it
                    cond = f"{nxt}.{quote_name(col)} = {here}.{quote_name(rcol)}"
                    extend([*path, t], [*used, i], [*conds, cond])

    for t in schema.table_names:
        extend([t], [], [])
    seen: set[str] = set()
    unique = []
    for s in out:
        if s.from_sql not in seen:
            seen.add(s.from_sql)
            unique.append(s)
    return unique


# -- a tiny grammar model: emitted as Lark, sampled for tests ---------------------------------
@dataclass(frozen=True, slots=True)
class _Ref:
    name: str


@dataclass(frozen=True, slots=True)
class _Opt:
    items: tuple[_Item, ...]


@dataclass(frozen=True, slots=True)
class _Rep:
    lo: int
    hi: int
    items: tuple[_Item, ...]


_Item: TypeAlias = "str | _Ref | _Opt | _Rep"
_Alt: TypeAlias = tuple[_Item, ...]


def _opt(*items: _Item) -> _Opt:
    return _Opt(items)


def _rep(lo: int, hi: int, *items: _Item) -> _Rep:
    return _Rep(lo, hi, items)


def _r(name: str) -> _Ref:
    return _Ref(name)


def _choice(options: Iterable[str]) -> list[_Alt]:
    return [(o,) for o in dict.fromkeys(options)]


class SqlGrammar:
    """A generated SQL grammar: its Lark text (``text``) and a sampler of random sentences
    (``sample``), used to test that what it allows runs."""

    def __init__(
        self,
        rules: dict[str, list[_Alt]],
        scopes: Sequence[Scope],
        terminals: dict[str, str] | None = None,
    ) -> None:
        self.rules = rules
        self.scopes = tuple(scopes)
        self.terminals = dict(terminals or {})
        self.text = self._emit()

    def _emit(self) -> str:
        lines = []
        for name, alts in self.rules.items():
            body = " | ".join(" ".join(_emit_item(i) for i in alt) for alt in alts)
            lines.append(f"{name}: {body}")
        lines.extend(f"{name}: {regex}" for name, regex in self.terminals.items())
        return "\n".join(lines) + "\n"

    def sample(self, rng: random.Random, rule: str = "start") -> str:
        """A random sentence of the grammar (each alternative, option and count uniform;
        free literals drawn from a few examples)."""
        if rule in self.terminals:
            return rng.choice(_TERMINAL_EXAMPLES[rule])
        return "".join(self._sample_alt(rng, rng.choice(self.rules[rule])))

    def _sample_alt(self, rng: random.Random, alt: _Alt) -> list[str]:
        out: list[str] = []
        for item in alt:
            match item:
                case str():
                    out.append(item)
                case _Ref(name):
                    out.append(self.sample(rng, name))
                case _Opt(items):
                    if rng.random() < 0.5:
                        out.extend(self._sample_alt(rng, items))
                case _Rep(lo, hi, items):
                    for _ in range(rng.randint(lo, hi)):
                        out.extend(self._sample_alt(rng, items))
        return out


_TERMINAL_EXAMPLES = {
    "STRING": ("''", "'Paris'", "'2024%'", "'%a%'", "'x y z'", "'" + "w" * 40 + "'"),
    "NUMBER": ("0", "7", "3.5", "2024", "9999999.999"),
    "COUNT_N": ("1", "3", "10", "999"),
}


def _emit_item(item: _Item) -> str:
    match item:
        case str():
            return json.dumps(item, ensure_ascii=False)
        case _Ref(name):
            return name
        case _Opt(items):
            return "(" + " ".join(_emit_item(i) for i in items) + ")?"
        case _Rep(lo, hi, items):
            return "(" + " ".join(_emit_item(i) for i in items) + f") ~ {lo}..{hi}"
    raise AssertionError(item)  # pragma: no cover


FREE_STRING = r"/'[^'\n]{0,40}'/"
"""Any string literal of up to 40 characters without a quote (``literals=None``)."""
FREE_NUMBER = r"/[0-9]{1,7}(\.[0-9]{1,3})?/"
FREE_COUNT = r"/[1-9][0-9]{0,2}/"


def scoped_grammar(
    schema: Schema, *, max_tables: int = 3, literals: Literals | None = None
) -> SqlGrammar:
    """A grammar of SQLite queries over ``schema`` in which every sentence runs: a sub-language
    of ``sqlite_select`` (same layout: uppercase keywords, single spaces) where

    - the ``FROM`` clause is one of ``scopes(schema, max_tables=...)`` (a table, or tables
      joined on their foreign keys with aliases ``T1``, ``T2``...), and every column
      reference is one that exists in it (qualified in a join, so never ambiguous);
    - aggregates appear only in the result list, ``HAVING`` and a grouped query's ``ORDER
      BY``, never nested;
      functions take their exact number of arguments; ``GROUP BY``/``ORDER BY`` terms are never
      bare numbers (SQLite would read them as column positions);
    - subqueries (``IN (...)``, scalar comparisons, ``HAVING``, compound ``UNION``/
      ``INTERSECT``/``EXCEPT``) return one column and nest one level;
    - literals are ``literals`` (e.g. ``literals_for(question, schema)``: spans of the
      question), or with None any string of up to 40 characters and any number (then the
      grammar depends on the database only, so it is compiled once per database); where
      ``literals.columns`` links values to columns, a text column compared by ``=``, ``!=``
      or ``IN`` takes only its own values;
    - lists are bounded (at most 3 result columns, 3 ``WHERE`` conditions), so every sentence
      is finite.

    Raises:
        ValueError: the schema has no tables, or ``literals`` has no string or no positive whole
            number (which ``LIMIT`` needs).
    """
    if not schema.tables:
        raise ValueError(f"{schema.path}: the database has no tables to write queries over")
    if literals is not None:
        if not literals.strings:
            raise ValueError("literals.strings is empty: a query's strings must come from it")
        if not any(re.fullmatch(r"[1-9][0-9]*", n) for n in literals.numbers):
            raise ValueError(
                f"literals.numbers {literals.numbers!r} holds no positive whole number "
                "(LIMIT needs one)"
            )
    all_scopes = scopes(schema, max_tables=max_tables)
    if literals is None:
        lit_rules: dict[str, list[_Alt]] = {
            "num": [(_r("NUMBER"),)],
            "count": [(_r("COUNT_N"),)],
            "str": [(_r("STRING"),)],
        }
        terminals = {"NUMBER": FREE_NUMBER, "COUNT_N": FREE_COUNT, "STRING": FREE_STRING}
    else:
        lit_rules = {
            "num": _choice(literals.numbers),
            "count": _choice(n for n in literals.numbers if re.fullmatch(r"[1-9][0-9]*", n)),
            "str": _choice(literals.strings),
        }
        terminals = {}
    rules: dict[str, list[_Alt]] = {
        "start": [(_r("query"),)],
        "query": [
            *[(_r(f"q{i}"),) for i in range(len(all_scopes))],
            (_r("sub"), _r("setop"), _r("sub")),
        ],
        "sub": [(_r(f"s{i}"),) for i in range(len(all_scopes))],
        "setop": _choice((" UNION ", " UNION ALL ", " INTERSECT ", " EXCEPT ")),
        "cmp": _choice((" = ", " != ", " < ", " <= ", " > ", " >= ")),
        "eq": _choice((" = ", " != ")),
        "ord": _choice((" < ", " <= ", " > ", " >= ")),
        "arith": _choice((" + ", " - ", " * ", " / ")),
        "logic": _choice((" AND ", " OR ")),
        "dir": _choice((" ASC", " DESC")),
        "aggf": _choice(("COUNT", "SUM", "AVG", "MIN", "MAX")),
        "fn1": _choice(("LOWER", "UPPER", "LENGTH", "ABS", "ROUND")),
        "fmt": _choice(_STRFTIME_FORMATS),
        **lit_rules,
        "digit": _choice(("0", "1", "2", "3", "4")),
        "lit": [(_r("num"),), (_r("str"),)],
        "not": [(" NOT",)],
        "distinct": [("DISTINCT ",)],
        "limit": [(" LIMIT ", _r("count"))],
    }
    linked = literals.columns if literals is not None and literals.columns is not None else None
    values: dict[str, str] = {}  # "table.column" -> the rule of its linked values
    for key, quoted in (linked or {}).items():
        if quoted:
            values[key] = f"lv{len(values)}"
            rules[values[key]] = _choice(quoted)
    for i, scope in enumerate(all_scopes):
        c, v, a = _r(f"c{i}"), _r(f"v{i}"), _r(f"a{i}")
        p, sp = _r(f"p{i}"), _r(f"sp{i}")
        rules[f"c{i}"] = _choice(scope.columns)
        exprs: list[_Alt] = [
            (c, _r("arith"), c),
            (c, _r("arith"), _r("num")),
            (_r("fn1"), "(", c, ")"),
            ("ROUND(", c, ", ", _r("digit"), ")"),
            ("SUBSTR(", c, ", ", _r("digit"), ", ", _r("digit"), ")"),
            ("STRFTIME(", _r("fmt"), ", ", c, ")"),
        ]
        rules[f"v{i}"] = [(c,), *exprs]
        # With linking, a bare text column is compared to strings through its own values.
        cols = [(t, col) for t in scope.tables for col in schema.table(t).columns]
        keys = [f"{t}.{col.name}" for t, col in cols]
        is_linked = [linked is not None and k in linked for k in keys]
        vk = v
        if any(is_linked):
            free = [ref for ref, lk in zip(scope.columns, is_linked, strict=True) if not lk]
            vk = _r(f"vk{i}")
            rules[f"vk{i}"] = [*([(_r(f"k{i}"),)] if free else []), *exprs]
            if free:
                rules[f"k{i}"] = _choice(free)
            # the text columns, which a linked one may equal (T1.city = T2.city)
            texts = [r for r, (_, c2) in zip(scope.columns, cols, strict=True) if _is_text(c2.type)]
            rules[f"tc{i}"] = _choice(texts)
        rules[f"a{i}"] = [("COUNT(*)",), (_r("aggf"), "(", _opt(_r("distinct")), v, ")")]
        rules[f"i{i}"] = [(v,), (a,)]
        rules[f"r{i}"] = [("*",), (_r(f"i{i}"), _rep(0, 2, ", ", _r(f"i{i}")))]
        # a condition; `sp` is the same without subqueries (inside a subquery)
        for name, sub in ((f"p{i}", True), (f"sp{i}", False)):
            rhs: list[_Alt] = [(_r("lit"),), (c,)]
            alts: list[_Alt] = [
                (_opt("NOT "), vk, _r("cmp"), _r(f"{name}rhs")),
                (v, " IS NULL"),
                (v, " IS NOT NULL"),
                (v, _opt(_r("not")), " LIKE ", _r("str")),
                (vk, _opt(_r("not")), " BETWEEN ", _r("lit"), " AND ", _r("lit")),
                (vk, _opt(_r("not")), " IN (", _r("lit"), _rep(0, 3, ", ", _r("lit")), ")"),
            ]
            for ref, key, lk in zip(scope.columns, keys, is_linked, strict=True):
                if not lk:
                    continue
                own = [(_r(values[key]),)] if key in values else []
                eq = [*own, (_r(f"tc{i}"),), *([("(", _r("sub"), ")")] if sub else [])]
                alts += [(_opt("NOT "), ref, _r("eq"), *e) for e in eq]
                alts += [
                    (_opt("NOT "), ref, _r("ord"), _r(f"{name}rhs")),
                    (ref, _opt(_r("not")), " BETWEEN ", _r("lit"), " AND ", _r("lit")),
                ]
                if own:
                    lv = _r(values[key])
                    alts.append((ref, _opt(_r("not")), " IN (", lv, _rep(0, 3, ", ", lv), ")"))
            if sub:
                rhs.append(("(", _r("sub"), ")"))
                alts.append((v, _opt(_r("not")), " IN (", _r("sub"), ")"))
            rules[f"{name}rhs"] = rhs
            rules[name] = alts
        rules[f"w{i}"] = [(" WHERE ", p, _rep(0, 2, _r("logic"), p))]
        rules[f"sw{i}"] = [(" WHERE ", sp, _rep(0, 1, _r("logic"), sp))]
        rules[f"g{i}"] = [
            (" GROUP BY ", c, _rep(0, 1, ", ", c), _opt(" HAVING ", a, _r("cmp"), _r(f"h{i}")))
        ]
        rules[f"h{i}"] = [(_r("num"),), (a,), ("(", _r("sub"), ")")]
        # ORDER BY an aggregate only where the query is grouped: SQLite refuses it elsewhere
        rules[f"o{i}"] = [(" ORDER BY ", _r(f"t{i}"), _rep(0, 1, ", ", _r(f"t{i}")))]
        rules[f"t{i}"] = [(v, _opt(_r("dir")))]
        rules[f"go{i}"] = [(" ORDER BY ", _r(f"gt{i}"), _rep(0, 1, ", ", _r(f"gt{i}")))]
        rules[f"gt{i}"] = [(v, _opt(_r("dir"))), (a, _opt(_r("dir")))]
        head: _Alt = ("SELECT ", _opt(_r("distinct")), _r(f"r{i}"), " FROM ", scope.from_sql)
        rules[f"q{i}"] = [
            (*head, _opt(_r(f"w{i}")), _opt(_r(f"o{i}")), _opt(_r("limit"))),
            (*head, _opt(_r(f"w{i}")), _r(f"g{i}"), _opt(_r(f"go{i}")), _opt(_r("limit"))),
        ]
        # a one-column subquery: no ORDER BY or LIMIT (a compound's parts may not have them)
        rules[f"s{i}"] = [
            (
                "SELECT ",
                _opt(_r("distinct")),
                _r(f"i{i}"),
                " FROM ",
                scope.from_sql,
                _opt(_r(f"sw{i}")),
                _opt(" GROUP BY ", c),
            )
        ]
    return SqlGrammar(rules, all_scopes, terminals)


def names_grammar(schema: Schema, *, literals: Literals | None = None) -> str:
    """The shipped ``sqlite_select`` grammar specialised to ``schema``: its table and column
    names as the only identifiers (with the result names ``COLUMN_ALIASES``), aliases
    ``T1``-``T4``, and the ``literals`` given (e.g. ``literals_for(question, schema)``; with None
    any string and number). Any query over these names parses; one may still name a column of
    another table (SQLite then says so, and the pipeline corrects it).

    Raises:
        ValueError: the schema has no tables.
    """
    if not schema.tables:
        raise ValueError(f"{schema.path}: the database has no tables to write queries over")
    rules: dict[str, list[str]] = {
        "table_name": [quote_name(t) for t in schema.table_names],
        # result names may be referred to (ORDER BY n, a subquery's n): they are names too
        "column_name": sorted(
            {quote_name(c.name) for t in schema.tables for c in t.columns} | set(COLUMN_ALIASES)
        ),
        "table_alias": list(ALIASES),
        "column_alias": list(COLUMN_ALIASES),
    }
    if literals is not None:
        rules["string_literal"] = list(literals.strings)
        rules["number"] = list(literals.numbers)
    return grammars.specialise(grammars.load("sqlite_select"), rules)
