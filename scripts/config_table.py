"""Print the README's table of configuration fields, made from Config's field metadata.

    python scripts/config_table.py                # print the table
    python scripts/config_table.py --update README.md   # replace it between the markers

The README holds the table between ``<!-- config-table:begin -->`` and
``<!-- config-table:end -->``; tb/gen/test_readme.py fails when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from intformer.hw.config import BASE, Config

__all__ = ["BEGIN", "END", "table", "update"]

BEGIN = "<!-- config-table:begin (scripts/config_table.py --update README.md) -->"
END = "<!-- config-table:end -->"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table() -> str:
    """A Markdown table: field, group, default (the ``default`` preset), the values Config
    accepts, and meaning."""
    lines = ["| field | group | default | values | meaning |",
             "| --- | --- | --- | --- | --- |"]
    for f in fields(Config):
        lines.append(f"| `{f.name}` | {f.metadata['group']} | {_value(getattr(BASE, f.name))} "
                     f"| {Config.values(f.name)} | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


def update(text: str) -> str:
    """``text`` with the table between the markers replaced by :func:`table`."""
    try:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"The markers {BEGIN!r} and {END!r} are not in the file") from None
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", type=Path, metavar="README",
                        help="rewrite the table in this file")
    args = parser.parse_args(argv)
    if args.update is None:
        sys.stdout.write(table())
        return 0
    args.update.write_text(update(args.update.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
