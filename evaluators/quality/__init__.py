"""Image quality: FID, KID and CLIP score in a domain (embedded, offline) or standard feature space."""

from __future__ import annotations

import torch

from evaluators.quality.evaluator import QualityEvaluator
from evaluators.quality.factory import SOURCES, get_quality_evaluator


def clip_score(images: torch.Tensor, captions: list[str], evaluator: QualityEvaluator | None = None) -> float:
    """Mean image-caption cosine similarity, with `evaluator` or the default domain evaluator.

    Args:
        images: (N, 3, H, W) in [-1, 1].
        captions: the N captions.
        evaluator: a `QualityEvaluator`; default `get_quality_evaluator()` (image size from `images`).
    """
    evaluator = evaluator or get_quality_evaluator(image_size=int(images.shape[-1]))
    return evaluator.clip_score(images, captions)


__all__ = ["QualityEvaluator", "SOURCES", "clip_score", "get_quality_evaluator"]
