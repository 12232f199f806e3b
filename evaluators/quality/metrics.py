"""FID and KID from feature arrays (clean-fid's estimators), CMMD and CLIP score from embeddings."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

KID_SUBSETS = 100  # clean-fid's defaults
KID_MAX_SUBSET = 1000


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D).

    clean-fid's `frechet_distance`, restated: clean-fid 0.1.35 calls `scipy.linalg.sqrtm(..., disp=False)`,
    an argument SciPy has since removed (TypeError on a CUDA machine with a newer SciPy), so the same
    formula is written here with the current `sqrtm` signature.
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    sigma1, sigma2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # singular product: add a small offset to the diagonals
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, seed: int = 0, subsets: int = KID_SUBSETS) -> float:
    """Kernel inception distance: clean-fid's estimator (unbiased MMD^2, cubic polynomial kernel
    (x.y / dim + 1)^3, mean over random subsets), each subset's MMD by torchmetrics' `poly_mmd`, in torch
    (numpy's BLAS threads stall on shared cores).

    Not torchmetrics' `KernelInceptionDistance` module: it draws its subsets from torch's global generator, so
    its value would differ from clean-fid's published estimator and from the committed fidelity panel. The
    subsets here are drawn exactly as `cleanfid.fid.kernel_distance` draws them after `np.random.seed(seed)`,
    from a private generator, so the value equals clean-fid's and does not depend on (or change) numpy's global
    state. `subsets` trades variance for time (clean-fid uses 100).
    """
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.RandomState(seed)
    a, b = torch.from_numpy(np.asarray(feats_a, np.float64)), torch.from_numpy(np.asarray(feats_b, np.float64))
    m = min(len(a), len(b), KID_MAX_SUBSET)
    total = 0.0
    for _ in range(subsets):
        x = b[torch.from_numpy(rng.choice(len(b), m, replace=False))]
        y = a[torch.from_numpy(rng.choice(len(a), m, replace=False))]
        total += float(poly_mmd(x, y, degree=3, gamma=None, coef=1.0))
    return total / subsets


CMMD_SIGMA = 10.0  # the CMMD paper's Gaussian kernel bandwidth on unit-norm CLIP embeddings
CMMD_SCALE = 1000.0  # the CMMD paper's reporting scale


def cmmd(emb_a: torch.Tensor, emb_b: torch.Tensor, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """CMMD (Jayasumana et al., arXiv 2401.09603): unbiased MMD^2 with a Gaussian RBF kernel between two sets
    of CLIP image embeddings (N, E) and (M, E), times `scale`.

    Written here because neither clean-fid nor torchmetrics ships it; the estimator and constants follow the
    paper's reference code (unit-norm embeddings, sigma 10, scale 1000) but with the unbiased form (the
    diagonal of the within-set kernels left out), which has no sample-size bias at a few hundred images.
    """
    x = torch.nn.functional.normalize(torch.as_tensor(emb_a).double(), dim=-1)
    y = torch.nn.functional.normalize(torch.as_tensor(emb_b).double(), dim=-1)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"CMMD needs at least 2 embeddings per set, got {n} and {m}")
    gamma = 1.0 / (2 * sigma**2)
    k_xx = torch.exp(-gamma * torch.cdist(x, x).square())
    k_yy = torch.exp(-gamma * torch.cdist(y, y).square())
    k_xy = torch.exp(-gamma * torch.cdist(x, y).square())
    mmd = ((k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1)) + (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
           - 2 * k_xy.mean())
    return float(mmd * scale)


def mean_cosine(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Mean cosine similarity of paired rows of two embedding matrices (N, D)."""
    a = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    b = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return float((a * b).sum(-1).mean())
