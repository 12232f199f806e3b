"""MO-ASHA: multi-objective asynchronous successive halving, as a Ray Tune trial scheduler.

Ray Tune's schedulers rank trials by one scalar metric, and Optuna refuses to prune multi-objective studies.
This scheduler follows Syne Tune's MOASHA (Salinas et al., arXiv 2106.12639; Schmucker et al.) on Ray Tune's
public `FIFOScheduler` interface:

- **Rungs.** A trial reports at the rung budgets `min_budget * eta**k` training steps (`nas.schedulers.Rungs`).
- **What is ranked** (`rung_metrics`). Every objective of the search, as it stands at the rung: cost
  objectives (params, MACs, latency) are known before training and are part of every rung report, so a cheap
  architecture that is still learning is not killed by a slow one that happens to score better early. A
  quality objective is represented by its cheap held-out signal: `val_loss` and `val_loss_grid` are their own
  signal; FID, KID, CLIP score and CMMD are represented by `val_loss_grid` (held-out loss on a fixed timestep
  grid, fixed noise: lower is better whatever the objective's direction). Several quality objectives share
  one column.
- **Ranking at a rung** (`rung_order`). Every result recorded at the rung, the new one included, is sorted
  by non-dominated rank (front 0 = the Pareto set of the rung, front 1 = the Pareto set of the rest, ...).
  Inside a front, a larger NSGA-II crowding distance ranks first (the spread of the front is kept: the
  extremes of every objective, with an infinite distance, come first). Crowding distance, not Syne Tune's
  epsilon-net, because it needs no extra parameter and is what Optuna's NSGA-II uses.
- **Promotion** (`RungRecords.on_result`). A trial continues past a rung iff its position is within the top
  `ceil(n / eta)` of the n results recorded there. The decision is asynchronous: it is made the moment the
  result arrives, against the results recorded so far, and never revised (as in ASHA). With fewer than eta
  results the same rule applies, so the first result at a rung always continues (ASHA: no cutoff yet) and a
  second one continues only if it ranks first. Ties favour the trial being decided, as in Ray's ASHA (it stops
  a trial only when it is strictly below the cutoff) and Syne Tune: the position of a trial counts the results
  strictly ahead of it (a better front, or the same front with a strictly larger crowding distance).
- **Deterministic.** No randomness: the decisions are a function of the results in arrival order. Missing
  or non-finite values rank worst in their objective (one above the worst finite value).

The non-dominated sort is implemented here with numpy (`nondominated_ranks`): a rung holds at most a few
hundred results, so the O(n^2) peeling costs microseconds, and Optuna's equivalent
(`optuna.study._multi_objective._fast_non_domination_rank`) is private API that has moved between versions.
The tests check that both agree.

`RungRecords` is the rule alone (no Ray); `MOASHA` adapts it to Ray Tune and keeps each trial's last
decision for the searcher, which records a stopped trial's reason in the study.
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
from ray.tune.schedulers import FIFOScheduler

from core.metrics import get_metric, names

RUNG_SIGNAL = "val_loss_grid"  # the held-out signal that stands for a quality objective at a rung
HELD_OUT_SIGNALS = ("val_loss", "val_loss_grid")  # quality objectives that are their own rung signal
KNOWN_BEFORE_TRAINING = frozenset(names("cost") + names("latency"))


@dataclass(frozen=True)
class RankedMetric:
    """One column of the rung ranking: a key of the rung reports and how it is optimised."""

    key: str  # result key (a registry metric name)
    minimize: bool  # held-out losses and costs are minimised; a maximised cost metric would be negated
    stands_for: tuple[str, ...]  # the search objectives it represents at a rung


def rung_metrics(objectives: Sequence[str]) -> tuple[RankedMetric, ...]:
    """The columns ranked at a rung for a search's objectives (in objective order, quality signals merged).

    Raises:
        ValueError: no objective is a quality metric (nothing learns between rungs: nothing to rank).
    """
    columns: dict[str, list[str]] = {}
    for name in objectives:
        if name in KNOWN_BEFORE_TRAINING:
            key = name
        else:
            key = name if name in HELD_OUT_SIGNALS else RUNG_SIGNAL
        columns.setdefault(key, []).append(name)
    if all(k in KNOWN_BEFORE_TRAINING for k in columns):
        raise ValueError(f"objectives {', '.join(objectives)} are all known before training: nothing to rank "
                         f"at rungs")
    return tuple(RankedMetric(k, k in HELD_OUT_SIGNALS or not get_metric(k).maximize, tuple(v))
                 for k, v in columns.items())


def rung_signals(objectives: Sequence[str]) -> tuple[str, ...]:
    """The held-out signals a trial must report at each rung for these objectives."""
    return tuple(m.key for m in rung_metrics(objectives) if m.key in HELD_OUT_SIGNALS)


# ---------------------------------------------------------------------------------------------- ranking
def nondominated_ranks(losses: np.ndarray) -> np.ndarray:
    """Non-domination rank of each row of `losses` (n, m), lower is better in every column: 0 for the Pareto
    set, 1 for the Pareto set of the rest, and so on. Equal rows share a rank."""
    n = len(losses)
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    # dominates[i, j]: row i is no worse than row j everywhere and better somewhere
    le = (losses[:, None, :] <= losses[None, :, :]).all(axis=2)
    lt = (losses[:, None, :] < losses[None, :, :]).any(axis=2)
    dominates = le & lt
    remaining = np.ones(n, dtype=bool)
    front = 0
    while remaining.any():
        dominated = (dominates[remaining][:, remaining]).any(axis=0)
        members = np.flatnonzero(remaining)[~dominated]
        ranks[members] = front
        remaining[members] = False
        front += 1
    return ranks


def crowding_distances(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front (n, m): per objective, the gap between a point's two
    neighbours in that objective's order, divided by the front's range there; summed over objectives. The
    extremes of every objective get an infinite distance (a front of one or two points: all infinite)."""
    n, m = losses.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(losses[:, j], kind="stable")
        values = losses[order, j]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def rung_order(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(non-domination rank, crowding distance inside its front) of each row of `losses`."""
    ranks = nondominated_ranks(losses)
    crowding = np.zeros(len(losses))
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        crowding[members] = crowding_distances(losses[members])
    return ranks, crowding


def position_of(index: int, ranks: np.ndarray, crowding: np.ndarray) -> int:
    """0-based position of row `index`: the rows strictly ahead of it (a better front, or its front with a
    strictly larger crowding distance). Ties favour `index`."""
    ahead = (ranks < ranks[index]) | ((ranks == ranks[index]) & (crowding > crowding[index]))
    return int(ahead.sum())


# ---------------------------------------------------------------------------------------------- the rule
@dataclass(frozen=True)
class RungDecision:
    """What the scheduler decided for one trial at one rung."""

    key: Hashable  # the trial (the Optuna number its training started as)
    rung: int  # the rung's budget (training steps)
    position: int  # 1-based position of the trial among the rung's results
    n: int  # results recorded at the rung, the trial's included
    keep: int  # how many of them continue: ceil(n / eta)
    front: int  # the trial's non-domination rank at the rung (0: on the rung's Pareto front)
    promoted: bool  # continues to the next rung

    @property
    def reason(self) -> str:
        """e.g. "mo-asha: rank 5 of 9 at rung 50 steps, top 3 continue"."""
        return f"mo-asha: rank {self.position} of {self.n} at rung {self.rung} steps, top {self.keep} continue"

    def to_dict(self) -> dict[str, Any]:
        return dict(rung=self.rung, position=self.position, n=self.n, keep=self.keep, front=self.front,
                    promoted=self.promoted, reason=self.reason)


class RungRecords:
    """The results recorded at each rung and the promotion rule (no Ray: unit-testable, replayable)."""

    def __init__(self, budgets: Sequence[int], eta: int, metrics: Sequence[RankedMetric]):
        if eta < 2:
            raise ValueError(f"eta must be at least 2, got {eta}")
        self.budgets = tuple(sorted(budgets))
        self.eta = eta
        self.metrics = tuple(metrics)
        # rung budget -> trial key -> its values (ranked columns, raw), in arrival order
        self.recorded: dict[int, dict[Hashable, tuple[float, ...]]] = {b: {} for b in self.budgets}

    def rung_of(self, step: int) -> int | None:
        """The rung a report at `step` belongs to: the highest budget <= step (None below the first)."""
        passed = [b for b in self.budgets if b <= step]
        return passed[-1] if passed else None

    def values(self, result: Mapping[str, Any]) -> tuple[float, ...]:
        """The ranked columns of a rung report (NaN where missing)."""
        out = []
        for m in self.metrics:
            v = result.get(m.key)
            out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan)
        return tuple(out)

    def record(self, key: Hashable, step: int, result: Mapping[str, Any]) -> int | None:
        """Record a report without deciding (rebuilding the records of a resumed run); returns its rung."""
        rung = self.rung_of(step)
        if rung is not None:
            self.recorded[rung][key] = self.values(result)
        return rung

    def losses(self, rung: int) -> np.ndarray:
        """The rung's recorded values as losses (n, m): maximised columns negated; a missing or non-finite
        value one above the worst finite value of its column."""
        rows = np.array(list(self.recorded[rung].values()), dtype=float).reshape(-1, len(self.metrics))
        rows = rows * np.array([1.0 if m.minimize else -1.0 for m in self.metrics])
        for j in range(rows.shape[1]):
            bad = ~np.isfinite(rows[:, j])
            if bad.any():
                finite = rows[~bad, j]
                rows[bad, j] = (finite.max() + 1.0) if finite.size else 0.0
        return rows

    def on_result(self, key: Hashable, step: int, result: Mapping[str, Any]) -> RungDecision | None:
        """Record a trial's report at `step` and decide whether it continues; None when the report is below the
        first rung or the trial already has a result at this rung (no new decision)."""
        rung = self.rung_of(step)
        if rung is None or key in self.recorded[rung]:
            return None
        self.recorded[rung][key] = self.values(result)
        keys = list(self.recorded[rung])
        index = keys.index(key)
        ranks, crowding = rung_order(self.losses(rung))
        position = position_of(index, ranks, crowding)
        keep = math.ceil(len(keys) / self.eta)
        return RungDecision(key, rung, position + 1, len(keys), keep, int(ranks[index]), position < keep)


# ---------------------------------------------------------------------------------------------- Ray Tune
def trial_key(config: Mapping[str, Any]) -> Hashable:
    """The key of a Tune trial in the rung records: the Optuna number its training started as (a trial resumed
    from an interrupted one's rung state continues that one's records)."""
    return config.get("_lineage", config.get("_number"))


class MOASHA(FIFOScheduler):
    """Ray Tune trial scheduler: stop a trial at a rung unless it ranks in the top 1/eta there (module docs).

    Args:
        budgets: rung budgets in training steps (below the full budget).
        eta: reduction factor.
        objectives: the search's objective names (ranked as `rung_metrics` says).
        history: (trial key, rung report) pairs already recorded (a resumed run's; see `nas.rung_resume`).
    """

    def __init__(self, budgets: Sequence[int], eta: int, objectives: Sequence[str],
                 history: Iterable[tuple[Hashable, Mapping[str, Any]]] = ()):
        super().__init__()
        self.records = RungRecords(budgets, eta, rung_metrics(objectives))
        for key, report in history:
            if isinstance(report.get("step"), int):
                self.records.record(key, report["step"], report)
        self.decisions: dict[str, list[RungDecision]] = {}  # Tune trial id -> its decisions, rung by rung
        self.n_stopped = 0
        self.seconds = 0.0  # time spent deciding (scheduler overhead)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        """CONTINUE or STOP for a rung report (state RUNNING with a step); every other result continues."""
        if result.get("state") != "RUNNING" or not isinstance(result.get("step"), (int, float)):
            return self.CONTINUE
        began = time.perf_counter()
        decision = self.records.on_result(trial_key(trial.config), int(result["step"]), result)
        self.seconds += time.perf_counter() - began
        if decision is None:
            return self.CONTINUE
        self.decisions.setdefault(trial.trial_id, []).append(decision)
        if decision.promoted:
            return self.CONTINUE
        self.n_stopped += 1
        return self.STOP

    def decision(self, trial_id: str) -> RungDecision | None:
        """The trial's latest rung decision (None before its first rung)."""
        made = self.decisions.get(trial_id)
        return made[-1] if made else None

    def history(self, trial_id: str) -> list[RungDecision]:
        """Every rung decision made for the trial, in rung order."""
        return list(self.decisions.get(trial_id, []))

    def debug_string(self) -> str:
        counts = ", ".join(f"{b}: {len(r)}" for b, r in self.records.recorded.items())
        return f"MO-ASHA (eta {self.records.eta}): {self.n_stopped} stopped; results per rung {counts}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
