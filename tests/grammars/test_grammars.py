"""The shipped grammars: each loads, parses its samples with lark, passes the lint, and means the
same to xgrammar (read as Lark and as our GBNF translation) as to lark."""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
from typing import Any

import lark
import numpy as np
import pytest
from lark.lexer import PatternStr

import grammars
from orchestrator.constrain import lark_to_gbnf

SHIPPED = ["asynclm_cml", "json", "llmcompiler_plan", "sqlite_select", "tool_call"]

# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------

_JSON_VALUES: list[Any] = [
    {},
    [],
    {"a": 1, "b": [1, 2.5, -3e-07, True, False, None], "c": {"d": "e"}},
    [{"x": []}, {}, [[], [{}]]],
    "plain",
    'esc "quotes" \\ / \n \t \u0001 é € 😀',
    0,
    -0.5,
    12345678901234567890,
    1.5e300,
    True,
    None,
    {"nested": {"deeper": {"deepest": [1, {"k": "v"}]}}},
]
JSON_VALID = [json.dumps(v) for v in _JSON_VALUES] + [
    json.dumps(v, ensure_ascii=False) for v in _JSON_VALUES
]
JSON_INVALID = [
    '{"a":1}',
    "{'a': 1}",
    "[1, 2,]",
    "01",
    '{"a": 1 }',
    '{"a" : 1}',
    "[1,2]",
    '"\x01"',
    '"a\nb"',
    "tru",
    "NaN",
    "1.",
    ".5",
    "+1",
    '"\\q"',
    '"\\u12"',
    " []",
    "[] ",
    "",
]

TOOL_CALL_VALID = [
    '{"name": "search", "arguments": {"query": "legato"}}',
    '{"name": "get_weather", "arguments": {}}',
    '{"name": "math", "arguments": {"expr": "1 + 2", "precise": true, "digits": [1, 2]}}',
    '{"name": "lookup-v2", "arguments": {"key": {"nested": null}}}',
    json.dumps({"name": "x", "arguments": {"s": 'é\n"', "n": -1.5e3}}),
]
TOOL_CALL_INVALID = [
    '{"name": "search"}',
    '{"name": "search", "arguments": [1]}',
    '{"name": "search", "arguments": {}, "extra": 1}',
    '{"name":"search","arguments":{}}',
    '{"name": "two words", "arguments": {}}',
    '{"arguments": {}, "name": "search"}',
    '{"name": "", "arguments": {}}',
]

PLAN_VALID = [
    '1. search("Legato")\n2. join()\n<END_OF_PLAN>',
    '1. search("x")\n2. search("y")\n3. math("$1 + $2")\n4. join()<END_OF_PLAN>',
    '1. search("x")\n2. math("$1 + 3")\n3. lookup($1, 5)\n4. join()\n<END_OF_PLAN>',
    "1. join()<END_OF_PLAN>",
    '1. f([1, "a", [true, false, null]], -2.5e3, $12)\n2. g()\n3. join()<END_OF_PLAN>',
    '10. tool_2("esc \\"q\\" \\\\")\n11. join()\n<END_OF_PLAN>',
]
PLAN_INVALID = [
    '1. search("x")',
    '1. search("x")\n2. join()',
    '1. search("x")\n2. join()\n<END_OF_PLAN>\n',
    '1 search("x")\n2. join()<END_OF_PLAN>',
    "1. search(x)\n2. join()<END_OF_PLAN>",
    "1. search($0)\n2. join()<END_OF_PLAN>",
    '1. search("x")2. join()<END_OF_PLAN>',
    '0. search("x")\n1. join()<END_OF_PLAN>',
    '1. search("x",1)\n2. join()<END_OF_PLAN>',
    "1.join()<END_OF_PLAN>",
]

