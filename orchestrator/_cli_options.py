"""Checked option types for the command lines (``legato``, ``python -m orchestrator.bench.*``).

Each is an argparse ``type=``: it turns the option's text into a value or raises
``argparse.ArgumentTypeError``, so a bad value is refused while the command line is parsed,
before anything starts: argparse prints ``legato bench: error: argument --rate: must be > 0,
got 0`` and exits with status 2. Messages quote the text as given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "int_at_least",
    "name_list",
    "name_or_path",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "probability",
]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum``."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: the system picks a free one)."""
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text}")
    return value


def name_list(known: Iterable[str], *, what: str) -> Callable[[str], str]:
    """A comma-separated list of names, each one of ``known`` (the text, stripped of blanks
    around each name, is returned as given: callers split it)."""
    names = sorted(set(known))

    def parse(text: str) -> str:
        given = [x.strip() for x in text.split(",") if x.strip()]
        if not given:
            raise argparse.ArgumentTypeError(
                f"needs at least one {what}; known: {', '.join(names)}"
            )
        unknown = [x for x in given if x not in names]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(names)}"
            )
        return ",".join(given)

    parse.__name__ = f"{what} list"
    return parse


def name_or_path(known: Iterable[str], *, what: str) -> Callable[[str], str]:
    """One of ``known`` names, or the path of an existing file or folder."""
    names = list(known)

    def parse(text: str) -> str:
        if text in names or Path(text).exists():
            return text
        raise argparse.ArgumentTypeError(
            f"unknown {what} {text!r}: not one of {', '.join(names)}, and no such file or folder"
        )

    parse.__name__ = what
    return parse
