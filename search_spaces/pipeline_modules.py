"""The two networks around the UNet in a text-to-image pipeline, as real modules at their real shapes.

- `ClipTextTower`: open_clip's `TextTransformer` in the configuration of SD's text encoder (OpenAI CLIP
  ViT-L/14's text tower: 77 tokens, 49,408-token BPE vocabulary, width 768, 12 layers of 12 heads, QuickGELU,
  causal mask); it returns the last layer's normalised token states, which the UNet cross-attends to.
- `VaeDecoder`: diffusers' `AutoencoderKL` decoder (post-quant conv + `Decoder`), SD's 4-channel 8x VAE with the
  block widths (c, 2c, 4c, 4c); c = 128 and two layers per block is SD's, narrower or shallower ones are the
  SnapFusion-style slim decoders.

Weights are whatever the caller puts in: the latency backends fill them with seeded noise (latency does not
depend on the values).
"""

from __future__ import annotations

import torch
from torch import nn

CLIP_VOCAB = 49408  # OpenAI CLIP's BPE vocabulary (open_clip's tokenizer; SD's text encoder)
DECODER_MULTS = (1, 2, 4, 4)  # AutoencoderKL's block_out_channels as multiples of the base width (SD's VAE)


class ClipTextTower(nn.Module):
    """Token ids (B, L) -> token states (B, L, width): a CLIP text transformer without pooling head."""

    def __init__(self, width: int, layers: int, heads: int, context_len: int, mlp_ratio: int = 4):
        super().__init__()
        from open_clip.transformer import QuickGELU, TextTransformer

        self.text = TextTransformer(context_length=context_len, vocab_size=CLIP_VOCAB, width=width, heads=heads,
                                    layers=layers, mlp_ratio=mlp_ratio, output_dim=None, act_layer=QuickGELU,
                                    output_tokens=True)

    def _apply(self, fn, recurse: bool = True):
        # The causal mask is a non-persistent buffer that `to_empty` (the latency backends build modules on
        # the meta device) leaves uninitialised: rebuild it after every move or cast.
        out = super()._apply(fn, recurse)
        mask = self.text.attn_mask
        if mask is not None and not mask.is_meta:
            n = self.text.num_pos  # open_clip's build_causal_mask, on the buffer's device and dtype
            self.text.attn_mask = torch.full((n, n), float("-inf"), device=mask.device, dtype=mask.dtype).triu_(1)
        return out

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids)[1]


class VaeDecoder(nn.Module):
    """Latents (B, 4, h, w) -> RGB (B, 3, 8h, 8w): AutoencoderKL's post-quant conv and decoder."""

    def __init__(self, latent_channels: int, width: int, layers_per_block: int, groups: int):
        super().__init__()
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                            down_block_types=("DownEncoderBlock2D",) * len(DECODER_MULTS),
                            up_block_types=("UpDecoderBlock2D",) * len(DECODER_MULTS),
                            block_out_channels=tuple(width * m for m in DECODER_MULTS),
                            layers_per_block=layers_per_block, norm_num_groups=groups)
        self.post_quant_conv, self.decoder = vae.post_quant_conv, vae.decoder  # the encoder is not deployed

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents))

