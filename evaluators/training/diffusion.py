"""Noise schedule, training target, held-out denoising loss and few-step CFG sampling (diffusers schedulers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from evaluators.training.model import ProxyModel

TRAIN_TIMESTEPS = 1000
VAL_SEED = 20_261_127  # fixed noise for the held-out loss: every trial sees the same noise and timesteps


def train_scheduler(prediction: str, beta_schedule: str) -> DDPMScheduler:
    """The forward (noising) process used in training, predicting `prediction` ("epsilon" or "v_prediction")."""
    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule=beta_schedule,
                         prediction_type=prediction, clip_sample=True)


def sampler(train: DDPMScheduler, kind: str) -> DPMSolverMultistepScheduler | DDIMScheduler:
    """A few-step sampler on the training schedule; predicted clean images are clipped to [-1, 1].

    Args:
        train: the training scheduler (its betas and prediction type carry over).
        kind: "dpm" (DPM-Solver++ 2M) or "ddim" (deterministic DDIM, eta 0).
    """
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(train.config, algorithm_type="dpmsolver++", thresholding=True,
                                                       sample_max_value=1.0, timestep_spacing="trailing")
    return DDIMScheduler.from_config(train.config, timestep_spacing="trailing")


def target(scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the network learns to predict at timesteps `t`: the noise, or the velocity."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, t)  # (B, C, S, S)
    return noise


def denoising_loss(model: ProxyModel, scheduler: DDPMScheduler, clean: torch.Tensor, ids: torch.Tensor,
                   noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the model's prediction of the training target (float32)."""
    noisy = scheduler.add_noise(clean, noise, t)  # (B, C, S, S)
    pred = model(noisy, t, ids)
    return F.mse_loss(pred.float(), target(scheduler, clean, noise, t).float())


@torch.no_grad()
def heldout_loss(model: ProxyModel, scheduler: DDPMScheduler, images: torch.Tensor, ids: torch.Tensor,
                 batch_size: int) -> float:
    """Denoising loss on held-out images with fixed noise and evenly spaced timesteps (deterministic).

    The noise comes from a fixed seed and timestep i is round(i * (T - 1) / (N - 1)), so two trials with
    the same held-out data are scored on exactly the same problems, whatever their seeds.
    """
    n = images.shape[0]
    gen = torch.Generator().manual_seed(VAL_SEED)
    noise = torch.randn(images.shape, generator=gen).to(images.device)  # (N, C, S, S)
    t = torch.linspace(0, TRAIN_TIMESTEPS - 1, n).round().long().to(images.device)  # (N,)
    return _mean_loss(model, scheduler, images, ids, noise, t, batch_size)


def _mean_loss(model: ProxyModel, scheduler: DDPMScheduler, images: torch.Tensor, ids: torch.Tensor,
               noise: torch.Tensor, t: torch.Tensor, batch_size: int) -> float:
    n = images.shape[0]
    total = 0.0
    for i in range(0, n, batch_size):
        part = slice(i, i + batch_size)
        loss = denoising_loss(model, scheduler, images[part], ids[part], noise[part], t[part])
        total += loss.item() * images[part].shape[0]
    return total / n


GRID_TIMESTEPS = 8  # timesteps of the grid held-out loss (each held-out image is noised at all of them)


@torch.no_grad()
def heldout_loss_grid(model: ProxyModel, scheduler: DDPMScheduler, images: torch.Tensor, ids: torch.Tensor,
                      batch_size: int, n_timesteps: int = GRID_TIMESTEPS) -> float:
    """Denoising loss on held-out images averaged over a fixed grid of timesteps, with fixed noise.

    Every image is noised at each of `n_timesteps` evenly spaced timesteps (the midpoints of equal bins of
    [0, T)), so every timestep weighs the same for every image and the estimate has far less variance than
    `heldout_loss`'s one timestep per image (SD3, arXiv 2403.03206, uses such a validation loss). Costs
    `n_timesteps` times `heldout_loss`.
    """
    losses = [_mean_loss(model, scheduler, images, ids, noise, t, batch_size)
              for noise, t in grid_problems(images, n_timesteps)]
    return sum(losses) / len(losses)


def grid_problems(images: torch.Tensor, n_timesteps: int = GRID_TIMESTEPS):
    """The fixed problems of the grid held-out loss: for each of `n_timesteps` evenly spaced timesteps (the
    midpoints of equal bins of [0, T)), fixed noise (N, C, S, S) and the timestep for every image (N,)."""
    n = images.shape[0]
    gen = torch.Generator().manual_seed(VAL_SEED + 1)
    grid = ((torch.arange(n_timesteps) + 0.5) * TRAIN_TIMESTEPS / n_timesteps).long()  # (K,)
    for step in grid.tolist():
        noise = torch.randn(images.shape, generator=gen).to(images.device)  # (N, C, S, S)
        yield noise, torch.full((n,), step, dtype=torch.long, device=images.device)


@torch.no_grad()
def sample(model: ProxyModel, train: DDPMScheduler, ids: torch.Tensor, uncond: torch.Tensor, *, kind: str,
           steps: int, cfg_scale: float, batch_size: int, image_shape: tuple[int, int, int],
           generator: torch.Generator) -> torch.Tensor:
    """Generate one image per caption with classifier-free guidance.

    Args:
        model: the trained proxy (put in eval mode by the caller).
        train: the training scheduler.
        ids: token ids of the captions (N, L).
        uncond: token ids of the empty caption (L,).
        kind: sampler kind, see `sampler`.
        steps: sampler steps.
        cfg_scale: guidance scale; 1 runs the conditional model alone.
        batch_size: captions per network call (each call evaluates cond and uncond together).
        image_shape: (C, S, S).
        generator: CPU generator for the initial noise.

    Returns:
        Images (N, C, S, S) clamped to [-1, 1].
    """
    device = ids.device
    sched = sampler(train, kind)
    sched.set_timesteps(steps, device=device)
    n = ids.shape[0]
    x = torch.randn((n, *image_shape), generator=generator).to(device) * sched.init_noise_sigma  # (N, C, S, S)
    guided = cfg_scale != 1.0
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for t in sched.timesteps:
            out = torch.empty_like(x)
            for i in range(0, n, batch_size):
                part = slice(i, i + batch_size)
                xb, cb = x[part], ids[part]
                if guided:
                    xb = torch.cat([xb, xb])  # (2b, C, S, S): conditional first, then unconditional
                    cb = torch.cat([cb, uncond.expand_as(cb)])  # (2b, L)
                pred = model(sched.scale_model_input(xb, t), t.expand(xb.shape[0]), cb).float()
                if guided:
                    cond, unc = pred.chunk(2)
                    pred = unc + cfg_scale * (cond - unc)
                out[part] = pred
            x = sched.step(out, t, x).prev_sample
    return x.clamp(-1, 1)
