#!/usr/bin/env python3
"""Summarize an access log in the common log format.

Example line:
    203.0.113.7 - - [12/Mar/2024:10:15:32 +0000] "GET /index.html HTTP/1.1" 200 5120
"""

import re
import sys
from collections import Counter
from typing import Iterable, NamedTuple, Optional

LINE_RE = re.compile(
    r"(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) (?P<size>\d+|-)'
)


class Request(NamedTuple):
    host: str
    method: str
    path: str
    status: int
    size: int


def parse_line(line: str) -> Optional[Request]:
    match = LINE_RE.match(line)
    if not match:
        return None
    size = match["size"]
    return Request(match["host"], match["method"], match["path"], int(match["status"]), 0 if size == "-" else int(size))


def summarize(lines: Iterable[str], top: int = 5) -> None:
    paths, statuses, hosts = Counter(), Counter(), Counter()
    total_bytes = bad = 0
    for line in lines:
        req = parse_line(line)
        if req is None:
            bad += 1
            continue
        paths[req.path] += 1
        statuses[req.status // 100 * 100] += 1
        hosts[req.host] += 1
        total_bytes += req.size

    print(f"requests: {sum(paths.values())}  unparsed: {bad}  bytes: {total_bytes}")
    print("status classes:", ", ".join(f"{k // 100}xx={v}" for k, v in sorted(statuses.items())))
    print(f"top {top} paths:")
    for path, n in paths.most_common(top):
        print(f"  {n:6d}  {path}")
    print(f"top {top} hosts:")
    for host, n in hosts.most_common(top):
        print(f"  {n:6d}  {host}")


if __name__ == "__main__":
    stream = open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin
    with stream:
        summarize(stream)
