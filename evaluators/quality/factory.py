"""`get_quality_evaluator`: one entry point over the feature sources, memoised per process."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from evaluators.quality.domain import domain_evaluator
from evaluators.quality.evaluator import QualityEvaluator
from evaluators.quality.standard import standard_evaluator

SOURCES = ("domain", "standard")
_MEMO: dict[str, QualityEvaluator] = {}


def get_quality_evaluator(source: str = "domain", image_size: int = 16, cache_dir: str | Path | None = None,
                          device: str = "cpu", **kw) -> QualityEvaluator:
    """The evaluator of a feature source; built once per process for the same arguments.

    Args:
        source: "domain" (the embedded default: a small CLIP trained on the synthetic data, trained on
            first use and cached) or "standard" (clean-fid's Inception + a pretrained open_clip).
        image_size: domain only: the images the domain CLIP is trained on (inputs are resized to it).
        cache_dir: where weights are cached (default $NAS_CACHE_DIR or ~/.cache/mobile-diffusion-nas).
        device: torch device for the feature models.
        **kw: domain: `progress` (callback (step, total, loss)) and recipe fields of `DomainClipRecipe`
            (e.g. steps, n_train, batch_size, seed); standard: clip_model, clip_pretrained, clip_weights,
            inception_weights.

    Raises:
        UserError: unknown source or option, weights missing offline, a weights file that is not a model.
    """
    if source not in SOURCES:
        raise UserError(f"unknown feature source {source!r}; choose one of: {', '.join(SOURCES)}")
    progress = kw.pop("progress", None)
    key = json.dumps([source, image_size, str(cache_dir), str(device), sorted(kw.items())], default=str)
    if key not in _MEMO:
        if source == "domain":
            evaluator = domain_evaluator(image_size, cache_dir, device, progress, **kw)
        else:
            try:
                evaluator = standard_evaluator(cache_dir, device, **kw)
            except TypeError as err:
                raise UserError(f"standard evaluator: {err}") from None
        _MEMO[key] = evaluator
    return _MEMO[key]
