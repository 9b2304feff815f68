"""Create the example Text-to-SQL databases and their question files.

    python examples/text2sql/make_databases.py OUT_DIR [--seed N]

writes ``OUT_DIR/school.sqlite``, ``shop.sqlite``, ``flights.sqlite`` (seeded: the same seed
gives the same rows) and ``OUT_DIR/<db>.questions.json`` (the shipped question / gold-SQL pairs
of each database), ready for ``legato sql ask`` and ``legato sql eval``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

try:
    from integrations import text2sql
except ModuleNotFoundError:  # run from a clone where Legato is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from integrations import text2sql


def main(argv: list[str] | None = None) -> int:
    """Write the databases and question files; print one line per database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the files into")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    args = parser.parse_args(argv)
    for name, path in text2sql.build_all(args.out_dir, seed=args.seed).items():
        qs = text2sql.questions(name)
        qpath = text2sql.write_questions(args.out_dir / f"{name}.questions.json", qs)
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = sum(
                con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in text2sql.database(name).table_names
            )
        finally:
            con.close()
        print(f"{path}  ({rows} rows)  {qpath}  ({len(qs)} questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
