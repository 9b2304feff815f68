"""Text-to-SQL pairs over the example databases: questions from frames (several per SQL shape),
conditions from the lexicon, literal values from the databases' own rows, and gold SQL in the
``sqlite_select`` grammar's layout (uppercase keywords, single spaces, ``AS T1``/``T2``).

Each pair knows what it is made of, so held-out splits can be carved out exactly:

- a *combination* (``combo``): the shape and what it binds (table, columns, foreign keys), not
  the values: ``top|students|name|gpa``; about one in eight combinations is held out;
- a *frame* (the phrasing of the question): the last frame of every shape is held out;
- *values*: one string value in five (by a hash of the value, over every pool with at least
  eight values) and one number in five (over number ranges with at least twenty steps) never
  occur in training questions.
"""

from __future__ import annotations

import random
import re
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from orchestrator.train._lexicon import COLUMNS, ENTITIES, RELATIONS, Col, Entity, Relation
from orchestrator.train._synthetic import pseudo_code, pseudo_name, pseudo_number, unique

__all__ = ["FRAMES", "SHAPES", "Mode", "SqlPair", "SqlWorld", "draw_pair"]

Mode = Literal["train", "values", "combos", "phrasings"]
"""What a drawn pair must hold out: nothing (``train``, also the seen-templates test split),
at least one value, its combination, or its phrasing."""

_WORDS: Final = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                 9: "nine", 10: "ten"}  # fmt: skip

