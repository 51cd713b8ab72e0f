"""Flatten and unflatten nested JSON-like structures.

>>> flatten({"a": {"b": 1, "c": [10, 20]}, "d": None})
{'a.b': 1, 'a.c.0': 10, 'a.c.1': 20, 'd': None}
>>> unflatten({'a.b': 1, 'a.c': 2})
{'a': {'b': 1, 'c': 2}}
"""

from typing import Any, Dict


def flatten(obj: Any, sep: str = ".", prefix: str = "") -> Dict[str, Any]:
    """Return a single-level dict whose keys are paths into ``obj``.

    Lists are flattened using their indices as path components. Empty
    dicts and lists are kept as leaf values so no information is lost.
    """
    items: Dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            path = f"{prefix}{sep}{key}" if prefix else str(key)
            items.update(flatten(value, sep, path))
    elif isinstance(obj, list) and obj:
        for index, value in enumerate(obj):
            path = f"{prefix}{sep}{index}" if prefix else str(index)
            items.update(flatten(value, sep, path))
    else:
        items[prefix] = obj
    return items


def unflatten(flat: Dict[str, Any], sep: str = ".") -> Dict[str, Any]:
    """Rebuild nested dicts from dotted keys (list indices become dict keys)."""
    root: Dict[str, Any] = {}
    for path, value in flat.items():
        node = root
        parts = path.split(sep)
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"conflicting key at {part!r} in {path!r}")
        node[parts[-1]] = value
    return root


if __name__ == "__main__":
    import doctest
    import json
    import sys

    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as fh:
            data = json.load(fh)
        for key, value in flatten(data).items():
            print(f"{key}\t{json.dumps(value, ensure_ascii=False)}")
    else:
        doctest.testmod(verbose=False)
