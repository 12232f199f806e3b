"""One proxy trial end to end: train the proxy of an architecture, sample, score. The search calls this."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core.console import warn
from core.errors import UserError
from evaluators.data import CaptionedImages, load_dataset
from evaluators.memory import check_fits, training_memory, with_teacher
from evaluators.quality import get_quality_evaluator
from evaluators.training.budget import Budget
from evaluators.training.diffusion import (
    heldout_loss,
    heldout_loss_grid,
    sample,
    train_scheduler,
)
from evaluators.training.distill import Distiller, teacher_distance
from evaluators.training.grid import write_grid
from evaluators.training.inherit import inherit_model
from evaluators.training.model import build_proxy_model
from evaluators.training.proxy_mode import ProxyMode
from evaluators.training.rungs import Intermediate, train_in_rungs
from evaluators.training.teacher import Teacher, load_teacher
from evaluators.training.text_encoder import tokenize
from evaluators.training.train import denoising_objective, train
from search_spaces.config import ArchConfig
from search_spaces.proxy import to_proxy


@dataclass
class TrialResult:
    """The outcome of one proxy trial; metrics are None when the trial failed before producing them."""

    arch_id: str  # id of the full-scale architecture
    proxy_arch_id: str  # id of its proxy-scale config
    seed: int  # trial seed (weights, batch order, noise, sampling noise)
    device: str  # where it ran
    fid: float | None = None  # FID of the samples against held-out real images (evaluator's features)
    kid: float | None = None  # KID, same features (less biased at small sample counts)
    clip_score: float | None = None  # mean image-caption cosine in the evaluator's CLIP space
    val_loss: float | None = None  # held-out denoising loss (fixed noise and timesteps)
    val_loss_grid: float | None = None  # held-out denoising loss over a fixed timestep grid (fixed noise)
    cmmd: float | None = None  # CMMD of the samples against held-out real images (evaluator's CLIP space)
    train_loss: float | None = None  # mean training loss over the last tenth of the steps
    steps: int = 0  # optimizer steps completed
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: setup, train, val, val_grid, sample, score
    total_seconds: float = 0.0  # wall clock of the whole trial
    sample_grid: str | None = None  # labelled sample grid PNG, when an output folder was given
    sample_captions: list[str] = field(default_factory=list)  # captions of the grid's samples, in order
    proxy_params: int = 0  # parameters of the proxy UNet
    text_encoder_params: int = 0  # parameters of the conditioning text encoder (same for every arch)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss of the window)
    failed: bool = False  # True when the trial ended without metrics
    failure_reason: str | None = None  # why, in one line
    evaluator: dict = field(default_factory=dict)  # feature source and models of the quality evaluator
    data: dict = field(default_factory=dict)  # training and held-out data descriptions
    budget: dict = field(default_factory=dict)  # the Budget, as a dict
    proxy_mode: str = "scratch"  # how the proxy started: "scratch", or "inherit" (teacher weights, distilled)
    teacher: dict = field(default_factory=dict)  # inherit: the teacher (name, ids, cache entry, its training)
    inherited_fraction: float | None = None  # inherit: share of the proxy UNet's parameters from the teacher
    inherit: dict = field(default_factory=dict)  # inherit: parameters per rule, fresh blocks, distillation
    inherit_fallbacks: list[str] = field(default_factory=list)  # inherit: kinds of change sent fresh, and why
    teacher_distance: float | None = None  # inherit: mean squared distance to the teacher's held-out predictions

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=4)
def _data(kind: str, split: str, image_size: int, n: int | None, seed: int, path: str | None) -> CaptionedImages:
    return load_dataset(kind=kind, split=split, image_size=image_size, n=n, seed=seed, path=path)


@functools.lru_cache(maxsize=4)
def _tokens(captions: tuple[str, ...], context_len: int) -> torch.Tensor:
    return tokenize(list(captions), context_len)


HELDOUT_FIELDS = {"n_val": "--n-val", "n_samples": "--n-samples", "n_real": "--n-real"}
MIN_HELDOUT = 2  # FID/KID/CMMD need two images per set


def _heldout(budget: Budget) -> CaptionedImages:
    held = _data(budget.data, "heldout", budget.image_size, None, budget.data_seed, budget.data_path)
    if len(held) < MIN_HELDOUT:
        raise UserError(f"the held-out split of {held.info.get('path', budget.data)} has {len(held)} image(s); "
                        f"scoring needs at least {MIN_HELDOUT} (add images with more distinct captions)")
    return held


def fit_heldout(budget: Budget, n_val: int | None = None, n_samples: int | None = None,
                n_real: int | None = None) -> Budget:
    """The budget with held-out sizes the dataset's held-out split can supply.

    Sizes given here are the user's and must fit; the budget's own sizes (the defaults, for the sizes given
    as None) are lowered to the split's size when it is smaller, with a one-line warning. Loads the held-out
    split (cached per process, so a trial in the same process reuses it).

    Args:
        budget: the budget (data source, image size and default held-out sizes).
        n_val, n_samples, n_real: the user's held-out sizes; None keeps the budget's, lowered if needed.

    Raises:
        UserError: a given size larger than the split, a split with fewer than two images, or a size < 1.
    """
    explicit = {k: v for k, v in (("n_val", n_val), ("n_samples", n_samples), ("n_real", n_real)) if v is not None}
    budget = budget.replace(**explicit)
    held = _heldout(budget)
    where = held.info.get("path", budget.data)
    too_big = {name: getattr(budget, name) for name in HELDOUT_FIELDS if getattr(budget, name) > len(held)}
    refused = [f"{HELDOUT_FIELDS[name]} {value}" for name, value in too_big.items() if name in explicit]
    if refused:
        raise UserError(f"the held-out split of {where} has {len(held)} images, fewer than {', '.join(refused)}")
    if not too_big:
        return budget
    warn(f"the held-out split of {where} has {len(held)} images, fewer than the default "
         f"{', '.join(f'{HELDOUT_FIELDS[n]} {v}' for n, v in too_big.items())}; using {len(held)}")
    return budget.replace(**{name: len(held) for name in too_big})


def _loss_curve(losses: list[float], every: int) -> list[tuple[int, float]]:
    return [(min(i + every, len(losses)), sum(losses[i:i + every]) / len(losses[i:i + every]))
            for i in range(0, len(losses), every)]


def evaluate_arch(config: ArchConfig, budget: Budget = Budget(), seed: int = 0, out_dir: Path | None = None,
                  evaluator=None, report: Callable[[dict], None] | None = None,
                  device: str | torch.device = "cpu", max_memory: int | None = None,
                  intermediate: Intermediate | None = None, proxy_mode: ProxyMode | None = None,
                  teacher_progress: Callable[[int, int, float], None] | None = None,
                  samples: bool = True) -> TrialResult:
    """Estimate the image quality of an architecture by a short text-to-image training of its proxy.

    Stages: setup (data, tokens, model, evaluator), train (the proxy UNet and its own text encoder),
    val (held-out denoising loss), sample (one image per held-out caption, few-step sampler with CFG),
    score (FID, KID, CLIP score against held-out real images). Data and tokens are cached per process,
    so repeated trials in one worker pay for them once.

    Args:
        config: the full-scale architecture; it is trained at `budget.scale`.
        budget: training, sampling and scoring budget.
        seed: seed of the weights, batch order, noise and sampling noise; with the same seed a CPU trial
            reproduces its metrics exactly.
        out_dir: folder for the labelled sample grid PNG (none written when None).
        evaluator: a quality evaluator with `score(fake, captions, real)` and `info`; None builds the
            embedded domain evaluator at the budget's image size.
        report: called during training with {"step", "loss", "lr", "seconds"} every `budget.report_every`
            steps (progress bars, trial schedulers).
        device: "cpu" or a CUDA device; CUDA trains in bfloat16 autocast.
        max_memory: bytes the trial may use at most (None: what the device has available now).
        intermediate: report held-out signals with a checkpoint at these steps, and/or resume from one
            (trial schedulers); see `evaluators.training.rungs`.
        proxy_mode: None or scratch: fresh weights. Inherit: the proxy starts from the mode's teacher (loaded
            from the cache, or trained on first use; its one-time training is reported in `teacher`, not in
            this trial's seconds), fine-tunes for `budget.steps` with distillation from it, and is also
            scored by its distance to the teacher's predictions.
        teacher_progress: called with (steps done, total, loss) while the teacher trains.
        samples: False skips the sample and score stages (no evaluator is built): the trial measures its held-out
            losses only, and its sample metrics (FID, KID, CLIP score, CMMD) stay None. For searches whose
            objectives and constraints need no sample metric, and rung-fidelity studies.

    Returns:
        A TrialResult. A non-finite loss, gradient or sample gives `failed=True` with a `failure_reason`
        instead of an exception; bad input (budget, data, config) raises.

    Raises:
        UserError, ConfigError: the budget, data source or proxy config is invalid, or (inherit) the teacher
            cannot anchor this trial (another scale or data, nothing to inherit, not trained and training
            not allowed). TooLargeError (a
            UserError): the proxy's estimated memory exceeds `max_memory` or the available memory; raised
            before anything is built.
    """
    start = time.perf_counter()
    device = torch.device(device)
    proxy = to_proxy(config, budget.scale)
    check_proxy_fits(config, budget, str(device), max_memory, proxy_mode)
    result = TrialResult(arch_id=config.arch_id, proxy_arch_id=proxy.arch_id, seed=seed, device=str(device),
                         budget=budget.to_dict())
    clock = [time.perf_counter()]

    def finish(stage: str) -> None:
        now = time.perf_counter()
        result.seconds[stage] = now - clock[0]
        clock[0] = now

    train_set = _data(budget.data, "train", budget.image_size, budget.n_train, budget.data_seed, budget.data_path)
    if len(train_set) < budget.batch_size:
        raise UserError(f"the training split of {train_set.info.get('path', budget.data)} has {len(train_set)} "
                        f"images, fewer than one batch (--batch-size {budget.batch_size})")
    held = _heldout(budget)
    need = max((budget.n_val, *((budget.n_samples, budget.n_real) if samples else ())))
    if len(held) < need:
        raise UserError(f"the held-out split of {held.info.get('path', budget.data)} has {len(held)} images; "
                        f"the budget needs {need} (lower --n-val / --n-samples / --n-real)")
    result.data = {"train": train_set.info, "heldout": held.info}
    train_ids = _tokens(tuple(train_set.captions), proxy.context_len)  # (N, L)
    held_ids = _tokens(tuple(held.captions), proxy.context_len).to(device)  # (M, L)
    uncond = tokenize([""], proxy.context_len)[0].to(device)  # (L,)
    model = build_proxy_model(proxy, train_ids, seed).to(device)
    result.proxy_params, result.text_encoder_params = model.unet_params, model.text_params
    teacher = None
    if proxy_mode is not None and proxy_mode.inherit:
        teacher = load_teacher(proxy_mode.teacher_arch, budget, label=proxy_mode.teacher, steps=proxy_mode.steps,
                               seed=proxy_mode.teacher_seed, train_allowed=proxy_mode.train_teacher, device=device,
                               progress=teacher_progress, train_set=train_set)
        teacher.check_matches(budget)
        start += teacher.info["seconds_now"]  # the one-time teacher training is not this trial's time
        clock[0] += teacher.info["seconds_now"]
        inherited = inherit_model(teacher.model, model, proxy_mode.policy)
        result.proxy_mode, result.teacher = proxy_mode.mode, dict(teacher.info)
        result.inherited_fraction, result.inherit_fallbacks = inherited.fraction, inherited.fallbacks
        result.inherit = inherited.to_dict() | {"distill": dataclasses.asdict(proxy_mode.distill)}
    if evaluator is None and samples:
        evaluator = get_quality_evaluator(source="domain", image_size=budget.image_size, device=str(device))
    result.evaluator = dict(evaluator.info) if samples else {}
    scheduler = train_scheduler(budget.prediction, budget.beta_schedule)
    finish("setup")

    try:
        with _loss(teacher, model, proxy_mode) as loss_fn:
            if teacher is not None:
                result.inherit["feature_points"] = sorted(loss_fn.points)
            if intermediate is None:
                outcome = train(model, scheduler, train_set.images.to(device), train_ids.to(device), uncond, budget,
                                seed, report, loss_fn=loss_fn)
            else:
                outcome = train_in_rungs(model, scheduler, train_set.images.to(device), train_ids.to(device),
                                         uncond, budget, seed, report, intermediate,
                                         held.images[:budget.n_val].to(device), held_ids[:budget.n_val],
                                         loss_fn=loss_fn)
        result.steps = outcome.steps
        result.loss_curve = _loss_curve(outcome.losses, budget.report_every)
        if outcome.losses:
            tail = outcome.losses[-max(1, len(outcome.losses) // 10):]
            result.train_loss = sum(tail) / len(tail)
        finish("train")
        if outcome.failure_reason:
            return _failed(result, outcome.failure_reason, start)
        if outcome.ema is not None:
            outcome.ema.copy_to(model.parameters())
        model.eval()

        result.val_loss = heldout_loss(model, scheduler, held.images[:budget.n_val].to(device),
                                       held_ids[:budget.n_val], budget.sample_batch_size)
        finish("val")
        if not math.isfinite(result.val_loss):
            return _failed(result, f"non-finite held-out loss ({result.val_loss})", start)
        result.val_loss_grid = heldout_loss_grid(model, scheduler, held.images[:budget.n_val].to(device),
                                                 held_ids[:budget.n_val], budget.sample_batch_size)
        finish("val_grid")
        if teacher is not None:
            result.teacher_distance = teacher_distance(model, teacher.model, held.images[:budget.n_val].to(device),
                                                       held_ids[:budget.n_val], scheduler, budget.sample_batch_size)
            finish("teacher_distance")
        if not samples:
            result.total_seconds = time.perf_counter() - start
            return result

        captions = held.captions[:budget.n_samples]
        fake = sample(model, scheduler, held_ids[:budget.n_samples], uncond, kind=budget.sampler,
                      steps=budget.sample_steps, cfg_scale=budget.cfg_scale, batch_size=budget.sample_batch_size,
                      image_shape=(proxy.latent_channels, proxy.latent_size, proxy.latent_size),
                      generator=torch.Generator().manual_seed(seed + 1)).float().cpu()  # (n_samples, 3, S, S)
    except torch.OutOfMemoryError as err:
        return _failed(result, f"out of memory: {str(err).splitlines()[0]}", start)
    if not torch.isfinite(fake).all():
        finish("sample")
        return _failed(result, "non-finite values in the generated images", start)
    if out_dir is not None and budget.grid_images:
        k = min(budget.grid_images, len(captions))
        path = Path(out_dir) / f"samples-{config.arch_id}-seed{seed}.png"
        title = f"arch {config.arch_id}  seed {seed}  {outcome.steps} steps  cfg {budget.cfg_scale}"
        result.sample_grid = str(write_grid(fake[:k], captions[:k], path, title=title))
        result.sample_captions = [str(c) for c in captions[:k]]
    finish("sample")

    scores = evaluator.score(fake, captions, held.images[:budget.n_real])
    for name, value in scores.items():  # the evaluator's sample metrics (registry names): fid, kid, clip_score, cmmd
        setattr(result, name, float(value))
    finish("score")
    result.total_seconds = time.perf_counter() - start
    return result


def _loss(teacher: Teacher | None, model, proxy_mode: ProxyMode | None) -> contextlib.AbstractContextManager:
    """The training loss as a context: distillation from the teacher (hooks removed on exit), or the plain
    denoising loss."""
    if teacher is None:
        return contextlib.nullcontext(denoising_objective)
    return Distiller(teacher.model, model, proxy_mode.distill)


def check_proxy_fits(config: ArchConfig, budget: Budget, device: str = "cpu", max_memory: int | None = None,
                     proxy_mode: ProxyMode | None = None, limit_label: str | None = None) -> None:
    """Refuse, before anything is built, a proxy whose training would not fit in memory.

    Args:
        proxy_mode: inherit mode's teacher proxy stays resident while the student trains (and, when it is not
            cached yet, the teacher first trains itself), so both must fit.
        limit_label: how `max_memory` is named in a refusal (default "--max-memory <size>").

    Raises:
        TooLargeError: the estimate (`evaluators.memory.training_memory`, `with_teacher`) exceeds `max_memory`
            or what `device` has available; the message names the block of `config` that needs the most.
    """
    def training(arch: ArchConfig, proxy: ArchConfig):
        return training_memory(arch, proxy, budget.batch_size, budget.sample_batch_size,
                               guided=budget.cfg_scale != 1, ema=budget.ema_decay is not None)

    proxy = to_proxy(config, budget.scale)
    estimate = training(config, proxy)
    if proxy_mode is not None and proxy_mode.inherit:
        teacher = proxy_mode.teacher_arch
        teacher_proxy = to_proxy(teacher, budget.scale)
        own = training(teacher, teacher_proxy)
        own = dataclasses.replace(own, what=f"training the teacher (arch {teacher.arch_id}, batch "
                                            f"{budget.batch_size}; once, when it is not cached)")
        estimate = max(with_teacher(estimate, teacher, teacher_proxy, budget.batch_size), own, key=lambda e: e.total)
    check_fits(estimate, max_memory, device, limit_label)


def _failed(result: TrialResult, reason: str, start: float) -> TrialResult:
    result.failed, result.failure_reason = True, reason
    result.total_seconds = time.perf_counter() - start
    return result