# Frames per shape; the LAST frame of each is the held-out phrasing.
FRAMES: Final[dict[str, tuple[str, ...]]] = {
    "count_all": (
        "How many {pl} are there?",
        "Count the {pl}.",
        "What is the number of {pl}?",
        "How many {pl} are in the database?",
        "Give the total number of {pl}.",
        "Tell me how many {pl} there are.",
    ),
    "count_where": (
        "How many {pl} {C} are there?",
        "Count the {pl} {C}.",
        "What is the number of {pl} {C}?",
        "How many {pl} {C} does the database have?",
        "Give the number of {pl} {C}.",
        "Tell me how many {pl} {C} there are.",
    ),
    "list": (
        "List the {cols} of the {pl} {C}.",
        "What are the {cols} of the {pl} {C}?",
        "Show the {cols} of all {pl} {C}.",
        "Give the {col} of each {sg} {C}.",
        "Find the {cols} of {pl} {C}.",
        "Which {cols} do the {pl} {C} have?",
    ),
    "lookup": (
        "What is the {col} of the {sg} {v}?",
        "Find the {col} of the {sg} named {v}.",
        "Give the {col} of {sg} {v}.",
        "What {col} does the {sg} {v} have?",
        "Show the {col} for the {sg} called {v}.",
        "Tell me the {col} of the {sg} {v}.",
    ),
    "agg": (
        "What is the {aggw} {num} of {pl} {C}?",
        "Find the {aggw} {num} among {pl} {C}.",
        "Give the {aggw} {num} of all {pl} {C}.",
        "Compute the {aggw} {num} for {pl} {C}.",
        "Show the {aggw} {num} over the {pl} {C}.",
        "Tell me the {aggw} {num} of the {pl} {C}.",
    ),
    "top1": (
        "Which {sg} {C} has the {dirw} {num}?",
        "What is the {col} of the {sg} {C} with the {dirw} {num}?",
        "Find the {sg} {C} with the {dirw} {num}.",
        "Name the {sg} {C} that has the {dirw} {num}.",
        "Give the {sg} {C} whose {num} is the {dirw}.",
        "Tell me which {sg} {C} has the {dirw} {num}.",
    ),
    "topk": (
        "List the {k} {pl} {C} with the {dirw} {num}.",
        "Which {k} {pl} {C} have the {dirw} {num}?",
        "Show the {cols} of the {k} {pl} {C} with the {dirw} {num}.",
        "Find the {k} {pl} {C} that have the {dirw} {num}.",
        "Name the {k} {pl} {C} whose {num} is the {dirw}.",
        "Tell me the {k} {pl} {C} with the {dirw} {num}.",
    ),
    "group_count": (
        "How many {pl} {C} are there in each {g}?",
        "Count the {pl} {C} in each {g}.",
        "For each {g}, how many {pl} {C} are there?",
        "What is the number of {pl} {C} per {g}?",
        "Show each {g} with its number of {pl} {C}.",
        "Give the count of {pl} {C} for every {g}.",
    ),
    "group_agg": (
        "What is the {aggw} {num} of {pl} in each {g}?",
        "For each {g}, give the {aggw} {num} of {pl}.",
        "Show the {aggw} {num} of {pl} per {g}.",
        "Compute the {aggw} {num} of the {pl} for every {g}.",
        "List each {g} with the {aggw} {num} of its {pl}.",
        "Tell me the {aggw} {num} of {pl} by {g}.",
    ),
    "having": (
        "Which {gs} have {cmp} {n} {pl}?",
        "List the {gs} with {cmp} {n} {pl}.",
        "Find every {g} that has {cmp} {n} {pl}.",
        "Show the {gs} having {cmp} {n} {pl}.",
        "Name the {gs} that have {cmp} {n} {pl}.",
        "Tell me which {gs} have {cmp} {n} {pl}.",
    ),
    "most": (
        "Which {g} has the {most} {pl}?",
        "Find the {g} with the {most} {pl}.",
        "Name the {g} that has the {most} {pl}.",
        "What {g} has the {most} {pl}?",
        "Give the {g} having the {most} {pl}.",
        "Tell me which {g} has the {most} {pl}.",
    ),
    "vs_avg": (
        "Which {pl} have a {num} {rel} the average?",
        "List the {pl} whose {num} is {rel} average.",
        "Find the {pl} with a {num} {rel} the average {num}.",
        "Show the {pl} with {num} {rel} the mean.",
        "Name the {pl} that have a {num} {rel} average.",
        "Tell me which {pl} have a {num} {rel} the average.",
    ),
    "nested_in": (
        "Which {ppl} have at least one {csg} {C}?",
        "List the {ppl} that have a {csg} {C}.",
        "Find the {ppl} with some {csg} {C}.",
        "Show the {ppl} who have any {cpl} {C}.",
        "Name the {ppl} having at least one {csg} {C}.",
        "Tell me which {ppl} have a {csg} {C}.",
    ),
    "distinct": (
        "What are the different {gs} of {pl} {C}?",
        "List the distinct {gs} of the {pl} {C}.",
        "Which {gs} do the {pl} {C} have?",
        "Show the unique {gs} among {pl} {C}.",
        "Give every distinct {g} of {pl} {C}.",
        "Tell me the different {gs} of the {pl} {C}.",
    ),
}
SHAPES: Final[tuple[str, ...]] = tuple(FRAMES)
"""The SQL shapes, by name."""

_AGG_WORDS: Final = {
    "AVG": ("average", "mean"),
    "MAX": ("highest", "maximum", "largest"),
    "MIN": ("lowest", "minimum", "smallest"),
    "SUM": ("total",),
}
_DIR_WORDS: Final = {"DESC": ("highest", "largest", "greatest"), "ASC": ("lowest", "smallest")}
_HAVING: Final = (("more than", ">"), ("over", ">"), ("at least", ">="), ("fewer than", "<"))
_MOST: Final = (("most", "DESC"), ("fewest", "ASC"))
_VS_AVG: Final = (("above", ">"), ("below", "<"))
_SHAPE_WEIGHTS: Final = {
    "count_all": 2, "count_where": 10, "list": 10, "lookup": 6, "agg": 9, "top1": 5, "topk": 5,
    "group_count": 7, "group_agg": 6, "having": 6, "most": 6, "vs_avg": 4, "nested_in": 5,
    "distinct": 4,
}  # fmt: skip


def _hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def held_value(value: str) -> bool:
    """Whether ``value`` (a string value or a number as written) belongs to the held-out
    values (one in five)."""
    return _hash("value:" + value) % 5 == 0


def held_combo(combo: str) -> bool:
    """Whether the combination ``combo`` is held out (about one in eight)."""
    return _hash("combo:" + combo) % 8 == 0


