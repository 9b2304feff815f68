"""Made-up values for training examples, so that a model learns to copy a value from the
question instead of remembering the few values a database holds.

A model trained only on the example databases' own values (twenty cities, a few hundred names)
can answer by memory and never learns to copy; it then fails on a value it has not seen. Mixing
in values that are new every time (pronounceable made-up words, names, codes, numbers of any
size) leaves copying as the only way to be right. Made-up values never equal a real value of
the example data, nor a held-out one: held-out splits stay unseen.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container
from typing import Final

__all__ = ["pseudo_code", "pseudo_name", "pseudo_number", "pseudo_word", "unique"]

_ONSETS: Final = (
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
    "br", "ch", "cl", "dr", "fl", "gr", "kr", "pl", "sh", "st", "tr", "th",
)  # fmt: skip
_VOWELS: Final = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "y")
_CODAS: Final = ("", "", "", "n", "r", "l", "s", "t", "m", "nd", "rk", "x")


def pseudo_word(rng: random.Random, *, capital: bool = True) -> str:
    """A pronounceable made-up word of two or three syllables (``Velmora``, ``drashik``)."""
    n = rng.choice((2, 2, 3))
    word = "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + (rng.choice(_CODAS) if i == n - 1 else "")
        for i in range(n)
    )
    return word.capitalize() if capital else word


def pseudo_name(rng: random.Random, words: int = 2, *, capital: bool = True) -> str:
    """``words`` made-up words (``Tralo Benvik``)."""
    return " ".join(pseudo_word(rng, capital=capital) for _ in range(words))


def pseudo_code(rng: random.Random) -> str:
    """A made-up code of letters and digits (``KRV-28``, ``BX417``)."""
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTVWXZ") for _ in range(rng.randint(2, 4)))
    digits = str(rng.randint(1, 999))
    return f"{letters}-{digits}" if rng.random() < 0.5 else letters + digits


def pseudo_number(rng: random.Random, *, decimals: bool = False) -> str:
    """A number of one to seven digits (one decimal place when ``decimals``)."""
    if decimals:
        return f"{rng.randint(0, 99)}.{rng.randint(0, 9)}"
    return str(rng.randint(1, 10 ** rng.randint(1, 7)))


def unique(make: Callable[[random.Random], str], rng: random.Random, avoid: Container[str]) -> str:
    """``make(rng)`` until it is not in ``avoid``."""
    while True:
        value = make(rng)
        if value not in avoid:
            return value
