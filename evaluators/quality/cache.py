"""Where evaluator weights are cached, and atomic safetensors save / safe load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.cache import CACHE_ENV, CACHE_NAME, cache_dir  # noqa: F401  (re-exported)
from core.errors import UserError
from core.io import atomic_path


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a state dict as safetensors: to a temporary file, then renamed over `path`."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors state dict (no pickle).

    Raises:
        UserError: the file is missing or not a safetensors file.
    """
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path} is not a safetensors weights file ({err})") from None


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
