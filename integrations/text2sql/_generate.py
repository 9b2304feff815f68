"""Seeded generators that write the example SQLite databases (``school``, ``shop``,
``flights``) from their specs in ``_schemas``: the same seed gives the same rows on every
machine."""

from __future__ import annotations

import datetime
import os
import random
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from integrations.text2sql._schemas import (
    CITY_COUNTRY,
    SCHEMAS,
    VALUE_POOLS,
    DatabaseSpec,
    TableSpec,
    database,
)

__all__ = ["build_all", "build_database", "create_table_sql"]

Row = tuple[Any, ...]


def create_table_sql(table: TableSpec) -> str:
    """The ``CREATE TABLE`` statement of ``table`` (``id INTEGER PRIMARY KEY`` first, then a
    ``FOREIGN KEY`` clause per reference)."""
    parts = []
    for c in table.columns:
        parts.append(f"{c.name} {c.type} PRIMARY KEY" if c.name == "id" else f"{c.name} {c.type}")
    for c in table.columns:
        if c.references:
            ref_table, ref_column = c.references.split(".")
            parts.append(f"FOREIGN KEY ({c.name}) REFERENCES {ref_table}({ref_column})")
    return f"CREATE TABLE {table.name} (\n  " + ",\n  ".join(parts) + "\n)"


