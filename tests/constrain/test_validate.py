"""Re-parsing constrained outputs: the verdicts, and the caching that keeps a large Lark
grammar's parses and builds from repeating."""

from __future__ import annotations

import contextlib
import pickle
import threading
import time
import uuid
from collections.abc import Iterator

import lark
import pytest

from dsl import Grammar
from dsl._grammar import lark_parser
from orchestrator import constrain


def _text(table: str = "t") -> str:
    # a grammar text no other test uses: its parser is built here, not found cached
    return f'start: "SELECT " NAME " FROM {table}"\nNAME: /[a-z]+/\n'


def _grammar() -> tuple[Grammar, str]:
    """A grammar of its own, and the one table it reads from."""
    table = f"t{uuid.uuid4().hex[:8]}"
    return Grammar.lark(_text(table)), table


def test_a_valid_text_is_its_own_value_and_an_invalid_one_says_where() -> None:
    g, table = _grammar()
    text = f"SELECT name FROM {table}"
    assert constrain.check(g, text) == text
    with pytest.raises(constrain.Invalid) as bad:
        constrain.check(g, f"SELECT 9 FROM {table}")
    assert bad.value.position == 7 and "unexpected '9" in str(bad.value)
    with pytest.raises(constrain.Invalid, match="ends before"):
        constrain.check(g, "SELECT name")


def test_the_same_text_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    g, table = _grammar()
    parser = lark_parser(g.source, g.start)
    calls = []
    real = parser.parse

    def counting(text: str) -> object:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(parser, "parse", counting)
    for _ in range(3):
        constrain.check(g, f"SELECT a FROM {table}")
        with pytest.raises(constrain.Invalid):
            constrain.check(g, "SELECT")
    assert calls == [f"SELECT a FROM {table}", "SELECT"]


def test_threads_asking_for_one_grammar_at_once_build_one_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _text(f"t{uuid.uuid4().hex[:8]}")
    builds = []
    real = lark.Lark

    def counting(*args: object, **kwargs: object) -> lark.Lark:
        builds.append(args[0])
        time.sleep(0.2)  # a slow build: the other threads ask meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(lark, "Lark", counting)
    got: list[lark.Lark] = []
    threads = [threading.Thread(target=lambda: got.append(lark_parser(text))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(got) == 4 and all(p is got[0] for p in got)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"x": Infinity}'])
def test_json_has_no_nan_or_infinity(text: str) -> None:
    schema = {"anyOf": [{"type": "number"}, {"type": "array"}, {"type": "object"}]}
    with pytest.raises(constrain.Invalid, match="is not a JSON value"):
        constrain.check(Grammar.json_schema(schema), text)
    assert constrain.check(Grammar.json_schema({"type": "number"}), "1e308") == 1e308


def test_invalid_is_an_ordinary_exception() -> None:
    exc = constrain.Invalid("bad", 3)
    assert (exc.reason, exc.position, str(exc)) == ("bad", 3, "bad")
    assert constrain.Invalid("bad").position is None
    assert repr(exc) == "Invalid(reason='bad', position=3)"
    exc.add_note("while checking x")
    assert exc.__notes__ == ["while checking x"]
    again = pickle.loads(pickle.dumps(exc))
    assert isinstance(again, constrain.Invalid) and (again.reason, again.position) == ("bad", 3)


def test_invalid_passes_through_context_managers_as_itself() -> None:
    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        yield

    g, _table = _grammar()

    def check_in_scopes() -> None:
        with scope(), contextlib.ExitStack():
            try:
                raise KeyError("first")  # gives the Invalid a __context__
            except KeyError:
                constrain.check(g, "SELECT")

    with pytest.raises(constrain.Invalid) as bad:
        check_in_scopes()
    assert isinstance(bad.value.__context__, KeyError)
    assert bad.value.__traceback__ is not None
