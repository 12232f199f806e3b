"""The domain CLIP: a small open_clip `CLIP` trained with open_clip's `ClipLoss` on the synthetic data.

Its text tower gives the CLIP score's text embeddings; its image tower gives both the CLIP score's image
embeddings and the FID/KID features. The recipe (architecture, data, optimisation, seed) is hashed into
the cache key, so changing any of it trains a new model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable, Iterator

import numpy as np
import open_clip
import torch
from open_clip.loss import ClipLoss

from core.errors import UserError
from evaluators.data.synthetic import VERSION as DATA_VERSION
from evaluators.data.synthetic import all_captions, generate, sample_scene_ids, swapped

CODE_VERSION = 3  # bump when the training loop changes in a way the recipe does not show
BPE_VOCAB = 49408  # open_clip's bundled BPE vocabulary

Progress = Callable[[int, int, float], None]  # (step done, total steps, loss)


@dataclass(frozen=True)
class DomainClipRecipe:
    """Everything that determines the trained weights."""

    image_size: int = 16  # side of the images it sees (inputs of other sizes are resized)
    embed_dim: int = 64  # joint embedding width (also the FID feature width)
    width: int = 64  # transformer width of both towers
    layers: int = 2  # transformer blocks per tower
    head_width: int = 32  # attention head width (heads = width / head_width)
    patches_per_side: int = 4  # ViT grid: patch size = image_size / patches_per_side
    context_length: int = 16  # text tokens incl. start/end (captions have at most 14)
    batch_size: int = 128  # distinct captions per batch (ClipLoss treats the others as negatives)
    hard_fraction: float = 0.25  # fresh images: share of a batch that are swapped scenes ("B above A")
    steps: int = 1200  # optimizer steps
    n_train: int | None = None  # None: fresh synthetic images every step; else a fixed pool of this many
    lr: float = 3e-3  # AdamW peak learning rate (linear warmup, cosine decay)
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0  # data, initialisation and batch order
    data_version: int = DATA_VERSION  # synthetic generator version
    code_version: int = CODE_VERSION

    def __post_init__(self) -> None:
        if self.image_size % self.patches_per_side or self.width % self.head_width:
            raise UserError(f"domain CLIP: image size {self.image_size} must be divisible by "
                            f"{self.patches_per_side} and width {self.width} by {self.head_width}")
        if min(self.steps, self.image_size) < 1 or (self.n_train is not None and self.n_train < 1) \
                or self.batch_size < 2 or not 0 <= self.hard_fraction < 1:
            raise UserError("domain CLIP: steps, image size and n_train must be positive, batch size >= 2, "
                            "hard_fraction in [0, 1)")

    @property
    def key(self) -> str:
        """Stable hash of the recipe: the cache key of the trained weights."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _caption_bpe() -> torch.Tensor:
    """open_clip BPE tokens of every synthetic caption (scenes, 32); the tokenizer is slow, so once."""
    return open_clip.tokenize(list(all_captions()), context_length=32)


@lru_cache(maxsize=1)
def _vocab_map() -> torch.Tensor:
    """BPE id -> domain id: 0 padding, 1..K the tokens of the synthetic captions, then unknown, start and
    end (open_clip pools the text at the highest id, so the end token must stay the highest)."""
    bpe_tokenizer = open_clip.tokenizer.SimpleTokenizer()
    sot, eot = bpe_tokenizer.sot_token_id, bpe_tokenizer.eot_token_id
    words = sorted(set(_caption_bpe().unique().tolist()) - {0, sot, eot})
    lut = torch.full((BPE_VOCAB,), len(words) + 1, dtype=torch.long)
    lut[0] = 0
    lut[torch.tensor(words)] = torch.arange(1, len(words) + 1)
    lut[sot], lut[eot] = len(words) + 2, len(words) + 3
    return lut


@lru_cache(maxsize=4)
def _scene_tokens(context_length: int) -> torch.Tensor:
    """Domain tokens of every synthetic caption (scenes, context_length)."""
    bpe = _caption_bpe()
    if int((bpe != 0).sum(1).max()) <= context_length:
        return _vocab_map()[bpe[:, :context_length]]
    return tokenize(list(all_captions()), context_length)