class _Held:
    """The held-out values, as a container (``value in _HELD``)."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and held_value(value)


_HELD: Final = _Held()


@dataclass(frozen=True, slots=True)
class SqlPair:
    """A question, its gold SQL, and what it is made of.

    Attributes:
        db: the example database (``school``, ``shop``, ``flights``).
        question: the question.
        sql: the gold query.
        shape: the SQL shape (a key of ``FRAMES``).
        frame: the index of its question frame in ``FRAMES[shape]``.
        combo: shape and bindings, without values.
        held_values: the literal values in it that are held out.
    """

    db: str
    question: str
    sql: str
    shape: str
    frame: int
    combo: str
    held_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Lit:
    text: str  # as the question writes it
    sql: str  # as the query writes it
    held: bool


@dataclass(slots=True)
class _Column:
    """A column with its drawable values split into seen and held-out."""

    col: Col
    seen: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Cond:
    phrase: str
    sql: str  # unqualified
    sql_q: str  # qualified (T1./T2.)
    key: str
    rel: Relation | None
    lits: tuple[_Lit, ...]


def _num_range(spec: str) -> list[str]:
    lo_s, hi_s, step_s = spec.split(":")
    lo, hi, step = float(lo_s), float(hi_s), float(step_s)
    out = []
    n = round((hi - lo) / step)
    for i in range(n + 1):
        x = lo + i * step
        out.append(f"{x:.1f}" if step < 1 else str(round(x)))
    return out


class SqlWorld:
    """The example databases, built in ``folder`` from their seeded generators, with each
    column's drawable values (read from the rows) split into seen and held-out."""

    def __init__(self, folder: str | Path, *, seed: int = 0) -> None:
        from integrations.text2sql import SCHEMAS, build_database

        self.folder = Path(folder)
        self.paths: dict[str, Path] = {}
        for name in SCHEMAS:
            path = self.folder / f"{name}.sqlite"
            if not path.exists():
                build_database(name, path, seed=seed)
            self.paths[name] = path
        self.entities = {e.table: e for e in ENTITIES}
        self.db_of = {e.table: e.db for e in ENTITIES}
        self.columns: dict[tuple[str, str], _Column] = {}
        self.group_counts: dict[str, list[int]] = {}
        for db, path in self.paths.items():
            con = sqlite3.connect(path)
            try:
                self._read(db, con)
            finally:
                con.close()
        self.real_values = {v for c in self.columns.values() for v in (*c.seen, *c.held)}

    def _read(self, db: str, con: sqlite3.Connection) -> None:
        for col in COLUMNS:
            if self.db_of[col.table] != db:
                continue
            if col.values != "db":
                values = _num_range(col.values)
            elif col.kind == "date":
                rows = con.execute(f"SELECT DISTINCT {col.name} FROM {col.table}").fetchall()
                values = sorted(str(r[0]) for r in rows)
            else:
                rows = con.execute(f"SELECT DISTINCT {col.name} FROM {col.table}").fetchall()
                values = sorted(str(r[0]) for r in rows)
            c = _Column(col)
            big = len(values) >= (20 if col.values != "db" else 8)
            for v in values:
                (c.held if big and held_value(v) else c.seen).append(v)
            self.columns[(col.table, col.name)] = c
        for e in ENTITIES:
            if e.db != db:
                continue
            for col in COLUMNS:
                if col.table == e.table and col.group:
                    rows = con.execute(
                        f"SELECT COUNT(*) FROM {e.table} GROUP BY {col.name}"
                    ).fetchall()
                    self.group_counts[f"{e.table}.{col.name}"] = sorted(r[0] for r in rows)
        for r in RELATIONS:
            if r.db != db:
                continue
            rows = con.execute(
                f"SELECT COUNT(*) FROM {r.child} AS T1 JOIN {r.parent} AS T2 ON "
                f"T1.{r.fk} = T2.id GROUP BY T2.{r.key}"
            ).fetchall()
            self.group_counts[_rel_key(r)] = sorted(r2[0] for r2 in rows)

    def made_up(self, c: _Column, rng: random.Random) -> str:
        """A made-up value shaped like the column's (see ``_synthetic``): never a value of the
        example data, never a held-out one."""
        real = self.real_values
        col = c.col
        if col.kind == "year":  # made-up numbers may be seen ones, never held-out ones
            return unique(lambda r: str(r.randint(1900, 2099)), rng, _HELD)
        if col.kind == "num":
            decimals = "." in (c.seen[0] if c.seen else "")
            return unique(lambda r: pseudo_number(r, decimals=decimals), rng, _HELD)
        if col.kind == "date":
            return unique(
                lambda r: f"{r.randint(1990, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
                rng,
                real,
            )
        sample = c.seen[0] if c.seen else "X"
        if col.name in ("code", "flight_number"):
            return unique(pseudo_code, rng, real)
        words = len(sample.split())
        capital = sample[:1].isupper()
        return unique(lambda r: pseudo_name(r, words, capital=capital), rng, real)

    def cols(self, table: str, *kinds: str) -> list[Col]:
        """The lexicon's columns of ``table`` of these kinds."""
        return [c for c in COLUMNS if c.table == table and (not kinds or c.kind in kinds)]


