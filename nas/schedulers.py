"""Trial schedulers of a search: when a trial reports intermediate results, and which Ray Tune scheduler
decides from them to stop it early.

A trial with a scheduler reports at the rungs `min_budget * eta**k` training steps (below the full budget):
its training loss and the cheap held-out signals of its objective, with a checkpoint of its training state
(Ray Tune checkpoint), so a stopped or paused trial keeps its progress. `asha` is Ray Tune's own
`ASHAScheduler` on a single objective; Ray's schedulers take one scalar metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.errors import UserError
from core.metrics import get_metric

SCHEDULERS = ("none", "asha")
INTERMEDIATE = ("val_loss", "val_loss_grid")  # objectives with a signal at intermediate budgets (held-out loss)


@dataclass(frozen=True)
class Rungs:
    """The scheduler of a search and its rung budgets (in training steps)."""

    scheduler: str = "none"  # "none" or "asha"
    min_budget: int = 50  # steps at the first rung
    eta: int = 3  # reduction factor: the top 1/eta of a rung goes on
    steps: int = 500  # the full budget

    @property
    def active(self) -> bool:
        return self.scheduler != "none"

    def budgets(self) -> list[int]:
        """Steps of the rungs below the full budget: min_budget, min_budget * eta, ..."""
        out, step = [], self.min_budget
        while self.active and step < self.steps:
            out.append(step)
            step *= self.eta
        return out

    def to_dict(self) -> dict:
        return asdict(self) | {"rungs": self.budgets()} if self.active else {"scheduler": "none"}


def validate_rungs(rungs: Rungs, objectives: list[str], wall_clock: bool) -> None:
    """UserError for an unknown scheduler, eta < 2, a first rung not below the full budget, a wall-clock
    budget, or objectives the scheduler cannot rank at intermediate budgets."""
    if rungs.scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {rungs.scheduler!r}")
    if not rungs.active:
        return
    if rungs.eta < 2:
        raise UserError(f"--eta must be at least 2, got {rungs.eta}")
    if not 0 < rungs.min_budget < rungs.steps:
        raise UserError(f"--min-budget must be positive and below the full budget ({rungs.steps} steps), got "
                        f"{rungs.min_budget}")
    if wall_clock:
        raise UserError("--scheduler needs a step budget (rungs are counted in steps), not --budget-seconds")
    if len(objectives) != 1:
        raise UserError(f"--scheduler {rungs.scheduler} ranks one objective (Ray Tune's schedulers take one "
                        f"scalar metric); got {len(objectives)}: {', '.join(objectives)}")
    if objectives[0] not in INTERMEDIATE:
        raise UserError(f"--scheduler {rungs.scheduler}: objective {objectives[0]!r} has no intermediate signal; "
                        f"use one of {', '.join(INTERMEDIATE)}")


def make_scheduler(rungs: Rungs, objective: str):
    """The Ray Tune scheduler of `rungs` (None without one)."""
    if not rungs.active:
        return None
    from ray.tune.schedulers import ASHAScheduler

    metric = get_metric(objective)
    return ASHAScheduler(time_attr="step", metric=objective, mode="max" if metric.maximize else "min",
                         max_t=rungs.steps, grace_period=rungs.min_budget, reduction_factor=rungs.eta)
