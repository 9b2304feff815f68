"""Paged KV-cache bookkeeping: a pool of fixed-size blocks, per-sequence block tables, a prefix
cache of full blocks keyed by their token content, and time-to-live pins.

This module owns which block holds what; the tensors themselves live in the model's arrays,
indexed by block id. A block is *free* (no owner, no cached content), *cached* (holds a full
block of some prefix, no live owner; reusable by a prompt with that prefix, evictable LRU), or
*in use* (referenced by one or more live sequences). Pinned cached blocks are not evicted until
their pin expires or is dropped.

Eviction order, least useful first:
- the blocks of programs that have ended (``release``), except those another program has
  used too (a shared system prompt): nothing else of theirs will be asked for again;
- then least recently freed first, and within one sequence its last block first (blocks are
  released tail first): a prefix is only found from its start, so losing a chain's head
  would leave the rest of it cached but unreachable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["BlockPool", "BlockTable", "OutOfBlocks"]


class OutOfBlocks(Exception):
    """Not enough free or evictable blocks for the request."""


def _chain(parent: int | None, tokens: Sequence[int]) -> int:
    return hash((parent, tuple(tokens)))


@dataclass(slots=True)
class BlockTable:
    """The blocks of one sequence, in order, and how many of its tokens they hold."""

    blocks: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)
    """Content hash of each *full* block, in order (a chain: each includes its parent)."""
    num_tokens: int = 0


class BlockPool:
    """Allocates KV blocks to sequences and caches full blocks by prefix.

    Args:
        num_blocks: blocks in the pool (the KV budget).
        block_size: tokens per block.
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._refs = [0] * num_blocks
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._cached: OrderedDict[int, int] = OrderedDict()  # hash -> block, LRU order
        self._hash_of: dict[int, int] = {}  # block -> hash
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached blocks with 0 refs
        self._pins: dict[int, float] = {}  # block -> pin expiry time
        self._pin_owner: dict[int, str] = {}  # block -> the program that pinned it
        self._last_user: dict[int, str] = {}  # cached block -> the last program that freed it
        self._freed_by: dict[str, dict[int, None]] = {}  # program -> evictable ones, in order
        self._shared: set[int] = set()  # cached blocks freed by more than one program

    # -- accounting --------------------------------------------------------------------------
    @property
    def free_blocks(self) -> int:
        """Blocks available now without dropping any pin: free ones plus unpinned cached ones."""
        return len(self._free) + len(self._evictable) - len(self._pins)  # pins are evictable

    @property
    def pinned_blocks(self) -> int:
        """Cached blocks held by a pin."""
        return len(self._pins)

    def referenced(self, blocks: Sequence[int]) -> int:
        """How many of ``blocks`` some sequence holds now (the others are free or evictable)."""
        return sum(1 for b in blocks if self._refs[b] > 0)

    def exclusive(self, table: BlockTable) -> int:
        """How many of ``table``'s blocks freeing it would make available: those no other
        sequence holds. Shared blocks are a prefix (a sequence shares a block only by matching
        the prefix up to it), so this counts from the first block another does not hold."""
        shared = 0
        for b in table.blocks:
            if self._refs[b] <= 1:
                break
            shared += 1
        return len(table.blocks) - shared

    def blocks_for(self, num_tokens: int) -> int:
        """How many blocks ``num_tokens`` tokens occupy."""
        return -(-num_tokens // self.block_size)

    # -- prefix cache ------------------------------------------------------------------------
    def match_prefix(self, tokens: Sequence[int]) -> tuple[list[int], list[int]]:
        """The cached blocks holding the longest full-block prefix of ``tokens``, with hashes.

        At least one token is always left uncached, so the caller has something to compute.
        """
        blocks: list[int] = []
        hashes: list[int] = []
        parent: int | None = None
        bs = self.block_size
        for start in range(0, len(tokens) - 1 - (len(tokens) - 1) % bs, bs):
            h = _chain(parent, tokens[start : start + bs])
            block = self._cached.get(h)
            if block is None:
                break
            blocks.append(block)
            hashes.append(h)
            parent = h
        return blocks, hashes

    # -- allocation --------------------------------------------------------------------------
    def allocate(self, tokens: Sequence[int], now: float) -> tuple[BlockTable, int]:
        """A block table for a new sequence with prompt ``tokens``, reusing cached prefix blocks.

        Returns the table and how many prompt tokens are already in the cache (their KV need not
        be computed). Raises ``OutOfBlocks`` (changing nothing) if the rest does not fit.
        """
        blocks, hashes = self.match_prefix(tokens)
        need = self.blocks_for(len(tokens)) - len(blocks)
        if self._required(blocks, need) > self.free_blocks:
            raise OutOfBlocks(f"need {need} blocks, {self.free_blocks} available")
        for b in blocks:
            self._ref(b)
        table = BlockTable(
            blocks=list(blocks), hashes=list(hashes), num_tokens=len(blocks) * self.block_size
        )
        for _ in range(need):
            table.blocks.append(self._take(now))
        return table, table.num_tokens

    def required(self, tokens: Sequence[int]) -> int:
        """How many blocks ``free_blocks`` must count for ``allocate(tokens)`` to succeed: the
        new blocks it takes, plus the cached prefix blocks it reuses that are counted free now
        (evictable, unpinned) and stop being so."""
        blocks, _ = self.match_prefix(tokens)
        return self._required(blocks, self.blocks_for(len(tokens)) - len(blocks))

    def _required(self, prefix: Sequence[int], need: int) -> int:
        return need + sum(1 for b in prefix if self._refs[b] == 0 and b not in self._pins)

    def grow(self, table: BlockTable, num_tokens: int, now: float) -> None:
        """Make ``table`` big enough for ``num_tokens`` tokens; ``OutOfBlocks`` if it cannot."""
        need = self.blocks_for(num_tokens) - len(table.blocks)
        if need > self.free_blocks:
            raise OutOfBlocks(f"need {need} more blocks, {self.free_blocks} available")
        for _ in range(need):
            table.blocks.append(self._take(now))

    def commit(self, table: BlockTable, tokens: Sequence[int]) -> None:
        """Record that ``table`` now holds the KV of ``tokens``; full blocks join the cache."""
        bs = self.block_size
        table.num_tokens = len(tokens)
        parent = table.hashes[-1] if table.hashes else None
        for i in range(len(table.hashes), len(tokens) // bs):
            h = _chain(parent, tokens[i * bs : (i + 1) * bs])
            table.hashes.append(h)
            parent = h
            block = table.blocks[i]
            if h not in self._cached and block not in self._hash_of:
                self._cached[h] = block
                self._hash_of[block] = h

    def free(
        self, table: BlockTable, *, pin_until: float | None = None, owner: str | None = None
    ) -> None:
        """Release ``table``'s blocks. Full, cached blocks stay reusable; with ``pin_until``
        they are also kept from eviction until that time (on behalf of ``owner``, the program
        whose sequence it was: ``release`` evicts its blocks first once it has ended)."""
        for b in reversed(table.blocks):  # tail first: the head is evicted last
            self._refs[b] -= 1
            if owner is not None and b in self._hash_of and self._freed_by_other(b, owner):
                self._shared.add(b)
            if self._refs[b] == 0:
                if b in self._hash_of:
                    self._evictable[b] = None
                    if owner is not None:
                        self._freed_by.setdefault(owner, {})[b] = None
                    if pin_until is not None:
                        self._pins[b] = max(pin_until, self._pins.get(b, pin_until))
                        if owner is not None:
                            self._pin_owner[b] = owner
                else:
                    self._free.append(b)
        table.blocks.clear()
        table.hashes.clear()
        table.num_tokens = 0

    def expire_pins(self, now: float) -> int:
        """Drop pins whose time has passed; returns how many."""
        expired = [b for b, until in self._pins.items() if until <= now]
        for b in expired:
            del self._pins[b]
            self._pin_owner.pop(b, None)
        return len(expired)

    def drop_pins(self, owner: str | None = None) -> int:
        """Drop every pin, or those of ``owner`` (its program has ended); returns how many."""
        if owner is None:
            n = len(self._pins)
            self._pins.clear()
            self._pin_owner.clear()
            return n
        mine = [b for b, o in self._pin_owner.items() if o == owner]
        for b in mine:
            self._pins.pop(b, None)
            del self._pin_owner[b]
        return len(mine)

    def release(self, owner: str) -> int:
        """``owner``'s program has ended: drop its pins and move the cached blocks it freed
        last, and that no other program has used, to the front of the eviction order (tail
        first, as they were freed). Returns how many pins were dropped."""
        dropped = self.drop_pins(owner)
        mine = self._freed_by.pop(owner, {})
        for b in reversed(mine):  # freed tail first: keep that order at the front
            if b not in self._shared:
                self._evictable.move_to_end(b, last=False)
        return dropped

    def drop_pins_for(self, blocks: int, *, keep: str | None = None) -> int:
        """Drop pins, those expiring soonest first, until ``blocks`` blocks are available (or
        no other pin is left); returns how many were dropped. The pins of ``keep`` (the
        program asking, whose prefix they hold) and of programs not in the way stay."""
        dropped = 0
        for b, _ in sorted(self._pins.items(), key=lambda item: item[1]):
            if self.free_blocks >= blocks:
                break
            if keep is not None and self._pin_owner.get(b) == keep:
                continue
            del self._pins[b]
            self._pin_owner.pop(b, None)
            dropped += 1
        return dropped

    # -- internals ---------------------------------------------------------------------------
    def _ref(self, b: int) -> None:
        if self._refs[b] == 0:
            self._evictable.pop(b, None)
            self._forget_user(b)
            self._pins.pop(b, None)
            self._pin_owner.pop(b, None)
        self._refs[b] += 1
        h = self._hash_of.get(b)
        if h is not None:
            self._cached.move_to_end(h)

    def _freed_by_other(self, b: int, owner: str) -> bool:
        """Record that ``owner`` freed ``b``; whether another program had freed it before."""
        last = self._last_user.get(b, owner)
        self._last_user[b] = owner
        return last != owner

    def _forget_user(self, b: int) -> None:
        """``b`` is no longer evictable: it leaves its last user's list."""
        user = self._last_user.get(b)
        if user is None:
            return
        mine = self._freed_by.get(user)
        if mine is not None and b in mine:
            del mine[b]
            if not mine:
                del self._freed_by[user]

    def _take(self, now: float) -> int:
        if self._free:
            b = self._free.pop()
        else:
            b = next((x for x in self._evictable if x not in self._pins), -1)
            if b < 0:  # pragma: no cover - callers check free_blocks first
                raise OutOfBlocks("no free block")
            del self._evictable[b]
            self._forget_user(b)
            self._last_user.pop(b, None)
            self._shared.discard(b)
            del self._cached[self._hash_of.pop(b)]
        self._refs[b] = 1
        return b