def _rel_key(r: Relation) -> str:
    return f"{r.child}.{r.fk}>{r.parent}.{r.key}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Draw:
    """One attempt at a pair: draws values under the mode's rule about held-out values, and
    (for training) made-up values with probability ``synthetic``."""

    def __init__(
        self, world: SqlWorld, rng: random.Random, held: bool, synthetic: float = 0.0
    ) -> None:
        self.w = world
        self.rng = rng
        self.held = held  # draw held-out values where a column has them
        self.synthetic = synthetic

    def value(self, table: str, column: str) -> _Lit:
        c = self.w.columns[(table, column)]
        if not self.held and self.synthetic and self.rng.random() < self.synthetic:
            v = self.w.made_up(c, self.rng)
            is_held = False
        else:
            pool = c.held if self.held and c.held else c.seen
            v = self.rng.choice(pool)
            is_held = pool is c.held
        if c.col.kind in ("num", "year"):
            return _Lit(v, v, is_held)
        return _Lit(v, _quote(v), is_held)

    def own_cond(self, table: str, exclude: Sequence[str] = ()) -> _Cond | None:
        cols = [
            c
            for c in self.w.cols(table)
            if c.name not in exclude and c.phrases and c.kind != "label"
        ]
        if not cols:
            return None
        col = self.rng.choice(cols)
        op = self.rng.choice(sorted(col.phrases))
        phrase = self.rng.choice(col.phrases[op])
        if op == "like":  # a year of a date column
            year = self.rng.choice(["2022", "2023", "2024"])
            lit = _Lit(year, _quote(year + "%"), False)
            sql_op = "LIKE"
        else:
            lit = self.value(table, col.name)
            sql_op = op
        text = phrase.replace("{v}", lit.text)
        sql = f"{col.name} {sql_op} {lit.sql}"
        return _Cond(text, sql, f"T1.{sql}", col.name, None, (lit,))

    def join_cond(self, table: str, rels: Sequence[Relation] | None = None) -> _Cond | None:
        options = list(rels if rels is not None else [r for r in RELATIONS if r.child == table])
        if not options:
            return None
        r = self.rng.choice(options)
        prep = self.rng.choice(r.preps)
        parent = self.w.entities[r.parent]
        cat_cols = [c for c in self.w.cols(r.parent, "cat") if c.name != r.key]
        if cat_cols and self.rng.random() < 0.3:
            col = self.rng.choice(cat_cols)
            lit = self.value(r.parent, col.name)
            phrase = self.rng.choice(col.phrases["="]).replace("{v}", lit.text)
            text = f"{prep} {parent.pl} {phrase}"
            where = f"T2.{col.name} = {lit.sql}"
            key = f"{r.fk}>{r.parent}.{col.name}"
        else:
            lit = self.value(r.parent, r.key)
            text = f"{prep} " + self.rng.choice(r.np).replace("{v}", lit.text)
            where = f"T2.{r.key} = {lit.sql}"
            key = f"{r.fk}>{r.parent}.{r.key}"
        return _Cond(text, where, where, key, r, (lit,))

    def conds(self, table: str, *, most: int, join: bool) -> list[_Cond]:
        """0..``most`` conditions: at most one join condition (first), then own ones."""
        out: list[_Cond] = []
        n = self.rng.choice([c for c in (0, 1, 1, 1, 2) if c <= most])
        if n and join and self.rng.random() < 0.35:
            jc = self.join_cond(table)
            if jc is not None:
                out.append(jc)
        while len(out) < n:
            c = self.own_cond(table, exclude=[x.key for x in out])
            if c is None:
                break
            out.append(c)
        return out


