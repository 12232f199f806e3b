"""The text-conditioned UNet built from any valid `ArchConfig`."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from search_spaces.blocks import arch_blocks, build_block
from search_spaces.config import ArchConfig
from search_spaces.meta_init import no_init_on_meta


def _place(root: nn.Module, path: str, module: nn.Module) -> None:
    """Attach `module` at a dotted path, creating ModuleLists (numeric parts) and containers on the way."""
    parts = path.split(".")
    parent = root
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        make = (lambda: module) if last else (nn.ModuleList if parts[k + 1].isdigit() else nn.Module)
        if part.isdigit():
            if int(part) == len(parent):
                parent.append(make())
            parent = parent[int(part)]
        else:
            if not hasattr(parent, part):
                parent.add_module(part, make())
            parent = getattr(parent, part)


class UNet(nn.Module):
    """UNet2DConditionModel-style network: (B, Cl, S, S), timesteps, (B, L, D) text -> (B, Cl, S, S)."""

    def __init__(self, config: ArchConfig):
        super().__init__()
        config.validate()
        self.config = config
        for path, spec in arch_blocks(config):
            _place(self, path, build_block(spec))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        cfg, ctx = self.config, encoder_hidden_states
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(sample.shape[0]) if t.ndim == 0 else t  # (B,)
        temb = self.time_embedding(t, dtype=sample.dtype)  # (B, T)
        h = self.conv_in(sample)  # (B, C0, S, S)
        skips = [h]
        n = len(cfg.levels)
        for i, level in enumerate(cfg.levels):
            block = self.down_blocks[i]
            for j in range(level.down_res):
                h = block.resnets[j](h, temb)
                if level.transformer_depth:
                    h = block.attentions[j](h, ctx)
                skips.append(h)
            if i < n - 1:
                h = block.downsample(h)  # (B, Ci, S_i/2, S_i/2)
                skips.append(h)
        if cfg.mid.num_res:
            mid = self.mid_block
            h = mid.resnets[0](h, temb)
            for j in range(1, cfg.mid.num_res):
                if cfg.mid.transformer_depth:
                    h = mid.attentions[j - 1](h, ctx)
                h = mid.resnets[j](h, temb)
        for u, i in enumerate(reversed(range(n))):
            level, block = cfg.levels[i], self.up_blocks[u]
            k = level.down_res + 1
            level_skips, skips = skips[-k:], skips[:-k]
            for j in range(level.up_res):
                if j < k:
                    h = torch.cat([h, level_skips[-1 - j]], dim=1)  # (B, C + Cskip, S_i, S_i)
                h = block.resnets[j](h, temb)
                if level.transformer_depth:
                    h = block.attentions[j](h, ctx)
            if i > 0:
                h = block.upsample(h)
        return self.out(h)  # (B, Cl, S, S)


def build_unet(config: ArchConfig, device: str | torch.device | None = None) -> UNet:
    """Build the UNet on `device` (None: torch's current default device, so an enclosing `torch.device(...)`
    context applies); `device="meta"` builds it without allocating or initialising weights (for counting)."""
    if device is None:
        return UNet(config)
    with torch.device(device), no_init_on_meta() if torch.device(device).type == "meta" else nullcontext():
        return UNet(config)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