CML_VALID = [
    "",
    "Just text, no calls.",
    'Let me check. [CALL] 1 [HEAD] search("Paris") [END] Meanwhile... [TRAP][END]',
    '[CALL] 1 [HEAD] search("a") [END][CALL] 2 [HEAD] weather(city="Paris", days=3) [END]',
    "[CALL] c1 [HEAD] f() [END]\nmore text\n[TRAP][END]done",
    '[CALL] 7 [HEAD] g([1, 2], {"k": "v"}, true, null, -0.5) [END]',
    'text ] with a closing bracket [CALL] 3 [HEAD] h("escaped \\u005bINTR]") [END]',
]
CML_INVALID = [
    "[INTR] 1 [HEAD] result [END]",
    "text [INTR] 1 [HEAD] result [END]",
    "[CALL] 1 [HEAD] f() [END",
    "[CALL]1 [HEAD] f() [END]",
    "[TRAP] [END]",
    "a stray [ bracket",
    '[CALL] 1 [HEAD] f("[INTR]") [END]',
    "[CALL] 1 [HEAD] f(x) [END]",
    "[CALL] 1 [HEAD] f() [END] [CALL] 2 [HEAD] g(",
]

SQL_SCHEMA = """
CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER,
                     "song name" TEXT, net_worth REAL);
CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, concert_name TEXT, stadium_id INTEGER,
                      year INTEGER);
CREATE TABLE singer_in_concert (concert_id INTEGER, singer_id INTEGER);
CREATE TABLE stadium (stadium_id INTEGER PRIMARY KEY, name TEXT, capacity INTEGER, location TEXT);
INSERT INTO singer VALUES (1, 'Joe Sharp', 'Netherlands', 52, 'You', 9.3),
                          (2, 'Timbaland', 'United States', 32, 'Dangerous', NULL),
                          (3, 'Justin Brown', 'France', 29, NULL, 12.5),
                          (4, 'Rose White', 'France', 41, 'Sun', 30.0),
                          (5, 'O''Brien', 'Ireland', 25, 'Hey', 1.0);
INSERT INTO concert VALUES (1, 'Auditions', 1, 2014), (2, 'Super bootcamp', 2, 2014),
                           (3, 'Home Visits', 2, 2015), (4, 'Week 1', 3, 2016);
INSERT INTO singer_in_concert VALUES (1, 2), (1, 3), (2, 3), (3, 5), (4, 4);
INSERT INTO stadium VALUES (1, 'Stark''s Park', 10104, 'Raith Rovers'),
                           (2, 'Somerset Park', 11998, 'France'),
                           (3, 'Glebe Park', 3960, 'Ireland');
"""

