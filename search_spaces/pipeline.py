"""One generated image: the text encoder once, the UNet `steps x (2 with classifier-free guidance)` times, the
VAE decoder once. `SamplingConfig` names those choices; `pipeline_blocks` gives the two blocks around the UNet.

The text encoder runs once per image: the unconditional (empty-prompt) states that classifier-free guidance
needs are the same for every image, so a deployment computes them once and keeps them. With CFG each step
evaluates the UNet twice (conditional and unconditional; batched or not, twice the work); a guidance-distilled
model (Meng et al., "On distillation of guided diffusion models", as MobileDiffusion uses) evaluates it once.

Named parts:
- text encoders: `clip_l14` — SD-1.5's (and MobileDiffusion's) CLIP ViT-L/14 text tower, 123M parameters.
- decoders: `sd` — SD's AutoencoderKL decoder (49.5M parameters); `half` — every width halved (the kind of
  channel cut SnapFusion applies to SD's decoder); `half_shallow` — halved and one ResNet fewer per level.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.blocks import BlockSpec
from search_spaces.config import ArchConfig, ConfigError
from search_spaces.registry import UnknownNameError

GUIDANCE_CALLS = {"cfg": 2, "distilled": 1}  # UNet evaluations per sampler step
MAX_STEPS = 1000  # the DDPM training schedule's timesteps (SD's scheduler): a sampler takes at most that many


@dataclass(frozen=True)
class TextEncoder:
    """A CLIP-style text transformer."""

    width: int
    layers: int
    heads: int
    tokens: int
    mlp_ratio: int = 4


@dataclass(frozen=True)
class Decoder:
    """An AutoencoderKL decoder with block widths base * (1, 2, 4, 4)."""

    width: int  # the base (full-resolution) width
    layers_per_block: int  # diffusers' layers_per_block: each up block holds one ResNet more than this
    groups: int = 32


TEXT_ENCODERS = {"clip_l14": TextEncoder(width=768, layers=12, heads=12, tokens=77)}
DECODERS = {
    "sd": Decoder(width=128, layers_per_block=2),
    "half": Decoder(width=64, layers_per_block=2),
    "half_shallow": Decoder(width=64, layers_per_block=1),
}


def _named(table: dict, what: str, name: str):
    if name not in table:
        raise UnknownNameError(f"unknown {what} {name!r}; known: {', '.join(table)}")
    return table[name]


@dataclass(frozen=True)
class SamplingConfig:
    """How one image is generated around a UNet."""

    steps: int = 50  # sampler steps
    guidance: str = "cfg"  # "cfg" (two UNet calls per step) or "distilled" (one)
    decoder: str = "sd"  # a DECODERS name
    text_encoder: str = "clip_l14"  # a TEXT_ENCODERS name

    def validate(self) -> "SamplingConfig":
        """Raises ConfigError (or UnknownNameError for a name) on an invalid choice; returns self."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps: must be an integer from 1 to {MAX_STEPS} (the scheduler's timesteps), "
                              f"got {self.steps!r}")
        _named(GUIDANCE_CALLS, "guidance mode", self.guidance)
        _named(DECODERS, "decoder", self.decoder)
        _named(TEXT_ENCODERS, "text encoder", self.text_encoder)
        return self

    @property
    def unet_calls(self) -> int:
        """UNet evaluations per image."""
        return self.steps * GUIDANCE_CALLS[self.guidance]

    @property
    def label(self) -> str:
        return f"{self.steps} step{'s' if self.steps != 1 else ''}, {self.guidance}, {self.decoder} decoder"


def text_encoder_spec(name: str) -> BlockSpec:
    """The block of text encoder `name`: width in in_ch/out_ch, layers in depth, tokens in context_len."""
    t = _named(TEXT_ENCODERS, "text encoder", name)
    return BlockSpec("text_encoder", t.width, t.width, depth=t.layers, attention="self", heads=t.heads,
                     attn_activation="softmax", ff_mult=t.mlp_ratio, ff_activation="quick_gelu",
                     context_len=t.tokens)


def decoder_spec(name: str, latent_size: int, latent_channels: int = 4) -> BlockSpec:
    """The block of decoder `name` on `latent_size` latents: latent channels in in_ch, the base width in out_ch
    (the output is always RGB), layers per block in depth; its one mid-block attention has one head."""
    d = _named(DECODERS, "decoder", name)
    return BlockSpec("vae_decoder", latent_channels, d.width, res=latent_size, groups=d.groups,
                     depth=d.layers_per_block, attention="self", heads=1, attn_activation="softmax")


def pipeline_blocks(config: ArchConfig, sampling: SamplingConfig) -> list[tuple[str, BlockSpec]]:
    """[("text_encoder", spec), ("vae_decoder", spec)] for images from `config`'s UNet at its latent size.

    Raises:
        ConfigError: the text encoder's states do not fit the UNet's cross-attention (width or tokens).
    """
    sampling.validate()
    text = text_encoder_spec(sampling.text_encoder)
    if (text.out_ch, text.context_len) != (config.context_dim, config.context_len):
        raise ConfigError(f"text encoder {sampling.text_encoder!r} gives {text.context_len} tokens of width "
                          f"{text.out_ch}; this UNet cross-attends to {config.context_len} of width {config.context_dim}")
    return [("text_encoder", text),
            ("vae_decoder", decoder_spec(sampling.decoder, config.latent_size, config.latent_channels))]
