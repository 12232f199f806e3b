"""The domain feature source: the domain CLIP, trained once per recipe and cached as safetensors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import open_clip
import torch

from evaluators.quality.cache import cache_dir, load_weights, save_weights, sha256
from evaluators.quality.domain_clip import DomainClipRecipe, Progress, build_model, tokenize, train
from evaluators.quality.evaluator import QualityEvaluator
from nas.errors import UserError
from nas.io import write_json

SUBDIR = "domain_clip"


def weights_path(recipe: DomainClipRecipe, cache: str | Path | None = None) -> Path:
    """Where the weights of a recipe are cached: <cache>/domain_clip/<recipe key>.safetensors."""
    return cache_dir(cache) / SUBDIR / f"{recipe.key}.safetensors"


def load_or_train(recipe: DomainClipRecipe, cache: str | Path | None = None, device: str = "cpu",
                  progress: Progress | None = None) -> tuple[open_clip.CLIP, dict]:
    """The trained domain CLIP of a recipe: from the cache, or trained now and cached atomically.

    A cache file that is unreadable or does not fit the recipe is replaced by a fresh training.

    Returns:
        The model (eval mode, on `device`) and a description: cache path, weights hash, whether it was
        trained now, training stats.
    """
    path = weights_path(recipe, cache)
    model = build_model(recipe)
    trained_now, stats = False, {}
    try:
        model.load_state_dict(load_weights(path))
        meta_path = path.with_suffix(".json")
        stats = json.loads(meta_path.read_text()).get("train", {}) if meta_path.is_file() else {}
    except (UserError, RuntimeError, json.JSONDecodeError):
        model, stats = train(recipe, device=device, progress=progress)
        save_weights(path, model.state_dict(), {"recipe": json.dumps(asdict(recipe), sort_keys=True)})
        write_json(path.with_suffix(".json"), {"recipe": asdict(recipe), "train": stats})
        trained_now = True
    info = dict(cache_path=str(path), weights_sha256=sha256(path), trained_now=trained_now, train=stats)
    return model.to(device).eval(), info


def domain_evaluator(image_size: int = 16, cache: str | Path | None = None, device: str = "cpu",
                     progress: Progress | None = None, **recipe_overrides) -> QualityEvaluator:
    """A `QualityEvaluator` on the domain CLIP (recipe defaults, `image_size` and any overrides)."""
    try:
        recipe = DomainClipRecipe(image_size=image_size, **recipe_overrides)
    except TypeError as err:
        raise UserError(f"domain CLIP: {err}") from None
    model, cached = load_or_train(recipe, cache, device, progress)

    def embed_images(images: torch.Tensor) -> torch.Tensor:
        return model.encode_image(images.to(device))

    def embed_texts(captions: list[str]) -> torch.Tensor:
        return model.encode_text(tokenize(captions, recipe.context_length).to(device))

    info = dict(source="domain", model="domain-clip", model_id=recipe.key, image_size=image_size,
                seed=recipe.seed, feature="domain CLIP image embedding", feature_dim=recipe.embed_dim,
                recipe=asdict(recipe), **cached)
    return QualityEvaluator(embed_images, embed_images, embed_texts, image_size, info)
