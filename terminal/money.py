"""Money and points as integers in minor units; no float ever touches them.

A currency has an exponent (JPY 0, EUR 2, KWD 3). Amounts travel as ``int`` minor units and
are turned into text only for display, with ``Decimal`` so nothing rounds by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MAX_AMOUNT = 10**12
"""The largest amount or point count anything may carry: 10^12 minor units (ten billion euros, a
trillion yen). Sums of millions of them still fit a signed 64-bit column; larger is refused at the door."""


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int

    def format(self, minor: int) -> str:
        """Render ``minor`` units for people: ``Currency("EUR", 2).format(1234) == "12.34 EUR"``."""
        value = Decimal(minor).scaleb(-self.exponent)
        return f"{value:.{self.exponent}f} {self.code}"

    def parse(self, text: str) -> int:
        """Parse a decimal amount ("12.34") into minor units; refuses more digits than the exponent."""
        value = Decimal(text.strip())
        minor = value.scaleb(self.exponent)
        if minor != minor.to_integral_value():
            raise ValueError(f"{text!r} has more than {self.exponent} decimal places for {self.code}")
        return int(minor)

    @property
    def unit(self) -> int:
        """Minor units in one major unit (100 for EUR, 1 for JPY)."""
        return int(10**self.exponent)


def floor_div(numerator: int, denominator: int) -> int:
    """Integer division rounding towards zero for non-negative input; the rounding policy of earning."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator < 0:
        return -((-numerator) // denominator)
    return numerator // denominator
