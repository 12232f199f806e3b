"""Trial schedulers of a search: when a trial reports intermediate results, and which Ray Tune scheduler
decides from them to stop it early.

A trial with a scheduler reports at the rungs `min_budget * eta**k` training steps (below the full budget):
its training loss, the cheap held-out signals standing for its quality objectives and its cost metrics, with a
checkpoint of its training state (Ray Tune checkpoint, and `trials/<NNNN>/train_state.pt` for resuming the run,
`nas.rung_resume`), so a stopped or paused trial keeps its progress.

- `asha`: Ray Tune's own `ASHAScheduler` on a single objective with an intermediate signal (Ray's schedulers
  take one scalar metric).
- `mo-asha`: multi-objective asynchronous successive halving (`nas.moasha.MOASHA`): the search's objectives,
  ranked at each rung by non-dominated sorting (quality objectives by their held-out signal).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Iterable, Mapping

from core.errors import UserError
from core.metrics import get_metric, names

SCHEDULERS = ("none", "asha", "mo-asha")
INTERMEDIATE = ("val_loss", "val_loss_grid")  # objectives with a signal at intermediate budgets (held-out loss)
QUALITY = frozenset(names("quality"))  # objectives a proxy training produces: they change between rungs


DEFAULT_ETA = 2  # the top half of a rung continues


def default_min_budget(steps: int, eta: int = DEFAULT_ETA) -> int:
    """The first rung when none is given: `steps / eta` rounded to a power of two (64 of the default 125 steps,
    one rung). The fidelity study (benchmarks/results_fidelity.md) measured the rung signal there: at 64 steps the
    held-out grid loss ranks the paper panel like the 2,000-step reference's FID (Kendall tau 0.78 [0.50, 1.00]),
    at 32 steps it carries nothing (0.29 [-0.33, 0.79]), so a rung at a quarter of the budget would halve the
    trials at random."""
    return max(1, 2 ** round(math.log2(steps / eta)))


def default_scheduler(objectives: Iterable[str], wall_clock: bool, proxy: str = "scratch") -> str:
    """The scheduler of a new search when none is given: `mo-asha` where it was measured to pay, else `none`.

    The rule was written down before the benchmark's data (BENCHMARKS.md, "Multi-objective successive halving"):
    switch the default when MO-ASHA scores more architectures than a search without a scheduler in the same
    time, at no worse hypervolume, on at least 2 seeds; `benchmarks/moasha_demo.py` measured that on three seeds
    for from-scratch proxies at the default 125-step budget (median 17 vs 8 architectures, hypervolume ratio
    0.96-1.10). So MO-ASHA is the default only where that holds and where it can run:
    a quality objective to rank at the rung, a budget in steps (rungs are counted in steps), and from-scratch
    proxies (no rung signal of a teacher-anchored fine-tune has been measured in the fidelity study)."""
    if wall_clock or proxy != "scratch" or not any(o in QUALITY for o in objectives):
        return "none"
    return "mo-asha"


def resolve_rungs(scheduler: str | None, min_budget: int | None, eta: int | None, steps: int,
                  stored: Mapping[str, Any] | None = None, default: str = "none") -> Rungs:
    """The rungs of a search from its options; what is not given comes from the resumed run's own settings
    (`stored`, the manifest's `scheduler` entry; a run recorded before schedulers existed ran without one),
    else the defaults (`default`: the scheduler of a new run, `default_scheduler`). A resumed run given other
    settings gets them, and `validate_rungs` refuses the mismatch."""
    new_run, stored = stored is None, stored or {}
    scheduler = scheduler or stored.get("scheduler") or (default if new_run else "none")
    if scheduler == "none" and (min_budget is not None or eta is not None):
        raise UserError("--min-budget and --eta set a scheduler's rungs, and this search runs without one (pass "
                        "--scheduler mo-asha; a resumed run keeps its own scheduler)")
    same = scheduler == stored.get("scheduler")
    eta = eta if eta is not None else (stored.get("eta") if same and stored.get("eta") else DEFAULT_ETA)
    if min_budget is None:
        min_budget = stored.get("min_budget") if same and stored.get("min_budget") else default_min_budget(steps, eta)
    return Rungs(scheduler, min_budget, eta, steps)


@dataclass(frozen=True)
class Rungs:
    """The scheduler of a search and its rung budgets (in training steps)."""

    scheduler: str = "none"  # "none", "asha" or "mo-asha"
    min_budget: int = 64  # steps at the first rung
    eta: int = DEFAULT_ETA  # reduction factor: the top 1/eta of a rung goes on
    steps: int = 125  # the full budget

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


def validate_rungs(rungs: Rungs, objectives: list[str], wall_clock: bool, stored: dict | None = None) -> None:
    """Check the scheduler settings before anything is written.

    Args:
        rungs: the requested scheduler and rungs.
        objectives: the search's objective names.
        wall_clock: the trials have a wall-clock training budget (rungs need steps).
        stored: the manifest's `scheduler` entry of the run being resumed (None for a new run).

    Raises:
        UserError: an unknown scheduler, eta < 2, a first rung not below the full budget, a wall-clock budget,
            objectives the scheduler cannot rank at intermediate budgets, or a resumed run whose rungs differ.
    """
    if rungs.scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {rungs.scheduler!r}")
    if stored is not None and stored != rungs.to_dict():
        raise UserError(f"the run was started with scheduler settings {_describe(stored)}; it cannot resume with "
                        f"{_describe(rungs.to_dict())} (pass the run's own --scheduler, --min-budget, --eta and "
                        f"--budget)")
    if not rungs.active:
        return
    if rungs.eta < 2:
        raise UserError(f"--eta must be at least 2, got {rungs.eta}")
    if not 0 < rungs.min_budget < rungs.steps:
        raise UserError(f"--min-budget must be positive and below the full budget ({rungs.steps} steps), got "
                        f"{rungs.min_budget}")
    if wall_clock:
        raise UserError("--scheduler needs a step budget (rungs are counted in steps), not --budget-seconds")
    if rungs.scheduler == "mo-asha":
        if not any(o in QUALITY for o in objectives):
            raise UserError(f"--scheduler mo-asha: objectives {', '.join(objectives)} are all known before "
                            f"training, so there is nothing to rank at the rungs; add a quality objective "
                            f"({', '.join(sorted(QUALITY))})")
        return
    if len(objectives) != 1:
        raise UserError(f"--scheduler {rungs.scheduler} ranks one objective (Ray Tune's schedulers take one "
                        f"scalar metric; --scheduler mo-asha ranks several); got {len(objectives)}: "
                        f"{', '.join(objectives)}")
    if objectives[0] not in INTERMEDIATE:
        raise UserError(f"--scheduler {rungs.scheduler}: objective {objectives[0]!r} has no intermediate signal; "
                        f"use one of {', '.join(INTERMEDIATE)}")


def _describe(entry: Mapping[str, Any]) -> str:
    if entry.get("scheduler", "none") == "none":
        return "--scheduler none"
    return (f"--scheduler {entry.get('scheduler')} --min-budget {entry.get('min_budget')} --eta {entry.get('eta')} "
            f"--budget {entry.get('steps')}")


def rung_signals(rungs: Rungs, objectives: list[str]) -> tuple[str, ...]:
    """The held-out signals a trial reports at each rung (none without a scheduler)."""
    if not rungs.active:
        return ()
    if rungs.scheduler == "mo-asha":
        from nas.moasha import rung_signals as signals

        return signals(objectives)
    return (objectives[0],)


def make_scheduler(rungs: Rungs, objectives: list[str],
                   history: Iterable[tuple[Hashable, Mapping[str, Any]]] = ()):
    """The Ray Tune scheduler of `rungs` (None without one). `history`: (trial key, rung report) pairs a
    resumed run recorded before (MO-ASHA rebuilds its rung records from them; Ray's ASHA cannot)."""
    if not rungs.active:
        return None
    if rungs.scheduler == "mo-asha":
        from nas.moasha import MOASHA

        return MOASHA(rungs.budgets(), rungs.eta, objectives, history=history)
    from ray.tune.schedulers import ASHAScheduler

    metric = get_metric(objectives[0])
    return ASHAScheduler(time_attr="step", metric=objectives[0], mode="max" if metric.maximize else "min",
                         max_t=rungs.steps, grace_period=rungs.min_budget, reduction_factor=rungs.eta)
