"""How questions speak of the example databases: a noun for every table and column, the phrases
that state a condition on a column, and how a child table relates to the table it references.

The schemas themselves (tables, columns, value pools) come from ``integrations.text2sql``; this
module only adds English. Phrases are post-modifiers of a plural noun ("students *from Tokyo*",
"instructors *hired before 2001*"), with ``{v}`` where the value goes, so any frame that says
"the students {C}" can take any condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = ["COLUMNS", "ENTITIES", "RELATIONS", "Col", "Entity", "Relation", "Kind"]

Kind = Literal["cat", "label", "num", "year", "date"]
"""``cat``: a text column with a small vocabulary; ``label``: a text column that names a row
(a person, a title, a code); ``num``: a number; ``year``: a number that is a year; ``date``: a
``YYYY-MM-DD`` text column."""

_NUM_OPS: Final = {
    ">": ("with a {n} above {v}", "whose {n} is more than {v}", "with {n} greater than {v}"),
    "<": ("with a {n} below {v}", "whose {n} is less than {v}", "with {n} under {v}"),
    ">=": ("with a {n} of at least {v}", "whose {n} is {v} or more"),
    "<=": ("with a {n} of at most {v}", "whose {n} is {v} or less"),
}
# No "=" for numbers by default: a threshold drawn from a range rarely equals a row's value.
_CAT_EQ: Final = ("whose {n} is {v}", "with {n} {v}")


@dataclass(frozen=True, slots=True)
class Col:
    """One column as questions speak of it.

    Attributes:
        table, name: where it is.
        kind: see ``Kind``.
        noun, nouns: what a question calls it, singular and plural ("home city", "home cities").
        phrases: condition phrases by operator (``"="``, ``">"``...; ``"like"`` for a year of a
            date column), each with ``{v}``.
        aggs: the aggregates a question may ask of it (``AVG``, ``MAX``, ``MIN``, ``SUM``).
        group: whether questions group rows by it ("in each city").
        values: how its literal values are drawn: ``db`` (from the database's rows) or
            ``lo:hi:step`` for numbers (``step`` may be ``0.1``).
    """

    table: str
    name: str
    kind: Kind
    noun: str
    nouns: str
    phrases: Mapping[str, tuple[str, ...]]
    aggs: tuple[str, ...] = ()
    group: bool = False
    values: str = "db"


def _col(
    table: str,
    name: str,
    kind: Kind,
    noun: str,
    nouns: str | None = None,
    *,
    extra: Mapping[str, tuple[str, ...]] | None = None,
    only: Mapping[str, tuple[str, ...]] | None = None,
    aggs: tuple[str, ...] = (),
    group: bool = False,
    values: str = "db",
) -> Col:
    phrases: dict[str, tuple[str, ...]] = {}
    if only is not None:
        phrases = dict(only)
    elif kind == "cat":
        phrases = {"=": tuple(p.format(n=noun, v="{v}") for p in _CAT_EQ)}
    elif kind == "num":
        phrases = {op: tuple(p.format(n=noun, v="{v}") for p in ps) for op, ps in _NUM_OPS.items()}
    elif kind == "label":
        phrases = {"=": ("named {v}", "called {v}")}
    for op, ps in (extra or {}).items():
        phrases[op] = phrases.get(op, ()) + ps
    return Col(
        table,
        name,
        kind,
        noun,
        nouns or noun + "s",
        MappingProxyType(phrases),
        aggs,
        group,
        values,
    )


def _years(verb: str) -> dict[str, tuple[str, ...]]:
    return {
        ">": (f"{verb} after {{v}}",),
        "<": (f"{verb} before {{v}}",),
        "=": (f"{verb} in {{v}}",),
    }


@dataclass(frozen=True, slots=True)
class Entity:
    """A table as questions speak of it: its row noun and the column that names a row (None
    for tables whose rows have no name, such as enrollments)."""

    db: str
    table: str
    sg: str
    pl: str
    label: str | None


@dataclass(frozen=True, slots=True)
class Relation:
    """A foreign key as a question states it: "students *in* the Physics department".

    Attributes:
        db, child, fk, parent: ``child.fk`` references ``parent.id``.
        preps: the words before the parent's noun phrase ("in", "majoring in").
        np: noun phrases for the parent row named by ``key`` (``{v}``), e.g. "the {v} department".
        key: the parent column those phrases name (``name``, ``title``, ``city``...).
        group_sg, group_pl: how "each ..." names the parent when grouping by ``key``.
    """

    db: str
    child: str
    fk: str
    parent: str
    preps: tuple[str, ...]
    np: tuple[str, ...]
    key: str
    group_sg: str
    group_pl: str


_E = Entity
ENTITIES: Final[tuple[Entity, ...]] = (
    _E("school", "departments", "department", "departments", "name"),
    _E("school", "instructors", "instructor", "instructors", "name"),
    _E("school", "students", "student", "students", "name"),
    _E("school", "courses", "course", "courses", "title"),
    _E("school", "enrollments", "enrollment", "enrollments", None),
    _E("shop", "categories", "category", "categories", "name"),
    _E("shop", "suppliers", "supplier", "suppliers", "name"),
    _E("shop", "products", "product", "products", "name"),
    _E("shop", "customers", "customer", "customers", "name"),
    _E("shop", "orders", "order", "orders", None),
    _E("shop", "order_items", "order item", "order items", None),
    _E("flights", "airlines", "airline", "airlines", "name"),
    _E("flights", "airports", "airport", "airports", "code"),
    _E("flights", "aircraft", "aircraft type", "aircraft types", "model"),
    _E("flights", "flights", "flight", "flights", "flight_number"),
    _E("flights", "passengers", "passenger", "passengers", "name"),
    _E("flights", "bookings", "booking", "bookings", None),
)
"""Every example table, with the nouns questions use for its rows."""

COLUMNS: Final[tuple[Col, ...]] = (
    # school
    _col("departments", "name", "label", "name", extra={"=": ("called {v}",)}),
    _col(
        "departments",
        "building",
        "cat",
        "building",
        extra={"=": ("in {v}", "located in {v}")},
        group=True,
    ),
    _col(
        "departments",
        "budget",
        "num",
        "budget",
        aggs=("AVG", "MAX", "MIN", "SUM"),
        values="300000:1900000:100000",
    ),
    _col("instructors", "name", "label", "name"),
    _col(
        "instructors",
        "salary",
        "num",
        "salary",
        "salaries",
        extra={">": ("earning more than {v}",), "<": ("earning less than {v}",)},
        aggs=("AVG", "MAX", "MIN", "SUM"),
        values="50000:150000:5000",
    ),
    _col(
        "instructors",
        "hire_year",
        "year",
        "hire year",
        only=_years("hired"),
        aggs=("MIN", "MAX"),
        values="1991:2022:1",
    ),
    _col("students", "name", "label", "name"),
    _col(
        "students",
        "year",
        "num",
        "year of study",
        "years of study",
        only={"=": ("in year {v}", "in their year {v}"), ">": ("beyond year {v}",)},
        aggs=("AVG",),
        group=True,
        values="1:4:1",
    ),
    _col(
        "students",
        "gpa",
        "num",
        "GPA",
        "GPAs",
        aggs=("AVG", "MAX", "MIN"),
        values="1.5:3.9:0.1",
    ),
    _col(
        "students",
        "city",
        "cat",
        "home city",
        "home cities",
        extra={"=": ("from {v}", "who live in {v}")},
        group=True,
    ),
    _col("courses", "title", "label", "title", extra={"=": ("titled {v}",)}),
    _col(
        "courses",
        "credits",
        "num",
        "credit value",
        only={
            "=": ("worth {v} credits", "with {v} credits"),
            ">": ("worth more than {v} credits",),
            "<": ("worth fewer than {v} credits",),
        },
        aggs=("AVG", "SUM", "MAX", "MIN"),
        group=True,
        values="2:6:1",
    ),
    _col(
        "enrollments",
        "semester",
        "cat",
        "semester",
        extra={"=": ("in {v}", "from {v}")},
        group=True,
    ),
    _col(
        "enrollments",
        "grade",
        "cat",
        "grade",
        extra={"=": ("with grade {v}", "graded {v}")},
        group=True,
    ),
    # shop
    _col("categories", "name", "label", "name"),
    _col("suppliers", "name", "label", "name"),
    _col(
        "suppliers",
        "country",
        "cat",
        "country",
        "countries",
        extra={"=": ("from {v}", "based in {v}")},
        group=True,
    ),
    _col("products", "name", "label", "name"),
    _col(
        "products",
        "price",
        "num",
        "price",
        extra={">": ("costing more than {v}",), "<": ("cheaper than {v}",)},
        aggs=("AVG", "MAX", "MIN"),
        values="5:800:5",
    ),
    _col(
        "products",
        "stock",
        "num",
        "stock",
        "stock levels",
        extra={"<": ("with fewer than {v} units in stock",), "=": ("with {v} units in stock",)},
        aggs=("AVG", "SUM", "MAX", "MIN"),
        values="0:490:10",
    ),
    _col("customers", "name", "label", "name"),
    _col(
        "customers",
        "city",
        "cat",
        "city",
        "cities",
        extra={"=": ("from {v}", "who live in {v}")},
        group=True,
    ),
    _col(
        "customers",
        "country",
        "cat",
        "country",
        "countries",
        extra={"=": ("in {v}",)},
        group=True,
    ),
    _col(
        "customers",
        "signup_year",
        "year",
        "signup year",
        only=_years("who signed up"),
        aggs=("MIN", "MAX"),
        group=True,
        values="2016:2023:1",
    ),
    _col(
        "orders",
        "order_date",
        "date",
        "order date",
        only={"like": ("placed in {v}", "made in {v}"), "=": ("placed on {v}",)},
        aggs=("MIN", "MAX"),
    ),
    _col(
        "orders",
        "status",
        "cat",
        "status",
        "statuses",
        extra={"=": ("that are {v}", "marked {v}")},
        group=True,
    ),
    _col(
        "order_items",
        "quantity",
        "num",
        "quantity",
        "quantities",
        extra={">": ("of more than {v} units",)},
        aggs=("AVG", "SUM", "MAX"),
        values="1:5:1",
    ),
    _col(
        "order_items",
        "unit_price",
        "num",
        "unit price",
        aggs=("AVG", "MAX", "MIN"),
        values="5:800:5",
    ),
    # flights
    _col("airlines", "name", "label", "name"),
    _col(
        "airlines",
        "country",
        "cat",
        "home country",
        "home countries",
        extra={"=": ("from {v}", "based in {v}")},
        group=True,
    ),
    _col("airports", "code", "label", "code", extra={"=": ("with the code {v}",)}),
    _col(
        "airports",
        "city",
        "cat",
        "city",
        "cities",
        extra={"=": ("in {v}", "serving {v}")},
    ),
    _col(
        "airports",
        "country",
        "cat",
        "country",
        "countries",
        extra={"=": ("in {v}",)},
        group=True,
    ),
    _col("aircraft", "model", "label", "model"),
    _col(
        "aircraft",
        "manufacturer",
        "cat",
        "manufacturer",
        extra={"=": ("made by {v}", "built by {v}")},
        group=True,
    ),
    _col(
        "aircraft",
        "seats",
        "num",
        "seat count",
        extra={">": ("with more than {v} seats",), "<": ("with fewer than {v} seats",)},
        aggs=("AVG", "MAX", "MIN", "SUM"),
        values="80:400:10",
    ),
    _col("flights", "flight_number", "label", "flight number", extra={"=": ("numbered {v}",)}),
    _col(
        "flights",
        "departure_date",
        "date",
        "departure date",
        only={"=": ("departing on {v}", "leaving on {v}")},
        aggs=("MIN", "MAX"),
    ),
    _col(
        "flights",
        "duration",
        "num",
        "duration",
        extra={">": ("longer than {v} minutes",), "<": ("shorter than {v} minutes",)},
        aggs=("AVG", "MAX", "MIN"),
        values="60:840:30",
    ),
    _col("passengers", "name", "label", "name"),
    _col(
        "passengers",
        "nationality",
        "cat",
        "nationality",
        "nationalities",
        extra={"=": ("from {v}", "who are citizens of {v}")},
        group=True,
    ),
    _col(
        "passengers",
        "birth_year",
        "year",
        "birth year",
        only=_years("born"),
        aggs=("MIN", "MAX"),
        values="1945:2005:1",
    ),
    _col(
        "bookings",
        "seat_class",
        "cat",
        "seat class",
        "seat classes",
        extra={"=": ("in {v} class", "in the {v} cabin")},
        group=True,
    ),
    _col(
        "bookings",
        "price",
        "num",
        "price",
        extra={">": ("costing more than {v}",), "<": ("costing less than {v}",)},
        aggs=("AVG", "MAX", "MIN", "SUM"),
        values="100:5000:50",
    ),
)
"""Every column a question may name (keys and ids are left out)."""

_R = Relation
RELATIONS: Final[tuple[Relation, ...]] = (
    _R("school", "instructors", "department_id", "departments", ("in", "working in"),
       ("the {v} department",), "name", "department", "departments"),
    _R("school", "students", "department_id", "departments", ("in", "majoring in"),
       ("the {v} department",), "name", "department", "departments"),
    _R("school", "courses", "department_id", "departments", ("offered by", "of"),
       ("the {v} department",), "name", "department", "departments"),
    _R("school", "courses", "instructor_id", "instructors", ("taught by",),
       ("{v}", "the instructor {v}"), "name", "instructor", "instructors"),
    _R("school", "enrollments", "student_id", "students", ("of", "by"),
       ("{v}", "the student {v}"), "name", "student", "students"),
    _R("school", "enrollments", "course_id", "courses", ("in", "for"),
       ("{v}", "the course {v}"), "title", "course", "courses"),
    _R("shop", "products", "category_id", "categories", ("in",),
       ("the {v} category",), "name", "category", "categories"),
    _R("shop", "products", "supplier_id", "suppliers", ("from", "supplied by"),
       ("{v}", "the supplier {v}"), "name", "supplier", "suppliers"),
    _R("shop", "orders", "customer_id", "customers", ("placed by", "from"),
       ("{v}", "the customer {v}"), "name", "customer", "customers"),
    _R("shop", "order_items", "product_id", "products", ("for",),
       ("{v}", "the product {v}"), "name", "product", "products"),
    _R("flights", "flights", "airline_id", "airlines", ("operated by", "run by"),
       ("{v}",), "name", "airline", "airlines"),
    _R("flights", "flights", "origin_id", "airports", ("departing from", "leaving"),
       ("{v}",), "city", "departure city", "departure cities"),
    _R("flights", "flights", "destination_id", "airports", ("arriving in", "going to"),
       ("{v}",), "city", "destination city", "destination cities"),
    _R("flights", "flights", "aircraft_id", "aircraft", ("flown on", "using"),
       ("the {v}", "{v} aircraft"), "model", "aircraft type", "aircraft types"),
    _R("flights", "bookings", "passenger_id", "passengers", ("made by", "for"),
       ("{v}", "the passenger {v}"), "name", "passenger", "passengers"),
    _R("flights", "bookings", "flight_id", "flights", ("on",),
       ("flight {v}",), "flight_number", "flight", "flights"),
)  # fmt: skip
"""Foreign keys a question may follow (``order_items.order_id`` is left out: orders have no
name a question could give)."""
