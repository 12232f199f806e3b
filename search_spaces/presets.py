"""Named architectures: SD-1.5, BK-SDM-Tiny and the MobileDiffusion layout."""

from __future__ import annotations

import functools

from search_spaces.config import ArchConfig, LevelConfig, MidConfig
from search_spaces.registry import Registry

PRESETS: Registry[ArchConfig] = Registry("preset")


def get_preset(name: str) -> ArchConfig:
    """The preset config `name` (raises UnknownNameError listing the known presets)."""
    config = PRESETS.create(name)
    config.validate()
    return config


@functools.cache
def _preset_ids() -> dict[str, str]:
    return {get_preset(name).arch_id: name for name in PRESETS.names()}


def preset_label(config: ArchConfig) -> str:
    """The name of the preset `config` is ("" when it is none); the presets are built once per process."""
    return _preset_ids().get(config.arch_id, "")


@PRESETS.register("sd15")
def sd15() -> ArchConfig:
    """Stable Diffusion 1.5's UNet (859,520,964 parameters), level by level as in diffusers."""
    return ArchConfig(
        levels=(
            LevelConfig(320, down_res=2, up_res=3, transformer_depth=1, attention="self_cross"),
            LevelConfig(640, down_res=2, up_res=3, transformer_depth=1, attention="self_cross"),
            LevelConfig(1280, down_res=2, up_res=3, transformer_depth=1, attention="self_cross"),
            LevelConfig(1280, down_res=2, up_res=3, transformer_depth=0, attention="none"),
        ),
        mid=MidConfig(num_res=2, transformer_depth=1, attention="self_cross"),
    )


@PRESETS.register("bk_sdm_tiny")
def bk_sdm_tiny() -> ArchConfig:
    """BK-SDM-Tiny (Nota AI): one ResNet+attention per down level, 8x8 level and mid block removed."""
    return ArchConfig(
        levels=(
            LevelConfig(320, down_res=1, up_res=2, transformer_depth=1, attention="self_cross"),
            LevelConfig(640, down_res=1, up_res=2, transformer_depth=1, attention="self_cross"),
            LevelConfig(1280, down_res=1, up_res=2, transformer_depth=1, attention="self_cross"),
        ),
        mid=MidConfig(num_res=0, transformer_depth=0, attention="none"),
    )


@PRESETS.register("mobilediffusion")
def mobilediffusion() -> ArchConfig:
    """The MobileDiffusion layout (arXiv 2311.16567) as far as the paper describes it.

    No transformer at 64x64; cross-attention only at 32x32; several full (self+cross) transformers at
    16x16 and in the bottleneck; ReLU attention, shared K/V, Swish GLU, FFN expansion trimmed 4 -> 3
    (the paper's 8 -> 6 counts the doubled GLU projection), separable convs in the deep levels and 12
    ResNet blocks instead of SD's 22. The paper's split of the 16x16 level into cross-only outer and
    full inner transformers is approximated by full transformers across that level.
    """
    return ArchConfig(
        levels=(
            LevelConfig(320, down_res=1, up_res=2, transformer_depth=0, attention="none"),
            LevelConfig(640, down_res=1, up_res=2, transformer_depth=1, attention="cross"),
            LevelConfig(1024, down_res=1, up_res=2, transformer_depth=3, attention="self_cross", separable=True),
        ),
        mid=MidConfig(num_res=3, transformer_depth=4, attention="self_cross", separable=True),
        attn_activation="relu",
        shared_kv=True,
        ff_activation="swish",
        ff_mult=3,
        num_heads=0,
        head_dim=64,
    )
