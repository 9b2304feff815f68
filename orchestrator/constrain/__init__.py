"""Constraints: validating outputs against grammars, token masks for the embedded engine
(xgrammar), and each remote engine's grammar field.

Nothing here sends requests: backends call ``emit`` to fill their request body, the embedded
engine asks a ``GrammarCompiler`` for matchers, and the runtime calls ``check`` on every
constrained output.
"""

from orchestrator.constrain._emit import Dialect, Unsupported, emit, gbnf
from orchestrator.constrain._gbnf import (
    GbnfError,
    choice_to_gbnf,
    lark_to_gbnf,
    regex_grammar,
    regex_to_gbnf,
)
from orchestrator.constrain._validate import Invalid, check
from orchestrator.constrain._xgr import (
    CompiledGrammar,
    CompileTimeout,
    GrammarCompiler,
    TokenMatcher,
    allowed,
    allowed_rows,
    new_bitmask,
    vocab_bytes,
)

__all__ = [
    "CompileTimeout",
    "CompiledGrammar",
    "Dialect",
    "GbnfError",
    "GrammarCompiler",
    "Invalid",
    "TokenMatcher",
    "Unsupported",
    "allowed",
    "allowed_rows",
    "check",
    "choice_to_gbnf",
    "emit",
    "gbnf",
    "lark_to_gbnf",
    "new_bitmask",
    "regex_grammar",
    "regex_to_gbnf",
    "vocab_bytes",
]
