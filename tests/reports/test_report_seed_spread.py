"""The rule behind every "better"/"worse" a report states: beyond the seed spread, or labelled as within it."""

import math

import pytest

from reports.seed_spread import SINGLE, WITHIN, verdict


@pytest.mark.parametrize("a, a_ci, b, b_ci, maximize, expected", [
    (15.0, 0.3, 14.0, 0.4, False, "worse"),  # FID up by 1.0 > sqrt(0.3² + 0.4²) = 0.5
    (13.0, 0.3, 14.0, 0.4, False, "better"),
    (14.4, 0.3, 14.0, 0.4, False, WITHIN),  # 0.4 <= 0.5
    (14.5, 0.3, 14.0, 0.4, False, WITHIN),  # exactly the spread: not beyond it
    (0.33, 0.005, 0.31, 0.005, True, "better"),  # CLIP score is maximised
    (0.30, 0.005, 0.31, 0.005, True, "worse"),
    (15.0, None, 14.0, 0.4, False, SINGLE),  # one side measured with one seed
    (15.0, float("nan"), 14.0, float("nan"), False, SINGLE),
    (None, 0.3, 14.0, 0.4, False, ""),  # nothing to compare
    (15.0, 0.3, float("nan"), 0.4, False, ""),
])
def test_verdicts(a, a_ci, b, b_ci, maximize, expected):
    assert verdict(a, a_ci, b, b_ci, maximize) == expected


def test_spread_is_the_interval_of_a_difference():
    a_ci, b_ci = 0.6, 0.8
    spread = math.hypot(a_ci, b_ci)  # 1.0
    assert verdict(10.0 + spread * 0.999, a_ci, 10.0, b_ci, False) == WITHIN
    assert verdict(10.0 + spread * 1.001, a_ci, 10.0, b_ci, False) == "worse"
