"""An independent recomputation of the offline teacher's STEM answers (tests/unit/test_synthetic_offline.py
and tests/integration/test_synthetic_assets.py check the teacher against it)."""

from __future__ import annotations

import re

# written independently of synthetic/stem.py: how many target units one source unit is
FACTORS = {
    ("m/s", "km/h"): 3.6,
    ("km/h", "m/s"): 1 / 3.6,
    ("km", "m"): 1000,
    ("m", "cm"): 100,
    ("cm", "mm"): 10,
    ("kg", "g"): 1000,
    ("g", "mg"): 1000,
    ("s", "ms"): 1000,
    ("h", "min"): 60,
    ("min", "s"): 60,
    ("L", "mL"): 1000,
    ("N", "kN"): 0.001,
    ("J", "kJ"): 0.001,
    ("W", "kW"): 0.001,
    ("kJ", "J"): 1000,
    ("kW", "W"): 1000,
}


def recompute(question: str) -> float:
    if m := re.fullmatch(r"Convert ([\d.]+) (\S+) to (\S+)\.", question):
        return float(m[1]) * FACTORS[(m[2], m[3])]
    if m := re.fullmatch(r"What is ([\d.]+) (\S+) \+ ([\d.]+) (\S+)\?", question):
        assert m[2] == m[4]
        return float(m[1]) + float(m[3])
    m = re.fullmatch(r"Solve ([\d.]+)·x \+ ([\d.]+) = ([\d.]+) for x\.", question)
    assert m, question
    return (float(m[3]) - float(m[2])) / float(m[1])
