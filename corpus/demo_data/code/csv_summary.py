#!/usr/bin/env python3
"""Summarize the numeric columns of a CSV file.

For every column whose values all parse as numbers, print the count,
minimum, maximum, mean and sample standard deviation.
"""

import csv
import math
import sys
from typing import Dict, List


def parse_number(text: str):
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def summarize(path: str) -> Dict[str, Dict[str, float]]:
    columns: Dict[str, List[float]] = {}
    numeric: Dict[str, bool] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            for name, raw in row.items():
                if raw is None or raw.strip() == "":
                    continue
                value = parse_number(raw)
                if value is None:
                    numeric[name] = False
                    continue
                numeric.setdefault(name, True)
                columns.setdefault(name, []).append(value)

    result = {}
    for name, values in columns.items():
        if not numeric.get(name) or not values:
            continue
        n = len(values)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        result[name] = {
            "count": n,
            "min": min(values),
            "max": max(values),
            "mean": mean,
            "stdev": math.sqrt(var),
        }
    return result


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} FILE.csv", file=sys.stderr)
        return 2
    summary = summarize(sys.argv[1])
    if not summary:
        print("no numeric columns found")
        return 1
    header = f"{'column':<20}{'count':>8}{'min':>12}{'max':>12}{'mean':>12}{'stdev':>12}"
    print(header)
    print("-" * len(header))
    for name, s in sorted(summary.items()):
        print(f"{name:<20}{s['count']:>8d}{s['min']:>12.3f}{s['max']:>12.3f}{s['mean']:>12.3f}{s['stdev']:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
