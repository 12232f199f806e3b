"""Proxy scale: the same topology with narrower channels, smaller images and a smaller text context."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from search_spaces.config import ArchConfig, ConfigError


@dataclass(frozen=True)
class ProxyScale:
    """How a full-scale architecture shrinks for a short training run."""

    width_divisor: int = 16  # channels are divided by this, then rounded to a multiple of norm_groups
    image_size: int = 16  # spatial size of the (pixel-space) training images
    image_channels: int = 3  # proxies train on RGB pixels directly, no VAE
    context_len: int = 16  # text tokens of the proxy's text encoder
    context_dim: int = 64  # width of the proxy's text encoder
    norm_groups: int = 8  # GroupNorm groups at proxy scale
    min_head_dim: int = 8  # no attention head narrower than this


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(value / multiple + 0.5) * multiple)


def topology(config: ArchConfig) -> tuple:
    """Everything but widths and sizes: what `to_proxy` must preserve."""
    levels = tuple((lv.down_res, lv.up_res, lv.transformer_depth, lv.attention, lv.separable) for lv in config.levels)
    return (levels, config.mid, config.attn_activation, config.shared_kv, config.ff_activation, config.ff_mult)


def to_proxy(config: ArchConfig, scale: ProxyScale = ProxyScale()) -> ArchConfig:
    """The proxy-scale config of `config`: identical topology, reduced widths, resolution and context.

    Raises:
        ConfigError: more levels than the proxy image size can halve; the message names the config's level
            count and the proxy image size, not the derived proxy config's latent size.
    """
    n_down = len(config.levels) - 1
    if scale.image_size % (1 << n_down):
        raise ConfigError(f"levels: {len(config.levels)} levels halve the image {n_down} times, but the proxy image "
                          f"size {scale.image_size} (--image-size) is not divisible by 2**{n_down}; use at most "
                          f"{_max_levels(scale.image_size)} levels or an image size that is a multiple of {1 << n_down}")
    g = scale.norm_groups
    levels = tuple(dataclasses.replace(lv, channels=_round_to(lv.channels / scale.width_divisor, g))
                   for lv in config.levels)
    attn_widths = [lv.channels for lv in levels if lv.transformer_depth]
    if config.mid.num_res and config.mid.transformer_depth:
        attn_widths.append(levels[-1].channels)
    if config.num_heads:
        heads = next(h for h in range(config.num_heads, 0, -1)
                     if all(w % h == 0 and (w // h >= scale.min_head_dim or h == 1) for w in attn_widths))
        head_kw = dict(num_heads=heads, head_dim=0)
    else:
        head_dim = max(scale.min_head_dim, config.head_dim // scale.width_divisor)
        while any(w % head_dim for w in attn_widths):
            head_dim //= 2
        head_kw = dict(num_heads=0, head_dim=max(head_dim, 1))
    proxy = dataclasses.replace(
        config, levels=levels, context_len=scale.context_len, context_dim=scale.context_dim,
        latent_channels=scale.image_channels, latent_size=scale.image_size, norm_groups=g, **head_kw)
    proxy.validate()
    return proxy


def _max_levels(image_size: int) -> int:
    return (image_size & -image_size).bit_length()  # one more than the halvings the size allows
