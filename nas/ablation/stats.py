"""Mean and confidence interval of a metric over seeds (Student's t)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
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
    xs = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna()
    if xs.empty:
        return None, None
    mean = float(xs.mean())
    if len(xs) < 2:
        return mean, None
    # the t quantile times the standard error (t.interval returns NaN for identical values: a zero scale)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, len(xs) - 1) * stats.sem(xs))