SQL_VALID = [
    "SELECT * FROM singer",
    "SELECT name, age FROM singer WHERE age > 30",
    "SELECT DISTINCT country FROM singer",
    "SELECT COUNT(*) FROM singer",
    "SELECT T1.name, T2.concert_name FROM singer AS T1 JOIN singer_in_concert AS T3 ON "
    "T1.singer_id = T3.singer_id JOIN concert AS T2 ON T3.concert_id = T2.concert_id",
    "SELECT country, COUNT(*) AS n FROM singer GROUP BY country HAVING COUNT(*) > 1 "
    "ORDER BY n DESC",
    "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)",
    "SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert)",
    "SELECT name FROM singer WHERE age BETWEEN 20 AND 40 AND country = 'France'",
    "SELECT name FROM singer WHERE name LIKE '%o%' OR NOT country = 'France'",
    'SELECT "song name" FROM singer WHERE "song name" IS NOT NULL',
    "SELECT name FROM singer WHERE net_worth IS NULL",
    "SELECT AVG(age), MIN(age), MAX(age), SUM(age), TOTAL(net_worth) FROM singer",
    "SELECT COUNT(DISTINCT country) FROM singer",
    "SELECT name FROM singer WHERE age > (SELECT AVG(age) FROM singer)",
    "SELECT name FROM stadium WHERE EXISTS (SELECT * FROM concert WHERE "
    "concert.stadium_id = stadium.stadium_id)",
    "SELECT sub.country FROM (SELECT country, COUNT(*) AS c FROM singer GROUP BY country) "
    "AS sub WHERE sub.c >= 2",
    "SELECT name FROM singer ORDER BY age ASC LIMIT 3 OFFSET 1",
    "SELECT ROUND(net_worth, 1), LOWER(name), UPPER(country), LENGTH(name), ABS(age - 40) "
    "FROM singer",
    "SELECT name FROM singer WHERE name = 'O''Brien'",
    "SELECT T1.* FROM singer AS T1 LEFT JOIN singer_in_concert AS T2 ON "
    "T1.singer_id = T2.singer_id WHERE T2.concert_id IS NULL",
    "SELECT country FROM singer WHERE age < 30 UNION SELECT country FROM singer WHERE "
    "net_worth > 10.5",
    "SELECT name FROM singer WHERE country IN ('France', 'Ireland') ORDER BY name DESC, age",
    "SELECT name, age * 2 + 1 AS x FROM singer WHERE (age + 1) % 2 = 0",
    "SELECT CASE WHEN age > 40 THEN 'old' ELSE 'young' END AS bucket, COUNT(*) FROM singer "
    "GROUP BY bucket",
    "SELECT name FROM singer WHERE NOT EXISTS (SELECT * FROM singer_in_concert WHERE "
    "singer_in_concert.singer_id = singer.singer_id)",
    "SELECT CAST(age AS TEXT) || ' years' FROM singer",
    "SELECT stadium.name, MAX(concert.year) FROM stadium INNER JOIN concert ON "
    "stadium.stadium_id = concert.stadium_id GROUP BY stadium.name",
    "SELECT name FROM singer WHERE age >= -1 AND age <> 99 AND country != 'X'",
    "SELECT COALESCE(net_worth, 0), IFNULL(\"song name\", 'none') FROM singer",
    "SELECT name FROM singer EXCEPT SELECT name FROM stadium",
    "SELECT country FROM singer INTERSECT SELECT location FROM stadium",
    "SELECT s.name FROM singer AS s, concert AS c WHERE s.singer_id = c.concert_id",
    "SELECT name FROM singer WHERE country NOT LIKE 'F%' AND age NOT BETWEEN 10 AND 20",
    "SELECT GROUP_CONCAT(name, ', ') FROM singer",
    "SELECT name FROM singer LIMIT 2",
    "SELECT COUNT(*) FROM concert WHERE year = 2014 OR (year = 2015 AND stadium_id = 2)",
    "SELECT T1.name FROM stadium AS T1 JOIN concert AS T2 USING (stadium_id) "
    "GROUP BY T1.stadium_id ORDER BY COUNT(*) DESC LIMIT 1",
    "SELECT name FROM singer WHERE age = (SELECT MAX(age) FROM singer WHERE country = 'France')",
    "SELECT name FROM singer WHERE net_worth * 1.5 > 10 AND name != ''",
    "SELECT name, -age FROM singer WHERE country IN (SELECT location FROM stadium) "
    "UNION ALL SELECT name, capacity / 10 FROM stadium ORDER BY 2",
    "SELECT count, total FROM (SELECT COUNT(*) AS count, SUM(capacity) AS total FROM stadium)",
]
SQL_INVALID = [
    "select * from singer",
    "SELECT * FROM singer;",
    "SELECT *  FROM singer",
    "SELECT name,age FROM singer",
    "SELECT * FROM singer WHERE",
    "SELECT name FROM singer WHERE age > (SELECT AVG(age) FROM singer",
    "SELECT FROM singer",
    "SELECT *",
    "INSERT INTO singer VALUES (1)",
    "SELECT * FROM singer ORDER BY",
    "SELECT * FROM singer LIMIT 'x'",
    "SELECT name FROM singer WHERE name = 'unterminated",
    "SELECT * FROM singer T1",
    "SELECT * FROM singer WHERE age > --1",
    "SELECT name FROM singer\nWHERE age > 1",
    " SELECT * FROM singer",
    "SELECT * FROM singer WHERE age > 1 AND",
    "SELECT COUNT( * ) FROM singer",
]

SAMPLES: dict[str, tuple[list[str], list[str]]] = {
    "json": (JSON_VALID, JSON_INVALID),
    "tool_call": (TOOL_CALL_VALID, TOOL_CALL_INVALID),
    "llmcompiler_plan": (PLAN_VALID, PLAN_INVALID),
    "asynclm_cml": (CML_VALID, CML_INVALID),
    "sqlite_select": (SQL_VALID, SQL_INVALID),
}


