"""The one rule behind every "better" or "worse" a report states about two measured values.

Two seed means `a` and `b` with t-interval half-widths `a_ci` and `b_ci` (from `nas.ablation.stats.mean_ci`)
differ by more than the seed spread when |a - b| > sqrt(a_ci**2 + b_ci**2), the half-width of the interval of
the difference of two independent means. Smaller differences are labelled "within seed spread"; values without
an interval (one seed) are "single seed: not qualified by seed spread".
"""

from __future__ import annotations

import math
from typing import Any

WITHIN = "within seed spread"
SINGLE = "single seed: not qualified by seed spread"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def verdict(a: float | None, a_ci: float | None, b: float | None, b_ci: float | None, maximize: bool) -> str:
    """"better", "worse", WITHIN or SINGLE: `a` compared with the reference `b` ("" when a value is missing).

    Args:
        a, a_ci: the value and its interval half-width (None: one seed).
        b, b_ci: the reference value and its interval half-width.
        maximize: whether a higher value is better (CLIP score) or a lower one (FID, KID, loss).
    """
    if _missing(a) or _missing(b):
        return ""
    if _missing(a_ci) or _missing(b_ci):
        return SINGLE
    diff = a - b
    if abs(diff) <= math.hypot(a_ci, b_ci):
        return WITHIN
    return "better" if (diff > 0) == maximize else "worse"
