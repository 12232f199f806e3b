"""The proxy's own conditioning text encoder: open_clip's tokenizer, a small transformer trained with the UNet.

It deliberately shares nothing with the quality evaluator's CLIP text tower: a generator must not be
graded by its own encoder. Its weights start random and are trained jointly with the proxy UNet.
"""

from __future__ import annotations

import functools

import open_clip
import torch
from torch import nn


@functools.lru_cache(maxsize=1)
def tokenizer() -> open_clip.tokenizer.SimpleTokenizer:
    """open_clip's BPE tokenizer (its vocabulary ships inside the package; works offline)."""
    return open_clip.tokenizer.SimpleTokenizer()


def tokenize(captions: list[str], context_len: int) -> torch.Tensor:
    """Token ids (N, context_len); repeated captions are tokenized once.

    Args:
        captions: texts to tokenize; longer ones are truncated (the end-of-text token is kept).
        context_len: tokens per caption, including the start and end tokens.
    """
    unique = sorted(set(captions))
    ids = tokenizer()(unique, context_length=context_len)  # (U, L)
    row = {caption: i for i, caption in enumerate(unique)}
    return ids[torch.tensor([row[c] for c in captions], dtype=torch.long)]  # (N, L)


class TextEncoder(nn.Module):
    """Token ids (B, L) -> hidden states (B, L, D) for the UNet's cross-attention.

    A token + position embedding followed by a few pre-norm transformer layers (bidirectional, padding
    tokens included, as the SD text context is) and a final LayerNorm. The embedding table holds only the
    tokens of `vocab` (the training captions' tokens) plus one row for every other token, so a short
    training does not carry a 49k-row table through AdamW.

    Args:
        context_len: L, the number of tokens per caption.
        dim: D, the width of the hidden states (the proxy config's `context_dim`).
        vocab: the BPE token ids the encoder knows (any shape; duplicates are fine).
        layers: transformer layers.
        head_dim: channels per attention head (heads = dim // head_dim, at least one).
    """

    def __init__(self, context_len: int, dim: int, vocab: torch.Tensor, layers: int = 2, head_dim: int = 32):
        super().__init__()
        self.context_len = context_len
        known = torch.unique(vocab.flatten())  # sorted BPE ids
        lookup = torch.zeros(tokenizer().vocab_size, dtype=torch.long)  # row 0: unknown tokens
        lookup[known] = torch.arange(1, len(known) + 1)
        self.register_buffer("lookup", lookup, persistent=False)
        self.token = nn.Embedding(len(known) + 1, dim)
        self.position = nn.Parameter(torch.randn(context_len, dim) * 0.01)
        layer = nn.TransformerEncoderLayer(dim, max(1, dim // head_dim), dim_feedforward=4 * dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.token(self.lookup[ids]) + self.position  # (B, L, D)
        return self.norm(self.layers(h))  # (B, L, D)
