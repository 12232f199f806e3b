"""Closed-form parameter count of one block (equal to the built module's, tested): sizes kits and chunks
without building thousands of modules."""

from __future__ import annotations

from search_spaces.blocks import BlockSpec


def _conv(ci: int, co: int, k: int) -> int:
    return ci * co * k * k + co


def _conv3(ci: int, co: int, separable: bool) -> int:
    return _conv(1, ci, 3) + _conv(ci, co, 1) if separable else _conv(ci, co, 3)


def block_params(s: BlockSpec) -> int:
    """Parameters of `build_block(s)`."""
    if s.kind == "conv_in":
        return _conv(s.in_ch, s.out_ch, 3)
    if s.kind == "time_embed":
        return s.in_ch * s.out_ch + s.out_ch + s.out_ch * s.out_ch + s.out_ch
    if s.kind in ("downsample", "upsample"):
        return _conv(s.in_ch, s.out_ch, 3)
    if s.kind == "conv_out":
        return 2 * s.in_ch + _conv(s.in_ch, s.out_ch, 3)
    if s.kind == "resnet":
        shortcut = _conv(s.in_ch, s.out_ch, 1) if s.in_ch != s.out_ch else 0
        return (2 * s.in_ch + _conv3(s.in_ch, s.out_ch, s.separable) + s.temb_ch * s.out_ch + s.out_ch
                + 2 * s.out_ch + _conv3(s.out_ch, s.out_ch, s.separable) + shortcut)
    if s.kind == "transformer":
        c, inner = s.in_ch, s.in_ch * s.ff_mult
        kv = 1 if s.shared_kv else 2
        layer = 2 * c + 2 * c * inner + 2 * inner + inner * c + c  # norm3 + GLU feed-forward
        if s.attention in ("self", "self_cross"):
            layer += 2 * c + c * c + kv * c * c + c * c + c
        if s.attention in ("cross", "self_cross"):
            layer += 2 * c + c * c + kv * s.context_dim * c + c * c + c
        return 2 * c + 2 * (c * c + c) + s.depth * layer
    raise ValueError(f"unknown block kind {s.kind!r}")
