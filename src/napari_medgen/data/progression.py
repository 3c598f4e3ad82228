"""Parametric laws of lesion volume over physical time (months), for synthetic follow-ups.

All laws are exponential in volume, the usual reading of a volume doubling time (VDT):
``V(t) = V0 * 2 ** (t / T_double)`` for growth, ``V(t) = V0 * 2 ** (-t / T_half)`` for regression,
or ``V(t) = V0 * (1 + p / 100) ** t`` for a constant percentage ``p`` per month (p < 0: regression).
Defaults (illustrative, chosen inside the published ranges; see docs/longitudinal.md):

* growth: doubling time 6 months (~180 days). Malignant solid lung nodules mostly have VDTs of
  20-400 days (Fleischner Society 2017, MacMahon et al., Radiology 284:228); NELSON used
  VDT < 400 days as the growth criterion (Horeweg et al., Lancet Oncol 15:1332, 2014).
* regression: halving time 3 months. After 4.6 months the volume is 35 % of baseline, i.e. the
  diameter is 70 %: a RECIST 1.1 partial response (>= 30 % fall in diameter; Eisenhauer et al.,
  Eur J Cancer 45:228, 2009), a typical response after two to three treatment cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from ..errors import InputError


class Law(str, Enum):
    """How the volume changes: ``regression`` (halving time), ``growth`` (doubling time), ``percent`` per month."""

    REGRESSION = "regression"
    GROWTH = "growth"
    PERCENT = "percent"


DEFAULT_RATE = {Law.REGRESSION: 3.0, Law.GROWTH: 6.0, Law.PERCENT: -10.0}  # months, months, % per month
RATE_UNIT = {Law.REGRESSION: "months (volume halving time)", Law.GROWTH: "months (volume doubling time)",
             Law.PERCENT: "% volume change per month"}


@dataclass(frozen=True)
class Progression:
    """A volume law: ``law`` and its ``rate`` (halving/doubling time in months, or % per month)."""

    law: Law = Law.REGRESSION
    rate: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "law", Law(self.law))
        except ValueError:
            raise InputError(f"progression law {self.law!r} is not one of {', '.join(m.value for m in Law)}") from None
        rate = DEFAULT_RATE[self.law] if self.rate is None else float(self.rate)
        if not math.isfinite(rate):
            raise InputError(f"progression rate must be a finite number, got {self.rate!r}")
        if self.law is Law.PERCENT and rate <= -100.0:
            raise InputError(f"a change of {rate:g} % per month would leave no lesion: give a value above -100")
        if self.law is not Law.PERCENT and rate <= 0:
            raise InputError(f"the {RATE_UNIT[self.law]} must be positive, got {rate:g}")
        object.__setattr__(self, "rate", rate)

    def ratio(self, months: float) -> float:
        """V(months) / V(0)."""
        if self.law is Law.PERCENT:
            return (1.0 + self.rate / 100.0) ** months
        sign = -1.0 if self.law is Law.REGRESSION else 1.0
        return 2.0 ** (sign * months / self.rate)

    def describe(self) -> str:
        return f"{self.law.value}, {self.rate:g} {RATE_UNIT[self.law]}"


def check_months(months: list[float] | tuple[float, ...]) -> list[float]:
    """Follow-up times in months after the baseline: finite, > 0, strictly increasing."""
    out = [float(m) for m in months]
    if not out:
        raise InputError("give at least one follow-up time in months")
    bad = [m for m in out if not math.isfinite(m) or m <= 0]
    if bad:
        raise InputError(f"follow-up times must be positive months after the baseline, got {bad[0]:g}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise InputError(f"follow-up times must increase, got {', '.join(f'{m:g}' for m in out)}")
    return out


def schedule(steps: int, interval_months: float) -> list[float]:
    """``steps`` follow-ups every ``interval_months``: [interval, 2 interval, ...]."""
    if steps < 1:
        raise InputError(f"the number of follow-ups must be at least 1, got {steps}")
    if not math.isfinite(interval_months) or interval_months <= 0:
        raise InputError(f"the interval between follow-ups must be positive months, got {interval_months:g}")
    return [interval_months * (i + 1) for i in range(steps)]