def _join_from(table: str, rel: Relation | None) -> str:
    if rel is None:
        return table
    return f"{table} AS T1 JOIN {rel.parent} AS T2 ON T1.{rel.fk} = T2.id"


def _where(conds: Sequence[_Cond], joined: bool) -> str:
    if not conds:
        return ""
    return " WHERE " + " AND ".join(c.sql_q if joined else c.sql for c in conds)


def _phrase(conds: Sequence[_Cond]) -> str:
    return " and ".join(c.phrase for c in conds)


def _q(col: str, joined: bool, side: str = "T1") -> str:
    return f"{side}.{col}" if joined else col


def _count_n(counts: list[int], rng: random.Random, op: str) -> int | None:
    if len(counts) < 2 or counts[0] == counts[-1]:
        return None
    n = counts[rng.randrange(len(counts))]
    if n >= 50:
        n = n // 10 * 10
    elif n >= 20:
        n = n // 5 * 5
    if op == ">" and n >= counts[-1]:
        n = counts[-2] if counts[-2] < counts[-1] else counts[-1] - 1
    if op == "<" and n <= counts[0]:
        n = counts[0] + 1
    if op == ">=" and n > counts[-1]:
        n = counts[-1]
    return max(n, 1)


Built = tuple[str, str, str, dict[str, str], tuple[_Lit, ...]]
"""(shape, combo, sql, slots for the frame, literals)."""


