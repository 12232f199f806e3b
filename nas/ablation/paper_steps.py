"""MobileDiffusion's path from SD-1.5 (arXiv 2311.16567), one registered step per design change, in order.

Applied cumulatively to the `sd15` preset, `PAPER_PATH` ends exactly at the `mobilediffusion` preset.
"""

from __future__ import annotations

import dataclasses

from nas.ablation.step import ablation_step, not_applicable
from search_spaces.config import ArchConfig

LOW_RES_DEPTH = 3  # transformers per block at the lowest-resolution transformer level after the move
MID_DEPTH = 4  # transformers between consecutive bottleneck ResNet blocks after the move
LOW_RES_WIDTH = 1024  # narrower channels of the low-resolution levels (SD: 1280)
HEAD_DIM = 64  # channels per attention head of the narrower transformers
DEEP_FROM_RES = 16  # "deep" levels: feature maps of at most 16x16 (at a 64x64 latent)
FFN_FROM, FFN_TO = 4, 3  # GLU expansion trim (the paper's 8 -> 6 counts the doubled GLU projection)
RES_DOWN, RES_UP, RES_MID = 1, 2, 3  # ResNet blocks per level (down, up) and in the bottleneck: 22 -> 12


def _transformer_levels(config: ArchConfig) -> list[int]:
    return [i for i, level in enumerate(config.levels) if level.transformer_depth > 0]


@ablation_step("transformers_low_res", "move transformers from the highest to low resolution: none at the "
               "first level, more and narrower (head dim 64) ones at the deepest transformer level and mid")
def transformers_low_res(config: ArchConfig) -> ArchConfig:
    with_attention = _transformer_levels(config)
    if 0 not in with_attention:
        raise not_applicable("transformers_low_res", "the highest-resolution level has no transformers")
    if len(with_attention) < 2 or len(config.levels) < 3:
        raise not_applicable("transformers_low_res", "there is no lower-resolution transformer level to move to")
    target = with_attention[-1]
    levels = list(config.levels)
    levels[0] = dataclasses.replace(levels[0], transformer_depth=0, attention="none")
    levels[target] = dataclasses.replace(levels[target], transformer_depth=LOW_RES_DEPTH)
    for i in range(target, len(levels)):
        levels[i] = dataclasses.replace(levels[i], channels=min(levels[i].channels, LOW_RES_WIDTH))
    mid = config.mid
    if mid.transformer_depth > 0:
        mid = dataclasses.replace(mid, transformer_depth=MID_DEPTH)
    return config.replace(levels=tuple(levels), mid=mid, num_heads=0, head_dim=HEAD_DIM)


@ablation_step("decouple_sa_ca", "keep only cross-attention (drop self-attention) in the transformers above "
               "the lowest-resolution transformer level")
def decouple_sa_ca(config: ArchConfig) -> ArchConfig:
    with_attention = _transformer_levels(config)
    high = [i for i in with_attention[:-1] if config.levels[i].attention in ("self", "self_cross")]
    if not high:
        raise not_applicable("decouple_sa_ca", "no transformer above the lowest transformer level has "
                             "self-attention")
    levels = list(config.levels)
    for i in high:
        levels[i] = dataclasses.replace(levels[i], attention="cross")
    return config.replace(levels=tuple(levels))


@ablation_step("share_kv", "share one projection weight between attention keys and values")
def share_kv(config: ArchConfig) -> ArchConfig:
    if config.shared_kv:
        raise not_applicable("share_kv", "keys and values are already shared")
    return config.replace(shared_kv=True)


@ablation_step("swish_glu", "Swish instead of GELU as the gate of the GLU feed-forward")
def swish_glu(config: ArchConfig) -> ArchConfig:
    if config.ff_activation == "swish":
        raise not_applicable("swish_glu", "the feed-forward gate is already Swish")
    return config.replace(ff_activation="swish")


@ablation_step("relu_attention", "ReLU attention instead of softmax attention")
def relu_attention(config: ArchConfig) -> ArchConfig:
    if config.attn_activation == "relu":
        raise not_applicable("relu_attention", "attention is already ReLU attention")
    return config.replace(attn_activation="relu")


@ablation_step("trim_ffn", f"trim the feed-forward expansion {FFN_FROM} -> {FFN_TO}")
def trim_ffn(config: ArchConfig) -> ArchConfig:
    if config.ff_mult != FFN_FROM:
        raise not_applicable("trim_ffn", f"ff_mult is {config.ff_mult}; this step trims {FFN_FROM} -> {FFN_TO}")
    return config.replace(ff_mult=FFN_TO)


@ablation_step("separable_deep", f"separable (depthwise + pointwise) convs in the levels at <= "
               f"{DEEP_FROM_RES}x{DEEP_FROM_RES} (64x64 latent) and the bottleneck")
def separable_deep(config: ArchConfig) -> ArchConfig:
    limit = config.latent_size * DEEP_FROM_RES // 64
    deep = [i for i in range(len(config.levels)) if config.resolution(i) <= limit]
    todo = [i for i in deep if not config.levels[i].separable]
    mid_todo = config.mid.num_res > 0 and not config.mid.separable
    if not todo and not mid_todo:
        raise not_applicable("separable_deep", "the deep levels and the bottleneck are already separable")
    levels = list(config.levels)
    for i in todo:
        levels[i] = dataclasses.replace(levels[i], separable=True)
    mid = dataclasses.replace(config.mid, separable=True) if mid_todo else config.mid
    return config.replace(levels=tuple(levels), mid=mid)


def resnet_blocks(config: ArchConfig) -> int:
    """ResNet blocks of the whole UNet (down + up paths and bottleneck; SD-1.5: 22)."""
    return sum(level.down_res + level.up_res for level in config.levels) + config.mid.num_res


@ablation_step("fewer_resnet_blocks", f"{RES_DOWN} down / {RES_UP} up ResNet blocks per level, the "
               f"transformer-free lowest level dropped, {RES_MID} in the bottleneck (SD-1.5: 22 -> 12)")
def fewer_resnet_blocks(config: ArchConfig) -> ArchConfig:
    levels = [dataclasses.replace(level, down_res=RES_DOWN, up_res=RES_UP) for level in config.levels]
    if len(levels) >= 3 and levels[-1].transformer_depth == 0:
        levels = levels[:-1]
    mid = config.mid
    if mid.num_res >= 2:
        mid = dataclasses.replace(mid, num_res=RES_MID)
    new = config.replace(levels=tuple(levels), mid=mid)
    if resnet_blocks(new) >= resnet_blocks(config):
        raise not_applicable("fewer_resnet_blocks", f"the config has {resnet_blocks(config)} ResNet blocks; "
                             f"this step would leave {resnet_blocks(new)}")
    return new


PAPER_PATH = ("transformers_low_res", "decouple_sa_ca", "share_kv", "swish_glu", "relu_attention", "trim_ffn",
              "separable_deep", "fewer_resnet_blocks")
