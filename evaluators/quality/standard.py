"""The standard feature source: clean-fid's Inception (FID/KID) and a pretrained open_clip (CLIP score).

Weights come from a local file or the cache; with a network, from their usual hosts. Offline without the
weights, loading fails at once with one line naming the missing file and how to provide it. Weight files
are read without plain pickle: open_clip checkpoints with `weights_only=True` or safetensors, the
Inception as a TorchScript archive (`torch.jit.load`, which runs no pickled Python code).
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from cleanfid.downloads_helper import inception_url
from cleanfid.resize import make_resizer
from huggingface_hub import try_to_load_from_cache

from core.errors import UserError
from core.io import atomic_path
from evaluators.quality.cache import cache_dir
from evaluators.quality.evaluator import QualityEvaluator

INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's TorchScript Inception (2048-d pool features)
INCEPTION_ENV = "NAS_INCEPTION_WEIGHTS"  # a local copy of INCEPTION_FILE
CLIP_ENV = "NAS_CLIP_WEIGHTS"  # a local open_clip checkpoint (.safetensors, .pt, .pth, .bin)
DEFAULT_CLIP = ("ViT-B-32", "laion2b_s34b_b79k")
INCEPTION_SIZE = 299
HUB_HOST = "huggingface.co"


def offline(host: str = HUB_HOST) -> bool:
    """True when HF_HUB_OFFLINE is set or `host` cannot be reached within 2 seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        socket.create_connection((host, 443), timeout=2).close()
    except OSError:
        return True
    return False


def inception_file(weights: str | os.PathLike | None = None, cache: str | Path | None = None) -> Path:
    """The Inception weights: `weights`, else $NAS_INCEPTION_WEIGHTS, else the cache (downloaded if online).

    Raises:
        UserError: a named file is missing, or the cached copy is missing and the network is unreachable.
    """
    named = weights or os.environ.get(INCEPTION_ENV)
    if named:
        if not Path(named).is_file():
            raise UserError(f"Inception weights file {named} does not exist")
        return Path(named)
    path = cache_dir(cache) / INCEPTION_FILE
    if path.is_file():
        return path
    hint = f"copy {inception_url} to {path} or set {INCEPTION_ENV}=FILE"
    if offline(urllib.parse.urlparse(inception_url).hostname or HUB_HOST):
        raise UserError(f"standard FID needs {path}, which is missing, and the network is offline: {hint}")
    try:
        with urllib.request.urlopen(inception_url, timeout=60) as response, atomic_path(path) as tmp:
            tmp.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"cannot download the Inception weights ({err}): {hint}") from None
    return path


