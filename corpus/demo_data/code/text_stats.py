#!/usr/bin/env python3
"""Print simple statistics (lines, words, characters) for text files.

Usage:
    python text_stats.py FILE [FILE ...]
    cat notes.txt | python text_stats.py -
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Iterable, TextIO


@dataclass
class Stats:
    lines: int = 0
    words: int = 0
    chars: int = 0

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(self.lines + other.lines, self.words + other.words, self.chars + other.chars)


def count(stream: TextIO) -> Stats:
    """Count lines, whitespace-separated words and characters in a stream."""
    stats = Stats()
    for line in stream:
        stats.lines += 1
        stats.words += len(line.split())
        stats.chars += len(line)
    return stats


def format_row(stats: Stats, name: str) -> str:
    return f"{stats.lines:8d} {stats.words:8d} {stats.chars:10d}  {name}"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="files to read, or - for stdin")
    args = parser.parse_args(list(argv) if argv is not None else None)

    total = Stats()
    for name in args.files:
        try:
            if name == "-":
                stats = count(sys.stdin)
            else:
                with open(name, encoding="utf-8", errors="replace") as fh:
                    stats = count(fh)
        except OSError as exc:
            print(f"text_stats: {name}: {exc.strerror}", file=sys.stderr)
            return 1
        print(format_row(stats, name))
        total = total + stats

    if len(args.files) > 1:
        print(format_row(total, "total"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