def _parser(name: str) -> lark.Lark:
    return lark.Lark(grammars.load(name), parser="earley")


def _rejects(parser: lark.Lark, text: str) -> bool:
    try:
        parser.parse(text)
    except lark.exceptions.UnexpectedInput:
        return True
    return False


# ---------------------------------------------------------------------------------------------
# The package's front door
# ---------------------------------------------------------------------------------------------


def test_names_are_the_shipped_files_sorted() -> None:
    assert grammars.names() == SHIPPED
    for name in SHIPPED:
        assert grammars.path(name).is_file()
        assert grammars.path(name).read_text(encoding="utf-8") == grammars.load(name)


def test_unknown_name_lists_the_known_ones() -> None:
    for call in (grammars.load, grammars.path):
        with pytest.raises(LookupError) as info:
            call("nope")
        assert "nope" in str(info.value)
        assert all(name in str(info.value) for name in SHIPPED)
    with pytest.raises(LookupError):
        grammars.load("../grammars/json")


def test_the_package_imports_only_the_standard_library_and_lark() -> None:
    import ast
    import sys

    roots = set()
    for source in grammars.path("json").parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                roots.add(node.module.split(".")[0])
    assert roots - sys.stdlib_module_names <= {"lark", "grammars"}


# ---------------------------------------------------------------------------------------------
# Lark reads each grammar as documented
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_lark_accepts_the_valid_samples_and_rejects_the_invalid(name: str) -> None:
    parser = _parser(name)
    valid, invalid = SAMPLES[name]
    for text in valid:
        parser.parse(text)
    for text in invalid:
        assert _rejects(parser, text), f"{name} accepts {text!r}"


def test_json_samples_are_json() -> None:
    for text in JSON_VALID:
        json.loads(text)
    assert json.loads(TOOL_CALL_VALID[2])["arguments"]["digits"] == [1, 2]


def test_every_valid_select_runs_on_sqlite() -> None:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SQL_SCHEMA)
        assert len(SQL_VALID) >= 25
        for query in SQL_VALID:
            db.execute(query).fetchall()
    finally:
        db.close()


def test_sql_rules_to_specialise_are_plain_rules() -> None:
    """A specialiser replaces these rules' bodies: the file says so, and after replacing the
    names outside the database are rejected."""
    text = grammars.load("sqlite_select")
    for rule in ("table_name", "column_name", "table_alias", "column_alias", "string_literal"):
        assert f"\n{rule}: " in text
        assert rule in text.split("start:")[0]  # documented in the header comment
    special = text.replace("table_name: identifier", 'table_name: "singer" | "concert"').replace(
        "column_name: identifier", 'column_name: "name" | "age" | "\\"song name\\""'
    )
    parser = lark.Lark(special, parser="earley")
    parser.parse('SELECT name, "song name" FROM singer WHERE age > 3')
    with pytest.raises(lark.exceptions.UnexpectedInput):
        parser.parse("SELECT name FROM stadium")


def test_cml_text_cannot_write_an_interrupt_frame() -> None:
    parser = _parser("asynclm_cml")
    rng = random.Random(7)
    alphabet = "[INTR] abc]"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        if "[INTR]" in text:
            assert _rejects(parser, text), text


# ---------------------------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_grammars_pass_the_lint(name: str) -> None:
    assert grammars.lint(grammars.load(name)) == []


def test_lint_flags_ignore_directives_with_their_line() -> None:
    text = 'start: NAME ("," NAME)*\n%import common.CNAME -> NAME\n%import common.WS\n%ignore WS\n'
    findings = grammars.lint(text)
    assert [(f.rule, f.line) for f in findings] == [("%ignore", 4)]
    assert "WS" in findings[0].message


