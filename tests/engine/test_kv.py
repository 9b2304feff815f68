"""The block pool: allocation, prefix reuse, pins, and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine import BlockPool, OutOfBlocks


def test_allocate_and_free_return_every_block() -> None:
    pool = BlockPool(8, 4)
    table, cached = pool.allocate(list(range(10)), now=0.0)
    assert cached == 0 and len(table.blocks) == 3
    assert pool.free_blocks == 5
    pool.free(table)
    assert pool.free_blocks == 8


def test_a_shared_prefix_reuses_full_blocks() -> None:
    pool = BlockPool(8, 4)
    first, _ = pool.allocate(list(range(10)), now=0.0)
    pool.commit(first, list(range(10)))  # two full blocks now cached
    second, cached = pool.allocate([*list(range(8)), 99, 98, 97], now=0.0)
    assert cached == 8
    assert second.blocks[:2] == first.blocks[:2]
    # the last token is always left to compute, even when everything is cached
    _third, cached = pool.allocate(list(range(8)), now=0.0)
    assert cached == 4


def test_cached_blocks_survive_free_and_are_evicted_when_needed() -> None:
    pool = BlockPool(4, 4)
    t, _ = pool.allocate(list(range(8)), now=0.0)
    pool.commit(t, list(range(8)))
    pool.free(t)
    assert pool.free_blocks == 4  # cached but evictable
    again, cached = pool.allocate([*list(range(8)), 1], now=0.0)
    assert cached == 8
    pool.free(again)
    other, cached = pool.allocate([7] * 16, now=0.0)  # needs all 4: evicts the cache
    assert cached == 0 and len(other.blocks) == 4


def test_pins_keep_blocks_until_they_expire_or_are_dropped() -> None:
    pool = BlockPool(4, 4)
    t, _ = pool.allocate(list(range(8)), now=0.0)
    pool.commit(t, list(range(8)))
    pool.free(t, pin_until=10.0)
    assert pool.pinned_blocks == 2 and pool.free_blocks == 2
    with pytest.raises(OutOfBlocks):
        pool.allocate([5] * 16, now=1.0)
    assert pool.expire_pins(5.0) == 0
    assert pool.expire_pins(10.0) == 2
    assert pool.free_blocks == 4
    t, cached = pool.allocate(list(range(9)), now=0.0)
    assert cached == 8  # expired pins leave the blocks cached
    pool.commit(t, list(range(9)))
    pool.free(t, pin_until=10.0)
    assert pool.drop_pins() == 2 and pool.free_blocks == 4


def test_the_same_program_reuses_its_pinned_prefix() -> None:
    pool = BlockPool(4, 4)
    turn1 = list(range(8))
    t, _ = pool.allocate(turn1, now=0.0)
    pool.commit(t, turn1)
    pool.free(t, pin_until=10.0)
    _t2, cached = pool.allocate([*turn1, 42], now=1.0)
    assert cached == 8 and pool.pinned_blocks == 0  # in use again: no longer a pin


def test_out_of_blocks_changes_nothing() -> None:
    pool = BlockPool(2, 4)
    a, _ = pool.allocate([1, 2, 3, 4, 5], now=0.0)
    with pytest.raises(OutOfBlocks):
        pool.allocate([9] * 8, now=0.0)
    assert pool.free_blocks == 0
    pool.free(a)
    assert pool.free_blocks == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["allocate", "free", "release"]),
            st.sampled_from(["p0", "p1", "p2"]),
            st.lists(st.integers(0, 3), min_size=1, max_size=20),
        ),
        max_size=30,
    )
)
def test_blocks_are_never_lost_or_shared_by_writers(ops: list[tuple[str, str, list[int]]]) -> None:
    pool = BlockPool(12, 4)
    live = []
    for op, owner, tokens in ops:
        # who freed which cached block is known for evictable blocks only, once each
        users = [b for mine in pool._freed_by.values() for b in mine]
        assert len(users) == len(set(users)) and set(users) <= set(pool._evictable)
        assert all(pool._last_user[b] == p for p, mine in pool._freed_by.items() for b in mine)
        if op == "release":
            pool.release(owner)
            continue
        if op == "free" and live:
            pin = 100.0 if owner == "p1" else None  # p1 pins what it frees
            pool.free(live.pop(0), owner=owner, pin_until=pin)
            continue
        try:
            table, cached = pool.allocate(tokens, now=0.0)
        except OutOfBlocks:
            continue
        assert 0 <= cached < len(tokens)
        pool.commit(table, tokens)
        live.append(table)
        # the partial (written) last block of each live table belongs to that table alone
        owners = [t.blocks[-1] for t in live if t.num_tokens % 4]
        assert len(owners) == len(set(owners))
    for t in live:
        pool.free(t)
    pool.drop_pins()
    assert pool.free_blocks == 12
    pool.allocate([9] * 47, now=0.0)  # every block can be taken: none lost to the bookkeeping


def test_a_program_can_drop_its_own_pins() -> None:
    pool = BlockPool(8, 4)
    for owner, base in (("p1", 0), ("p2", 100)):
        tokens = list(range(base, base + 8))
        t, _ = pool.allocate(tokens, now=0.0)
        pool.commit(t, tokens)
        pool.free(t, pin_until=10.0, owner=owner)
    assert pool.pinned_blocks == 4
    assert pool.drop_pins(owner="p1") == 2
    assert pool.pinned_blocks == 2


def _cache(pool: BlockPool, tokens: list[int], owner: str | None = None) -> None:
    """Run ``tokens`` as one sequence of ``owner`` and free it: its full blocks stay cached."""
    t, _ = pool.allocate(tokens, now=0.0)
    pool.commit(t, tokens)
    pool.free(t, owner=owner)


def _found(pool: BlockPool, tokens: list[int]) -> int:
    """How many of ``tokens`` the cache holds as a prefix (changes nothing)."""
    return len(pool.match_prefix([*tokens, -1])[0]) * pool.block_size


def test_eviction_takes_a_prefix_from_its_end() -> None:
    # Three cached blocks, one evicted: the first two still make a prefix. Evicting the head
    # instead would leave two blocks cached that no prompt can reach.
    pool = BlockPool(4, 4)
    _cache(pool, list(range(12)))
    pool.allocate([70] * 8, now=0.0)  # two blocks: the free one and one evicted
    assert _found(pool, list(range(12))) == 8


def test_an_ended_programs_blocks_are_evicted_before_a_live_ones() -> None:
    pool = BlockPool(4, 4)
    live, ended = list(range(8)), list(range(100, 108))
    _cache(pool, live, owner="live")  # freed first: least recently used
    _cache(pool, ended, owner="ended")
    pool.release("ended")
    pool.allocate([70] * 8, now=0.0)  # needs two of the four blocks
    assert _found(pool, live) == 8
    assert _found(pool, ended) == 0


def test_a_prefix_reused_by_a_live_program_is_no_longer_the_ended_ones() -> None:
    pool = BlockPool(5, 4)
    mine, other = list(range(8)), list(range(200, 208))
    _cache(pool, mine, owner="a")
    _cache(pool, other, owner="c")
    _cache(pool, [*mine, 9], owner="b")  # b used a's blocks after c's: most recent now
    pool.release("a")  # a's claim on them went when b took them: nothing moves
    pool.allocate([70] * 8, now=0.0)  # two blocks: the free one and c's tail
    assert _found(pool, mine) == 8
    assert _found(pool, other) == 4


def test_an_ended_program_leaves_a_prefix_it_shared_where_it_was() -> None:
    # a and b share a system prompt S (two blocks); b frees first, then a. When a ends, its own
    # block goes first, while S, which b used too, keeps its place: b's prefix stays whole.
    pool = BlockPool(6, 4)
    shared = list(range(8))
    a_tokens, b_tokens = [*shared, *range(100, 104)], [*shared, *range(200, 204)]
    a, _ = pool.allocate(a_tokens, now=0.0)
    pool.commit(a, a_tokens)
    b, _ = pool.allocate(b_tokens, now=0.0)
    pool.commit(b, b_tokens)
    pool.free(b, owner="b")
    pool.free(a, owner="a")
    pool.release("a")
    pool.allocate([70] * 16, now=0.0)  # four blocks: the two free ones, a's own, then b's tail
    assert _found(pool, a_tokens) == 8
    assert _found(pool, b_tokens) == 8  # S whole (moving S forward would have cut it to 4)
