"""The pipeline's prompts: the schema as ``CREATE TABLE`` text, the rules of the SQL layout
the grammars hold queries to, and few-shot examples over a database the questions never use."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANDIDATE_TEMPLATE",
    "CORRECTION_TEMPLATE",
    "EXAMPLES",
    "LINK_TEMPLATE",
    "SQL_RULES",
    "SYSTEM",
]

SYSTEM: Final = (
    "You are an expert SQLite analyst. You turn questions about a database into one correct "
    "SQLite SELECT query, and you answer with the query only."
)

SQL_RULES: Final = """\
Write the query in this exact layout:
- one SELECT statement; no semicolon, no comments, no explanation, no code fences;
- uppercase keywords, exactly one space between tokens, ", " between list items;
- one table: plain column names (SELECT name FROM students WHERE year = 2);
- several tables: JOIN them along their foreign keys with aliases T1, T2, T3 in join order,
  the referencing column first (FROM courses AS T1 JOIN departments AS T2 ON T1.department_id =
  T2.id), and qualify every column (T2.name);
- no AS names for result columns; select only what the question asks for;
- text values in single quotes, exactly as stored in the database."""

EXAMPLES: Final = """\
CREATE TABLE stadium (id INTEGER PRIMARY KEY, name TEXT, city TEXT, capacity INTEGER);
CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(id),
  stadium_id INTEGER REFERENCES stadium(id), year INTEGER);

Question: How many singers are from France?
SQL: SELECT COUNT(*) FROM singer WHERE country = 'France'

Question: What are the names of the stadiums in Berlin, largest first?
SQL: SELECT name FROM stadium WHERE city = 'Berlin' ORDER BY capacity DESC

Question: How many concerts did each singer give? Give the name and the count.
SQL: SELECT T2.name, COUNT(*) FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.id \
GROUP BY T2.name

Question: Which singers gave more than 2 concerts in 2014?
SQL: SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.id \
WHERE T1.year = 2014 GROUP BY T2.id HAVING COUNT(*) > 2

Question: Which stadium hosted the most concerts?
SQL: SELECT T1.name FROM stadium AS T1 JOIN concert AS T2 ON T2.stadium_id = T1.id \
GROUP BY T1.id ORDER BY COUNT(*) DESC LIMIT 1

Question: What are the names of the singers older than the average singer?
SQL: SELECT name FROM singer WHERE age > (SELECT AVG(age) FROM singer)

Question: Which singers never gave a concert?
SQL: SELECT name FROM singer WHERE id NOT IN (SELECT singer_id FROM concert)"""

LINK_TEMPLATE: Final = """\
Database schema:
{{db_schema}}

Question: {{question}}

Which tables does a query answering the question need? List their names, most important
first, separated by ", " (table names only)."""

CANDIDATE_TEMPLATE: Final = """\
Database schema:
{{db_schema}}

{{rules}}

Examples, on another database:
{{examples}}

Question: {{question}}
SQL:"""

CORRECTION_TEMPLATE: Final = """\
Database schema:
{{db_schema}}

{{rules}}

Question: {{question}}

This query does not work:
{{sql}}
SQLite says: {{error}}

Write a corrected query for the question.
SQL:"""
