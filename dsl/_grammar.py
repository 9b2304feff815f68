"""``Grammar``: what a constrained call's output must match, checked before any request is sent.

A grammar is data: Lark text (or a shipped grammar's name), a regular expression, a JSON schema
(or a pydantic model) or a list of choices. It is validated when it is made, so a program with a
malformed grammar fails when it is traced or submitted, never at an engine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lark
import lark.exceptions
from pydantic import BaseModel

import grammars
from dsl.errors import GrammarError, GrammarWarning

__all__ = ["ENFORCED_SCHEMA_KEYWORDS", "Grammar", "lark_parser"]

GrammarKind = Literal["lark", "regex", "json_schema", "choice"]

ENFORCED_SCHEMA_KEYWORDS = frozenset(
    {
        # structure
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions",
        # sizes and ranges
        "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "format",
        # annotations (nothing to enforce)
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
        "readOnly", "writeOnly", "deprecated",
    }
)  # fmt: skip
"""JSON-schema keywords the token mask enforces while decoding; any other keyword is only
checked after generation (and a ``GrammarWarning`` names it when the grammar is made)."""

_SCHEMA_CHILDREN = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_LINE_COL = re.compile(r"line (\d+),? col(?:umn)? (\d+)", re.IGNORECASE)
_RULE_NAME = re.compile(r"[Rr]ule '?([A-Za-z_][A-Za-z0-9_]*)'?")


_BUILDING = threading.Lock()


def lark_parser(text: str, start: str = "start") -> lark.Lark:
    """The Earley parser for a Lark grammar (cached by text). Earley with the complete dynamic
    lexer reads the language the way a token mask does: terminals matched in context and at
    any length, with no separate lexing pass that could split the text differently.

    One build at a time: building a large grammar's parser takes seconds (a Text-to-SQL grammar
    scoped to a schema: ~1,000 rules, ~2 s), and threads asking for the same grammar at once
    then wait for one build instead of each making its own."""
    with _BUILDING:
        return _build(text, start)


@functools.lru_cache(maxsize=256)
def _build(text: str, start: str) -> lark.Lark:
    return lark.Lark(text, start=start, parser="earley", lexer="dynamic_complete")


def _where(text: str, err: Exception) -> tuple[int | None, int | None]:
    """The line and column a lark grammar error points at: from the message, else the line
    that defines the rule it names."""
    message = str(err)
    m = _LINE_COL.search(message)
    if m:
        return int(m.group(1)), int(m.group(2))
    line = getattr(err, "line", None)
    if isinstance(line, int) and line > 0:
        column = getattr(err, "column", None)
        return line, column if isinstance(column, int) else None
    for m in _RULE_NAME.finditer(message):
        name = m.group(1)
        for i, src in enumerate(text.splitlines(), 1):
            if re.match(rf"\s*[?!_]?{re.escape(name)}\s*[:.]", src):
                return i, 1
    return None, None


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise GrammarError(
            f"Grammar.regex: {pattern!r} is not a regular expression: {e.msg} "
            f"at column {(e.pos or 0) + 1}",
            line=1,
            column=(e.pos or 0) + 1,
        ) from e
    banned = {
        "(?=": "lookahead",
        "(?!": "negative lookahead",
        "(?<=": "lookbehind",
        "(?<!": "negative lookbehind",
        "(?P=": "backreference",
    }
    for token, what in banned.items():
        at = pattern.find(token)
        if at >= 0:
            raise GrammarError(
                f"Grammar.regex: {pattern!r} uses a {what} at column {at + 1}, which a token "
                "mask cannot enforce",
                line=1,
                column=at + 1,
            )
    m = re.search(r"(?<!\\)\\[1-9]", pattern)
    if m:
        raise GrammarError(
            f"Grammar.regex: {pattern!r} uses a backreference at column {m.start() + 1}, which a "
            "token mask cannot enforce",
            line=1,
            column=m.start() + 1,
        )


def _walk_schema(schema: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, keyword) for every keyword in ``schema`` and its subschemas."""
    if not isinstance(schema, Mapping):
        return
    for key, value in schema.items():
        yield path, key
        if key in _SCHEMA_CHILDREN:
            yield from _walk_schema(value, f"{path}/{key}")
        elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
            for name, sub in value.items():
                yield from _walk_schema(sub, f"{path}/{key}/{name}")
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                yield from _walk_schema(sub, f"{path}/{key}/{i}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Grammar:
    """What a constrained call's output must match. Make one with a constructor:

    - ``Grammar.lark(text_or_name)``: a Lark grammar, or the name of a shipped one
      (``grammars.names()``);
    - ``Grammar.regex(pattern)``: a Python regular expression the whole output must match;
    - ``Grammar.json_schema(schema_or_model)``: JSON valid under a schema (a dict, or a pydantic
      model class, whose instance the call then returns);
    - ``Grammar.choice(options)``: exactly one of the given strings.

    Every constructor validates at once and raises ``GrammarError`` (with the line and column
    for Lark) before any request is sent. Pass the grammar to ``dsl.gen(..., grammar=G)``.
    """

    kind: GrammarKind
    source: str
    """Lark text, the regex, the schema as canonical JSON, or the choices as a JSON list."""
    name: str | None = None
    """The shipped grammar's name, where it was loaded by name."""
    start: str = "start"
    options: tuple[str, ...] = ()
    model: type[BaseModel] | None = field(default=None, compare=False)
    """The pydantic model whose instance the call returns (``json_schema`` from a model)."""

    @classmethod
    def lark(cls, text_or_name: str, *, start: str = "start") -> Grammar:
        """A Lark grammar from its text or a shipped grammar's name (see ``grammars.names()``)."""
        if not isinstance(text_or_name, str) or not text_or_name.strip():
            raise GrammarError("Grammar.lark: expected Lark text or a shipped grammar's name")
        name = None
        text = text_or_name
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text_or_name.strip()):
            name = text_or_name.strip()
            try:
                text = grammars.load(name)
            except LookupError as e:
                raise GrammarError(f"Grammar.lark: {e.args[0] if e.args else e}") from e
        try:
            lark_parser(text, start)
        except lark.exceptions.LarkError as e:
            line, column = _where(text, e)
            at = f" at line {line}, column {column}" if line is not None else ""
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            label = f"grammar {name!r}" if name else "Lark grammar"
            raise GrammarError(
                f"Grammar.lark: invalid {label}{at}: {first}", line=line, column=column
            ) from e
        return cls(kind="lark", source=text, name=name, start=start)

    @classmethod
    def regex(cls, pattern: str) -> Grammar:
        """The whole output must match ``pattern`` (Python syntax, no lookarounds or
        backreferences)."""
        if not isinstance(pattern, str) or not pattern:
            raise GrammarError("Grammar.regex: expected a non-empty pattern string")
        _check_regex(pattern)
        return cls(kind="regex", source=pattern)

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | type[BaseModel]) -> Grammar:
        """JSON valid under ``schema``: a JSON-schema dict or a pydantic model class. Keywords
        that the token mask cannot enforce are named in a ``GrammarWarning`` (the output is
        still validated against the whole schema after generation)."""
        model: type[BaseModel] | None = None
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            model = schema
            schema_dict: dict[str, Any] = schema.model_json_schema()
        elif isinstance(schema, Mapping):
            schema_dict = dict(schema)
        else:
            raise GrammarError(
                "Grammar.json_schema: expected a JSON-schema dict or a pydantic model class, "
                f"got {type(schema).__name__}"
            )
        import jsonschema  # a heavy import, only when schemas are used

        try:
            jsonschema.Draft202012Validator.check_schema(schema_dict)
        except jsonschema.SchemaError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise GrammarError(
                f"Grammar.json_schema: invalid schema at {where}: {e.message}"
            ) from e
        unenforced = sorted(
            {
                f"{path or '/'}:{key}"
                for path, key in _walk_schema(schema_dict, "")
                if key not in ENFORCED_SCHEMA_KEYWORDS
            }
        )
        if unenforced:
            warnings.warn(
                GrammarWarning(
                    "Grammar.json_schema: these keywords are checked after generation but not "
                    f"enforced while decoding: {', '.join(unenforced)}"
                ),
                stacklevel=2,
            )
        # Key order is kept: it is the order the mask makes the model write properties in.
        source = json.dumps(schema_dict, separators=(",", ":"))
        return cls(kind="json_schema", source=source, model=model)

    @classmethod
    def choice(cls, options: Sequence[str]) -> Grammar:
        """Exactly one of ``options`` (distinct, non-empty strings)."""
        opts = tuple(options) if not isinstance(options, str) else ()
        if not opts or any(not isinstance(o, str) or not o for o in opts):
            raise GrammarError("Grammar.choice: options must be a non-empty list of strings")
        if len(set(opts)) != len(opts):
            raise GrammarError(f"Grammar.choice: options must be distinct, got {list(opts)!r}")
        return cls(kind="choice", source=json.dumps(list(opts)), options=opts)

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema (``json_schema`` grammars only)."""
        if self.kind != "json_schema":
            raise TypeError(f"a {self.kind} grammar has no JSON schema")
        value: dict[str, Any] = json.loads(self.source)
        return value

    @property
    def key(self) -> str:
        """A stable digest of what the grammar accepts (the cache key of compiled masks)."""
        raw = f"{self.kind}\0{self.start}\0{self.source}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]

    def describe(self) -> str:
        """A short label for messages: ``lark 'json'``, ``regex '[0-9]+'``..."""
        if self.name:
            return f"{self.kind} {self.name!r}"
        if self.model is not None:
            return f"json_schema {self.model.__name__}"
        short = self.source if len(self.source) <= 40 else self.source[:37] + "..."
        return f"{self.kind} {short!r}"
