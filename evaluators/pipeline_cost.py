"""Closed-form parameters, MACs and working memory of the text encoder and VAE decoder blocks, and the cost of
one generated image (`image_cost`).

The conventions are `evaluators.cost`'s (fvcore's: one per multiply-add, norms 5 per element, nearest
upsampling 1 per output element, attention products as scaled_dot_product_attention's B*H*Lq*Lk*(D+Dv)); the
counts equal fvcore's on the real modules and the parameters equal the built modules' (tested).
Module layouts: open_clip's `TextTransformer` and diffusers' AutoencoderKL `Decoder` (see
`search_spaces/pipeline_modules.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from search_spaces.blocks import BlockSpec
from search_spaces.config import ArchConfig
from search_spaces.pipeline import SamplingConfig, pipeline_blocks
from search_spaces.pipeline_modules import CLIP_VOCAB, DECODER_MULTS


def text_encoder_macs(s: BlockSpec) -> tuple[int, int]:
    """(MACs, attention-product MACs) of one text-encoder forward at batch 1."""
    d, n, r = s.in_ch, s.context_len, s.ff_mult
    attn = 2 * n * n * d
    layer = 2 * 5 * d * n + 3 * d * d * n + d * d * n + 2 * r * d * d * n + attn  # 2 LNs, qkv, out, MLP
    return s.depth * layer + 5 * d * n, s.depth * attn


def text_encoder_params(s: BlockSpec) -> int:
    d, r = s.in_ch, s.ff_mult
    layer = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * r * d + r * d) + (r * d * d + d)
    return CLIP_VOCAB * d + s.context_len * d + s.depth * layer + 2 * d


def _decoder_stages(s: BlockSpec) -> list[tuple[str, int, int, int]]:
    """The decoder as (op, in channels, out channels, spatial size) in forward order.

    ops: conv1 / conv3 (1x1 / 3x3 conv at the size), resnet (diffusers ResnetBlock2D without time embedding),
    attention (one-head self-attention with its group norm), upsample (nearest 2x, then a 3x3 conv at 2x size),
    head (group norm, SiLU, 3x3 conv to RGB)."""
    widths = [s.out_ch * m for m in reversed(DECODER_MULTS)]
    res = s.res
    stages = [("conv1", s.in_ch, s.in_ch, res), ("conv3", s.in_ch, widths[0], res),
              ("resnet", widths[0], widths[0], res), ("attention", widths[0], widths[0], res),
              ("resnet", widths[0], widths[0], res)]
    ch = widths[0]
    for i, out in enumerate(widths):
        for j in range(s.depth + 1):
            stages.append(("resnet", ch, out, res))
            ch = out
        if i < len(widths) - 1:
            stages.append(("upsample", ch, ch, res))
            res *= 2
    stages.append(("head", ch, 3, res))
    return stages


def _stage_macs(op: str, ci: int, co: int, res: int) -> tuple[int, int]:
    hw = res * res
    if op == "conv1":
        return ci * co * hw, 0
    if op == "conv3":
        return 9 * ci * co * hw, 0
    if op == "resnet":
        return 5 * ci * hw + 9 * ci * co * hw + 5 * co * hw + 9 * co * co * hw + (ci * co * hw if ci != co else 0), 0
    if op == "attention":
        attn = 2 * hw * hw * ci
        return 5 * ci * hw + 4 * ci * ci * hw + attn, attn
    if op == "upsample":
        return 4 * ci * hw + 9 * ci * co * 4 * hw, 0
    return 5 * ci * hw + 9 * ci * co * hw, 0  # head


def _stage_params(op: str, ci: int, co: int) -> int:
    if op == "conv1":
        return ci * co + co
    if op in ("conv3", "upsample"):
        return 9 * ci * co + co
    if op == "resnet":
        return 2 * ci + 9 * ci * co + co + 2 * co + 9 * co * co + co + (ci * co + co if ci != co else 0)
    if op == "attention":
        return 2 * ci + 4 * (ci * ci + ci)
    return 2 * ci + 9 * ci * co + co  # head


def decoder_macs(s: BlockSpec) -> tuple[int, int]:
    """(MACs, attention-product MACs) of one decode at batch 1."""
    costs = [_stage_macs(*stage) for stage in _decoder_stages(s)]
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def decoder_params(s: BlockSpec) -> int:
    return sum(_stage_params(op, ci, co) for op, ci, co, _ in _decoder_stages(s))


def decoder_working_elements(s: BlockSpec) -> int:
    """Elements held at once by the largest stage: its input, output and a ResNet's hidden map or the
    mid-block attention's score matrix."""
    def held(op: str, ci: int, co: int, res: int) -> int:
        hw = res * res
        out_hw = 4 * hw if op == "upsample" else hw
        extra = co * hw if op == "resnet" else hw * hw if op == "attention" else ci * out_hw if op == "upsample" else 0
        return ci * hw + co * out_hw + extra
    return max(held(*stage) for stage in _decoder_stages(s))


def text_encoder_working_elements(s: BlockSpec) -> int:
    d, n = s.in_ch, s.context_len
    return n + 2 * d * n + s.ff_mult * d * n + s.heads * n * n


def pipeline_moved_elements(s: BlockSpec) -> int:
    """Activation elements read and written by one forward (the roofline's memory traffic)."""
    if s.kind == "text_encoder":
        d, n = s.in_ch, s.context_len
        return s.depth * (8 * d * n + 2 * s.ff_mult * d * n + 2 * s.heads * n * n)
    total = 0
    for op, ci, co, res in _decoder_stages(s):
        hw = res * res
        out_hw = 4 * hw if op == "upsample" else hw
        total += ci * hw + co * out_hw + (2 * co * hw if op == "resnet" else 2 * hw * hw if op == "attention" else 0)
    return total


@dataclass(frozen=True)
class ImagePartCost:
    """One network of the pipeline: its cost per call and how often one image calls it."""

    part: str  # text_encoder | unet | vae_decoder
    calls: int  # evaluations per image
    params: int
    macs: int  # per call

    @property
    def image_macs(self) -> int:
        return self.calls * self.macs


@dataclass(frozen=True)
class ImageCost:
    """MACs of one generated image: text encoder + UNet calls + decoder."""

    sampling: SamplingConfig
    parts: tuple[ImagePartCost, ...]

    @property
    def macs(self) -> int:
        return sum(p.image_macs for p in self.parts)

    def to_dict(self) -> dict:
        return {"sampling": asdict(self.sampling), "unet_calls": self.sampling.unet_calls, "macs": self.macs,
                "parts": [asdict(p) | {"image_macs": p.image_macs} for p in self.parts]}


def image_cost(config: ArchConfig, sampling: SamplingConfig, unet_params: int, unet_macs: int,
               exact: bool = False) -> ImageCost:
    """The per-image cost of `config`'s UNet (its per-call params and MACs given) with `sampling`; `exact`
    counts the text encoder and decoder with fvcore on their real modules instead of in closed form.

    Raises:
        ConfigError / UnknownNameError: an invalid sampling choice, or a text encoder that does not fit the UNet.
    """
    from evaluators.cost import block_macs, block_params, fvcore_block_macs

    count = fvcore_block_macs if exact else block_macs
    (_, text), (_, decoder) = pipeline_blocks(config, sampling)
    return ImageCost(sampling, (
        ImagePartCost("text_encoder", 1, block_params(text), count(text)[0]),
        ImagePartCost("unet", sampling.unet_calls, unet_params, unet_macs),
        ImagePartCost("vae_decoder", 1, block_params(decoder), count(decoder)[0])))