def test_lint_flags_an_optional_element_before_a_rule_in_a_loop() -> None:
    text = "\n".join(
        [
            "start: items",  # 1
            "items: (WS? item)*",  # 2
            "item: NAME",  # 3
            '    | "(" [SEP] item',  # 4: not a loop
            '    | "[" ([SEP] item)+',  # 5
            '    | "<" ">"',  # 6
            'spaced: ("," WS? item)*',  # 7: the optional is not first
            "chain: (item* NAME)~2..3",  # 8
            'fine: item (" " item)*',  # 9
            "right: [SEP] item right",  # 10: loops through itself
            "    |",  # 11
            'SEP: ","',  # 12
            "NAME: /[a-z]+/",  # 13
            'LOOPY: (" "? NAME)+',  # 14
            "%import common.WS",  # 15
        ]
    )
    found = [(f.rule, f.line) for f in grammars.lint(text)]
    assert found == [("items", 2), ("item", 5), ("chain", 8), ("right", 10), ("LOOPY", 14)]
    left = 'start: start WS? ITEM\n    | ITEM\nITEM: "x"\n%import common.WS\n'
    assert [(f.rule, f.line) for f in grammars.lint(left)] == [("start", 1)]
    for finding in grammars.lint(text):
        assert finding.message
        with pytest.raises(dataclasses.FrozenInstanceError):
            finding.line = 0  # type: ignore[misc]


def test_lint_flags_loops_over_several_parts_inside_a_terminal() -> None:
    text = "\n".join(
        [
            "start: A B C D E F",  # 1
            'A: (LETTER | "_")+',  # 2: slow in xgrammar's Lark reader
            "B: /[a-z]/ (/[a-z]/ /_?/)*",  # 3: slow
            "C: /[A-Za-z_]+/",  # 4: one regexp
            'D: ("ab")+ DIGIT+ ("a".."z")~2..3',  # 5: loops over single patterns
            "E: (DIGITS)*",  # 6: a terminal that is one pattern
            "F: A+",  # 7: A's own loop is A's finding; F loops over a loop
            "DIGITS: /[0-9]+/",
            "%import common.LETTER",
            "%import common.DIGIT",
            "%import common.CNAME",  # imported definitions are not checked
        ]
    )
    found = [(f.rule, f.line) for f in grammars.lint(text)]
    assert found == [("A", 2), ("B", 3), ("F", 7)]
    assert "one regexp" in grammars.lint(text)[0].message


def test_lint_rejects_text_that_is_not_a_grammar() -> None:
    with pytest.raises(lark.exceptions.GrammarError):
        grammars.lint("start: (")


# ---------------------------------------------------------------------------------------------
# xgrammar reads each grammar as lark does: as Lark text and as our GBNF
# ---------------------------------------------------------------------------------------------

