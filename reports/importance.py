"""Design-dimension importances, shown only when the trials can carry them, with their stability.

Evaluator: Optuna's PED-ANOVA (`PedAnovaImportanceEvaluator`) at its default target quantile of 0.1: how much
each dimension separates the best 10% of the complete trials for one objective from all of them.

Threshold. PED-ANOVA's top group holds ceil(0.1 * n) trials, and Optuna's documentation of the evaluator asks
for at least 5 trials above the target quantile "to stabilize the analysis". ceil(0.1 * n) >= 5 first holds at
n = 41 (MIN_TRIALS). Below it, one to four trials decide every bar: with the demo's 8 trials the top group is a
single trial, and when that trial is the best for two objectives, their bars come out identical.

Stability. Above the threshold the importances are recomputed on BOOTSTRAP resamples of the complete trials
(drawn with replacement, fixed seed). Each objective reports the median weighted Kendall tau (scipy's
`weightedtau`, which weighs the top of the ranking most) between a resample's importances and those of all
trials (1: the same order every time, about 0: unrelated), and every dimension its 5-95% bootstrap interval
and how often it is among the TOP_K most important. Dimensions whose intervals overlap are not ordered by these
data. (A plain Spearman correlation over all dimensions is dominated by the order of the unimportant ones.)
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import optuna
from scipy import stats

from core.objectives import Objective

TARGET_QUANTILE = 0.1  # PED-ANOVA's default: importance of reaching the top 10%
MIN_TOP_TRIALS = 5  # Optuna's advice for PED-ANOVA: at least 5 trials above the target quantile
MIN_TRIALS = next(n for n in itertools.count(1) if math.ceil(TARGET_QUANTILE * n) >= MIN_TOP_TRIALS)  # 41
BOOTSTRAP = 25  # resamples: one PED-ANOVA run each, about 2 s per objective at 50 trials on 2 cores
TOP_K = 5  # "among the most important" for the per-dimension stability share
JUSTIFICATION = (f"PED-ANOVA compares the best {TARGET_QUANTILE:.0%} of the complete trials with all of them; Optuna "
                 f"advises at least {MIN_TOP_TRIALS} trials in that top group, which needs {MIN_TRIALS} complete "
                 "trials. With fewer, one to four trials decide every bar.")


@dataclass(frozen=True)
class DimensionImportance:
    """One design dimension's importance for one objective."""

    name: str  # design dimension
    importance: float  # PED-ANOVA on all complete trials (sums to 1 over the dimensions)
    low: float  # 5th percentile over the bootstrap resamples
    high: float  # 95th percentile over the bootstrap resamples
    top_share: float  # share of resamples in which it is among the TOP_K most important


@dataclass(frozen=True)
class ImportanceInfo:
    """Importances for one objective."""

    objective: str  # objective label
    dimensions: list[DimensionImportance]  # most important first
    stability: float | None  # median weighted Kendall tau between resample and full-data importances
    note: str  # how they were computed, with the stability


@dataclass(frozen=True)
class ImportanceSection:
    """The importance section: per objective, or the reason there is none."""

    n_trials: int  # complete trials in the study
    shown: bool  # whether any importances are drawn
    message: str  # what the section says above the figure (or instead of it)
    infos: list[ImportanceInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. objectives whose importances are the same measurement


def _evaluate(trials: Sequence[optuna.trial.FrozenTrial], directions, index: int, sign: float) -> dict[str, float]:
    study = optuna.create_study(directions=directions)  # in memory: a resample of the run's trials
    study.add_trials(trials)
    with warnings.catch_warnings():  # PED-ANOVA warns that it favours low targets (ours are oriented) and
        warnings.simplefilter("ignore")  # about small regimes of conditional dimensions
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=TARGET_QUANTILE),
            target=lambda t: sign * t.values[index])
    return {p: float(v) for p, v in imp.items()}


def objective_importance(trials: Sequence[optuna.trial.FrozenTrial], directions, index: int, objective: Objective,
                         resamples: int = BOOTSTRAP, seed: int = 0) -> ImportanceInfo:
    """PED-ANOVA importances of objective `index` over `trials`, with bootstrap intervals and stability."""
    sign = -1.0 if objective.maximize else 1.0
    full = _evaluate(trials, directions, index, sign)
    names = list(full)
    rng = np.random.default_rng(seed)
    boot = np.zeros((resamples, len(names)))
    taus = []
    for b in range(resamples):
        pick = rng.integers(0, len(trials), len(trials))
        imp = _evaluate([trials[i] for i in pick], directions, index, sign)
        boot[b] = [imp.get(n, 0.0) for n in names]  # a dimension no resampled trial used: importance 0
        if np.ptp(boot[b]) > 0 and np.ptp(list(full.values())) > 0:
            taus.append(stats.weightedtau(list(full.values()), boot[b]).statistic)
    ranks = np.argsort(np.argsort(-boot, axis=1), axis=1)  # 0: most important in that resample
    low, high = np.percentile(boot, [5, 95], axis=0)
    dims = [DimensionImportance(n, full[n], float(low[j]), float(high[j]), float((ranks[:, j] < TOP_K).mean()))
            for j, n in enumerate(names)]
    stability = float(np.median(taus)) if taus else None
    note = (f"Optuna PED-ANOVA (top {TARGET_QUANTILE:.0%} vs all) on {len(trials)} complete trials; ranking "
            f"agreement across {resamples} bootstrap resamples: median weighted Kendall tau "
            + (f"{stability:.2f}" if stability is not None else "undefined (constant importances)"))
    return ImportanceInfo(objective.label, dims, stability, note)


def _rounded(info: ImportanceInfo) -> dict[str, float]:
    return {d.name: round(d.importance, 9) for d in info.dimensions}


def importance_section(study: optuna.Study | None, objectives: Sequence[Objective], study_error: str = "",
                       resamples: int = BOOTSTRAP) -> ImportanceSection:
    """The importance section of a search report (nothing is computed below MIN_TRIALS complete trials)."""
    if study is None:
        return ImportanceSection(0, False, f"No importances: the Optuna study could not be loaded "
                                 f"({study_error}).")
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    n = len(trials)
    if n < MIN_TRIALS:
        return ImportanceSection(n, False, f"No importances: they need at least {MIN_TRIALS} complete "
                                 f"trials and this run has {n}. {JUSTIFICATION}")
    infos = [objective_importance(trials, study.directions, k, obj, resamples) for k, obj in enumerate(objectives)]
    notes = []
    for a, b in itertools.combinations(infos, 2):
        if _rounded(a) == _rounded(b):
            notes.append(f"{a.objective} and {b.objective} have the same importances: their top "
                         f"{TARGET_QUANTILE:.0%} holds the same trials, so the two charts are one measurement.")
    message = (f"{n} complete trials (the threshold is {MIN_TRIALS}: {JUSTIFICATION}) Bars: importance on all "
               f"trials; whiskers: 5-95% over {resamples} bootstrap resamples. Dimensions whose whiskers overlap "
               "are not ordered by these data.")
    return ImportanceSection(n, True, message, infos, notes)
