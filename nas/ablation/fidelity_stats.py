"""The statistics of a proxy-fidelity study, on a long table of trials (pandas and scipy only, no torch).

Input: one row per finished trial with `label`, `arch_id`, `budget` ("short" or "reference"), `seed`, the
quality metrics, and `seconds_<stage>` timings. Output: per-architecture seed means and spreads, and per
metric the rank agreement between the short and the reference budget (Kendall tau, Spearman rho, each with
a bootstrap interval over architectures), the seed ceiling (the same agreement between two seeds of one
budget), sign agreement of consecutive steps of an ordered panel, the cost of each signal in seconds, and how
well each short-budget signal predicts the reference's *target* quality metric (default FID): a cheap signal
need not rank like itself at the reference, it must rank like the quality the reference measures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from core.metrics import get_metric

BUDGETS = ("short", "reference")
N_RESAMPLES = 1000  # bootstrap resamples per interval (percentile intervals are stable to ~0.02 at 1000)
# Stages a signal needs besides training, for its cost in seconds (the trial's own timings).
SIGNAL_STAGES = {"val_loss": ("val",), "val_loss_grid": ("val_grid",), "teacher_distance": ("teacher_distance",)}
SAMPLE_STAGES = ("sample", "score")  # FID, KID, CLIP score, CMMD: generate images, then score them


@dataclass
class Agreement:
    """Rank agreement of two paired value lists over architectures, with bootstrap 95% intervals."""

    n: int  # architectures with both values
    tau: float | None  # Kendall tau-b
    tau_low: float | None
    tau_high: float | None
    rho: float | None  # Spearman rho
    rho_low: float | None
    rho_high: float | None


def _statistic(kind: str):
    corr = stats.kendalltau if kind == "tau" else stats.spearmanr

    def statistic(x: np.ndarray, y: np.ndarray) -> float:
        value = corr(x, y).statistic
        # A resample that repeats one architecture only (or ties every value) carries no rank information:
        # counted as no agreement (0) rather than dropped, which widens the interval, never narrows it.
        return 0.0 if math.isnan(value) else float(value)

    return statistic


def agreement(x: pd.Series, y: pd.Series, confidence: float = 0.95, seed: int = 0) -> Agreement:
    """Kendall tau and Spearman rho between paired values, with percentile bootstrap intervals over the pairs
    (`scipy.stats.bootstrap`, paired resampling of architectures)."""
    pair = pd.concat([x.rename("x"), y.rename("y")], axis=1).dropna()
    n = len(pair)
    if n < 3 or pair["x"].nunique() < 2 or pair["y"].nunique() < 2:
        return Agreement(n, None, None, None, None, None, None)
    out: dict[str, float | None] = {}
    for kind in ("tau", "rho"):
        fn = _statistic(kind)
        out[kind] = fn(pair["x"].to_numpy(), pair["y"].to_numpy())
        ci = stats.bootstrap((pair["x"].to_numpy(), pair["y"].to_numpy()), fn, paired=True, vectorized=False,
                             n_resamples=N_RESAMPLES, confidence_level=confidence, method="percentile",
                             random_state=np.random.default_rng(seed)).confidence_interval
        out[f"{kind}_low"], out[f"{kind}_high"] = float(ci.low), float(ci.high)
    return Agreement(n, **out)


def seed_means(trials: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per (architecture, budget): seed mean, standard deviation (ddof 1) and count of each metric."""
    ok = trials[trials["state"] == "COMPLETE"]
    grouped = ok.groupby(["arch_id", "budget"], sort=False)
    table = grouped[list(metrics)].agg(["mean", "std", "count"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    labels = ok.groupby("arch_id", sort=False)["label"].first()
    return table.reset_index().merge(labels.reset_index(), on="arch_id")


def _wide(means: pd.DataFrame, metric: str, budget: str) -> pd.Series:
    part = means[means["budget"] == budget]
    return part.set_index("arch_id")[f"{metric}_mean"]


def _seed_pair(trials: pd.DataFrame, metric: str, budget: str) -> tuple[pd.Series, pd.Series] | None:
    ok = trials[(trials["state"] == "COMPLETE") & (trials["budget"] == budget)]
    seeds = sorted(ok["seed"].unique())
    if len(seeds) < 2:
        return None
    per_seed = ok.pivot_table(index="arch_id", columns="seed", values=metric, aggfunc="mean")
    if not all(s in per_seed.columns for s in seeds[:2]):  # a metric with no values at one of the seeds
        return None
    return per_seed[seeds[0]], per_seed[seeds[1]]


def signal_seconds(trials: pd.DataFrame, metric: str, budget: str) -> float | None:
    """Median seconds one trial of `budget` spends to produce `metric`: set-up, training, and the metric's own
    stages (a held-out loss needs no sampling; image metrics need sampling and scoring). Trials without the
    metric (losses-only trials have no image metrics) are not counted."""
    ok = trials[(trials["state"] == "COMPLETE") & (trials["budget"] == budget)]
    ok = ok[ok[metric].notna()] if metric in ok.columns else ok.iloc[:0]
    stages = ("setup", "train", *SIGNAL_STAGES.get(metric, SAMPLE_STAGES))
    cols = [f"seconds_{s}" for s in stages if f"seconds_{s}" in ok.columns]
    if ok.empty or not cols:
        return None
    return float(ok[cols].sum(axis=1, min_count=1).median())


def sign_agreement(means: pd.DataFrame, metric: str, order: list[str]) -> tuple[int, int] | None:
    """(same sign, compared) over consecutive architectures of `order` (an ablation path): does each step
    change `metric` in the same direction at both budgets?"""
    short, ref = _wide(means, metric, "short"), _wide(means, metric, "reference")
    same = compared = 0
    for before, after in zip(order, order[1:]):
        if not all(a in s.index for a in (before, after) for s in (short, ref)):
            continue
        d_short, d_ref = short[after] - short[before], ref[after] - ref[before]
        if any(math.isnan(d) for d in (d_short, d_ref)):
            continue
        compared += 1
        same += int(np.sign(d_short) == np.sign(d_ref))
    return (same, compared) if compared else None


def _better_low(metric: str) -> float:
    """+1 where lower is better, -1 where higher is: ranks on this axis agree when they mean the same "better"."""
    return -1.0 if get_metric(metric).maximize else 1.0


def correlations(trials: pd.DataFrame, metrics: tuple[str, ...], order: list[str] | None = None,
                 confidence: float = 0.95, target: str = "fid") -> pd.DataFrame:
    """One row per metric: short-vs-reference agreement, the seed ceilings, the median per-architecture seed
    spread (sd) at the short budget, sign agreement along `order` (arch ids), seconds per trial, and the
    agreement of the short metric with the reference's `target` metric (`target_*` columns; both oriented so
    that a positive tau means the signal calls the same architectures better as the target does)."""
    trials = trials.assign(**{m: np.nan for m in {*metrics, target} if m not in trials.columns})
    means = seed_means(trials, tuple(dict.fromkeys((*metrics, target))))
    rows = []
    reference_target = _wide(means, target, "reference") * _better_low(target)
    for metric in metrics:
        row: dict = dict(metric=metric)
        short = _wide(means, metric, "short")
        main = agreement(short, _wide(means, metric, "reference"), confidence)
        row |= asdict(main)
        row["target"] = target
        row |= {f"target_{k}": v for k, v in asdict(agreement(short * _better_low(metric), reference_target,
                                                                 confidence)).items()}
        for budget in BUDGETS:
            pair = _seed_pair(trials, metric, budget)
            ceiling = agreement(*pair, confidence) if pair else Agreement(0, *(None,) * 6)
            row |= {f"ceiling_{budget}_{k}": v for k, v in asdict(ceiling).items()}
            spread = means.loc[means["budget"] == budget, f"{metric}_std"].dropna()
            row[f"seed_sd_{budget}"] = float(spread.median()) if len(spread) else None
            row[f"seconds_{budget}"] = signal_seconds(trials, metric, budget)
        signs = sign_agreement(means, metric, order) if order else None
        row["sign_same"], row["sign_compared"] = signs if signs else (None, None)
        rows.append(row)
    return pd.DataFrame(rows)