def _shape(d: _Draw, shape: str, db: str) -> Built | None:
    w, rng = d.w, d.rng
    tables = [e for e in ENTITIES if e.db == db]
    e: Entity = rng.choice(tables)
    t = e.table
    base = {"pl": e.pl, "sg": e.sg, "C": ""}
    if shape == "count_all":
        return shape, f"{shape}|{t}", f"SELECT COUNT(*) FROM {t}", base, ()
    if shape == "count_where":
        conds = d.conds(t, most=2, join=True) or [c for c in [d.own_cond(t)] if c]
        if not conds:
            return None
        rel = conds[0].rel
        sql = f"SELECT COUNT(*) FROM {_join_from(t, rel)}{_where(conds, rel is not None)}"
        combo = f"{shape}|{t}|" + "|".join(c.key for c in conds)
        lits = tuple(x for c in conds for x in c.lits)
        return shape, combo, sql, base | {"C": _phrase(conds)}, lits
    if shape in ("list", "top1", "topk", "vs_avg", "lookup") and e.label is None:
        return None
    if shape == "list":
        cols = [c for c in w.cols(t) if c.kind in ("label", "cat", "num", "year", "date")]
        assert e.label is not None
        name = e.label if rng.random() < 0.6 else rng.choice(cols).name
        conds = [c for c in d.conds(t, most=2, join=True) if c.key != name]
        rel = conds[0].rel if conds else None
        joined = rel is not None
        sql = f"SELECT {_q(name, joined)} FROM {_join_from(t, rel)}{_where(conds, joined)}"
        picked = next(c for c in w.cols(t) if c.name == name)
        combo = f"{shape}|{t}|{name}|" + "|".join(x.key for x in conds)
        slots = base | {"col": picked.noun, "cols": picked.nouns, "C": _phrase(conds)}
        return shape, combo, sql, slots, tuple(x for c in conds for x in c.lits)
    if shape == "lookup":
        cols = [c for c in w.cols(t) if c.kind in ("num", "cat", "year", "date")]
        if not cols:
            return None
        col = rng.choice(cols)
        assert e.label is not None
        lit = d.value(t, e.label)
        sql = f"SELECT {col.name} FROM {t} WHERE {e.label} = {lit.sql}"
        slots = base | {"col": col.noun, "v": lit.text}
        return shape, f"{shape}|{t}|{col.name}", sql, slots, (lit,)
    if shape == "agg":
        nums = [c for c in w.cols(t) if c.aggs]
        if not nums:
            return None
        col = rng.choice(nums)
        agg = rng.choice(col.aggs)
        conds = d.conds(t, most=1, join=True)
        rel = conds[0].rel if conds else None
        joined = rel is not None
        sql = f"SELECT {agg}({_q(col.name, joined)}) FROM {_join_from(t, rel)}"
        sql += _where(conds, joined)
        combo = f"{shape}|{t}|{agg}|{col.name}|" + "|".join(x.key for x in conds)
        slots = base | {
            "aggw": rng.choice(_AGG_WORDS[agg]),
            "num": col.noun,
            "C": _phrase(conds),
        }
        return shape, combo, sql, slots, tuple(x for c in conds for x in c.lits)
    if shape in ("top1", "topk"):
        nums = [c for c in w.cols(t) if c.kind in ("num", "year")]
        if not nums:
            return None
        col = rng.choice(nums)
        direction = rng.choice(("DESC", "ASC"))
        conds = d.conds(t, most=1, join=False)
        assert e.label is not None
        k = 1 if shape == "top1" else rng.randint(2, 10)
        sql = f"SELECT {e.label} FROM {t}{_where(conds, False)} ORDER BY {col.name} {direction}"
        sql += f" LIMIT {k}"
        label = next(c for c in w.cols(t) if c.name == e.label)
        combo = f"{shape}|{t}|{col.name}|" + "|".join(x.key for x in conds)
        slots = base | {
            "num": col.noun,
            "dirw": rng.choice(_DIR_WORDS[direction]),
            "col": label.noun,
            "cols": label.nouns,
            "k": _WORDS[k] if k in _WORDS and rng.random() < 0.3 else str(k),
            "C": _phrase(conds),
        }
        return shape, combo, sql, slots, tuple(x for c in conds for x in c.lits)
    if shape in ("group_count", "group_agg", "having", "most"):
        groups: list[tuple[str, str, str, Relation | None, str]] = [
            (c.name, c.noun, c.nouns, None, f"{t}.{c.name}") for c in w.cols(t) if c.group
        ]
        groups += [
            (r.key, r.group_sg, r.group_pl, r, _rel_key(r)) for r in RELATIONS if r.child == t
        ]
        if not groups:
            return None
        gcol, g, gs, rel, gkey = rng.choice(groups)
        joined = rel is not None
        gref = _q(gcol, joined, "T2") if joined else gcol
        frm = _join_from(t, rel)
        slots = base | {"g": g, "gs": gs}
        bind = f"{t}|{gkey}"
        if shape == "group_count":
            conds = d.conds(t, most=1, join=False)
            conds = [c for c in conds if c.key != gcol or joined]
            sql = f"SELECT {gref}, COUNT(*) FROM {frm}{_where(conds, joined)} GROUP BY {gref}"
            combo = f"{shape}|{bind}|" + "|".join(x.key for x in conds)
            return (
                shape,
                combo,
                sql,
                slots | {"C": _phrase(conds)},
                tuple(x for c in conds for x in c.lits),
            )
        if shape == "group_agg":
            nums = [c for c in w.cols(t) if c.aggs and c.name != gcol]
            if not nums:
                return None
            col = rng.choice(nums)
            agg = rng.choice(col.aggs)
            sql = f"SELECT {gref}, {agg}({_q(col.name, joined)}) FROM {frm} GROUP BY {gref}"
            slots |= {"aggw": rng.choice(_AGG_WORDS[agg]), "num": col.noun}
            return shape, f"{shape}|{bind}|{agg}|{col.name}", sql, slots, ()
        if shape == "having":
            cmp_words, op = rng.choice(_HAVING)
            n = _count_n(w.group_counts[gkey], rng, op)
            if n is None:
                return None
            lit = _Lit(str(n), str(n), n >= 10 and held_value(str(n)))
            sql = f"SELECT {gref} FROM {frm} GROUP BY {gref} HAVING COUNT(*) {op} {n}"
            slots |= {"cmp": cmp_words, "n": str(n)}
            return shape, f"{shape}|{bind}", sql, slots, (lit,)
        most, direction = rng.choice(_MOST)
        sql = f"SELECT {gref} FROM {frm} GROUP BY {gref} ORDER BY COUNT(*) {direction} LIMIT 1"
        return shape, f"{shape}|{bind}", sql, slots | {"most": most}, ()
    if shape == "vs_avg":
        nums = [c for c in w.cols(t) if c.kind == "num" and c.aggs]
        if not nums:
            return None
        col = rng.choice(nums)
        word, op = rng.choice(_VS_AVG)
        assert e.label is not None
        sql = f"SELECT {e.label} FROM {t} WHERE {col.name} {op} (SELECT AVG({col.name}) FROM {t})"
        return shape, f"{shape}|{t}|{col.name}", sql, base | {"num": col.noun, "rel": word}, ()
    if shape == "nested_in":
        rels = [
            r
            for r in RELATIONS
            if r.child == t
            and w.entities[r.parent].label
            and r.fk not in ("origin_id", "destination_id")
        ]
        if not rels:
            return None
        r = rng.choice(rels)
        cond = d.own_cond(t)
        if cond is None:
            return None
        parent = w.entities[r.parent]
        sql = (
            f"SELECT {parent.label} FROM {r.parent} WHERE id IN "
            f"(SELECT {r.fk} FROM {t} WHERE {cond.sql})"
        )
        slots = base | {"ppl": parent.pl, "csg": e.sg, "cpl": e.pl, "C": cond.phrase}
        return shape, f"{shape}|{t}|{r.fk}|{cond.key}", sql, slots, cond.lits
    if shape == "distinct":
        cats = [c for c in w.cols(t, "cat") if c.group]
        if not cats:
            return None
        by = rng.choice(cats)
        cond = d.own_cond(t, exclude=[by.name])
        if cond is None:
            return None
        sql = f"SELECT DISTINCT {by.name} FROM {t} WHERE {cond.sql}"
        slots = base | {"g": by.noun, "gs": by.nouns, "C": cond.phrase}
        return shape, f"{shape}|{t}|{by.name}|{cond.key}", sql, slots, cond.lits
    raise AssertionError(shape)


