"""Verifiable STEM problems over quantities found in a document: unit conversion, addition of two
quantities of one unit, and a linear equation generated alongside the document.

Every problem carries its exact answer (``Decimal``), so any teacher's final answer can be checked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# unit -> (target unit, exact factor)
CONVERSIONS: dict[str, tuple[str, Decimal]] = {
    "m/s": ("km/h", Decimal("3.6")),
    "km/h": ("m/s", Decimal(1) / Decimal("3.6")),
    "km": ("m", Decimal(1000)),
    "m": ("cm", Decimal(100)),
    "cm": ("mm", Decimal(10)),
    "kg": ("g", Decimal(1000)),
    "g": ("mg", Decimal(1000)),
    "s": ("ms", Decimal(1000)),
    "h": ("min", Decimal(60)),
    "min": ("s", Decimal(60)),
    "L": ("mL", Decimal(1000)),
    "N": ("kN", Decimal("0.001")),
    "J": ("kJ", Decimal("0.001")),
    "W": ("kW", Decimal("0.001")),
    "kJ": ("J", Decimal(1000)),
    "kW": ("W", Decimal(1000)),
}
_UNITS = sorted({*CONVERSIONS, "m/s²", "mL", "mm", "mg", "ms", "kN"}, key=len, reverse=True)
QUANTITY_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(" + "|".join(re.escape(u) for u in _UNITS) + r")(?![\w/²³])")
ANSWER_RE = re.compile(r"Answer:\s*(-?\d+(?:[.,]\d+)?)")


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    unit: str


@dataclass(frozen=True)
class Problem:
    kind: str  # convert | add | linear
    question: str  # English statement; the numbers in it determine the answer
    answer: Decimal
    unit: str  # unit of the answer ("" for the linear equation's x)
    operands: tuple[str, ...]  # the numbers and units used, as text (for templates and checks)


def fmt(value: Decimal) -> str:
    """Plain decimal notation, at most 6 decimals, no trailing zeros: 86.4, 24, 0.0125."""
    q = value.quantize(Decimal("0.000001")).normalize()
    text = format(q, "f")
    return text if text not in ("-0",) else "0"


def quantities(text: str) -> list[Quantity]:
    """Distinct quantities with a known unit, in order of appearance."""
    seen: dict[tuple[str, str], Quantity] = {}
    for number, unit in QUANTITY_RE.findall(text):
        try:
            value = Decimal(number)
        except InvalidOperation:
            continue
        if value > 0:
            seen.setdefault((fmt(value), unit), Quantity(value, unit))
    return list(seen.values())


def _seed(doc_id: str) -> int:
    return int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16)


def problems_for(doc_id: str, text: str) -> list[Problem]:
    """Every verifiable problem the document's quantities allow, in a deterministic order."""
    qs = quantities(text)
    out: list[Problem] = []
    for q in qs:
        if q.unit in CONVERSIONS:
            target, factor = CONVERSIONS[q.unit]
            out.append(
                Problem(
                    "convert",
                    f"Convert {fmt(q.value)} {q.unit} to {target}.",
                    q.value * factor,
                    target,
                    (fmt(q.value), q.unit, target),
                )
            )
    by_unit: dict[str, list[Quantity]] = {}
    for q in qs:
        by_unit.setdefault(q.unit, []).append(q)
    for unit, group in by_unit.items():
        if len(group) >= 2:
            a, b = group[0], group[1]
            out.append(
                Problem(
                    "add",
                    f"What is {fmt(a.value)} {unit} + {fmt(b.value)} {unit}?",
                    a.value + b.value,
                    unit,
                    (fmt(a.value), fmt(b.value), unit),
                )
            )
    if qs:
        seed = _seed(doc_id)
        a = qs[0].value
        x = Decimal(seed % 9 + 2)
        k = Decimal(seed // 9 % 40 + 1)
        c = a * x + k
        out.append(Problem("linear", f"Solve {fmt(a)}·x + {fmt(k)} = {fmt(c)} for x.", x, "", (fmt(a), fmt(k), fmt(c))))
    return out


def pick_problem(doc_id: str, text: str) -> Problem | None:
    """One problem per document, rotating over the kinds by a hash of the document id."""
    problems = problems_for(doc_id, text)
    return problems[_seed(doc_id) % len(problems)] if problems else None


def parse_answer(text: str) -> Decimal | None:
    """The number after the last ``Answer:`` (a decimal comma is accepted)."""
    found = ANSWER_RE.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", "."))
    except InvalidOperation:
        return None


def answer_matches(expected: Decimal, got: Decimal | None, rel_tol: Decimal = Decimal("1e-4")) -> bool:
    if got is None:
        return False
    return abs(expected - got) <= rel_tol * max(abs(expected), Decimal(1))
