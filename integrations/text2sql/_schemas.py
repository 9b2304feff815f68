"""The example databases' schemas as data: tables, columns, foreign keys and the value pools
their text columns draw from (one source for the generators, the prompts, and any corpus built
over the same schemas)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CITY_COUNTRY",
    "SCHEMAS",
    "VALUE_POOLS",
    "ColumnSpec",
    "DatabaseSpec",
    "ForeignKey",
    "TableSpec",
    "database",
    "databases",
]

ColumnType = Literal["INTEGER", "REAL", "TEXT"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnSpec:
    """One column of an example table.

    Attributes:
        name: the column name (lowercase, snake_case).
        type: its SQLite type: ``INTEGER``, ``REAL`` or ``TEXT``.
        description: a few words on what it holds (used in prompts and by corpus templates).
        pool: for a text column whose values come from a fixed vocabulary, the key of that
            vocabulary in ``VALUE_POOLS`` (every value of the column is in the pool; a person's
            name is ``first last`` from ``first_names`` and ``last_names``, pool ``person``).
        references: ``"table.column"`` for a foreign key, else None.
        low: for a number column, the smallest value the generator writes.
        high: for a number column, the largest value the generator writes.
    """

    name: str
    type: ColumnType
    description: str
    pool: str | None = None
    references: str | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TableSpec:
    """One example table: its columns (the first is the ``id INTEGER PRIMARY KEY``), what a row
    is, and how many rows the generator writes."""

    name: str
    description: str
    columns: tuple[ColumnSpec, ...]
    rows: int

    @property
    def column_names(self) -> tuple[str, ...]:
        """The column names, in table order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name``.

        Raises:
            KeyError: the table has no such column; the message lists its columns.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}; it has {self.column_names}")


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """``table.column`` references ``ref_table.ref_column``."""

    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSpec:
    """One example database: a domain, its tables in creation order (referenced tables first)."""

    name: str
    description: str
    tables: tuple[TableSpec, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(init=False)

    def __post_init__(self) -> None:
        fks: list[ForeignKey] = []
        for t in self.tables:
            for c in t.columns:
                if c.references:
                    ref_table, ref_column = c.references.split(".")
                    fks.append(ForeignKey(t.name, c.name, ref_table, ref_column))
        object.__setattr__(self, "foreign_keys", tuple(fks))

    @property
    def table_names(self) -> tuple[str, ...]:
        """The table names, in creation order."""
        return tuple(t.name for t in self.tables)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every distinct column name over all tables, sorted."""
        return tuple(sorted({c.name for t in self.tables for c in t.columns}))

    def table(self, name: str) -> TableSpec:
        """The table called ``name``.

        Raises:
            KeyError: there is no such table; the message lists the tables.
        """
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"database {self.name!r} has no table {name!r}; it has {self.table_names}")


VALUE_POOLS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "first_names": (
            "Alice",
            "Bruno",
            "Carla",
            "Daniel",
            "Elena",
            "Farid",
            "Grace",
            "Hugo",
            "Ines",
            "Jonas",
            "Keiko",
            "Liam",
            "Maya",
            "Nikos",
            "Olga",
            "Pedro",
            "Quinn",
            "Rosa",
            "Samir",
            "Tara",
            "Umar",
            "Vera",
            "Wei",
            "Yara",
            "Zoe",
        ),
        "last_names": (
            "Adams",
            "Baker",
            "Chen",
            "Diaz",
            "Evans",
            "Fischer",
            "Garcia",
            "Hansen",
            "Ito",
            "Jones",
            "Kim",
            "Lopez",
            "Moreau",
            "Novak",
            "Okafor",
            "Patel",
            "Rossi",
            "Silva",
            "Tanaka",
            "Weber",
        ),
        "cities": (
            "Amsterdam",
            "Berlin",
            "Boston",
            "Cairo",
            "Chicago",
            "Dublin",
            "Lisbon",
            "London",
            "Madrid",
            "Mumbai",
            "Nairobi",
            "Oslo",
            "Paris",
            "Rome",
            "Seoul",
            "Sydney",
            "Tokyo",
            "Toronto",
            "Vienna",
            "Warsaw",
        ),
        "countries": (
            "Australia",
            "Austria",
            "Brazil",
            "Canada",
            "Egypt",
            "France",
            "Germany",
            "India",
            "Ireland",
            "Italy",
            "Japan",
            "Kenya",
            "Korea",
            "Mexico",
            "Netherlands",
            "Norway",
            "Poland",
            "Portugal",
            "Spain",
            "UK",
            "USA",
        ),
        # school
        "departments": (
            "Biology",
            "Chemistry",
            "Computer Science",
            "Economics",
            "History",
            "Mathematics",
            "Music",
            "Physics",
        ),
        "buildings": ("North Hall", "South Hall", "East Wing", "West Wing", "Main Building"),
        "course_levels": ("Introduction to", "Topics in", "Advanced", "Seminar in", "Methods in"),
        "semesters": ("Fall 2022", "Spring 2023", "Fall 2023", "Spring 2024"),
        "grades": ("A", "B", "C", "D", "F"),
        # shop
        "categories": (
            "Books",
            "Clothing",
            "Electronics",
            "Garden",
            "Kitchen",
            "Music",
            "Sports",
            "Toys",
        ),
        "product_adjectives": (
            "Basic",
            "Classic",
            "Compact",
            "Deluxe",
            "Eco",
            "Mini",
            "Pro",
            "Smart",
            "Ultra",
            "Vintage",
        ),
        # four per category, in the order of "categories" (Books: Novel..Notebook, ...)
        "product_nouns": (
            "Novel",
            "Cookbook",
            "Atlas",
            "Notebook",
            "Jacket",
            "Shirt",
            "Scarf",
            "Sneakers",
            "Headphones",
            "Speaker",
            "Charger",
            "Camera",
            "Shovel",
            "Hose",
            "Planter",
            "Lamp",
            "Kettle",
            "Blender",
            "Knife",
            "Pan",
            "Guitar",
            "Keyboard",
            "Drum",
            "Ukulele",
            "Ball",
            "Racket",
            "Helmet",
            "Bike",
            "Puzzle",
            "Robot",
            "Kite",
            "Doll",
        ),
        "supplier_names": (
            "Acme",
            "Bolt",
            "Crest",
            "Delta",
            "Echo",
            "Forge",
            "Globe",
            "Harbor",
            "Iris",
            "Jade",
            "Kite",
            "Lumen",
            "Maple",
            "Nova",
            "Orbit",
            "Pine",
            "Quartz",
            "Ridge",
            "Summit",
            "Terra",
        ),
        "order_statuses": ("pending", "shipped", "delivered", "cancelled", "returned"),
        # flights
        "airline_names": (
            "Aurora Air",
            "Blue Sky",
            "Coastal",
            "Falcon Air",
            "Horizon",
            "Jetstream",
            "Meridian",
            "Northwind",
            "Pacific Star",
            "Polar Air",
            "Sunline",
            "Zephyr",
        ),
        "manufacturers": ("Airbus", "Boeing", "Embraer", "Bombardier"),
        "aircraft_models": (
            "A220",
            "A320",
            "A321",
            "A330",
            "A350",
            "737",
            "747",
            "777",
            "787",
            "E175",
            "E190",
            "CRJ900",
        ),
        "seat_classes": ("economy", "premium", "business", "first"),
    }
)
"""Fixed vocabularies of the example databases' text columns, by pool name (see
``ColumnSpec.pool``). ``product_nouns`` holds four nouns per category, in category order; the
pool ``person`` of a name column means ``"<first> <last>"`` from ``first_names`` and
``last_names``."""

CITY_COUNTRY: Mapping[str, str] = MappingProxyType(
    {
        "Amsterdam": "Netherlands",
        "Berlin": "Germany",
        "Boston": "USA",
        "Cairo": "Egypt",
        "Chicago": "USA",
        "Dublin": "Ireland",
        "Lisbon": "Portugal",
        "London": "UK",
        "Madrid": "Spain",
        "Mumbai": "India",
        "Nairobi": "Kenya",
        "Oslo": "Norway",
        "Paris": "France",
        "Rome": "Italy",
        "Seoul": "Korea",
        "Sydney": "Australia",
        "Tokyo": "Japan",
        "Toronto": "Canada",
        "Vienna": "Austria",
        "Warsaw": "Poland",
    }
)
"""The country of each city in ``VALUE_POOLS["cities"]`` (a customer's or an airport's country
is its city's)."""


def _c(
    name: str,
    type: ColumnType,
    description: str,
    *,
    pool: str | None = None,
    references: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> ColumnSpec:
    return ColumnSpec(
        name=name,
        type=type,
        description=description,
        pool=pool,
        references=references,
        low=low,
        high=high,
    )


def _id(what: str) -> ColumnSpec:
    return _c("id", "INTEGER", f"{what} id (primary key)")


_SCHOOL = DatabaseSpec(
    name="school",
    description="A university: departments, instructors, students, courses and enrollments.",
    tables=(
        TableSpec(
            name="departments",
            description="one row per academic department",
            rows=8,
            columns=(
                _id("department"),
                _c("name", "TEXT", "department name", pool="departments"),
                _c("building", "TEXT", "building the department is in", pool="buildings"),
                _c("budget", "INTEGER", "yearly budget in dollars", low=200_000, high=2_000_000),
            ),
        ),
        TableSpec(
            name="instructors",
            description="one row per instructor, each in one department",
            rows=60,
            columns=(
                _id("instructor"),
                _c("name", "TEXT", "full name", pool="person"),
                _c("department_id", "INTEGER", "their department", references="departments.id"),
                _c("salary", "INTEGER", "yearly salary in dollars", low=40_000, high=160_000),
                _c("hire_year", "INTEGER", "year hired", low=1990, high=2023),
            ),
        ),
        TableSpec(
            name="students",
            description="one row per student, each majoring in one department",
            rows=1200,
            columns=(
                _id("student"),
                _c("name", "TEXT", "full name", pool="person"),
                _c("department_id", "INTEGER", "major department", references="departments.id"),
                _c("year", "INTEGER", "year of study, 1 to 4", low=1, high=4),
                _c("gpa", "REAL", "grade point average, 0.0 to 4.0", low=0.0, high=4.0),
                _c("city", "TEXT", "home city", pool="cities"),
            ),
        ),
        TableSpec(
            name="courses",
            description="one row per course, taught by one instructor of its department",
            rows=80,
            columns=(
                _id("course"),
                _c("title", "TEXT", "course title: a level, the department name, I or II"),
                _c("department_id", "INTEGER", "its department", references="departments.id"),
                _c("instructor_id", "INTEGER", "who teaches it", references="instructors.id"),
                _c("credits", "INTEGER", "credit points, 2 to 6", low=2, high=6),
            ),
        ),
        TableSpec(
            name="enrollments",
            description="one row per student taking a course in a semester, with the grade",
            rows=4000,
            columns=(
                _id("enrollment"),
                _c("student_id", "INTEGER", "the student", references="students.id"),
                _c("course_id", "INTEGER", "the course", references="courses.id"),
                _c("semester", "TEXT", "semester, e.g. Fall 2023", pool="semesters"),
                _c("grade", "TEXT", "letter grade A to F", pool="grades"),
            ),
        ),
    ),
)

_SHOP = DatabaseSpec(
    name="shop",
    description="An online shop: categories, suppliers, products, customers, orders, order items.",
    tables=(
        TableSpec(
            name="categories",
            description="one row per product category",
            rows=8,
            columns=(_id("category"), _c("name", "TEXT", "category name", pool="categories")),
        ),
        TableSpec(
            name="suppliers",
            description="one row per supplier",
            rows=20,
            columns=(
                _id("supplier"),
                _c("name", "TEXT", "supplier name", pool="supplier_names"),
                _c("country", "TEXT", "country the supplier is in", pool="countries"),
            ),
        ),
        TableSpec(
            name="products",
            description="one row per product, in one category, from one supplier",
            rows=300,
            columns=(
                _id("product"),
                _c("name", "TEXT", "product name: an adjective and a noun"),
                _c("category_id", "INTEGER", "its category", references="categories.id"),
                _c("supplier_id", "INTEGER", "its supplier", references="suppliers.id"),
                _c("price", "REAL", "list price in dollars", low=2.0, high=900.0),
                _c("stock", "INTEGER", "units in stock", low=0, high=500),
            ),
        ),
        TableSpec(
            name="customers",
            description="one row per customer",
            rows=800,
            columns=(
                _id("customer"),
                _c("name", "TEXT", "full name", pool="person"),
                _c("city", "TEXT", "city", pool="cities"),
                _c("country", "TEXT", "country", pool="countries"),
                _c("signup_year", "INTEGER", "year the customer signed up", low=2015, high=2024),
            ),
        ),
        TableSpec(
            name="orders",
            description="one row per order placed by a customer",
            rows=2500,
            columns=(
                _id("order"),
                _c("customer_id", "INTEGER", "who ordered", references="customers.id"),
                _c("order_date", "TEXT", "date ordered, YYYY-MM-DD, 2022 to 2024"),
                _c("status", "TEXT", "order status", pool="order_statuses"),
            ),
        ),
        TableSpec(
            name="order_items",
            description="one row per product line of an order",
            rows=6000,
            columns=(
                _id("order item"),
                _c("order_id", "INTEGER", "the order", references="orders.id"),
                _c("product_id", "INTEGER", "the product", references="products.id"),
                _c("quantity", "INTEGER", "units ordered, 1 to 5", low=1, high=5),
                _c("unit_price", "REAL", "price paid per unit in dollars", low=2.0, high=900.0),
            ),
        ),
    ),
)

_FLIGHTS = DatabaseSpec(
    name="flights",
    description="Air travel: airlines, airports, aircraft, flights, passengers and bookings.",
    tables=(
        TableSpec(
            name="airlines",
            description="one row per airline",
            rows=12,
            columns=(
                _id("airline"),
                _c("name", "TEXT", "airline name", pool="airline_names"),
                _c("country", "TEXT", "home country", pool="countries"),
            ),
        ),
        TableSpec(
            name="airports",
            description="one row per airport, one per city",
            rows=20,
            columns=(
                _id("airport"),
                _c("code", "TEXT", "three-letter code, e.g. AMS"),
                _c("city", "TEXT", "city served", pool="cities"),
                _c("country", "TEXT", "country", pool="countries"),
            ),
        ),
        TableSpec(
            name="aircraft",
            description="one row per aircraft type",
            rows=12,
            columns=(
                _id("aircraft"),
                _c("model", "TEXT", "model name", pool="aircraft_models"),
                _c("manufacturer", "TEXT", "manufacturer", pool="manufacturers"),
                _c("seats", "INTEGER", "number of seats", low=70, high=420),
            ),
        ),
        TableSpec(
            name="flights",
            description="one row per scheduled flight between two airports",
            rows=1500,
            columns=(
                _id("flight"),
                _c("flight_number", "TEXT", "airline code and number, e.g. AU123"),
                _c("airline_id", "INTEGER", "operating airline", references="airlines.id"),
                _c("origin_id", "INTEGER", "departure airport", references="airports.id"),
                _c("destination_id", "INTEGER", "arrival airport", references="airports.id"),
                _c("aircraft_id", "INTEGER", "aircraft type flown", references="aircraft.id"),
                _c("departure_date", "TEXT", "date of departure, YYYY-MM-DD, in 2024"),
                _c("duration", "INTEGER", "flight time in minutes", low=45, high=900),
            ),
        ),
        TableSpec(
            name="passengers",
            description="one row per passenger",
            rows=1000,
            columns=(
                _id("passenger"),
                _c("name", "TEXT", "full name", pool="person"),
                _c("nationality", "TEXT", "country of citizenship", pool="countries"),
                _c("birth_year", "INTEGER", "year of birth", low=1940, high=2010),
            ),
        ),
        TableSpec(
            name="bookings",
            description="one row per seat booked by a passenger on a flight",
            rows=4000,
            columns=(
                _id("booking"),
                _c("flight_id", "INTEGER", "the flight", references="flights.id"),
                _c("passenger_id", "INTEGER", "the passenger", references="passengers.id"),
                _c("seat_class", "TEXT", "cabin class", pool="seat_classes"),
                _c("price", "REAL", "price paid in dollars", low=40.0, high=6000.0),
            ),
        ),
    ),
)

SCHEMAS: Mapping[str, DatabaseSpec] = MappingProxyType(
    {s.name: s for s in (_SCHOOL, _SHOP, _FLIGHTS)}
)
"""The example databases by name: ``school``, ``shop``, ``flights``."""


def databases() -> tuple[DatabaseSpec, ...]:
    """The example databases' specs, in a fixed order (``school``, ``shop``, ``flights``)."""
    return tuple(SCHEMAS.values())


def database(name: str) -> DatabaseSpec:
    """The example database spec called ``name``.

    Raises:
        LookupError: there is no such example database; the message lists the names.
    """
    try:
        return SCHEMAS[name]
    except KeyError:
        raise LookupError(
            f"no example database named {name!r}; known: {', '.join(SCHEMAS)}"
        ) from None
