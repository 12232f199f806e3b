"""Distillation from a frozen teacher while fine-tuning (BK-SDM, arXiv 2305.15798), and the teacher distance.

The candidate's loss is the denoising loss plus an output-level term (the squared distance of its prediction
to the teacher's on the same noisy input, caption and timestep) plus a feature-level term (the squared
distance of its stage outputs to the teacher's at the chosen feature points):

    loss = denoise + output_weight * |pred - pred_teacher|^2 + feature_weight * sum_points |f - f_teacher|^2

Feature points are stage outputs: `down<i>` (the last block of level i's down path, before downsampling),
`mid` (the bottleneck's output) and `up<i>` (the last block of level i's up path, before upsampling). A
point is used when both networks have it at the same spatial size. Widths may differ between the two; the
term compares the leading channels both have, the channels that weight inheritance aligned (it copies the
teacher's leading channels into the candidate's), so no projection has to be learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from evaluators.training.diffusion import GRID_TIMESTEPS, grid_problems, target
from search_spaces.config import ArchConfig

POINT_GROUPS = ("down", "mid", "up")  # feature point groups an option can name


@dataclass(frozen=True)
class DistillWeights:
    """Weights of the distillation terms and where the features are compared (BK-SDM uses 1 and 1)."""

    output: float = 1.0  # weight of the output-level term
    feature: float = 1.0  # weight of the feature-level term (a sum over the feature points)
    points: tuple[str, ...] = POINT_GROUPS  # groups of feature points ("down", "mid", "up") or single points

    def __post_init__(self) -> None:
        if self.output < 0 or self.feature < 0:
            raise UserError(f"distillation weights must not be negative (output {self.output}, "
                            f"feature {self.feature})")
        bad = [p for p in self.points if p not in POINT_GROUPS and not _is_point(p)]
        if bad:
            raise UserError(f"unknown feature point {bad[0]!r}; use {', '.join(POINT_GROUPS)}, down<i>, up<i> or mid")


def _is_point(name: str) -> bool:
    return name == "mid" or name.startswith(("down", "up")) and name.lstrip("downup").isdigit()


def feature_points(config: ArchConfig) -> dict[str, tuple[str, int]]:
    """Every stage output of a UNet: point name -> (module path, spatial size)."""
    out: dict[str, tuple[str, int]] = {}
    n = len(config.levels)
    for i, level in enumerate(config.levels):
        kind = "attentions" if level.transformer_depth else "resnets"
        out[f"down{i}"] = (f"down_blocks.{i}.{kind}.{level.down_res - 1}", config.resolution(i))
        out[f"up{i}"] = (f"up_blocks.{n - 1 - i}.{kind}.{level.up_res - 1}", config.resolution(i))
    if config.mid.num_res:
        out["mid"] = (f"mid_block.resnets.{config.mid.num_res - 1}", config.resolution(n - 1))
    return out


def shared_points(student: ArchConfig, teacher: ArchConfig, chosen: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """The chosen feature points both networks have at the same spatial size: name -> (student path,
    teacher path)."""
    s_points, t_points = feature_points(student), feature_points(teacher)
    out = {}
    for name, (path, size) in s_points.items():
        group = "mid" if name == "mid" else name.rstrip("0123456789")
        if (name in chosen or group in chosen) and name in t_points and t_points[name][1] == size:
            out[name] = (path, t_points[name][0])
    return out


class _Capture:
    """Forward hooks that keep the outputs of some modules of a network, by point name."""

    def __init__(self, net: nn.Module, paths: dict[str, str]):
        self.values: dict[str, torch.Tensor] = {}
        modules = dict(net.named_modules())
        self.handles = [modules[path].register_forward_hook(self._keep(name)) for name, path in paths.items()]

    def _keep(self, name: str):
        def hook(_module, _inputs, output):
            self.values[name] = output
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.values.clear()


class Distiller:
    """The training loss of a distilled fine-tune: `train(..., loss_fn=distiller)`; use as a context manager
    (the feature hooks are removed on exit).

    Args:
        teacher: the trained teacher ProxyModel (frozen; on the student's device).
        student: the candidate ProxyModel being trained.
        weights: term weights and feature points.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, weights: DistillWeights = DistillWeights()):
        self.teacher, self.weights = teacher, weights
        self.points = shared_points(student.config, teacher.config, weights.points) if weights.feature else {}
        self._student = _Capture(student.unet, {n: s for n, (s, _) in self.points.items()})
        self._teacher = _Capture(teacher.unet, {n: t for n, (_, t) in self.points.items()})

    def __enter__(self) -> "Distiller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the feature hooks from both networks."""
        self._student.remove()
        self._teacher.remove()

    def __call__(self, model: nn.Module, scheduler, clean: torch.Tensor, ids: torch.Tensor, noise: torch.Tensor,
                 t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective to minimise, denoising loss to record) on one batch."""
        noisy = scheduler.add_noise(clean, noise, t)  # (B, C, S, S)
        with torch.no_grad():
            teacher_pred = self.teacher(noisy, t, ids).float()
        pred = model(noisy, t, ids).float()
        denoise = F.mse_loss(pred, target(scheduler, clean, noise, t).float())
        objective = denoise
        if self.weights.output:
            objective = objective + self.weights.output * F.mse_loss(pred, teacher_pred)
        if self.points:
            feature = sum(_common_mse(self._student.values[n], self._teacher.values[n]) for n in self.points)
            objective = objective + self.weights.feature * feature
        return objective, denoise


def _common_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared distance over the leading channels both feature maps have (B, C, H, W)."""
    c = min(student.shape[1], teacher.shape[1])
    return F.mse_loss(student[:, :c].float(), teacher[:, :c].detach().float())


@torch.no_grad()
def teacher_distance(model: nn.Module, teacher: nn.Module, images: torch.Tensor, ids: torch.Tensor, scheduler,
                     batch_size: int, n_timesteps: int = GRID_TIMESTEPS) -> float:
    """Mean squared distance between the candidate's and the teacher's predictions on held-out images, over
    the fixed timestep grid and fixed noise of `diffusion.heldout_loss_grid` (the same problems for every
    trial). Both models should be in eval mode."""
    total, count = 0.0, 0
    for noise, t in grid_problems(images, n_timesteps):
        noisy = scheduler.add_noise(images, noise, t)  # (N, C, S, S)
        for i in range(0, images.shape[0], batch_size):
            part = slice(i, i + batch_size)
            diff = model(noisy[part], t[part], ids[part]).float() - teacher(noisy[part], t[part], ids[part]).float()
            total += diff.pow(2).mean().item() * diff.shape[0]
            count += diff.shape[0]
    return total / count
