"""Training in rungs: pause at chosen steps, report cheap held-out signals with a checkpoint, continue.

This is what a trial scheduler (Ray Tune's ASHA, successive halving) needs from a proxy trial: results at
intermediate budgets, and a training state to continue from when the trial is paused and resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from evaluators.training.budget import Budget
from evaluators.training.diffusion import heldout_loss, heldout_loss_grid
from evaluators.training.train import (
    LossFn,
    TrainOutcome,
    TrainState,
    denoising_objective,
    train,
)

SIGNALS = {"val_loss": heldout_loss, "val_loss_grid": heldout_loss_grid}  # held-out signals a rung can report


@dataclass(frozen=True)
class Intermediate:
    """Intermediate reports of one trial."""

    at: tuple[int, ...]  # steps (below the full budget) to report at, ascending
    report: Callable[[dict, TrainState], None]  # gets {"step", "train_loss", <signal>: value} and the state
    signals: tuple[str, ...] = ("val_loss",)  # held-out signals of the current weights (keys of SIGNALS)
    resume: TrainState | None = None  # continue from this state (a restored checkpoint)


def train_in_rungs(model, scheduler, images: torch.Tensor, ids: torch.Tensor, uncond: torch.Tensor, budget: Budget,
                   seed: int, report: Callable[[dict], None] | None, rungs: Intermediate,
                   held_images: torch.Tensor, held_ids: torch.Tensor,
                   loss_fn: LossFn = denoising_objective) -> TrainOutcome:
    """`train` to the full budget, pausing at each rung step to report the held-out signals (raw weights, eval
    mode) and the state to continue from. Resumed from `rungs.resume`, rungs already passed are not reported
    again; the result equals an uninterrupted `train` bit for bit on CPU. `loss_fn` as in `train`."""
    state = rungs.resume
    for step in rungs.at:
        if state is not None and state.step >= step:
            continue
        outcome = train(model, scheduler, images, ids, uncond, budget, seed, report, resume=state, until=step,
                        loss_fn=loss_fn)
        if outcome.failure_reason:
            return outcome
        state = outcome.state
        window = outcome.losses[-max(1, budget.report_every):]
        values = {"step": step, "train_loss": sum(window) / len(window)}
        model.eval()
        for name in rungs.signals:
            values[name] = SIGNALS[name](model, scheduler, held_images, held_ids, budget.sample_batch_size)
        model.train()
        rungs.report(values, state)
    return train(model, scheduler, images, ids, uncond, budget, seed, report, resume=state, loss_fn=loss_fn)
