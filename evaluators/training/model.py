"""The trainable text-to-image proxy: the proxy-scale UNet of an architecture plus its own text encoder."""

from __future__ import annotations

import torch
from torch import nn

from evaluators.training.text_encoder import TextEncoder
from search_spaces.config import ArchConfig
from search_spaces.unet import build_unet, count_params


class ProxyModel(nn.Module):
    """UNet and text encoder, trained together; `forward` predicts the diffusion target.

    Args:
        proxy: a proxy-scale ArchConfig (see `search_spaces.proxy.to_proxy`); its `context_len` and
            `context_dim` size the text encoder.
        vocab: token ids of the training captions (the text encoder's vocabulary).
    """

    def __init__(self, proxy: ArchConfig, vocab: torch.Tensor):
        super().__init__()
        self.config = proxy
        self.unet = build_unet(proxy)
        self.text = TextEncoder(proxy.context_len, proxy.context_dim, vocab)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        context = self.text(ids)  # (B, L, D)
        return self.unet(sample, timesteps, context)  # (B, C, S, S)

    @property
    def unet_params(self) -> int:
        """Parameters of the proxy UNet alone (the number that describes the architecture)."""
        return count_params(self.unet)

    @property
    def text_params(self) -> int:
        """Parameters of the conditioning text encoder (the same for every architecture)."""
        return count_params(self.text)


def build_proxy_model(proxy: ArchConfig, vocab: torch.Tensor, seed: int) -> ProxyModel:
    """A freshly initialised ProxyModel whose weights depend only on `proxy`, `vocab` and `seed`.

    The global torch RNG is seeded inside a forked RNG state, so the caller's RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProxyModel(proxy, vocab)
