"""Block signatures: the key of one row of a latency lookup table.

A signature is a `BlockSpec` (kind, channels, resolution, attention kind and activation, shared K/V, FFN
expansion, separable convs, text context) plus what the spec does not hold but latency depends on: the
batch, the dtype, and the memory layout of the block's input feature map. The layout matters in torch
eager: a transformer block returns a channels-last tensor (its output projection runs on a permuted
view), so the blocks after it receive NHWC inputs, and a ResNet block on 1 CPU thread takes ~1.7x longer
on those (measured). `input_layouts` finds each block's input layout by running a toy-width twin of the
UNet; backends without a layout notion (ONNX) use "nchw" throughout. The resolution inside the spec carries the image size (a 512x512 image gives 64x64
latents, so a level-1 block has `res=32`), so one table holds blocks of any image size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from search_spaces.blocks import BLOCK_KINDS, BlockSpec, arch_blocks
from search_spaces.config import ArchConfig

DTYPES = ("float32", "float16", "bfloat16")
LAYOUTS = ("nchw", "nhwc")


class SignatureError(ValueError):
    """A block key that does not parse into a valid signature."""


@dataclass(frozen=True)
class BlockSignature:
    """Everything that changes the latency of one block on one device."""

    spec: BlockSpec  # the block's shape and options (resolution included)
    batch: int = 1  # batch size of the timed forward
    dtype: str = "float32"  # one of DTYPES
    layout: str = "nchw"  # memory layout of the input feature map: "nchw" (contiguous) or "nhwc" (channels last)

    @property
    def key(self) -> str:
        """Stable string key: the spec's `field=value` pairs, then batch, dtype and layout."""
        return f"{self.spec.key}|batch={self.batch}|dtype={self.dtype}|layout={self.layout}"

    @classmethod
    def from_key(cls, key: str) -> "BlockSignature":
        """Parse a key written by `key`.

        Raises:
            SignatureError: the key is malformed, misses a field or names an unknown kind or dtype.
        """
        if not isinstance(key, str) or "|" not in key:
            raise SignatureError(f"malformed block key {str(key)[:60]!r}")
        parts = key.split("|")
        try:
            tail = dict(part.split("=", 1) for part in parts[-3:])
            if list(tail) != ["batch", "dtype", "layout"]:
                raise ValueError("batch, dtype and layout must end the key")
            spec = BlockSpec.from_key("|".join(parts[:-3]))
            sig = cls(spec, int(tail["batch"]), tail["dtype"], tail["layout"])
        except (ValueError, KeyError) as err:
            raise SignatureError(f"malformed block key {key[:60]!r}...: {err}") from None
        if spec.kind not in BLOCK_KINDS:
            raise SignatureError(f"block key names unknown kind {spec.kind!r}")
        if sig.dtype not in DTYPES or sig.batch < 1 or sig.layout not in LAYOUTS:
            raise SignatureError(f"block key has bad batch/dtype/layout ({sig.batch}, {sig.dtype!r}, {sig.layout!r})")
        if sig.key != key:
            raise SignatureError(f"block key {key[:60]!r}... is not in canonical form")
        return sig


def with_image_size(config: ArchConfig, image_size: int) -> ArchConfig:
    """`config` at the latent size of `image_size` pixels (an 8x VAE): 512 -> 64x64 latents.

    Raises:
        ConfigError: the image size is not a multiple of 8, or its latents do not halve at every level.
    """
    from search_spaces.config import ConfigError

    if image_size < 8 or image_size % 8:
        raise ConfigError(f"image_size: must be a positive multiple of 8, got {image_size}")
    return config.replace(latent_size=image_size // 8)


def _shadow(config: ArchConfig) -> ArchConfig:
    """The same topology at toy widths (a real forward takes milliseconds).

    Distinct channel counts map to distinct multiples of 16 in the same order, so every `in_ch != out_ch`
    shortcut and every op stays; widths, heads, text and latents shrink (to 2x2 at the bottom, or 1x1 if so).
    """
    widths = {c: 16 * (i + 1) for i, c in enumerate(sorted({lv.channels for lv in config.levels}))}
    levels = tuple(replace(lv, channels=widths[lv.channels]) for lv in config.levels)
    bottom = min(config.latent_size >> (len(levels) - 1), 2)  # 1x1 maps are both layouts at once: keep them
    return replace(config, levels=levels, num_heads=2, head_dim=0, context_len=2, context_dim=8, norm_groups=8,
                   latent_channels=4, latent_size=bottom << (len(levels) - 1))


@lru_cache(maxsize=4096)
def input_layouts(config: ArchConfig) -> dict[str, str]:
    """Module path -> memory layout of the feature map each block receives in the UNet's torch forward.

    Found by running the toy-width twin of `config` on the CPU with hooks: layouts depend on the ops
    and on which channel counts are equal, not on the sizes (tested against the full-width model).
    """
    import torch

    from search_spaces.unet import build_unet

    shadow = _shadow(config)
    model = build_unet(shadow).eval()
    layouts: dict[str, str] = {}

    def record(path: str):
        def hook(module, args):
            x = args[0]
            nhwc = x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
            layouts[path] = "nhwc" if nhwc else "nchw"
        return hook

    for path, _ in arch_blocks(shadow):
        model.get_submodule(path).register_forward_pre_hook(record(path))
    s = shadow.latent_size
    with torch.no_grad():
        model(torch.randn(1, 4, s, s), torch.ones(1), torch.randn(1, shadow.context_len, shadow.context_dim))
    return layouts


def arch_signatures(config: ArchConfig, batch: int = 1, dtype: str = "float32",
                    layouts: bool = False) -> list[tuple[str, BlockSignature]]:
    """Every block of `config` (at its own latent size) as (module path, signature), in forward order.

    Args:
        layouts: record each block's input layout as it occurs in the model (torch backends); otherwise
            every block is "nchw" (ONNX exports, imported and roofline LUTs).
    """
    found = input_layouts(config) if layouts else {}
    return [(path, BlockSignature(spec, batch, dtype, found.get(path, "nchw"))) for path, spec in arch_blocks(config)]


@lru_cache(maxsize=16)
def space_signatures(space_name: str, image_size: int = 512, batch: int = 1, dtype: str = "float32",
                     layouts: bool = False) -> tuple[BlockSignature, ...]:
    """Every distinct block of a search space at `image_size` (sorted by key; cached per arguments).

    The space enumerates its blocks at 64x64 latents; resolutions scale exactly with the latent size.
    With `layouts`, every block that can follow a transformer (all but conv_in and time_embed) comes in
    both input layouts (a superset of what the space's architectures use).

    Raises:
        ConfigError: image_size is not a multiple of 64 (the 4-level archs need latents divisible by 8).
        UnknownNameError: an unknown space.
    """
    from search_spaces.config import ConfigError
    from search_spaces.space import get_space

    if image_size < 64 or image_size % 64:
        raise ConfigError(f"image_size: a whole space needs a multiple of 64, got {image_size}")
    latent = image_size // 8
    specs = get_space(space_name).enumerate_blocks()
    sigs = {BlockSignature(replace(s, res=s.res * latent // 64), batch, dtype, layout) for s in specs
            for layout in (LAYOUTS if layouts and s.kind not in ("conv_in", "time_embed") else ("nchw",))}
    return tuple(sorted(sigs, key=lambda s: s.key))
