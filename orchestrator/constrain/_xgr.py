"""Token masks from xgrammar: grammars compiled once per tokenizer, one matcher per sequence.

xgrammar (a pushdown automaton over the grammar, with the vocabulary pre-split into tokens whose
acceptance depends on the stack and tokens that never do) fills a bitmask of the allowed next
tokens in microseconds. The engine fills one row per constrained sequence each step and applies
it to the logits. xgrammar is imported on first use: it is heavy, and remote-only users never
need it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from dsl import Grammar
from orchestrator.constrain._gbnf import (
    GbnfError,
    _LexerMismatch,
    choice_to_gbnf,
    lark_to_gbnf,
    regex_grammar,
)

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "CompileTimeout",
    "CompiledGrammar",
    "GrammarCompiler",
    "TokenMatcher",
    "allowed",
    "allowed_rows",
    "new_bitmask",
    "vocab_bytes",
]


class CompileTimeout(TimeoutError):
    """A grammar did not compile within the time allowed."""


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def vocab_bytes(tk: tokenizers.Tokenizer) -> list[bytes]:
    """Each token's bytes, by id, for a byte-level BPE tokenizer; special (added) tokens get
    ``b""``, which xgrammar never allows as text. Other tokenizers fall back to decoding each
    token alone."""
    size = tk.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in tk.get_added_tokens_decoder().items() if t.special}
    table = _byte_decoder()
    out: list[bytes] = []
    for i in range(size):
        piece = tk.id_to_token(i)
        if i in special or piece is None:
            out.append(b"")
        elif all(ch in table for ch in piece):
            out.append(bytes(table[ch] for ch in piece))
        else:
            out.append(tk.decode([i]).encode())
    return out


def new_bitmask(rows: int, vocab_size: int) -> npt.NDArray[np.int32]:
    """A bitmask for ``rows`` sequences: bit ``t`` of a row set = token ``t`` allowed."""
    return np.zeros((rows, (vocab_size + 31) // 32), dtype=np.int32)


def allowed(row: npt.NDArray[np.int32], vocab_size: int) -> npt.NDArray[np.bool_]:
    """The boolean mask of allowed tokens in one bitmask row."""
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")
    out: npt.NDArray[np.bool_] = bits[:vocab_size].astype(bool)
    return out


def allowed_rows(bitmask: npt.NDArray[np.int32], vocab_size: int) -> npt.NDArray[np.bool_]:
    """The boolean masks of allowed tokens, one row per bitmask row."""
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")
    out: npt.NDArray[np.bool_] = bits[:, :vocab_size].astype(bool)
    return out


class CompiledGrammar:
    """A grammar compiled for one tokenizer; ``matcher()`` starts a sequence on it."""

    def __init__(self, grammar: Grammar, compiled: Any, vocab_size: int) -> None:
        self.grammar = grammar
        self.compiled = compiled
        self.vocab_size = vocab_size

    def matcher(self) -> TokenMatcher:
        """A fresh matcher at the start of the grammar."""
        import xgrammar as xgr

        return TokenMatcher(xgr.GrammarMatcher(self.compiled, max_rollback_tokens=-1))


class TokenMatcher:
    """Where one sequence stands in its grammar."""

    def __init__(self, matcher: Any) -> None:
        self._m = matcher

    def fill(self, bitmask: npt.NDArray[np.int32], row: int) -> None:
        """Write the allowed next tokens into ``bitmask[row]``."""
        self._m.fill_next_token_bitmask(bitmask, row)

    def accept(self, token: int) -> bool:
        """Advance by ``token``; False (and no change) if the grammar forbids it."""
        return bool(self._m.accept_token(token))

    def accept_text(self, text: str) -> bool:
        """Advance by ``text`` (used after a rollback that cut a token in two)."""
        return not text or bool(self._m.accept_string(text))

    def fork(self) -> TokenMatcher:
        """An independent copy at the same place (to try a move without making it)."""
        return TokenMatcher(self._m.fork())

    def adopt(self, other: TokenMatcher) -> None:
        """Take ``other``'s place (a fork whose trial move is kept)."""
        self._m = other._m

    def rollback(self, tokens: int) -> None:
        """Undo the last ``tokens`` accepted tokens."""
        if tokens:
            self._m.rollback(tokens)

    @property
    def complete(self) -> bool:
        """Whether the text so far is a whole sentence of the grammar (it may end here)."""
        return bool(self._m.is_completed())

    @property
    def terminated(self) -> bool:
        """Whether an end token has been accepted."""
        return bool(self._m.is_terminated())


_COMPILING = threading.Lock()
"""Compiles run one at a time, process-wide: translating Lark reads its string literals with
the ``ast`` module, whose recursion bookkeeping is not thread-safe in CPython 3.11 (concurrent
compiles of the same new grammar raised ``SystemError: AST constructor recursion depth
mismatch``), and a second compile of a grammar being compiled is wasted work anyway."""

_STRING_ANCHOR = re.compile(r"\\[AZ]")
"""``\\A`` or ``\\Z`` (or an escaped backslash before an A or a Z: refused too, to be safe)."""
_LOOSE_JSON_CHAR = '[^\\"\\\\\\r\\n]'
_JSON_CHAR = '[^\\0-\\x1f\\"\\\\]'


