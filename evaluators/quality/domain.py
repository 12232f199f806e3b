"""The domain feature source: the domain CLIP, trained once per recipe and cached as safetensors.

The package ships the trained weights of the default recipe (`weights/<recipe key>.safetensors` with its
sidecar): a fresh machine copies them into its cache instead of training, so its FID, KID, CMMD and CLIP scores
are computed on the same features as the project's committed studies (a retrained domain CLIP may differ in its
last bits, and the fidelity record and `nas fidelity --import` compare scores only under the same weights).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import open_clip
import torch

from core.console import warn
from core.errors import UserError
from core.io import atomic_path, write_json
from evaluators.quality.cache import cache_dir, load_weights, save_weights, sha256
from evaluators.quality.domain_clip import (
    DomainClipRecipe,
    Progress,
    build_model,
    tokenize,
    train,
)
from evaluators.quality.evaluator import QualityEvaluator

SUBDIR = "domain_clip"
SHIPPED_DIR = Path(__file__).with_name("weights")  # trained weights shipped with the package, by recipe key
LEGACY = object()  # a sidecar written before checksums (no "weights_sha256"): checked by loading, then upgraded


def weights_path(recipe: DomainClipRecipe, cache: str | Path | None = None) -> Path:
    """Where the weights of a recipe are cached: <cache>/domain_clip/<recipe key>.safetensors."""
    return cache_dir(cache) / SUBDIR / f"{recipe.key}.safetensors"


def sidecar_path(weights: Path) -> Path:
    """The JSON beside cached weights: {"recipe", "train" (stats), "weights_sha256"}."""
    return weights.with_suffix(".json")


def _read_sidecar(path: Path, recipe: DomainClipRecipe) -> tuple[dict | None, str]:
    """The sidecar's content, or None and why it cannot be trusted (schema and recipe checked)."""
    if not path.is_file():
        return None, "is missing"
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "is not readable JSON text"
    checksum = meta.get("weights_sha256", LEGACY) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("train"), dict) \
            or checksum is not LEGACY and (not isinstance(checksum, str) or len(checksum) != 64):
        return None, "is not a JSON object with recipe, train and weights_sha256"
    if meta.get("recipe") != asdict(recipe):
        return None, f"describes another recipe than {recipe.key}"
    return meta, ""


def _load_cached(path: Path, recipe: DomainClipRecipe) -> tuple[open_clip.CLIP | None, dict, str]:
    """The cached model and its sidecar, or (None, {}, "<file> <what is wrong>") after checking the sidecar's
    schema, the weights' SHA-256 against it, the safetensors format and every tensor's name and shape."""
    meta, problem = _read_sidecar(sidecar_path(path), recipe)
    if meta is None:
        return None, {}, f"{sidecar_path(path)} {problem}"
    if not path.is_file():
        return None, {}, f"{path} is missing"
    if "weights_sha256" in meta and sha256(path) != meta["weights_sha256"]:
        return None, {}, f"{path} does not match the SHA-256 in its sidecar (truncated or modified)"
    model = build_model(recipe)
    try:
        model.load_state_dict(load_weights(path))
    except UserError:
        return None, {}, f"{path} is not a safetensors weights file"
    except RuntimeError:
        return None, {}, f"{path} holds tensors of other names or shapes than the recipe's model"
    if "weights_sha256" not in meta:  # the previous version's sidecar: the weights loaded whole, so keep them
        meta = meta | {"weights_sha256": sha256(path)}
        write_json(sidecar_path(path), meta)
    return model, meta, ""


def _install_shipped(recipe: DomainClipRecipe, path: Path) -> tuple[open_clip.CLIP | None, dict]:
    """The package's shipped weights of `recipe`, validated like a cache entry and copied into the cache at
    `path` (weights, then sidecar, each renamed into place), or (None, {}) when none are shipped. A damaged
    shipped copy is named in a one-line warning and the recipe is trained instead."""
    shipped = SHIPPED_DIR / path.name
    if not shipped.is_file():
        return None, {}
    model, meta, problem = _load_cached(shipped, recipe)
    if problem:
        warn(f"domain CLIP shipped weights: {problem}; training the recipe instead ({recipe.steps} steps)")
        return None, {}
    with atomic_path(path, suffix=".safetensors") as tmp:
        shutil.copyfile(shipped, tmp)
    write_json(sidecar_path(path), meta)
    return model, meta


def load_or_train(recipe: DomainClipRecipe, cache: str | Path | None = None, device: str = "cpu",
                  progress: Progress | None = None) -> tuple[open_clip.CLIP, dict]:
    """The trained domain CLIP of a recipe: from the cache, or trained now and cached atomically.

    A cache entry is validated before use: the sidecar's schema and recipe, the weights' SHA-256 against
    the sidecar, the safetensors format and every tensor's shape. An entry that fails is retrained, after a
    one-line warning on stderr naming the file and what is wrong. An empty cache takes the package's shipped
    weights of the recipe where there are some (validated the same way).

    Returns:
        The model (eval mode, on `device`) and a description: cache path, weights hash, whether it was
        trained now or copied from the shipped weights, training stats.

    Raises:
        UserError: the cache folder cannot be written.
    """
    path = weights_path(recipe, cache)
    model, meta, problem = None, {}, ""
    shipped = False
    if path.exists() or sidecar_path(path).exists():
        model, meta, problem = _load_cached(path, recipe)
        if problem:
            warn(f"domain CLIP cache {problem}; retraining it ({recipe.steps} steps)")
    else:
        model, meta = _install_shipped(recipe, path)
        shipped = model is not None
    trained_now = model is None
    if trained_now:
        model, stats = train(recipe, device=device, progress=progress)
        save_weights(path, model.state_dict(), {"recipe": json.dumps(asdict(recipe), sort_keys=True)})
        meta = {"recipe": asdict(recipe), "train": stats, "weights_sha256": sha256(path)}
        write_json(sidecar_path(path), meta)
    info = dict(cache_path=str(path), weights_sha256=meta["weights_sha256"], trained_now=trained_now,
                train=meta["train"], shipped=shipped)
    return model.to(device).eval(), info


def domain_recipe(image_size: int = 16, **recipe_overrides) -> DomainClipRecipe:
    """The domain CLIP's recipe (defaults, `image_size` and any overrides); its `key` names the evaluator."""
    try:
        return DomainClipRecipe(image_size=image_size, **recipe_overrides)
    except TypeError as err:
        raise UserError(f"domain CLIP: {err}") from None


def domain_evaluator(image_size: int = 16, cache: str | Path | None = None, device: str = "cpu",
                     progress: Progress | None = None, **recipe_overrides) -> QualityEvaluator:
    """A `QualityEvaluator` on the domain CLIP (recipe defaults, `image_size` and any overrides)."""
    recipe = domain_recipe(image_size, **recipe_overrides)
    model, cached = load_or_train(recipe, cache, device, progress)

    def embed_images(images: torch.Tensor) -> torch.Tensor:
        return model.encode_image(images.to(device))

    def embed_texts(captions: list[str]) -> torch.Tensor:
        return model.encode_text(tokenize(captions, recipe.context_length).to(device))

    info = dict(source="domain", model="domain-clip", model_id=recipe.key, image_size=image_size,
                seed=recipe.seed, feature="domain CLIP image embedding", feature_dim=recipe.embed_dim,
                recipe=asdict(recipe), **cached)
    return QualityEvaluator(embed_images, embed_images, embed_texts, image_size, info)
