"""Temperature conversions with a small value type.

>>> Temperature.from_fahrenheit(98.6).celsius
37.0
>>> round(Temperature(100).fahrenheit, 1)
212.0
"""

from dataclasses import dataclass
from functools import total_ordering

ABSOLUTE_ZERO_C = -273.15


@total_ordering
@dataclass(frozen=True)
class Temperature:
    """A temperature stored internally in degrees Celsius."""

    celsius: float

    def __post_init__(self) -> None:
        if self.celsius < ABSOLUTE_ZERO_C:
            raise ValueError(f"{self.celsius} °C is below absolute zero")

    @classmethod
    def from_fahrenheit(cls, value: float) -> "Temperature":
        return cls(round((value - 32) * 5 / 9, 10))

    @classmethod
    def from_kelvin(cls, value: float) -> "Temperature":
        return cls(round(value + ABSOLUTE_ZERO_C, 10))

    @property
    def fahrenheit(self) -> float:
        return self.celsius * 9 / 5 + 32

    @property
    def kelvin(self) -> float:
        return self.celsius - ABSOLUTE_ZERO_C

    def __lt__(self, other: "Temperature") -> bool:
        return self.celsius < other.celsius

    def __str__(self) -> str:
        return f"{self.celsius:.1f} °C / {self.fahrenheit:.1f} °F / {self.kelvin:.2f} K"


if __name__ == "__main__":
    import doctest

    doctest.testmod()
    for label, t in [
        ("freezing", Temperature(0)),
        ("body", Temperature.from_fahrenheit(98.6)),
        ("oven", Temperature.from_fahrenheit(350)),
    ]:
        print(f"{label:>9}: {t}")
