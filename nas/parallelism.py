"""How many trials run at once, and with how many threads each, when `nas search` is not told.

A proxy trial is small (a 16x16 proxy UNet, batch 32), and small convolutions gain little from a second
intra-op thread. With a scheduler most trials stop at an early rung, so what pays is running more of them at
once: every core runs its own single-threaded trial. Without a scheduler the full-budget default keeps two
threads per trial (one trial per two cores, as before). On a GPU (`--gpus-per-trial`) or an existing Ray
cluster (`--address`) the driver cannot see the cores the trials will use, and the historical default (one
trial, two CPUs) stays. `benchmarks/moasha_demo.py` measures the throughput of these choices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_WORKERS = 1  # without a choice: one trial at a time ...
DEFAULT_CPUS = 2.0  # ... with two CPUs (and torch threads)


@dataclass(frozen=True)
class Parallelism:
    """Trials at once and Ray CPUs (= torch threads) per trial, with why."""

    workers: int
    cpus_per_trial: float
    why: str  # how the numbers were chosen (printed by `nas search`)

    def describe(self) -> str:
        threads = max(1, int(self.cpus_per_trial))
        return (f"{self.workers} trial{'s' if self.workers > 1 else ''} at once x {threads} "
                f"thread{'s' if threads > 1 else ''} each ({self.why})")


def machine_cores() -> int:
    """Cores this process may run on (its CPU affinity; os.cpu_count where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_parallelism(workers: int | None, cpus_per_trial: float | None, *, scheduler: bool,
                       gpus_per_trial: float = 0.0, address: str | None = None,
                       cores: int | None = None) -> Parallelism:
    """Workers x threads per trial: what was given, the rest from the machine's cores (module docstring).

    Args:
        workers, cpus_per_trial: the user's --workers / --cpus-per-trial (None: not given).
        scheduler: the search stops trials at rungs (most trials are short).
        gpus_per_trial: --gpus-per-trial (> 0: trials train on a GPU).
        address: --address of an existing Ray cluster.
        cores: the machine's cores (default: `machine_cores()`).
    """
    if workers is not None:
        threads = 1.0 if scheduler and not gpus_per_trial and not address else DEFAULT_CPUS
        return Parallelism(workers, threads if cpus_per_trial is None else cpus_per_trial, "--workers as given")
    if gpus_per_trial > 0 or address:
        where = "GPU trials" if gpus_per_trial > 0 else "an existing Ray cluster"
        return Parallelism(DEFAULT_WORKERS, DEFAULT_CPUS if cpus_per_trial is None else cpus_per_trial,
                           f"default for {where}; --workers sets more")
    cores = machine_cores() if cores is None else cores
    if cpus_per_trial is not None:
        return Parallelism(max(1, int(cores // max(1.0, cpus_per_trial))), cpus_per_trial,
                           f"{cores} cores / --cpus-per-trial {cpus_per_trial:g}")
    threads = 1 if scheduler else min(2, cores)
    why = "rung trials are small" if scheduler else "full-budget trials"
    return Parallelism(max(1, cores // threads), float(threads), f"{cores} cores; {why}")
