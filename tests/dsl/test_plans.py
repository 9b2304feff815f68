"""The plan language: grammar from a tool registry, the streaming parser, ``dsl.plan``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dsl
from dsl.plans import (
    JoinLine,
    PlanError,
    PlanParser,
    TaskLine,
    TaskRef,
    TextWithRefs,
    ToolSignature,
    grounding_runs,
    parse_verdict,
    plan_grammar,
    question_lists,
    question_names,
    tool_words,
)
from orchestrator import constrain


@dsl.tool
def search(query: str) -> str:
    """Search the web."""
    return query


@dsl.tool
def add(a: float, b: float = 0.0) -> float:
    """Add two numbers."""
    return a + b


SIGS = {s.name: s for s in (ToolSignature.of(search), ToolSignature.of(add))}
PLAN = '1. search("tides")\n2. search("moon $1")\n3. add($1, 2.5)\n4. join()\n<END_OF_PLAN>'


def test_signatures_come_from_the_functions() -> None:
    assert SIGS["add"] == ToolSignature(
        "add", (("a", "float"), ("b", "float")), 1, "Add two numbers."
    )
    assert SIGS["search"].describe() == "search(query: str): Search the web."


def test_the_grammar_allows_exactly_the_registry() -> None:
    grammar = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), max_tasks=4))
    constrain.check(grammar, PLAN)
    for bad in (
        '1. fetch("x")\n2. join()\n<END_OF_PLAN>',  # unknown tool
        "1. add()\n2. join()\n<END_OF_PLAN>",  # too few arguments
        '1. search("a", "b")\n2. join()\n<END_OF_PLAN>',  # too many
        "1. add($1)\n2. join()\n<END_OF_PLAN>",  # a reference to itself
        "1. add($2)\n2. join()\n<END_OF_PLAN>",  # forward
        "1. search(3)\n2. join()\n<END_OF_PLAN>",  # wrong literal kind
        '2. search("x")\n3. join()\n<END_OF_PLAN>',  # numbering
        '1. search("x")\n<END_OF_PLAN>',  # no join
    ):
        with pytest.raises(constrain.Invalid):
            constrain.check(grammar, bad)


def test_the_grammar_bounds_the_tasks() -> None:
    grammar = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), max_tasks=2))
    three = '1. search("a")\n2. search("b")\n3. search("c")\n4. join()\n<END_OF_PLAN>'
    with pytest.raises(constrain.Invalid):
        constrain.check(grammar, three)


@dsl.tool
def calc(expression: dsl.Expression) -> str:
    """Evaluate arithmetic."""
    return expression


def test_an_expression_takes_arithmetic_over_earlier_tasks() -> None:
    sig = ToolSignature.of(calc)
    assert sig.params == (("expression", "expr"),)
    assert sig.describe() == "calc(expression: str): Evaluate arithmetic."  # as the model saw
    for runs in (None, grounding_runs("What is the population of Dublin and Prague?")):
        g = dsl.Grammar.lark(plan_grammar([SIGS["search"], sig], max_tasks=4, runs=runs))
        good = '1. search("Dublin")\n2. search("Prague")\n3. calc("{}")\n4. join()\n<END_OF_PLAN>'
        for expr in ("max($1, $2) - min($1, $2)", "($1 + $2) / 2", "$1", "3.5 * $2", "$1,"):
            constrain.check(g, good.format(expr))
        constrain.check(g, '1. search("Dublin")\n2. calc($1)\n3. join()\n<END_OF_PLAN>')
        for expr in (
            "Prague",  # a name
            "$3",  # its own result
            "$1 + $4",  # a later task's
            "$12",  # a digit after $1 would read as task 12
            "$1 + x",  # a letter that is no function
            "",  # nothing
        ):
            with pytest.raises(constrain.Invalid):
                constrain.check(g, good.format(expr))
    grounded = dsl.Grammar.lark(plan_grammar([SIGS["search"]], runs=grounding_runs("Dublin")))
    constrain.check(grounded, '1. search("Dublin")\n2. search("$1")\n3. join()\n<END_OF_PLAN>')
    with pytest.raises(constrain.Invalid):  # a grounded string's $k is an earlier task's too
        constrain.check(
            grounded, '1. search("Dublin")\n2. search("of $2")\n3. join()\n<END_OF_PLAN>'
        )
    parser = PlanParser({"search": SIGS["search"], "calc": sig})
    out = parser.feed('1. search("Dublin")\n2. calc("Prague")\n')
    assert out[1] == PlanError(
        2,
        '2. calc("Prague")',
        "calc's expression takes arithmetic over numbers and $k, got 'Prague'",
    )
    parser = PlanParser({"search": SIGS["search"], "calc": sig})
    assert parser.feed('1. search("Dublin")\n2. calc("max($1, 2) / 3")\n')[1] == TaskLine(
        2, "calc", (TextWithRefs(("max(", TaskRef(1), ", 2) / 3")),), (1,), 2
    )


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("Find the stock of Pro Camera.", ("stock",)),
        ("What is the weather in the capital of Ireland?", ("weather", "capital")),
        ("Look up the invoice of ECHO-88.", ("invoice",)),
        ("Stock up on the price of Eco Lamp.", ("price",)),  # lower case only: "Stock" is not
        ("How tall is Fuji?", ()),
    ],
)
def test_tool_words(question: str, words: tuple[str, ...]) -> None:
    tools = ["get_stock", "get_price", "get_weather", "get_capital", "lookup_invoice", "math"]
    assert tool_words(question, tools) == words


def test_grounding_runs_break_at_punctuation() -> None:
    assert grounding_runs("Price of Mini Drum, Eco Lamp and ECHO-88?", "Price of Eco Lamp.") == [
        ("Price", "of", "Mini", "Drum"),
        ("Eco", "Lamp", "and", "ECHO-88"),
        ("Price", "of", "Eco", "Lamp"),
    ]
    # a sentence's first word before a capitalised one may or may not begin a name
    assert grounding_runs("Compare Mini Drum and Eco Lamp. Then Pro Camera? how") == [
        ("Compare", "Mini", "Drum", "and", "Eco", "Lamp"),
        ("Mini", "Drum", "and", "Eco", "Lamp"),
        ("Then", "Pro", "Camera"),
        ("Pro", "Camera"),
        ("how",),
    ]


@pytest.mark.parametrize(
    ("question", "names"),
    [
        (
            "Compare the price of Mini Drum, PINE-8 and Eco Lamp.",
            ("Mini Drum", "PINE-8", "Eco Lamp"),
        ),
        # the word after "of" that ends a clause, unless a list in its clause shares it
        ("What is the currency of Kenya and the top speed of giraffe?", ("Kenya", "giraffe")),
        ("Is the price of gold, or of silver, higher?", ("gold", "silver")),
        ("Research the history and open problems of railways.", ("history", "open")),
        ("What is the speed of the car?", ()),
        # a sentence's first word and "I" are capitalised anyway
        ("Check the weather in Kyoto. Then I want Oslo.", ("Kyoto", "Oslo")),
        # the items of a list of single words, even in lower case, in the question's order
        (
            "What is the average top speed of camel, kangaroo and bison?",
            ("camel", "kangaroo", "bison"),
        ),
        ("Is lion or elk faster than Pro Camera?", ("lion", "elk", "Pro Camera")),
        ("Paris, Lima and Oslo: which is largest?", ("Paris", "Lima", "Oslo")),
        # a list item inside a capitalised name is that name; "the" is no item
        ("Sum the stock of Mini Drum and Eco Lamp.", ("Mini Drum", "Eco Lamp")),
        ("The stock of Mini Drum and the speed of elk.", ("Mini Drum", "elk")),
        ("Find it and then stop.", ()),
    ],
)
def test_question_names(question: str, names: tuple[str, ...]) -> None:
    assert question_names(question) == names


@pytest.mark.parametrize(
    ("question", "lists"),
    [
        ("Average the top speed of camel, elk and bison.", (("camel", "elk", "bison"),)),
        (
            "Compare the price of Mini Drum, PINE-8, and Eco Lamp?",
            (("Mini Drum", "PINE-8", "Eco Lamp"),),
        ),
        ("Is it colder in Oslo or Lima", (("Oslo", "Lima"),)),
        # a list ends a clause or runs into a function word, never "of" or another word
        ("How much faster is the fastest among lion and elk than the slowest?", (("lion", "elk"),)),
        ("Is Oslo or Lima colder than camel, elk and bison?", (("camel", "elk", "bison"),)),
        ("Research the history and open problems of railways.", ()),
        ("Research the open problems, how it works and history of compost.", ()),
        # names apart, not a list
        ("What is the price of Eco Lamp and the stock of Mini Drum?", ()),
        ("What is the stock of Eco Lamp and the price of Eco Lamp?", ()),
        ("Look up Etna.", ()),
        ("", ()),
        # two lists in one question
        (
            "Add the price of Eco Lamp and Mini Drum; then the stock of Pro Camera and Eco Lamp.",
            (("Eco Lamp", "Mini Drum"), ("Pro Camera", "Eco Lamp")),
        ),
    ],
)
def test_question_lists(question: str, lists: tuple[tuple[str, ...], ...]) -> None:
    assert question_lists(question) == lists


def test_a_grounded_quote_keeps_names_whole() -> None:
    runs = grounding_runs("Compare the price of Mini Drum and Smart Robot in New York City.")
    grammar = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), runs=runs))
    whole = ("Mini Drum", "price of Smart Robot", "New York City", "price in New York City")
    for good in whole:
        constrain.check(grammar, f'1. search("{good}")\n2. join()\n<END_OF_PLAN>')
    # a name ends its quote, even where the question goes on after it
    ends = ("Smart Robot in New York City", "Mini Drum and Smart Robot", "Mini Drum of price")
    for bad in ("Mini", "Drum", "Smart", "price of Mini", "New York", "York City", *ends):
        with pytest.raises(constrain.Invalid):
            constrain.check(grammar, f'1. search("{bad}")\n2. join()\n<END_OF_PLAN>')
    # a sentence's first word: part of a name, or not
    lead = grounding_runs("Compare Mini Drum and Smart Robot.")
    g = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), runs=lead))
    for good in ("Mini Drum", "Compare Mini Drum"):
        constrain.check(g, f'1. search("{good}")\n2. join()\n<END_OF_PLAN>')
    with pytest.raises(constrain.Invalid):
        constrain.check(g, '1. search("Compare")\n2. join()\n<END_OF_PLAN>')


def test_a_grounded_grammar_quotes_the_question() -> None:
    runs = grounding_runs("What is the total price of Classic Jacket, Mini Drum and Eco Lamp?")
    grammar = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), runs=runs))
    constrain.check(
        grammar,
        '1. search("price of Mini Drum")\n2. search("Eco Lamp")\n'
        '3. search("max($1, $2) - 3.5")\n4. join()\n<END_OF_PLAN>',
    )
    for bad in (
        'search("Mini Speaker")',  # a word the question does not have
        'search("Mini Dru")',  # a name cut short
        'search("Drums")',  # a word run on
        'search("DrumDrum")',  # words glued together
        'search("Mini(Drum")',  # words joined by anything but one space
        'search("Mini Drum 3.5")',  # a number that is not the question's
        'search("Mini Mini")',  # a word repeated
        'search("Mini Drum in in Eco Lamp")',  # connectives in a row
        'search("Mini Drum of Eco Lamp")',  # a name goes on: it ends the quote
        'search("Eco Lamp of price")',  # the same
        'search("price the Mini Drum")',  # an article joins nothing
        'search("price of")',  # a quote never ends on a function word
        'search("total price of for Mini Drum")',  # nor does a stretch before a connective
        'search("Drum Mini")',  # words out of the question's order
        'search("Jacket Mini")',  # a quote across a comma
        'search("price Mini Drum")',  # two quotes with no connective between
        'search("")',  # nothing
    ):
        with pytest.raises(constrain.Invalid):
            constrain.check(grammar, f"1. {bad}\n2. join()\n<END_OF_PLAN>")
    # names with digits and hyphens are one word; $k stands where a quote may
    ids = grounding_runs("Find the invoice of ECHO-88.")
    g = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), runs=ids))
    constrain.check(
        g, '1. search("invoice of ECHO-88")\n2. search("invoice of $1")\n3. join()\n<END_OF_PLAN>'
    )
    with pytest.raises(constrain.Invalid):
        constrain.check(g, '1. search("ECHO-8")\n2. join()\n<END_OF_PLAN>')
    # connectives join a name to what is asked of it, even where the question has none
    between = grounding_runs("What is the difference in stock between Pro Camera and Eco Lamp?")
    g = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), runs=between))
    constrain.check(g, '1. search("stock of Pro Camera")\n2. join()\n<END_OF_PLAN>')
    # with no words at all, strings hold no letters
    bare = dsl.Grammar.lark(plan_grammar(list(SIGS.values()), runs=[]))
    constrain.check(bare, '1. search("2 + 3")\n2. join()\n<END_OF_PLAN>')
    for word in ("a", "of", "Paris"):
        with pytest.raises(constrain.Invalid):
            constrain.check(bare, f'1. search("{word}")\n2. join()\n<END_OF_PLAN>')


def events(text: str, cuts: list[int]) -> list[object]:
    parser = PlanParser(SIGS)
    out: list[object] = []
    last = 0
    for c in sorted(cuts):
        out += parser.feed(text[last:c])
        last = c
    out += parser.feed(text[last:])
    return out + parser.close()


def test_tasks_come_out_as_their_lines_complete() -> None:
    parser = PlanParser(SIGS)
    assert parser.feed('1. search("tid') == []
    assert parser.feed('es")\n2. sea') == [TaskLine(1, "search", ("tides",), (), 1)]
    rest = parser.feed('rch("moon $1")\n3. add($1, 2.5)\n4. join()\n<END_OF_PLAN>')
    assert rest == [
        TaskLine(2, "search", (TextWithRefs(("moon ", TaskRef(1))),), (1,), 2),
        TaskLine(3, "add", (TaskRef(1), 2.5), (1,), 3),
        JoinLine(4, 4),
    ]
    assert parser.close() == [] and parser.done


@given(st.lists(st.integers(min_value=0, max_value=len(PLAN)), max_size=8))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    assert events(PLAN, cuts) == events(PLAN, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('1. fetch("x")\n', "unknown tool 'fetch' (tools: add, search)"),
        ("1. add()\n", "add takes 1 to 2 arguments, got 0"),
        ('1. search("x")\n2. add($3)\n', "$3 does not refer to an earlier task"),
        ("1. search(3)\n", "search's query takes a string, got 3"),
        ('1. add("3")\n', "add's a takes a number, got '3'"),
        ("1. add(1, true)\n", "add's b takes a number, got True"),
        ("1. add([" + "1, " * 40 + "1])\n", "add's a takes a number, got [1, 1, 1, 1"),
        ('1. search("x")\n3. join()\n', "task number 3, expected 2"),
        ("1. add(1, 2\n", "not a task line"),
        ('1. search("x")\n', "the plan ended without a join() line"),
    ],
)
def test_bad_lines_are_named(text: str, message: str) -> None:
    out = events(text, [])
    errors = [e for e in out if isinstance(e, PlanError)]
    assert len(errors) == 1 and message in errors[0].message
    assert str(errors[0]).startswith(f"plan line {errors[0].line}")


def test_verdicts() -> None:
    assert parse_verdict("Finish(42)") == ("finish", "42")
    assert parse_verdict(" Replan(need the year) ") == ("replan", "need the year")
    assert parse_verdict("just text") == ("finish", "just text")


def test_plan_makes_a_plan_node() -> None:
    @dsl.program
    async def p(q: str) -> str:
        return await dsl.plan(q, tools=[search, add], max_replans=2, name="answer")

    node = p.trace("why?").node("answer")
    assert isinstance(node, dsl.PlanNode)
    assert node.tools == ("search", "add") and node.max_replans == 2


def test_plan_rejects_bad_settings_at_trace_time() -> None:
    @dsl.tool
    def join() -> str:
        return ""

    cases = [
        ({"tools": []}, "non-empty"),
        ({"tools": [join]}, "join"),
        ({"tools": [search], "planner": "{{question}} {{nope}}"}, "{{nope}}"),
        ({"tools": [search], "extra": 1}, "used by neither"),
        ({"tools": [search], "names": "some"}, "names must be 'free', 'all' or 'in_order'"),
    ]
    for kwargs, message in cases:

        @dsl.program
        async def p(kwargs: dict[str, object] = kwargs) -> str:
            return await dsl.plan("q", **kwargs)  # type: ignore[arg-type]

        with pytest.raises(dsl.ProgramError, match=message.replace("{", r"\{").replace("}", r"\}")):
            p.trace()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1" * 5000 + '. search("x")\n', "a task number of 5000 digits, expected 1"),
        ("1. add(" + "[" * 3000 + "]" * 3000 + ")\n", "lists nested more than 16 deep"),
        ("1. add(" + "7" * 5000 + ")\n", "a number of more than 64 characters"),
        ("1. add($" + "1" * 5000 + ")\n", "is no task number"),
        ("1. add(1e999)\n", "1e999 is out of range"),
    ],
)
def test_absurd_model_text_gives_a_plan_error_not_an_exception(text: str, message: str) -> None:
    out = events(text, [])
    errors = [e for e in out if isinstance(e, PlanError)]
    assert len(errors) == 1 and message in errors[0].message, errors
    assert errors[0].line == 1 and len(str(errors[0])) < 300  # the line is named, shortened


def test_a_dollar_number_in_a_string_is_a_reference_only_to_an_earlier_task() -> None:
    """Plans about money write prices: ``$100`` in a string is text unless 100 numbers an
    earlier task (it used to be read as a reference to task 100 and fail the line). A bare
    ``$k`` and arithmetic stay strict: there ``$k`` can only be a task."""
    huge = "$" + "1" * 5000
    out = events(
        f'1. search("convert $100 to EUR")\n2. search("price of $1 in $5")\n'
        f'3. search("{huge}")\n4. join()\n',
        [],
    )
    assert out[:3] == [
        TaskLine(1, "search", ("convert $100 to EUR",), (), 1),
        TaskLine(2, "search", (TextWithRefs(("price of ", TaskRef(1), " in $5")),), (1,), 2),
        TaskLine(3, "search", (huge,), (), 3),
    ]
    assert events('1. search("x")\n2. add($3)\n', [])[1] == PlanError(
        2, "2. add($3)", "$3 does not refer to an earlier task"
    )
    sig = ToolSignature("calc", (("expression", "expr"),), 1)
    parser = PlanParser({"search": SIGS["search"], "calc": sig})
    out = parser.feed('1. search("x")\n2. calc("$1 + $5")\n')
    assert out[1] == PlanError(2, '2. calc("$1 + $5")', "$5 does not refer to an earlier task")


def test_lists_nested_within_the_bound_still_parse() -> None:
    sig = ToolSignature("keep", (("x", "any"),), 1)
    deep = "[" * 16 + "1" + "]" * 16
    out = PlanParser({"keep": sig}).feed(f"1. keep({deep})\n2. join()\n")
    assert isinstance(out[0], TaskLine) and isinstance(out[1], JoinLine)


def test_a_plan_cut_inside_a_line_says_it_may_have_run_out_of_tokens() -> None:
    errors = [e for e in events('1. search("x")\n2. search("y', []) if isinstance(e, PlanError)]
    assert len(errors) == 1 and "cut short by max_tokens" in errors[0].message


def test_integers_past_pythons_digit_limit_render_as_json() -> None:
    from dsl import cml

    assert cml.render_value(10**5000) == "1.0000000000000000e+5000"
    assert cml.json_text([-(3 * 10**4400), {"n": 10**5000}]) == (
        '[-3.0000000000000000e+4400, {"n": 1.0000000000000000e+5000}]'
    )
    assert cml.json_text({"a": [1, "b"]}) == '{"a": [1, "b"]}'  # JSON as ever otherwise
