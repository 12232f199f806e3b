"""The building blocks of the configurable UNet.

Names of parameters mirror diffusers' `UNet2DConditionModel` where the block is the same, so SD weights
convert with a short key map (see `search_spaces/convert.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding, cos first (SD's `flip_sin_to_cos=True`, `freq_shift=0`). (B,) -> (B, dim)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps[:, None].float() * torch.exp(exponent)[None, :]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


class TimeEmbedding(nn.Module):
    """Timestep -> sinusoid -> MLP: (B,) -> (B, embed_dim)."""

    def __init__(self, in_dim: int, embed_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.linear_1 = nn.Linear(in_dim, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, timesteps: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        emb = timestep_embedding(timesteps, self.in_dim).to(dtype)  # (B, in_dim)
        return self.linear_2(F.silu(self.linear_1(emb)))  # (B, embed_dim)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 then pointwise 1x1: (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def conv3x3(in_ch: int, out_ch: int, separable: bool) -> nn.Module:
    return SeparableConv2d(in_ch, out_ch) if separable else nn.Conv2d(in_ch, out_ch, 3, padding=1)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv, + time embedding, GroupNorm-SiLU-conv, residual: (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, groups: int, separable: bool = False):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=1e-5)
        self.conv1 = conv3x3(in_ch, out_ch, separable)
        self.time_emb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=1e-5)
        self.conv2 = conv3x3(out_ch, out_ch, separable)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, Cout, H, W)
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Multi-head attention with softmax or ReLU scores and optionally one shared K/V projection.

    ReLU attention follows Wortsman et al., "Replacing softmax with ReLU in vision transformers":
    relu(q.k / sqrt(d)) / key_length. Its two products use `torch.matmul`, which in this model is used by
    attention only, so the cost model can tell attention products apart from projections.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None, activation: str, shared_kv: bool):
        super().__init__()
        kv_dim = context_dim or dim
        self.heads = heads
        self.activation = activation
        self.to_q = nn.Linear(dim, dim, bias=False)
        if shared_kv:
            self.to_kv = nn.Linear(kv_dim, dim, bias=False)
        else:
            self.to_k = nn.Linear(kv_dim, dim, bias=False)
            self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.shared_kv = shared_kv
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape  # (B, N, C)
        ctx = x if context is None else context  # (B, M, Dc)
        q = self.to_q(x)
        if self.shared_kv:
            k = v = self.to_kv(ctx)
        else:
            k, v = self.to_k(ctx), self.to_v(ctx)  # (B, M, C)
        q, k, v = (t.view(b, -1, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, h, *, d)
        if self.activation == "softmax":
            out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        else:
            scores = F.relu(torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5))  # (B, h, N, M)
            out = torch.matmul(scores, v) / k.shape[-2]  # (B, h, N, d)
        out = out.transpose(1, 2).reshape(b, n, c)  # (B, N, C)
        return self.to_out(out)


class GatedFeedForward(nn.Module):
    """GLU feed-forward (GEGLU or SwiGLU): (B, N, C) -> (B, N, C) through an inner width of mult*C."""

    def __init__(self, dim: int, mult: int, activation: str):
        super().__init__()
        inner = dim * mult
        self.proj_in = nn.Linear(dim, 2 * inner)
        self.proj_out = nn.Linear(inner, dim)
        self.act = nn.GELU() if activation == "gelu" else nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj_in(x).chunk(2, dim=-1)  # (B, N, inner) each
        return self.proj_out(h * self.act(gate))


class TransformerLayer(nn.Module):
    """Pre-norm self-attention (optional), cross-attention (optional), GLU feed-forward."""

    def __init__(self, dim: int, heads: int, attention: str, context_dim: int, activation: str,
                 shared_kv: bool, ff_mult: int, ff_activation: str):
        super().__init__()
        self.has_self = attention in ("self", "self_cross")
        self.has_cross = attention in ("cross", "self_cross")
        if self.has_self:
            self.norm1 = nn.LayerNorm(dim)
            self.attn1 = Attention(dim, heads, None, activation, shared_kv)
        if self.has_cross:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, context_dim, activation, shared_kv)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GatedFeedForward(dim, ff_mult, ff_activation)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.has_self:
            x = self.attn1(self.norm1(x)) + x
        if self.has_cross:
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    """GroupNorm, 1x1 in, `depth` transformer layers over H*W tokens, 1x1 out, residual."""

    def __init__(self, dim: int, depth: int, groups: int, **layer_kwargs):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList(TransformerLayer(dim, **layer_kwargs) for _ in range(depth))
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, HW, C)
        for layer in self.transformer_blocks:
            t = layer(t, context)
        t = t.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W), NCHW like the other blocks
        return self.proj_out(t) + x


class Downsample(nn.Module):
    """Strided 3x3 conv: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class OutHead(nn.Module):
    """GroupNorm, SiLU, 3x3 conv to the latent channels: (B, C, H, W) -> (B, Cl, H, W)."""

    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, in_ch, eps=1e-5)
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(x)))
