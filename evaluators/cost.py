"""The cost model: exact parameters, MACs (fvcore's one-per-multiply-add convention) and activation memory.

Two MAC counts that agree (tested within 1% on every preset and on random samples):
- `fvcore_cost` traces the real model with fvcore, with a handle for `aten::scaled_dot_product_attention`
  and a whitelist of elementwise ops it may leave uncounted; any other unsupported op raises.
- `analytic_cost` sums closed-form counts per block spec, in fvcore's conventions. It needs no forward
  pass (a full-scale forward takes seconds on 2 cores), so the search and `nas cost` use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import prod

import torch

from evaluators import pipeline_cost as pc
from search_spaces.blocks import BlockSpec, arch_blocks, part_of
from search_spaces.config import ArchConfig
from search_spaces.unet import build_unet

# Ops fvcore does not count and we deliberately count as zero MACs (elementwise, no multiply-add).
ZERO_COST_OPS = frozenset({
    "aten::add", "aten::add_", "aten::mul", "aten::div", "aten::sub", "aten::silu", "aten::gelu", "aten::relu",
    "aten::exp", "aten::cos", "aten::sin", "aten::pow", "aten::softmax", "aten::sigmoid", "aten::rsub",
    "aten::embedding", "aten::unflatten",  # the text encoder's token lookup and head split
})
ATTENTION_OPS = ("scaled_dot_product_attention", "matmul", "bmm")  # in this model only attention uses these


class UncountedOpError(RuntimeError):
    """fvcore met an op that costs MACs but has no handle: the count would silently be low."""


@dataclass(frozen=True)
class LevelCost:
    """Cost of one part of the UNet ("stem", "level0".., "mid")."""

    part: str  # stem (conv_in, time embedding, output head), level<i> (down+up path of level i), or mid
    params: int  # parameters
    macs: int  # multiply-adds including attention score/value products
    macs_no_attention: int  # multiply-adds without the attention score/value products


@dataclass(frozen=True)
class CostReport:
    """Full-scale cost of an architecture (batch 1, one denoising step)."""

    arch_id: str  # ArchConfig.arch_id
    params: int  # exact parameter count
    macs: int  # total MACs, fvcore convention, attention products included
    macs_no_attention: int  # total MACs without attention score/value products (the published convention)
    activation_bytes: int  # estimated peak activation memory of one fp32 forward at batch 1
    per_level: tuple[LevelCost, ...]  # breakdown
    method: str  # "analytic" or "fvcore"

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(c_in: int, c_out: int, k: int, hw: int, groups: int = 1) -> int:
    return c_out * (c_in // groups) * k * k * hw


def block_macs(spec: BlockSpec, batch: int = 1) -> tuple[int, int]:
    """(MACs, attention-product MACs) of one block, fvcore's conventions (norms: 5 per element)."""
    s = spec
    hw = s.res * s.res
    if s.kind == "conv_in":
        return batch * _conv(s.in_ch, s.out_ch, 3, hw), 0
    if s.kind == "time_embed":
        return batch * (s.in_ch * s.out_ch + s.out_ch * s.out_ch), 0
    if s.kind == "downsample":
        return batch * _conv(s.in_ch, s.out_ch, 3, hw // 4), 0
    if s.kind == "upsample":
        return batch * (s.in_ch * hw * 4 + _conv(s.in_ch, s.out_ch, 3, hw * 4)), 0
    if s.kind == "conv_out":
        return batch * (5 * s.in_ch * hw + _conv(s.in_ch, s.out_ch, 3, hw)), 0
    if s.kind == "resnet":
        def conv3(ci: int, co: int) -> int:
            return _conv(ci, ci, 3, hw, groups=ci) + _conv(ci, co, 1, hw) if s.separable else _conv(ci, co, 3, hw)
        macs = 5 * s.in_ch * hw + conv3(s.in_ch, s.out_ch) + s.temb_ch * s.out_ch + 5 * s.out_ch * hw
        macs += conv3(s.out_ch, s.out_ch) + (_conv(s.in_ch, s.out_ch, 1, hw) if s.in_ch != s.out_ch else 0)
        return batch * macs, 0
    if s.kind == "transformer":
        c, n = s.in_ch, hw
        kv = 1 if s.shared_kv else 2
        macs = 5 * c * n + 2 * c * c * n  # group norm, proj_in, proj_out
        attn = 0
        layer = 5 * c * n + 2 * c * c * n * s.ff_mult + s.ff_mult * c * c * n  # norm3 + GLU feed-forward
        if s.attention in ("self", "self_cross"):
            layer += 5 * c * n + 2 * c * c * n + kv * c * c * n
            attn += 2 * n * n * c
        if s.attention in ("cross", "self_cross"):
            layer += 5 * c * n + 2 * c * c * n + kv * s.context_dim * c * s.context_len
            attn += 2 * n * s.context_len * c
        return batch * (macs + s.depth * (layer + attn)), batch * s.depth * attn
    if s.kind in ("text_encoder", "vae_decoder"):
        macs, attn = pc.text_encoder_macs(s) if s.kind == "text_encoder" else pc.decoder_macs(s)
        return batch * macs, batch * attn
    raise ValueError(f"unknown block kind {s.kind!r}")


def _conv_params(ci: int, co: int, k: int) -> int:
    return ci * co * k * k + co


def _conv3_params(ci: int, co: int, separable: bool) -> int:
    return _conv_params(1, ci, 3) + _conv_params(ci, co, 1) if separable else _conv_params(ci, co, 3)


def block_params(s: BlockSpec) -> int:
    """Parameters of `build_block(s)`, in closed form (equal to the built module's, tested): sizes kits,
    measurement chunks and cost reports without building modules."""
    if s.kind == "conv_in":
        return _conv_params(s.in_ch, s.out_ch, 3)
    if s.kind == "time_embed":
        return s.in_ch * s.out_ch + s.out_ch + s.out_ch * s.out_ch + s.out_ch
    if s.kind in ("downsample", "upsample"):
        return _conv_params(s.in_ch, s.out_ch, 3)
    if s.kind == "conv_out":
        return 2 * s.in_ch + _conv_params(s.in_ch, s.out_ch, 3)
    if s.kind == "resnet":
        shortcut = _conv_params(s.in_ch, s.out_ch, 1) if s.in_ch != s.out_ch else 0
        return (2 * s.in_ch + _conv3_params(s.in_ch, s.out_ch, s.separable) + s.temb_ch * s.out_ch + s.out_ch
                + 2 * s.out_ch + _conv3_params(s.out_ch, s.out_ch, s.separable) + shortcut)
    if s.kind == "transformer":
        c, inner = s.in_ch, s.in_ch * s.ff_mult
        kv = 1 if s.shared_kv else 2
        layer = 2 * c + 2 * c * inner + 2 * inner + inner * c + c  # norm3 + GLU feed-forward
        if s.attention in ("self", "self_cross"):
            layer += 2 * c + c * c + kv * c * c + c * c + c
        if s.attention in ("cross", "self_cross"):
            layer += 2 * c + c * c + kv * s.context_dim * c + c * c + c
        return 2 * c + 2 * (c * c + c) + s.depth * layer
    if s.kind == "text_encoder":
        return pc.text_encoder_params(s)
    if s.kind == "vae_decoder":
        return pc.decoder_params(s)
    raise ValueError(f"unknown block kind {s.kind!r}")


def activation_bytes(config: ArchConfig, bytes_per_el: int = 4) -> int:
    """Upper-bound estimate of peak activations of one forward at batch 1.

    Every skip tensor held at once (as at the bottleneck) plus the largest working set of one block
    (`block_working_elements`; attention scores materialised, as ReLU attention and the math SDPA backend do).
    """
    skips = config.levels[0].channels * config.latent_size ** 2
    for i, level in enumerate(config.levels):
        skips += level.down_res * level.channels * config.resolution(i) ** 2
        if i < len(config.levels) - 1:
            skips += level.channels * config.resolution(i + 1) ** 2
    working = max(block_working_elements(s) for _, s in arch_blocks(config))
    return (skips + working) * bytes_per_el


def block_working_elements(s: BlockSpec) -> int:
    """Elements one forward of a block holds at once at batch 1: its input, output and transients (a ResNet
    block's hidden map; a transformer's GLU inner activations and one layer's attention scores)."""
    if s.kind == "time_embed":
        return 0
    if s.kind == "text_encoder":
        return pc.text_encoder_working_elements(s)
    if s.kind == "vae_decoder":
        return pc.decoder_working_elements(s)
    hw = s.res * s.res
    out_hw = hw // 4 if s.kind == "downsample" else hw * 4 if s.kind == "upsample" else hw
    transient = s.out_ch * hw if s.kind == "resnet" else 0
    if s.kind == "transformer":
        keys = max(hw if s.attention in ("self", "self_cross") else 0, s.context_len)
        transient = 3 * s.ff_mult * s.in_ch * hw + s.heads * hw * keys
    return s.in_ch * hw + s.out_ch * out_hw + transient


def _report(config: ArchConfig, block_costs: dict[str, tuple[int, int]], method: str) -> CostReport:
    params = {path: block_params(spec) for path, spec in arch_blocks(config)}
    n = len(config.levels)
    parts: dict[str, list[int]] = {}
    for path, (macs, attn) in block_costs.items():
        acc = parts.setdefault(part_of(path, n), [0, 0, 0])
        acc[0] += params[path]
        acc[1] += macs
        acc[2] += macs - attn
    order = ["stem"] + [f"level{i}" for i in range(n)] + ["mid"]
    per_level = tuple(LevelCost(p, *parts[p]) for p in order if p in parts)
    return CostReport(
        arch_id=config.arch_id, params=sum(params.values()),
        macs=sum(lv.macs for lv in per_level), macs_no_attention=sum(lv.macs_no_attention for lv in per_level),
        activation_bytes=activation_bytes(config), per_level=per_level, method=method)


def analytic_cost(config: ArchConfig) -> CostReport:
    """Closed-form cost (fast: no forward pass, no module built)."""
    return _report(config, {path: block_macs(spec) for path, spec in arch_blocks(config)}, "analytic")


def _sdpa_handle(inputs, outputs) -> int:
    q, k, v = (inp.type().sizes() for inp in inputs[:3])
    return prod(q[:-1]) * k[-2] * (q[-1] + v[-1])  # B*H*Lq*Lk*(D + Dv)


def _counted(analysis) -> dict[str, dict[str, int]]:
    """fvcore's counts by module and operator, after checking that no op that costs MACs went uncounted."""
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_module_op = analysis.by_module_and_operator()
    uncounted = sorted(set(analysis.unsupported_ops()) - ZERO_COST_OPS)
    if uncounted:
        raise UncountedOpError(f"fvcore has no handle for {', '.join(uncounted)}: MACs would be undercounted")
    return by_module_op


def _zeroed(module: torch.nn.Module) -> torch.nn.Module:
    module = module.to_empty(device="cpu").eval()
    for p in module.parameters():  # values do not change MACs; zeros avoid NaN/denormal slow paths
        torch.nn.init.zeros_(p)
    return module


def fvcore_block_macs(spec: BlockSpec) -> tuple[int, int]:
    """(MACs, attention-product MACs) of one block counted by fvcore on its real module at batch 1 (the
    text encoder and decoder in `nas cost --fvcore`; a full-size SD decoder forward takes tens of seconds)."""
    from fvcore.nn import FlopCountAnalysis

    from search_spaces.blocks import block_inputs, build_block
    from search_spaces.meta_init import no_init_on_meta

    with torch.device("meta"), no_init_on_meta():
        model = build_block(spec)
    model = _zeroed(model)
    analysis = FlopCountAnalysis(model, block_inputs(spec)).set_op_handle("aten::scaled_dot_product_attention",
                                                                        _sdpa_handle)
    ops = _counted(analysis)[""]
    return sum(ops.values()), sum(v for k, v in ops.items() if k in ATTENTION_OPS)


def fvcore_cost(config: ArchConfig) -> CostReport:
    """Cost counted by fvcore on a real forward pass at full scale (seconds for SD-sized models)."""
    from fvcore.nn import FlopCountAnalysis

    model = _zeroed(build_unet(config, device="meta"))
    inputs = (torch.zeros(1, config.latent_channels, config.latent_size, config.latent_size), torch.tensor([1.0]),
              torch.zeros(1, config.context_len, config.context_dim))
    analysis = FlopCountAnalysis(model, inputs).set_op_handle("aten::scaled_dot_product_attention", _sdpa_handle)
    by_module_op = _counted(analysis)
    costs = {}
    for path, _ in arch_blocks(config):
        ops = by_module_op.get(path, {})
        costs[path] = (sum(ops.values()), sum(v for k, v in ops.items() if k in ATTENTION_OPS))
    return _report(config, costs, "fvcore")
