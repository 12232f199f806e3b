"""Mean and confidence interval of a metric over seeds (Student's t)."""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats

from core.errors import UserError


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Mean of `values` and the half-width of its two-sided t confidence interval.

    Args:
        values: one measurement per seed (None and NaN entries are ignored).
        confidence: interval coverage, in (0, 1).

    Returns:
        (mean, half_width): mean None without values; half_width None with fewer than two values.
    """
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}")
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, len(xs) - 1)) * sd / math.sqrt(len(xs))
