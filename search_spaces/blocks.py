"""Decomposition of an architecture into blocks: the unit of the latency table and of the UNet itself.

`arch_blocks(config)` lists every block of the UNet in forward order with its module path; the UNet is
assembled from exactly these blocks with `build_block`, so a per-block latency table or cost sum covers
every module of the model (tested).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from search_spaces import modules as m
from search_spaces.config import ArchConfig

UNET_KINDS = ("conv_in", "time_embed", "resnet", "transformer", "downsample", "upsample", "conv_out")
PIPELINE_KINDS = ("text_encoder", "vae_decoder")  # the networks around the UNet (search_spaces/pipeline.py)
BLOCK_KINDS = UNET_KINDS + PIPELINE_KINDS


@dataclass(frozen=True)
class BlockSpec:
    """Everything about one block that changes its parameters, MACs or latency (fields unused by a kind are 0)."""

    kind: str  # one of BLOCK_KINDS
    in_ch: int  # input channels (for time_embed: sinusoid width)
    out_ch: int  # output channels (for time_embed: embedding width)
    res: int = 0  # spatial size of the input feature map
    temb_ch: int = 0  # timestep-embedding width (resnet)
    groups: int = 0  # GroupNorm groups
    separable: bool = False  # separable 3x3 convs (resnet)
    depth: int = 0  # transformer layers (transformer)
    attention: str = "none"  # attention kind (transformer)
    heads: int = 0  # attention heads (transformer)
    attn_activation: str = "none"  # softmax | relu (transformer)
    shared_kv: bool = False  # shared key/value projection (transformer)
    ff_mult: int = 0  # GLU expansion (transformer)
    ff_activation: str = "none"  # gelu | swish (transformer)
    context_len: int = 0  # text tokens (transformer with cross-attention)
    context_dim: int = 0  # text width (transformer with cross-attention)

    @property
    def key(self) -> str:
        """A canonical, human-readable string key (stable across versions: field=value pairs)."""
        return "|".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in asdict(self).items())

    @classmethod
    def from_key(cls, key: str) -> "BlockSpec":
        values = dict(part.split("=", 1) for part in key.split("|"))
        kwargs = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = values[name]
            kwargs[name] = bool(int(raw)) if f.type == "bool" else int(raw) if f.type == "int" else raw
        return cls(**kwargs)


def build_block(spec: BlockSpec) -> nn.Module:
    """The PyTorch module of one block."""
    if spec.kind == "conv_in":
        return nn.Conv2d(spec.in_ch, spec.out_ch, 3, padding=1)
    if spec.kind == "time_embed":
        return m.TimeEmbedding(spec.in_ch, spec.out_ch)
    if spec.kind == "resnet":
        return m.ResnetBlock(spec.in_ch, spec.out_ch, spec.temb_ch, spec.groups, spec.separable)
    if spec.kind == "transformer":
        return m.Transformer2D(
            spec.in_ch, spec.depth, spec.groups, heads=spec.heads, attention=spec.attention,
            context_dim=spec.context_dim, activation=spec.attn_activation, shared_kv=spec.shared_kv,
            ff_mult=spec.ff_mult, ff_activation=spec.ff_activation)
    if spec.kind == "downsample":
        return m.Downsample(spec.in_ch)
    if spec.kind == "upsample":
        return m.Upsample(spec.in_ch)
    if spec.kind == "conv_out":
        return m.OutHead(spec.in_ch, spec.out_ch, spec.groups)
    if spec.kind == "text_encoder":
        from search_spaces.pipeline_modules import ClipTextTower

        return ClipTextTower(spec.in_ch, spec.depth, spec.heads, spec.context_len, spec.ff_mult)
    if spec.kind == "vae_decoder":
        from search_spaces.pipeline_modules import VaeDecoder

        return VaeDecoder(spec.in_ch, spec.out_ch, spec.depth, spec.groups)
    raise ValueError(f"unknown block kind {spec.kind!r}; known: {', '.join(BLOCK_KINDS)}")


def block_inputs(spec: BlockSpec, batch: int = 1, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """Random example inputs of one block at its deployment shape (for timing and export)."""
    kw = dict(dtype=dtype, device=device)
    if spec.kind == "time_embed":
        return (torch.randint(0, 1000, (batch,), device=device).float(),)
    if spec.kind == "text_encoder":
        from search_spaces.pipeline_modules import CLIP_VOCAB

        return (torch.randint(0, CLIP_VOCAB, (batch, spec.context_len), device=device),)
    x = torch.randn(batch, spec.in_ch, spec.res, spec.res, **kw)
    if spec.kind == "resnet":
        return x, torch.randn(batch, spec.temb_ch, **kw)
    if spec.kind == "transformer":
        n_ctx = spec.context_len if spec.context_len else 1
        return x, torch.randn(batch, n_ctx, max(spec.context_dim, 1), **kw)
    return (x,)


def _transformer_spec(config: ArchConfig, ch: int, res: int, depth: int, attention: str) -> BlockSpec:
    cross = attention in ("cross", "self_cross")
    return BlockSpec(
        kind="transformer", in_ch=ch, out_ch=ch, res=res, groups=config.norm_groups, depth=depth,
        attention=attention, heads=config.heads_for(ch), attn_activation=config.attn_activation,
        shared_kv=config.shared_kv, ff_mult=config.ff_mult, ff_activation=config.ff_activation,
        context_len=config.context_len if cross else 0, context_dim=config.context_dim if cross else 0)


def _resnet_spec(config: ArchConfig, in_ch: int, out_ch: int, res: int, separable: bool) -> BlockSpec:
    return BlockSpec(kind="resnet", in_ch=in_ch, out_ch=out_ch, res=res, temb_ch=config.time_embed_dim,
                     groups=config.norm_groups, separable=separable)


def arch_blocks(config: ArchConfig) -> list[tuple[str, BlockSpec]]:
    """Every block of the UNet in forward order, as (module path, spec).

    The skip bookkeeping here is the single source of truth for channel counts; `UNet` is built from it.
    Down level i pushes one skip per ResNet block plus one for its input (conv_in's output at level 0,
    the previous level's downsampler otherwise); up level i concatenates one skip per ResNet block
    while skips of its level remain (diffusers' layout when up_res == down_res + 1).
    """
    c0 = config.levels[0].channels
    blocks: list[tuple[str, BlockSpec]] = [
        ("conv_in", BlockSpec("conv_in", config.latent_channels, c0, res=config.latent_size)),
        ("time_embedding", BlockSpec("time_embed", c0, config.time_embed_dim)),
    ]
    ch = c0
    skips: list[list[int]] = []  # per level: channels of the skips it pushed
    level_input = c0
    for i, level in enumerate(config.levels):
        res = config.resolution(i)
        pushed = [level_input]
        for j in range(level.down_res):
            blocks.append((f"down_blocks.{i}.resnets.{j}", _resnet_spec(config, ch, level.channels, res, level.separable)))
            ch = level.channels
            if level.transformer_depth:
                blocks.append((f"down_blocks.{i}.attentions.{j}",
                               _transformer_spec(config, ch, res, level.transformer_depth, level.attention)))
            pushed.append(ch)
        skips.append(pushed)
        if i < len(config.levels) - 1:
            blocks.append((f"down_blocks.{i}.downsample", BlockSpec("downsample", ch, ch, res=res)))
            level_input = ch
    mid = config.mid
    res = config.resolution(len(config.levels) - 1)
    for j in range(mid.num_res):
        if j > 0 and mid.transformer_depth:
            blocks.append((f"mid_block.attentions.{j - 1}",
                           _transformer_spec(config, ch, res, mid.transformer_depth, mid.attention)))
        blocks.append((f"mid_block.resnets.{j}", _resnet_spec(config, ch, ch, res, mid.separable)))
    n = len(config.levels)
    for u, i in enumerate(reversed(range(n))):
        level, res, pushed = config.levels[i], config.resolution(i), skips[i]
        for j in range(level.up_res):
            skip_ch = pushed[-1 - j] if j < len(pushed) else 0
            blocks.append((f"up_blocks.{u}.resnets.{j}",
                           _resnet_spec(config, ch + skip_ch, level.channels, res, level.separable)))
            ch = level.channels
            if level.transformer_depth:
                blocks.append((f"up_blocks.{u}.attentions.{j}",
                               _transformer_spec(config, ch, res, level.transformer_depth, level.attention)))
        if i > 0:
            blocks.append((f"up_blocks.{u}.upsample", BlockSpec("upsample", ch, ch, res=res)))
    blocks.append(("out", BlockSpec("conv_out", ch, config.latent_channels, res=config.latent_size,
                                    groups=config.norm_groups)))
    return blocks


def part_of(path: str, n_levels: int) -> str:
    """Which part of the UNet a block path belongs to."""
    head, _, rest = path.partition(".")
    if head == "down_blocks":
        return f"level{rest.split('.')[0]}"
    if head == "up_blocks":
        return f"level{n_levels - 1 - int(rest.split('.')[0])}"
    if head == "mid_block":
        return "mid"
    return "stem"
