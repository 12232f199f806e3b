"""The proxy training loop: AdamW on UNet + text encoder, CFG caption dropout, optional EMA, loss reports."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers.training_utils import EMAModel

from evaluators.training.budget import Budget
from evaluators.training.diffusion import denoising_loss
from evaluators.training.model import ProxyModel


@dataclass
class TrainState:
    """Everything a paused training needs to continue exactly as if it had never stopped: on CPU a training
    resumed from a state reproduces the uninterrupted one bit for bit."""

    step: int  # optimizer steps done
    cursor: int  # position in the current epoch's batch order
    order: torch.Tensor  # the current epoch's permutation of the training images (N,)
    generator: torch.Tensor  # state of the CPU generator all training randomness comes from
    model: dict  # the proxy's state dict (UNet and text encoder)
    optimizer: dict  # AdamW's state dict
    ema: dict | None  # the EMA's state dict, when the budget keeps one
    losses: list[float]  # training loss of every step so far
    seconds: float  # training seconds so far

    def save(self, path) -> None:
        torch.save(self.__dict__, path)

    @classmethod
    def load(cls, path) -> "TrainState":
        return cls(**torch.load(path, map_location="cpu", weights_only=False))


@dataclass
class TrainOutcome:
    """What a training run did: steps taken, time, loss history, and why it stopped early (if it did)."""

    steps: int  # optimizer steps completed (in all, including those before a resumed state)
    seconds: float  # wall-clock time of the loop (in all)
    losses: list[float] = field(default_factory=list)  # training loss of every completed step
    failure_reason: str | None = None  # set when a non-finite loss or gradient ended the run
    ema: EMAModel | None = None  # the weight average, when the budget asks for one
    state: TrainState | None = None  # where training stopped (to continue it), when `until` stopped it


# (model, scheduler, clean, ids, noise, t) -> (objective to minimise, denoising loss to record)
LossFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def denoising_objective(model: ProxyModel, scheduler, clean: torch.Tensor, ids: torch.Tensor, noise: torch.Tensor,
                        t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The default training loss: the denoising loss, both as the objective and as the recorded value."""
    loss = denoising_loss(model, scheduler, clean, ids, noise, t)
    return loss, loss


def _lr_factor(step: int, warmup: int) -> float:
    """Linear warm-up factor of the learning rate at `step`. Not torch's LinearLR: a function of the step alone
    has no state to checkpoint, so a resumed training (TrainState) gets the same rates bit for bit."""
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


def train(model: ProxyModel, scheduler, images: torch.Tensor, ids: torch.Tensor, uncond: torch.Tensor,
          budget: Budget, seed: int, report: Callable[[dict], None] | None = None,
          resume: TrainState | None = None, until: int | None = None,
          loss_fn: LossFn = denoising_objective) -> TrainOutcome:
    """Train `model` in place on (images, ids) until the budget is spent or the loss stops being finite.

    All randomness (batch order, timesteps, noise, caption dropout) comes from one CPU generator seeded
    with `seed`, so a CPU run is reproducible bit for bit. On CUDA the forward pass runs in bfloat16
    autocast; elsewhere in float32.

    Args:
        model: the proxy (moved to its device by the caller).
        scheduler: the training DDPMScheduler.
        images: training images (N, C, S, S) in [-1, 1], on the model's device.
        ids: caption token ids (N, L), on the model's device.
        uncond: token ids of the empty caption (L,), used for caption dropout.
        budget: steps (or seconds), batch size, learning rate, ...
        seed: seed of the training randomness.
        report: called every `budget.report_every` steps with {"step", "loss" (mean over the window),
            "lr", "seconds"}; meant for progress bars and trial schedulers.
        resume: a state from an earlier call (`outcome.state`): continue from there, loading its weights,
            optimizer, EMA, batch order and random state into this run.
        until: stop after this many steps in all (a step budget only) and return the state to continue from.
        loss_fn: the loss of one batch, returning (objective to minimise, denoising loss to record in
            `losses`); e.g. a `distill.Distiller` adds distillation terms from a teacher.

    Returns:
        A TrainOutcome; `failure_reason` is set (and training stopped) on a non-finite loss or gradient.
    """
    device = images.device
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay, betas=(0.9, 0.99),
                            foreach=True)
    ema = EMAModel(params, decay=budget.ema_decay, use_ema_warmup=True, foreach=True) if budget.ema_decay else None
    n, batch = images.shape[0], budget.batch_size
    order, cursor = torch.randperm(n, generator=gen), 0
    outcome = TrainOutcome(steps=0, seconds=0.0, ema=ema)
    step, before = 0, 0.0
    if resume is not None:
        model.load_state_dict(resume.model)
        opt.load_state_dict(resume.optimizer)
        if ema is not None and resume.ema is not None:
            ema.load_state_dict(resume.ema)
        gen.set_state(resume.generator)
        order, cursor, step, before = resume.order, resume.cursor, resume.step, resume.seconds
        outcome.losses = list(resume.losses)
    last = budget.steps if until is None else min(until, budget.steps)
    if budget.seconds and until is not None:
        raise ValueError("`until` pauses a step budget; a wall-clock budget cannot be paused")
    window: list[float] = []
    model.train()
    start = time.perf_counter()
    while (time.perf_counter() - start < budget.seconds) if budget.seconds else (step < last):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor:cursor + batch]
        cursor += batch
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=gen)  # (B,)
        noise = torch.randn((batch, *images.shape[1:]), generator=gen)  # (B, C, S, S)
        drop = torch.rand(batch, generator=gen) < budget.cfg_dropout  # (B,)
        idx_d = idx.to(device)
        batch_ids = torch.where(drop.to(device)[:, None], uncond[None], ids[idx_d])  # (B, L)
        lr = budget.lr * _lr_factor(step, budget.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, denoise = loss_fn(model, scheduler, images[idx_d], batch_ids, noise.to(device), t.to(device))
        value = denoise.item()
        if not math.isfinite(value) or loss is not denoise and not math.isfinite(loss.item()):
            outcome.failure_reason = f"non-finite training loss ({value}) at step {step + 1} (lr {lr:g})"
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, budget.grad_clip)
        if not math.isfinite(norm.item()):
            outcome.failure_reason = f"non-finite gradient norm at step {step + 1} (lr {lr:g})"
            break
        opt.step()
        if ema is not None:
            ema.step(params)
        step += 1
        outcome.losses.append(value)
        window.append(value)
        if report is not None and (step % budget.report_every == 0 or step == budget.steps and not budget.seconds):
            report({"step": step, "loss": sum(window) / len(window), "lr": lr,
                    "seconds": time.perf_counter() - start})
            window = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    outcome.steps = step
    outcome.seconds = before + time.perf_counter() - start
    if until is not None and outcome.failure_reason is None:
        outcome.state = TrainState(step=step, cursor=cursor, order=order.clone(), generator=gen.get_state(),
                                   model=copy.deepcopy(model.state_dict()), optimizer=copy.deepcopy(opt.state_dict()),
                                   ema=copy.deepcopy(ema.state_dict()) if ema else None,
                                   losses=list(outcome.losses), seconds=outcome.seconds)
    return outcome

