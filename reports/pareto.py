"""Pareto sets, the knee point and the picks `nas export` offers.

Knee point (definition used everywhere in the tool): among the Pareto trials, normalise each objective to
[0, 1] by min-max over the Pareto set, oriented so that 0 is the best value seen; the knee is the trial
closest (Euclidean) to the ideal point (0, ..., 0). Ties go to the lowest trial number. An objective that
is constant over the set contributes 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from core.errors import UserError
from core.objectives import Objective
from reports.run_data import RunData

if TYPE_CHECKING:
    import optuna

PICKS = ("knee", "min-latency", "min-fid", "max-clip")
_PICK_METRIC = {"min-latency": ("latency_ms", False), "min-fid": ("fid", False), "max-clip": ("clip_score", True)}


def losses(frame: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """(N, M) values with maximised objectives negated, so that lower is better everywhere."""
    cols = [(-1.0 if o.maximize else 1.0) * frame[o.name].astype(float).to_numpy() for o in objectives]
    return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))


def nondominated(loss: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (all <=, one <); duplicates are all kept.

    Hand-written because Optuna's public API only gives the study-wide front (`study.best_trials`, used for
    the run's Pareto set); 2-D projections of a 3-objective run and budget-filtered subsets need a front
    over arbitrary subsets, and Optuna's helper for that (`optuna.study._multi_objective`) is private.
    """
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        better_eq = np.all(loss <= loss[i], axis=1)
        strictly = np.any(loss < loss[i], axis=1)
        if np.any(better_eq & strictly):
            mask[i] = False
    return mask


def front_numbers(study: optuna.Study | None, complete: pd.DataFrame, objectives: Sequence[Objective]) -> list[int]:
    """Trial numbers of a run's Pareto set, the one definition the search summary, the report and the export
    share: Optuna's `study.best_trials` (which also honours the study's constraints) among the `complete` rows
    (indexed by trial number), or the front of those rows when there is no study to ask."""
    if study is not None:
        try:
            numbers = sorted(t.number for t in study.best_trials if t.number in complete.index)
        except (ValueError, RuntimeError):  # no complete trial in the study yet
            numbers = []
        if numbers:
            return numbers
    if complete.empty:
        return []
    mask = nondominated(losses(complete, objectives))
    return [int(n) for n in complete.index[mask]]


def pareto_numbers(data: RunData) -> list[int]:
    """Trial numbers of the run's Pareto set (`front_numbers` of its study and complete trials)."""
    return front_numbers(data.study, data.complete, data.objectives)


def knee(frame: pd.DataFrame, objectives: Sequence[Objective]) -> int:
    """Trial number of the knee of `frame` (rows indexed by trial number; see the module docstring)."""
    loss = losses(frame, objectives)
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.sqrt((((loss - lo) / span) ** 2).sum(axis=1))
    best = np.flatnonzero(dist == dist.min())
    return int(min(frame.index[best]))


def pick_trial(data: RunData, pick: str, latency_budget_ms: float | None = None) -> int:
    """The trial number `pick` selects: knee | min-latency | min-fid | max-clip | trial:N.

    With a latency budget only trials at or under it are candidates (the knee is then that subset's).

    Raises:
        UserError: unknown pick, unknown trial number, a metric no trial has, or nothing under the budget.
    """
    pool = data.complete
    if latency_budget_ms is not None:
        if latency_budget_ms <= 0:
            raise UserError(f"--latency-budget-ms must be positive, got {latency_budget_ms:g}")
        pool = pool[pool["latency_ms"].astype(float) <= latency_budget_ms]
        if pool.empty:
            fastest = data.complete["latency_ms"].astype(float).min()
            raise UserError(f"no complete trial fits the latency budget of {latency_budget_ms:g} ms "
                            f"(the fastest takes {fastest:.1f} ms)")
    if pick.startswith("trial:"):
        text = pick.split(":", 1)[1]
        if not text.isdigit():
            raise UserError(f"--pick trial:N needs a trial number, got {pick!r}")
        number = int(text)
        if number not in data.complete.index:
            state = data.trials.loc[data.trials["number"] == number, "state"]
            why = f"is {state.iloc[0]}" if len(state) else "does not exist"
            raise UserError(f"trial {number} {why}; complete trials: {_ranges(data.complete.index)}")
        if number not in pool.index:
            raise UserError(f"trial {number} takes {data.complete.loc[number, 'latency_ms']:.1f} ms, over the "
                            f"latency budget of {latency_budget_ms:g} ms")
        return number
    if pick == "knee":  # the report's knee without a budget; the knee of the front under the budget with one
        front = (data.complete.loc[pareto_numbers(data)] if latency_budget_ms is None
                 else pool[nondominated(losses(pool, data.objectives))])
        return knee(front, data.objectives)
    if pick not in _PICK_METRIC:
        raise UserError(f"unknown pick {pick!r}; choose one of {', '.join(PICKS)} or trial:N")
    metric, maximize = _PICK_METRIC[pick]
    values = pool[metric].astype(float) if metric in pool.columns else pd.Series(dtype=float)
    if values.dropna().empty:
        raise UserError(f"--pick {pick}: no complete trial has a {metric} value")
    return int(values.idxmax() if maximize else values.idxmin())


def _ranges(index: Sequence[int]) -> str:
    numbers = sorted(int(n) for n in index)
    shown = ", ".join(map(str, numbers[:20]))
    return shown + (f", ... ({len(numbers)} in all)" if len(numbers) > 20 else "")
