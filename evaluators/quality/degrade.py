"""Controlled image degradations for checking that a feature space notices damage."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def add_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Gaussian pixel noise of standard deviation `sigma` in units of the [0, 1] range, clamped.

    Args:
        images: (N, 3, H, W) in [-1, 1].
        sigma: noise level (0.1 = a tenth of the full pixel range).
        seed: noise seed.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g, dtype=torch.float32)
    return (images + 2 * sigma * noise.to(images.device)).clamp(-1, 1)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with `sigma` in pixels (kernel radius ceil(3 sigma), reflected borders)."""
    if sigma <= 0:
        return images.clone()
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