_BASE_CHARS = [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t", "é", "€", "😀"]
_CLOSERS = set(")]}\"'")


class _Sampler:
    """Random sentences of a grammar, drawn through xgrammar's token mask over a vocabulary of
    single characters plus the grammar's own multi-character literals (as a real tokenizer has
    whole keywords as tokens)."""

    def __init__(self, xgr: Any, text: str) -> None:
        literals = {
            t.pattern.value
            for t in lark.Lark(text, parser="earley").terminals
            if isinstance(t.pattern, PatternStr) and len(t.pattern.value) > 1
        }
        self.tokens = _BASE_CHARS + sorted(literals)
        self.stop = len(self.tokens)
        self.size = self.stop + 1
        info = xgr.TokenizerInfo(
            [t.encode() for t in self.tokens] + [b"</s>"],
            xgr.VocabType.RAW,
            stop_token_ids=[self.stop],
        )
        self.compiler = xgr.GrammarCompiler(info)
        self.xgr = xgr
        flag = np.array
        self.multi = flag([len(t) > 1 for t in self.tokens] + [False])
        self.punct = flag([len(t) == 1 and not t.isalnum() for t in self.tokens] + [False])
        self.close = flag([t in _CLOSERS for t in self.tokens] + [False])

    def matcher(self, grammar: Any) -> Any:
        return self.xgr.GrammarMatcher(self.compiler.compile_grammar(grammar))

    def accepts(self, grammar: Any, text: str) -> bool:
        m = self.matcher(grammar)
        return bool(m.accept_string(text) and m.is_completed())

    def sample(self, compiled: Any, rng: random.Random, max_steps: int = 300) -> str | None:
        """One sentence, or None when it did not end within ``max_steps`` tokens."""
        m = self.xgr.GrammarMatcher(compiled)
        mask = np.zeros((1, (self.size + 31) // 32), dtype=np.int32)
        out: list[str] = []
        min_steps = rng.randrange(40)
        for step in range(max_steps):
            m.fill_next_token_bitmask(mask)
            allowed = np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.size]
            allowed = allowed.astype(bool)
            assert allowed.any()
            late = step > max_steps // 2
            if allowed[self.stop]:
                p_stop = 0.7 if late else 0.15
                if allowed.sum() == 1 or (step >= min_steps and rng.random() < p_stop):
                    assert m.accept_token(self.stop) and m.is_terminated()
                    return "".join(out)
                allowed[self.stop] = False
            # Prefer whole keywords where the grammar is structured, punctuation where it is
            # free text (so strings end), and closing brackets late (so sentences end).
            r = rng.random()
            pools = [allowed & self.close] if late else []
            if allowed.sum() > 60:
                pools += [allowed & self.punct] if r < 0.4 else []
            elif r < 0.35:
                pools.append(allowed & self.multi)
            elif r < 0.7:
                pools.append(allowed & self.punct)
            pools.append(allowed)
            ids = next(p for p in map(np.flatnonzero, pools) if len(p))
            token = int(ids[rng.randrange(len(ids))])
            assert m.accept_token(token), self.tokens[token]
            out.append(self.tokens[token])
        return None


@pytest.fixture(scope="module")
def xgr() -> Any:
    return pytest.importorskip("xgrammar")


@pytest.fixture(scope="module")
def samplers(xgr: Any) -> dict[str, _Sampler]:
    return {name: _Sampler(xgr, grammars.load(name)) for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_xgrammar_compiles_each_grammar_both_ways(
    xgr: Any, samplers: dict[str, _Sampler], name: str
) -> None:
    text = grammars.load(name)
    for grammar in (xgr.Grammar.from_lark(text), xgr.Grammar.from_ebnf(lark_to_gbnf(text))):
        samplers[name].compiler.compile_grammar(grammar)


@pytest.mark.parametrize("name", SHIPPED)
def test_xgrammar_accepts_the_valid_samples_and_rejects_the_invalid(
    xgr: Any, samplers: dict[str, _Sampler], name: str
) -> None:
    text = grammars.load(name)
    sampler = samplers[name]
    valid, invalid = SAMPLES[name]
    for grammar in (xgr.Grammar.from_ebnf(lark_to_gbnf(text)), xgr.Grammar.from_lark(text)):
        for sample in valid:
            assert sampler.accepts(grammar, sample), sample
        for sample in invalid:
            assert not sampler.accepts(grammar, sample), sample


@pytest.mark.parametrize("name", SHIPPED)
def test_sentences_drawn_through_the_gbnf_mask_parse_with_lark(
    xgr: Any, samplers: dict[str, _Sampler], name: str
) -> None:
    """The differential test: whatever the translated grammar lets a model write, lark (which
    validates every output) accepts, and so does xgrammar's own reading of the Lark text."""
    text = grammars.load(name)
    sampler = samplers[name]
    compiled = sampler.compiler.compile_grammar(xgr.Grammar.from_ebnf(lark_to_gbnf(text)))
    direct = xgr.Grammar.from_lark(text)
    parser = _parser(name)
    drawn = []
    for seed in range(150):
        sentence = sampler.sample(compiled, random.Random(f"{name}-{seed}"))
        if sentence is None:
            continue
        drawn.append(sentence)
        try:
            parser.parse(sentence)
        except lark.exceptions.UnexpectedInput as e:
            pytest.fail(f"seed {seed}: lark rejects {sentence!r}: {e}")
        assert sampler.accepts(direct, sentence), sentence
    assert len(drawn) >= 40, f"only {len(drawn)} of 150 draws ended"
    assert len(set(drawn)) >= 30
