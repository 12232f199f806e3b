"""Bridges to diffusers' `UNet2DConditionModel`: config translation and weight conversion."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from search_spaces.config import ArchConfig
from search_spaces.errors import UserError

# diffusers key fragment -> our key fragment (applied in order; everything else is named identically)
_KEY_MAP = (
    (r"^conv_norm_out\.", "out.norm."),
    (r"^conv_out\.", "out.conv."),
    (r"\.downsamplers\.0\.", ".downsample."),
    (r"\.upsamplers\.0\.", ".upsample."),
    (r"\.to_out\.0\.", ".to_out."),
    (r"\.ff\.net\.0\.proj\.", ".ff.proj_in."),
    (r"\.ff\.net\.2\.", ".ff.proj_out."),
)


class ConversionError(UserError, ValueError):
    """Weights that do not fit the target architecture; the message names the keys."""


def unsupported_features(config: ArchConfig) -> list[str]:
    """Reasons the config cannot be written as a diffusers UNet2DConditionModel config (empty if it can)."""
    reasons = []
    if config.attn_activation != "softmax":
        reasons.append("ReLU attention")
    if config.shared_kv:
        reasons.append("shared key/value projections")
    if config.ff_activation != "gelu":
        reasons.append("Swish GLU feed-forward")
    if config.ff_mult != 4:
        reasons.append(f"feed-forward expansion {config.ff_mult} (diffusers' UNet fixes 4)")
    for i, level in enumerate(config.levels):
        if level.separable:
            reasons.append(f"separable convolutions (level {i})")
        if level.attention not in ("none", "self_cross"):
            reasons.append(f"attention kind {level.attention!r} (level {i})")
        if level.up_res != level.down_res + 1:
            reasons.append(f"up_res != down_res + 1 (level {i})")
    mid, last = config.mid, config.levels[-1]
    if mid.num_res not in (0, 2) or (mid.num_res == 2 and mid.attention != "self_cross"):
        reasons.append("a bottleneck other than none or ResNet-transformer-ResNet")
    if mid.separable and mid.num_res:
        reasons.append("separable convolutions (bottleneck)")
    if mid.num_res and last.transformer_depth and mid.transformer_depth != last.transformer_depth:
        reasons.append("bottleneck transformer depth differs from the last level's")
    return reasons


def to_diffusers_config(config: ArchConfig) -> dict:
    """Keyword arguments of `diffusers.UNet2DConditionModel` for the same network.

    Raises:
        ConversionError: the config uses features diffusers' UNet cannot express (listed).
    """
    reasons = unsupported_features(config)
    if reasons:
        raise ConversionError("not expressible as a diffusers UNet2DConditionModel: " + "; ".join(reasons))
    levels = config.levels
    has_attn = [lv.transformer_depth > 0 for lv in levels]
    depths = [lv.transformer_depth or 1 for lv in levels]
    if config.mid.num_res and not has_attn[-1]:
        depths[-1] = config.mid.transformer_depth  # diffusers takes the mid depth from the last entry
    heads = [config.heads_for(lv.channels) for lv in levels]
    return dict(
        sample_size=config.latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)),
        mid_block_type="UNetMidBlock2DCrossAttn" if config.mid.num_res else None,
        block_out_channels=tuple(lv.channels for lv in levels),
        layers_per_block=tuple(lv.down_res for lv in levels),
        transformer_layers_per_block=tuple(depths),
        cross_attention_dim=config.context_dim,
        attention_head_dim=tuple(heads) if len(set(heads)) > 1 else heads[0],
        norm_num_groups=config.norm_groups,
    )


def convert_diffusers_state_dict(state: dict[str, torch.Tensor], config: ArchConfig) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet state dict to this project's module names and check it fits `config`.

    Raises:
        ConversionError: missing, unexpected or mis-shaped keys (the first few are named).
    """
    from search_spaces.unet import build_unet

    converted = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _KEY_MAP:
            new = re.sub(pattern, repl, new)
        converted[new] = value
    expected = build_unet(config, device="meta").state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    bad_shape = sorted(k for k in set(expected) & set(converted) if tuple(expected[k].shape) != tuple(converted[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    if problems:
        raise ConversionError("weights do not fit the architecture: " + "; ".join(problems))
    return converted


def load_diffusers_weights(path: str | Path, config: ArchConfig):
    """Our UNet for `config` with weights from a diffusers UNet checkpoint.

    `path` is a `.safetensors` file, a `.bin`/`.pt` state dict (loaded with `weights_only=True`), or a
    diffusers model folder (its `diffusion_pytorch_model.safetensors`, also under `unet/`).
    """
    from search_spaces.unet import build_unet

    path = Path(path)
    if path.is_dir():
        candidates = [path / "diffusion_pytorch_model.safetensors", path / "unet" / "diffusion_pytorch_model.safetensors"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise ConversionError(f"{path}: no diffusion_pytorch_model.safetensors in the folder or its unet/")
        path = found[0]
    if not path.is_file():
        raise ConversionError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any decoding failure means "not a weights file"
        raise ConversionError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = build_unet(config)
    model.load_state_dict(convert_diffusers_state_dict(state, config))
    return model
