"""Replica choice rules, step by step."""

from __future__ import annotations

import pytest

from orchestrator.scheduler import Balancer


def test_round_robin_ignores_load() -> None:
    b = Balancer("round_robin")
    assert [b.choose("p", 10, [5, 0, 0]) for _ in range(4)] == [0, 1, 2, 0]


def test_autellix_short_prompts_go_to_the_least_loaded() -> None:
    b = Balancer("autellix", long_prompt=2048)
    assert b.choose("p", 100, [3, 1]) == 1
    assert b.choose("p", 100, [0, 1]) == 0


def test_autellix_long_prompts_stay_on_the_programs_replica() -> None:
    b = Balancer("autellix", long_prompt=2048)
    assert b.choose("p", 5000, [3, 1]) == 1
    assert b.choose("p", 5000, [0, 9]) == 1  # stays despite the load


def test_autellix_long_prompts_follow_the_program_s_last_call() -> None:
    """The program's context is cached where its last call ran, a short one included: a long
    prompt goes there, not to the replica of its first long call."""
    b = Balancer("autellix", long_prompt=2048)
    assert b.choose("p", 100, [3, 1]) == 1  # short: least loaded
    assert b.choose("p", 3000, [0, 9]) == 1  # long: where the short one ran
    assert b.choose("p", 100, [0, 9]) == 0  # short: least loaded again
    assert b.choose("p", 3000, [5, 0]) == 0  # long: follows it


def test_locality_stays_until_the_load_gap_exceeds_the_slack() -> None:
    b = Balancer("locality", slack=2)  # (the default is 16)
    assert b.choose("p", 100, [0, 0]) == 0
    assert b.choose("p", 100, [2, 0]) == 0  # gap 2 <= slack: stay with the cached prefix
    assert b.choose("p", 100, [3, 0]) == 1  # gap 3: move
    assert b.choose("p", 100, [3, 3]) == 1  # and stay at the new home
    b.forget("p")
    assert b.choose("p", 100, [0, 3]) == 0


def test_unknown_rule() -> None:
    with pytest.raises(ValueError, match="unknown balancer 'nope'"):
        Balancer("nope")  # type: ignore[arg-type]
