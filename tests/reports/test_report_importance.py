"""Importances only above the threshold, with bootstrap stability; identical objectives are flagged.

The in-memory studies here are real Optuna studies with made-up objective functions of their parameters
(written next to each test), so what the importances should find is known.
"""

import math

import numpy as np
import optuna
import pytest

from core.objectives import Objective
from reports.importance import (
    MIN_TOP_TRIALS,
    MIN_TRIALS,
    TARGET_QUANTILE,
    TOP_K,
    importance_section,
)
from reports.run_data import load_run

OBJECTIVES = [Objective("fid", "minimize"), Objective("clip_score", "maximize"), Objective("latency_ms", "minimize")]


def _study(n: int, values, n_params: int = 8, seed: int = 0) -> optuna.Study:
    """A study of `n` complete trials over `n_params` categorical parameters p0..p{n-1} in {0, 1, 2, 3};
    `values(params, rng)` gives the three objective values."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    study = optuna.create_study(directions=[o.direction for o in OBJECTIVES])
    dist = optuna.distributions.CategoricalDistribution((0, 1, 2, 3))
    for _ in range(n):
        params = {f"p{k}": int(rng.integers(0, 4)) for k in range(n_params)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dist for k in params},
                                                  values=values(params, rng)))
    return study


def test_threshold_puts_five_trials_in_the_top_quantile():
    assert MIN_TRIALS == 41
    assert math.ceil(TARGET_QUANTILE * MIN_TRIALS) == MIN_TOP_TRIALS  # PED-ANOVA's top group at the threshold
    assert math.ceil(TARGET_QUANTILE * (MIN_TRIALS - 1)) == MIN_TOP_TRIALS - 1


def test_no_importances_below_the_threshold(finished_run):
    data = load_run(finished_run.path)
    section = importance_section(data.study, data.objectives)
    assert not section.shown and section.infos == [] and section.n_trials == 12
    assert "need at least 41 complete trials and this run has 12" in section.message
    below = _study(MIN_TRIALS - 1, lambda p, rng: [p["p0"], -p["p1"], p["p2"]])
    assert not importance_section(below, OBJECTIVES, resamples=2).shown


def test_importances_of_a_large_run(large_run):
    data = load_run(large_run.path)
    section = importance_section(data.study, data.objectives, resamples=8)
    assert section.shown and section.n_trials == 45 and "45 complete trials" in section.message
    assert [i.objective for i in section.infos] == ["FID ↓", "CLIP score ↑", "latency (ms) ↓"]
    dims = {c[2:] for c in data.design_columns}
    for info in section.infos:
        values = [d.importance for d in info.dimensions]
        assert {d.name for d in info.dimensions} <= dims and sum(values) == pytest.approx(1.0)
        assert values == sorted(values, reverse=True)
        assert all(0 <= d.low <= d.high for d in info.dimensions)
        # every resample ranks exactly TOP_K dimensions in its top TOP_K
        assert sum(d.top_share for d in info.dimensions) == pytest.approx(TOP_K)
        assert info.stability is not None and -1 <= info.stability <= 1 and "8 bootstrap resamples" in info.note


def test_stability_separates_signal_from_noise():
    # objective 0 is decided by p0, then p1, then p2; objective 1 is noise; objective 2 is decided by p1 alone
    study = _study(100, lambda p, rng: [3 * p["p0"] + 2 * p["p1"] + p["p2"] + 0.01 * rng.random(), rng.random(),
                                        p["p1"] + 0.01 * rng.random()], n_params=12)
    section = importance_section(study, OBJECTIVES, resamples=10)
    signal, noise, single = section.infos
    assert signal.dimensions[0].name == "p0" and signal.dimensions[0].top_share == 1.0
    assert single.dimensions[0].name == "p1" and single.dimensions[0].top_share >= 0.9
    assert max(d.top_share for d in noise.dimensions) < 1.0  # no noise dimension is always in the top 5
    assert signal.stability > noise.stability + 0.1
    assert section.notes == []


def test_objectives_with_the_same_top_trials_are_one_measurement():
    # CLIP is maximised and equals -FID: both select the same best trials, so their importances coincide
    study = _study(50, lambda p, rng: (lambda v: [v, -v, p["p2"] + rng.random()])(p["p0"] + p["p1"] + rng.random()))
    section = importance_section(study, OBJECTIVES, resamples=3)
    assert {d.name: d.importance for d in section.infos[0].dimensions} == pytest.approx(
        {d.name: d.importance for d in section.infos[1].dimensions})
    assert len(section.notes) == 1 and section.notes[0].startswith("FID ↓ and CLIP score ↑ have the same importances")


def test_bootstrap_is_reproducible():
    study = _study(45, lambda p, rng: [p["p0"] + rng.random(), -p["p3"] - rng.random(), rng.random()])
    a = importance_section(study, OBJECTIVES, resamples=4)
    b = importance_section(study, OBJECTIVES, resamples=4)
    assert a == b