def load_inception(path: Path, device: str | torch.device = "cpu"):
    """clean-fid's feature function: images (N, 3, H, W) in [-1, 1] -> Inception pool features (N, 2048).

    Images are quantised to 8 bits and resized to 299 with clean-fid's "clean" PIL bicubic resize.

    Raises:
        UserError: the file is not a TorchScript Inception.
    """
    try:
        base = torch.jit.load(str(path), map_location=device).eval()
        layers = base.layers
    except (RuntimeError, ValueError, AttributeError) as err:
        raise UserError(f"{path} is not clean-fid's TorchScript Inception ({str(err).splitlines()[0]}); replace it "
                        f"with a good copy of {inception_url}, or delete it if it is the cached download") from None
    resize = make_resizer("PIL", False, "bicubic", (INCEPTION_SIZE, INCEPTION_SIZE))

    def features(images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        x = torch.from_numpy(np.stack([resize(p) for p in pixels])).permute(0, 3, 1, 2).to(device)
        return layers.forward((x - 128) / 128).reshape(len(x), -1)  # (N, 2048)

    return features


def _pretrained_source(model: str, pretrained: str | None, weights: str | None) -> str | None:
    """What to pass as open_clip's `pretrained`: a local file, a tag (to download), or None (local-dir)."""
    named = weights or os.environ.get(CLIP_ENV)
    if named:
        if not Path(named).is_file():
            raise UserError(f"CLIP weights file {named} does not exist")
        return str(named)
    if model.startswith("local-dir:"):
        return None
    tag = pretrained or DEFAULT_CLIP[1]
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none known"
        raise UserError(f"no pretrained weights {tag!r} for open_clip model {model!r} (tags: {tags})")
    repo, name = os.path.split(cfg.get("hf_hub", ""))  # "org/repo/" or "org/repo/file", as open_clip reads it
    for filename in ("open_clip_model.safetensors", name or "open_clip_pytorch_model.bin"):
        if repo and isinstance(found := try_to_load_from_cache(repo, filename), str):
            return found
    if offline():
        where = f"{repo}/open_clip_model.safetensors" if repo else cfg.get("url", tag)
        raise UserError(f"standard CLIP score needs {model}/{tag} weights ({where}), which are not cached, and "
                        f"the network is offline: download them once online, or set {CLIP_ENV}=FILE")
    return tag


def load_clip(model: str = DEFAULT_CLIP[0], pretrained: str | None = None, weights: str | None = None,
              device: str | torch.device = "cpu"):
    """A pretrained open_clip: (model, image embed fn on [-1, 1] images, text embed fn, description).

    Args:
        model: an open_clip model name, or "local-dir:PATH" (a folder with open_clip_config.json and
            the weights, e.g. open_clip_model.safetensors).
        pretrained: an open_clip pretrained tag (default "laion2b_s34b_b79k" for ViT-B-32).
        weights: a local checkpoint file (else $NAS_CLIP_WEIGHTS); wins over `pretrained`.

    Raises:
        UserError: unknown model or tag, weights missing offline, a file that is not this model.
    """
    source = _pretrained_source(model, pretrained, weights)
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:"))
        if not any(folder.glob(p) for p in ("*.safetensors", "*.bin", "*.pth", "*.pt")):
            raise UserError(f"no CLIP weights (open_clip_model.safetensors or similar) in {folder}")
    try:
        clip = open_clip.create_model(model, pretrained=source, device=device, weights_only=True)
        tokenizer = open_clip.get_tokenizer(model)
    except Exception as err:  # open_clip raises many types for bad names, configs and checkpoints
        what = source or model
        raise UserError(f"cannot load open_clip {model} from {what}: {str(err).splitlines()[0][:200]}") from None
    clip.eval()
    cfg = clip.visual.preprocess_cfg
    size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)

    def embed_images(images: torch.Tensor) -> torch.Tensor:
        x = (images.to(device).clamp(-1, 1) + 1) / 2
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        return clip.encode_image((x.clamp(0, 1) - mean) / std)

    def embed_texts(captions: list[str]) -> torch.Tensor:
        return clip.encode_text(tokenizer(captions).to(device))

    return embed_images, embed_texts, dict(clip_model=model, clip_weights=source or model, clip_image_size=size)


def standard_evaluator(cache: str | Path | None = None, device: str = "cpu", clip_model: str = DEFAULT_CLIP[0],
                       clip_pretrained: str | None = None, clip_weights: str | None = None,
                       inception_weights: str | None = None) -> QualityEvaluator:
    """A `QualityEvaluator` on clean-fid's Inception and a pretrained open_clip.

    Raises:
        UserError: weights missing offline or not models (one line naming the file and the remedy).
    """
    inception = inception_file(inception_weights, cache)
    fid_features = load_inception(inception, device)
    embed_images, embed_texts, clip_info = load_clip(clip_model, clip_pretrained, clip_weights, device)
    info = dict(source="standard", model=f"inception-v3 + {clip_model}", inception_weights=str(inception),
                feature="Inception-v3 pool3 (clean-fid)", feature_dim=2048, image_size=INCEPTION_SIZE,
                seed=None, **clip_info)
    return QualityEvaluator(fid_features, embed_images, embed_texts, None, info)
