"""Every command's ``--help`` renders (argparse expands ``%`` in help strings)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from orchestrator.cli import _parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_command_formats_its_help() -> None:
    seen = []
    for path, parser in _commands(_parser()):
        text = parser.format_help()
        assert text.startswith("usage: legato"), path
        seen.append(" ".join(path))
    assert {"bench", "sql eval", "model train", "engine serve"} <= set(seen)
