#!/usr/bin/env python3
"""Find files with identical contents under one or more directories.

Files are first grouped by size, and only files that share a size are
hashed, which keeps the tool fast on large trees.
"""

import argparse
import hashlib
import os
from collections import defaultdict
from typing import Dict, Iterable, List

CHUNK = 1 << 16


def iter_files(roots: Iterable[str]) -> Iterable[str]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    yield path


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def find_duplicates(roots: Iterable[str], min_size: int = 1) -> List[List[str]]:
    by_size: Dict[int, List[str]] = defaultdict(list)
    for path in iter_files(roots):
        size = os.path.getsize(path)
        if size >= min_size:
            by_size[size].append(path)

    groups: List[List[str]] = []
    for paths in by_size.values():
        if len(paths) < 2:
            continue
        by_hash: Dict[str, List[str]] = defaultdict(list)
        for path in paths:
            by_hash[file_digest(path)].append(path)
        groups.extend(sorted(g) for g in by_hash.values() if len(g) > 1)
    return sorted(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--min-size", type=int, default=1, help="ignore files smaller than this many bytes")
    args = parser.parse_args()

    groups = find_duplicates(args.roots, args.min_size)
    wasted = 0
    for group in groups:
        size = os.path.getsize(group[0])
        wasted += size * (len(group) - 1)
        print(f"# {len(group)} copies, {size} bytes each")
        for path in group:
            print(f"  {path}")
    print(f"{len(groups)} duplicate groups, {wasted} bytes reclaimable")


if __name__ == "__main__":
    main()