_SPACES = re.compile(r" {2,}")
_BEFORE_PUNCT = re.compile(r" +([?.,])")


def _fill(frame: str, slots: dict[str, str]) -> str:
    text = frame
    for k, v in slots.items():
        text = text.replace("{" + k + "}", v)
    text = _BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text)).strip()
    return text[0].upper() + text[1:]


def draw_pair(
    world: SqlWorld,
    rng: random.Random,
    mode: Mode,
    *,
    db: str | None = None,
    synthetic: float = 0.0,
) -> SqlPair:
    """Draw one pair under ``mode`` (see ``Mode``), from ``db`` or any example database.

    Seen pairs (``train``) use seen frames, seen combinations and seen values only; each
    held-out mode changes exactly one of the three. With ``synthetic`` (training only), each
    value is a made-up one with that probability (``SqlWorld.made_up``).
    """
    dbs = sorted(world.paths)
    shapes = list(_SHAPE_WEIGHTS)
    weights = [_SHAPE_WEIGHTS[s] for s in shapes]
    for _ in range(10_000):
        name = db or rng.choice(dbs)
        shape = rng.choices(shapes, weights)[0]
        d = _Draw(world, rng, held=mode == "values", synthetic=synthetic)
        built = _shape(d, shape, name)
        if built is None:
            continue
        shape, combo, sql, slots, lits = built
        if held_combo(combo) != (mode == "combos"):
            continue
        held = tuple(x.text for x in lits if x.held)
        if bool(held) != (mode == "values"):
            continue
        frames = FRAMES[shape]
        frame = len(frames) - 1 if mode == "phrasings" else rng.randrange(len(frames) - 1)
        question = _fill(frames[frame], slots)
        return SqlPair(name, question, sql, shape, frame, combo, held)
    raise RuntimeError(f"no pair could be drawn for mode {mode!r}")


DrawFn = Callable[[random.Random], SqlPair]
