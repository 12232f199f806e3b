"""A labelled sample grid: generated images with their captions underneath, as one PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.io import atomic_path


def to_pil(image: torch.Tensor, side: int) -> Image.Image:
    """One image (3, S, S) in [-1, 1] as an RGB PIL image enlarged to `side` pixels (nearest neighbour)."""
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (3, S, S)
    pil = Image.fromarray(np.ascontiguousarray(arr.permute(1, 2, 0).numpy()), "RGB")
    return pil.resize((side, side), Image.Resampling.NEAREST)


def write_grid(images: torch.Tensor, captions: list[str], path: str | Path, *, columns: int = 4,
               tile: int = 128, font_size: int = 11, title: str | None = None) -> Path:
    """Write images (N, 3, S, S) in [-1, 1] with captions under them as a PNG, atomically.

    Args:
        images: the images, in row-major grid order.
        captions: one caption per image, word-wrapped under it.
        path: the PNG to (over)write; it appears only once complete.
        columns: images per row.
        tile: side of each enlarged image in pixels.
        font_size: caption font size in pixels.
        title: an optional line of text above the grid.

    Returns:
        The path written.
    """
    if images.shape[0] != len(captions) or not captions:
        raise ValueError(f"{images.shape[0]} images for {len(captions)} captions (need the same, at least one)")
    font = ImageFont.load_default(size=font_size)
    line_h = font_size + 3
    chars = max(8, int(tile / (0.55 * font_size)))
    wrapped = [textwrap.wrap(c, chars) or [""] for c in captions]
    text_h = line_h * max(len(w) for w in wrapped) + 6
    columns = min(columns, len(captions))
    rows = -(-len(captions) // columns)
    pad = 6
    top = line_h + 2 * pad if title else pad
    canvas = Image.new("RGB", (columns * (tile + pad) + pad, top + rows * (tile + text_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    for k, (image, lines) in enumerate(zip(images, wrapped)):
        x = pad + (k % columns) * (tile + pad)
        y = top + (k // columns) * (tile + text_h + pad)
        canvas.paste(to_pil(image, tile), (x, y))
        for j, line in enumerate(lines):
            draw.text((x, y + tile + 3 + j * line_h), line, fill="black", font=font)
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