def vocab_size() -> int:
    """Size of the domain vocabulary (the caption tokens plus padding, unknown, start, end)."""
    return int(_vocab_map().max()) + 1


def build_model(recipe: DomainClipRecipe) -> open_clip.CLIP:
    """The untrained model, built from open_clip's own classes (text tower on the domain vocabulary)."""
    return open_clip.CLIP(
        embed_dim=recipe.embed_dim,
        vision_cfg=dict(image_size=recipe.image_size, patch_size=recipe.image_size // recipe.patches_per_side,
                        width=recipe.width, layers=recipe.layers, head_width=recipe.head_width, mlp_ratio=2.0),
        text_cfg=dict(context_length=recipe.context_length, vocab_size=vocab_size(), width=recipe.width,
                      heads=recipe.width // recipe.head_width, layers=recipe.layers),
    )


def tokenize(captions: list[str], context_length: int) -> torch.Tensor:
    """open_clip BPE tokens mapped to the domain vocabulary (N, context_length); words outside the
    synthetic captions become the unknown token; too long captions are cut, keeping the end token."""
    return _vocab_map()[open_clip.tokenize(captions, context_length=context_length)]


def batch_scene_ids(batch_size: int, hard_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Distinct train-split scene ids for one batch (no false negatives for ClipLoss); a share of them are
    the swapped scenes of other members, so the text tower must read word order, not only words."""
    draw = sample_scene_ids("train", batch_size * 3, rng)
    draw = draw[np.sort(np.unique(draw, return_index=True)[1])]  # distinct, in draw order
    n_hard = int(batch_size * hard_fraction)
    anchors = draw[: batch_size - n_hard]
    partners = swapped(anchors, "train")
    partners = partners[(partners >= 0) & ~np.isin(partners, anchors)]
    partners = partners[np.sort(np.unique(partners, return_index=True)[1])][:n_hard]
    rest = draw[batch_size - n_hard:]
    rest = rest[~np.isin(rest, partners)]
    return np.concatenate([anchors, partners, rest])[:batch_size]


def _batches(recipe: DomainClipRecipe, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Endless (images, scene ids) batches with distinct captions: fresh images every step, or drawn from
    a fixed pool of `n_train` images."""
    if recipe.n_train is None:
        for step in itertools.count():
            ids = batch_scene_ids(recipe.batch_size, recipe.hard_fraction, rng)
            yield generate("train", recipe.image_size, len(ids), recipe.seed * 1_000_003 + step, ids).images, ids
    pool = generate("train", recipe.image_size, recipe.n_train, recipe.seed)
    index = {c: i for i, c in enumerate(all_captions())}
    pool_ids = np.array([index[c] for c in pool.captions])
    while True:
        order = rng.permutation(len(pool_ids))[: recipe.batch_size * 4]
        _, first = np.unique(pool_ids[order], return_index=True)
        pick = order[np.sort(first)[: recipe.batch_size]]
        yield pool.images[torch.from_numpy(pick)], pool_ids[pick]


def train(recipe: DomainClipRecipe, device: str | torch.device = "cpu",
          progress: Progress | None = None) -> tuple[open_clip.CLIP, dict]:
    """Train the domain CLIP from scratch.

    Returns:
        The model in eval mode, and stats: seconds, final loss (mean of the last 20 steps), steps.
    """
    start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    tokens = _scene_tokens(recipe.context_length)  # (scenes, context_length)
    model = build_model(recipe).to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)
    warm, total = recipe.warmup_steps, recipe.steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warm)) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warm) / max(1, total - warm)))))
    loss_fn = ClipLoss()
    batches = _batches(recipe, np.random.default_rng(recipe.seed))
    losses = []
    for step in range(total):
        images, ids = next(batches)
        img_f, txt_f, scale = model(images.to(device), tokens[torch.from_numpy(ids)].to(device))
        loss = loss_fn(img_f, txt_f, scale)
        if not torch.isfinite(loss):
            raise RuntimeError(f"domain CLIP training diverged at step {step} (loss {loss.item()})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, total, losses[-1])
    stats = dict(seconds=round(time.perf_counter() - start, 2), steps=total,
                 final_loss=round(float(np.mean(losses[-20:])), 4))
    return model.eval(), stats
