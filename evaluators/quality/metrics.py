"""FID and KID from feature arrays (clean-fid's estimators) and CLIP score from embeddings."""

from __future__ import annotations

import numpy as np
import torch
from cleanfid import fid as cleanfid

KID_SUBSETS = 100  # clean-fid's defaults
KID_MAX_SUBSET = 1000


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return float(cleanfid.fid_from_feats(feats_a.astype(np.float64), feats_b.astype(np.float64)))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, seed: int = 0, subsets: int = KID_SUBSETS) -> float:
    """Kernel inception distance: clean-fid's estimator (unbiased MMD^2, cubic polynomial kernel, mean over
    random subsets), computed with torch instead of numpy (numpy's BLAS threads stall on shared cores).

    The subsets are drawn exactly as `cleanfid.fid.kernel_distance` draws them after
    `np.random.seed(seed)`, from a private generator, so the value equals clean-fid's and does not depend
    on (or change) numpy's global state. `subsets` trades variance for time (clean-fid uses 100).
    """
    rng = np.random.RandomState(seed)
    a, b = torch.from_numpy(np.asarray(feats_a, np.float64)), torch.from_numpy(np.asarray(feats_b, np.float64))
    dim = a.shape[1]
    m = min(len(a), len(b), KID_MAX_SUBSET)
    total = 0.0
    for _ in range(subsets):
        x = b[torch.from_numpy(rng.choice(len(b), m, replace=False))]
        y = a[torch.from_numpy(rng.choice(len(a), m, replace=False))]
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        across = (x @ y.T / dim + 1) ** 3
        total += float((within.sum() - within.diagonal().sum()) / (m - 1) - across.sum() * 2 / m)
    return total / subsets / m


def mean_cosine(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Mean cosine similarity of paired rows of two embedding matrices (N, D)."""
    a = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    b = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return float((a * b).sum(-1).mean())