def _ours_else_xgrammar(
    grammar: Grammar,
    ours: Callable[[], str],
    theirs: Callable[[], Any],
    *,
    fallback: Callable[[GbnfError], bool],
) -> Any:
    """xgrammar's grammar from our GBNF (``ours()``); where the translation refuses and
    ``fallback(error)`` allows it, from xgrammar's own reader (``theirs()``). ``ValueError``
    naming the grammar and both refusals otherwise."""
    import xgrammar as xgr

    try:
        return xgr.Grammar.from_ebnf(ours())
    except GbnfError as e:
        if not fallback(e):
            raise ValueError(f"{grammar.describe()} cannot become a mask: {e}") from e
        try:
            return theirs()
        except Exception as e2:
            raise ValueError(
                f"{grammar.describe()} cannot become a mask: {e}; xgrammar: {e2}"
            ) from e2


def _to_xgrammar(grammar: Grammar) -> Any:
    import xgrammar as xgr

    match grammar.kind:
        case "lark":
            # Our GBNF first: it reads lark's language (see lark_to_gbnf for the one known
            # difference) and its loops are flat, which keeps masks fast (xgrammar's own Lark
            # reader is slower on loops over sub-terminals); xgrammar's reader for what the
            # translation refuses, except a lazy quantifier, which it would read as greedy.
            return _ours_else_xgrammar(
                grammar,
                lambda: lark_to_gbnf(grammar.source, start=grammar.start),
                lambda: xgr.Grammar.from_lark(grammar.source),
                fallback=lambda e: grammar.start == "start" and not isinstance(e, _LexerMismatch),
            )
        case "regex":
            # Our GBNF first: it reads the pattern with Python's own regex parser, as ``check``
            # does (with ASCII \d \w \s: a mask narrower than re's Unicode ones). xgrammar's
            # regex dialect differs (``\Z`` is a literal "Z", ``.`` takes a newline, no inline
            # flags, no ``{,n}``), so its reader only takes what the translation refuses: it
            # ignores anchors inside the pattern (a looser mask, which the re-parse corrects)
            # and refuses word boundaries, atomic groups and possessive quantifiers itself. A
            # pattern with \A or \Z, which it would read as letters, is not given to it.
            return _ours_else_xgrammar(
                grammar,
                lambda: regex_grammar(grammar.source),
                lambda: xgr.Grammar.from_regex(grammar.source),
                fallback=lambda e: not _STRING_ANCHOR.search(grammar.source),
            )
        case "json_schema":
            compiled = xgr.Grammar.from_json_schema(grammar.source, any_whitespace=False)
            # xgrammar's strings under maxLength/minLength admit raw control characters, which
            # JSON forbids (found by the re-parse): close that hole in its own EBNF.
            ebnf = str(compiled)
            if _LOOSE_JSON_CHAR in ebnf:
                return xgr.Grammar.from_ebnf(ebnf.replace(_LOOSE_JSON_CHAR, _JSON_CHAR))
            return compiled
        case "choice":
            return xgr.Grammar.from_ebnf(choice_to_gbnf(grammar.options))


class GrammarCompiler:
    """Compiles grammars for one tokenizer, once each (cached by ``Grammar.key``).

    Args:
        vocab: each token's bytes by id (``vocab_bytes``); ``b""`` marks special tokens.
        stop_ids: the tokens that end a generation (allowed once the grammar is complete).
        vocab_size: the model's logits width, if larger than ``vocab`` (padding rows, never
            allowed).
        cache_size: compiled grammars kept (least recently used dropped first).
    """

    def __init__(
        self,
        vocab: Sequence[bytes],
        stop_ids: Iterable[int],
        *,
        vocab_size: int | None = None,
        cache_size: int = 128,
    ) -> None:
        import xgrammar as xgr

        self.vocab_size = max(len(vocab), vocab_size or 0)
        self._info = xgr.TokenizerInfo(
            list(vocab),
            xgr.VocabType.RAW,
            vocab_size=self.vocab_size,
            stop_token_ids=sorted(stop_ids),
        )
        self._compiler = xgr.GrammarCompiler(self._info, max_threads=2)
        self._cache: OrderedDict[str, CompiledGrammar] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def for_tokenizer(
        cls, tk: tokenizers.Tokenizer, stop_ids: Iterable[int], *, vocab_size: int | None = None
    ) -> GrammarCompiler:
        """A compiler for a ``tokenizers`` tokenizer."""
        return cls(vocab_bytes(tk), stop_ids, vocab_size=vocab_size)

    def cached(self, grammar: Grammar) -> CompiledGrammar | None:
        """The compiled grammar if it is in the cache."""
        with self._lock:
            hit = self._cache.get(grammar.key)
            if hit is not None:
                self._cache.move_to_end(grammar.key)
            return hit

    def compile(self, grammar: Grammar) -> CompiledGrammar:
        """Compile ``grammar`` (or take it from the cache). Blocks; see ``acompile``."""
        with _COMPILING:  # one compile at a time: see _COMPILING
            hit = self.cached(grammar)  # compiled by another thread while this one waited
            if hit is not None:
                return hit
            compiled = CompiledGrammar(
                grammar, self._compiler.compile_grammar(_to_xgrammar(grammar)), self.vocab_size
            )
            with self._lock:
                self._cache[grammar.key] = compiled
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return compiled

    async def acompile(self, grammar: Grammar, *, time_limit: float = 30.0) -> CompiledGrammar:
        """Compile in a worker thread, giving up after ``time_limit`` seconds with
        ``CompileTimeout`` (the caller goes on; the abandoned compile finishes on its own and
        still fills the cache)."""
        hit = self.cached(grammar)
        if hit is not None:
            return hit
        try:
            with anyio.fail_after(time_limit):
                return await anyio.to_thread.run_sync(self.compile, grammar, abandon_on_cancel=True)
        except TimeoutError:
            raise CompileTimeout(
                f"{grammar.describe()} did not compile within {time_limit:g}s"
            ) from None
