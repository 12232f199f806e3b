"""The proxy training loop: AdamW on UNet + text encoder, CFG caption dropout, optional EMA, loss reports."""

from __future__ import annotations

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
class TrainOutcome:
    """What a training run did: steps taken, time, loss history, and why it stopped early (if it did)."""

    steps: int  # optimizer steps completed
    seconds: float  # wall-clock time of the loop
    losses: list[float] = field(default_factory=list)  # training loss of every completed step
    failure_reason: str | None = None  # set when a non-finite loss or gradient ended the run
    ema: EMAModel | None = None  # the weight average, when the budget asks for one


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


def train(model: ProxyModel, scheduler, images: torch.Tensor, ids: torch.Tensor, uncond: torch.Tensor,
          budget: Budget, seed: int, report: Callable[[dict], None] | None = None) -> TrainOutcome:
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
    window: list[float] = []
    model.train()
    start = time.perf_counter()
    step = 0
    while (time.perf_counter() - start < budget.seconds) if budget.seconds else (step < budget.steps):
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
            loss = denoising_loss(model, scheduler, images[idx_d], batch_ids, noise.to(device), t.to(device))
        value = loss.item()
        if not math.isfinite(value):
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
    outcome.seconds = time.perf_counter() - start
    return outcome
