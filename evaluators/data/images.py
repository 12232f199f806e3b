"""Reading image files into square tensors in [-1, 1], counting the files that cannot be read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.errors import UserError


def read_image(path: Path, image_size: int) -> torch.Tensor | None:
    """Centre-crop to a square, resize with a Lanczos filter: (3, image_size, image_size) in [-1, 1],
    or None when the file is not a readable image."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            im = im.resize((image_size, image_size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
            arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1) / 127.5 - 1


def collect(rows: list[tuple[Path, str]], image_size: int, n: int | None, seed: int,
            skipped: Counter, source: str, split: str) -> tuple[torch.Tensor, list[str]]:
    """Read up to `n` (image path, caption) rows in a seeded order, skipping and counting bad ones.

    Raises:
        UserError: no row gave a readable image with a caption.
    """
    order = np.random.default_rng(seed).permutation(len(rows)) if n is not None else range(len(rows))
    images, captions = [], []
    for i in order:
        if n is not None and len(images) >= n:
            break
        path, caption = rows[i]
        if not caption.strip():
            skipped["empty_caption"] += 1
            continue
        if not path.is_file():
            skipped["missing_file"] += 1
            continue
        image = read_image(path, image_size)
        if image is None:
            skipped["unreadable_image"] += 1
            continue
        images.append(image)
        captions.append(" ".join(caption.split()))
    if not images:
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items() if v)
        counts = counts or f"no rows in the {split} split"
        raise UserError(f"no usable image-caption pairs in {source} ({counts})")
    return torch.stack(images), captions