def build_database(name: str, path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write the example database ``name`` to the SQLite file ``path`` and return its path.

    The rows come from ``random.Random`` seeded with ``name`` and ``seed``: the same arguments
    give byte-identical tables. An existing file at ``path`` is replaced.

    Raises:
        LookupError: there is no example database ``name``.
        OSError: ``path`` cannot be written.
    """
    spec = database(name)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    rng = random.Random(f"legato/text2sql/{name}/{seed}")
    rows = _GENERATORS[name](rng)
    try:
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            for table in spec.tables:
                con.execute(create_table_sql(table))
                marks = ", ".join("?" for _ in table.columns)
                con.executemany(f"INSERT INTO {table.name} VALUES ({marks})", rows[table.name])
            con.commit()
            _check(con, spec)
        finally:
            con.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written file is left beside the target
        raise
    return target


def build_all(out_dir: str | os.PathLike[str], *, seed: int = 0) -> dict[str, Path]:
    """Write every example database to ``out_dir/<name>.sqlite``; their paths by name."""
    out = Path(out_dir)
    return {name: build_database(name, out / f"{name}.sqlite", seed=seed) for name in SCHEMAS}


def _check(con: sqlite3.Connection, spec: DatabaseSpec) -> None:
    for table in spec.tables:
        (count,) = con.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()
        if count != table.rows:
            raise AssertionError(f"{spec.name}.{table.name}: {count} rows, spec says {table.rows}")
    bad = con.execute("PRAGMA foreign_key_check").fetchall()
    if bad:
        raise AssertionError(f"{spec.name}: foreign key violations {bad[:3]}")


# -- helpers ---------------------------------------------------------------------------------
def _person(rng: random.Random) -> str:
    return f"{rng.choice(VALUE_POOLS['first_names'])} {rng.choice(VALUE_POOLS['last_names'])}"


def _weighted(rng: random.Random, options: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(options, weights=weights, k=1)[0]


def _date(rng: random.Random, first: datetime.date, last: datetime.date) -> str:
    return (first + datetime.timedelta(days=rng.randint(0, (last - first).days))).isoformat()


def _numbered(rows: Iterable[Sequence[Any]]) -> list[Row]:
    return [(i, *row) for i, row in enumerate(rows, start=1)]


# -- school ----------------------------------------------------------------------------------
def _school(rng: random.Random) -> dict[str, list[Row]]:
    spec = SCHEMAS["school"]
    depts = VALUE_POOLS["departments"]
    departments = _numbered(
        (name, rng.choice(VALUE_POOLS["buildings"]), rng.randint(200, 2000) * 1000)
        for name in depts
    )
    n_dept = len(departments)
    instructors = _numbered(
        (
            _person(rng),
            i % n_dept + 1 if i < 2 * n_dept else rng.randint(1, n_dept),
            rng.randint(400, 1600) * 100,
            rng.randint(1990, 2023),
        )
        for i in range(spec.table("instructors").rows)
    )
    by_dept: dict[int, list[int]] = {}
    for row in instructors:
        by_dept.setdefault(row[2], []).append(row[0])
    students = _numbered(
        (
            _person(rng),
            rng.randint(1, n_dept),
            rng.randint(1, 4),
            round(min(4.0, max(0.0, rng.gauss(3.0, 0.55))), 2),
            rng.choice(VALUE_POOLS["cities"]),
        )
        for _ in range(spec.table("students").rows)
    )
    courses_rows: list[tuple[Any, ...]] = []
    per_dept = spec.table("courses").rows // n_dept
    for d, dept in enumerate(depts, start=1):
        for k in range(per_dept):
            level = VALUE_POOLS["course_levels"][k % len(VALUE_POOLS["course_levels"])]
            part = "I" * (k // len(VALUE_POOLS["course_levels"]) + 1)
            courses_rows.append(
                (f"{level} {dept} {part}", d, rng.choice(by_dept[d]), rng.randint(2, 6))
            )
    courses = _numbered(courses_rows)
    courses_by_dept: dict[int, list[int]] = {}
    for row in courses:
        courses_by_dept.setdefault(row[2], []).append(row[0])
    seen: set[tuple[int, int]] = set()
    enrollment_rows: list[tuple[Any, ...]] = []
    while len(enrollment_rows) < spec.table("enrollments").rows:
        student = rng.choice(students)
        if rng.random() < 0.7:
            course = rng.choice(courses_by_dept[student[2]])
        else:
            course = rng.randint(1, len(courses))
        if (student[0], course) in seen:
            continue
        seen.add((student[0], course))
        enrollment_rows.append(
            (
                student[0],
                course,
                rng.choice(VALUE_POOLS["semesters"]),
                _weighted(rng, VALUE_POOLS["grades"], (30, 35, 20, 10, 5)),
            )
        )
    return {
        "departments": departments,
        "instructors": instructors,
        "students": students,
        "courses": courses,
        "enrollments": _numbered(enrollment_rows),
    }


# -- shop ------------------------------------------------------------------------------------
def _shop(rng: random.Random) -> dict[str, list[Row]]:
    spec = SCHEMAS["shop"]
    cats = VALUE_POOLS["categories"]
    categories = _numbered((c,) for c in cats)
    suppliers = _numbered(
        (name, rng.choice(VALUE_POOLS["countries"])) for name in VALUE_POOLS["supplier_names"]
    )
    nouns = VALUE_POOLS["product_nouns"]
    combos = [
        (c, f"{adj} {nouns[4 * (c - 1) + k]}")
        for c in range(1, len(cats) + 1)
        for adj in VALUE_POOLS["product_adjectives"]
        for k in range(4)
    ]
    rng.shuffle(combos)
    price_scale = {  # typical price per category, dollars
        "Books": 18.0, "Clothing": 45.0, "Electronics": 160.0, "Garden": 40.0,
        "Kitchen": 55.0, "Music": 220.0, "Sports": 70.0, "Toys": 25.0,
    }  # fmt: skip
    products = _numbered(
        (
            name,
            c,
            rng.randint(1, len(suppliers)),
            round(min(900.0, max(2.0, rng.lognormvariate(0, 0.6) * price_scale[cats[c - 1]])), 2),
            0 if rng.random() < 0.06 else rng.randint(1, 500),
        )
        for c, name in combos[: spec.table("products").rows]
    )
    customers = []
    for _ in range(spec.table("customers").rows):
        city = rng.choice(VALUE_POOLS["cities"])
        customers.append((_person(rng), city, CITY_COUNTRY[city], rng.randint(2015, 2024)))
    orders = _numbered(
        (
            rng.randint(1, len(customers)),
            _date(rng, datetime.date(2022, 1, 1), datetime.date(2024, 12, 31)),
            _weighted(rng, VALUE_POOLS["order_statuses"], (8, 12, 65, 10, 5)),
        )
        for _ in range(spec.table("orders").rows)
    )
    items = []
    for i in range(spec.table("order_items").rows):
        order = i + 1 if i < len(orders) else rng.randint(1, len(orders))
        product = rng.choice(products)
        discount = rng.choice((1.0, 1.0, 1.0, 0.9, 0.8))
        items.append((order, product[0], rng.randint(1, 5), round(product[4] * discount, 2)))
    return {
        "categories": categories,
        "suppliers": suppliers,
        "products": products,
        "customers": _numbered(customers),
        "orders": orders,
        "order_items": _numbered(items),
    }


# -- flights ---------------------------------------------------------------------------------
_MAKERS = {"A": "Airbus", "7": "Boeing", "E": "Embraer", "C": "Bombardier"}
_SEATS = {
    "A220": 130, "A320": 180, "A321": 220, "A330": 290, "A350": 325, "737": 170, "747": 410,
    "777": 370, "787": 290, "E175": 78, "E190": 100, "CRJ900": 90,
}  # fmt: skip
_CLASS_PRICE = {"economy": 1.0, "premium": 1.6, "business": 3.5, "first": 6.0}


def _flights(rng: random.Random) -> dict[str, list[Row]]:
    spec = SCHEMAS["flights"]
    airlines = _numbered(
        (name, rng.choice(VALUE_POOLS["countries"])) for name in VALUE_POOLS["airline_names"]
    )
    airports = _numbered(
        (city[:3].upper(), city, CITY_COUNTRY[city]) for city in VALUE_POOLS["cities"]
    )
    aircraft = _numbered(
        (model, _MAKERS[model[0]], _SEATS[model]) for model in VALUE_POOLS["aircraft_models"]
    )
    flight_rows = []
    for i in range(spec.table("flights").rows):
        airline = rng.choice(airlines)
        origin, destination = rng.sample(range(1, len(airports) + 1), 2)
        flight_rows.append(
            (
                f"{airline[1][:2].upper()}{100 + i}",
                airline[0],
                origin,
                destination,
                rng.randint(1, len(aircraft)),
                _date(rng, datetime.date(2024, 1, 1), datetime.date(2024, 12, 31)),
                rng.randint(9, 180) * 5,
            )
        )
    flights = _numbered(flight_rows)
    passengers = _numbered(
        (_person(rng), rng.choice(VALUE_POOLS["countries"]), rng.randint(1940, 2010))
        for _ in range(spec.table("passengers").rows)
    )
    bookings = []
    for _ in range(spec.table("bookings").rows):
        flight = rng.choice(flights)
        seat = _weighted(rng, VALUE_POOLS["seat_classes"], (70, 15, 12, 3))
        base = 40.0 + flight[7] * 0.45 * rng.uniform(0.8, 1.3)
        bookings.append(
            (flight[0], rng.randint(1, len(passengers)), seat, round(base * _CLASS_PRICE[seat], 2))
        )
    return {
        "airlines": airlines,
        "airports": airports,
        "aircraft": aircraft,
        "flights": flights,
        "passengers": passengers,
        "bookings": _numbered(bookings),
    }


_GENERATORS: dict[str, Callable[[random.Random], dict[str, list[Row]]]] = {
    "school": _school,
    "shop": _shop,
    "flights": _flights,
}
