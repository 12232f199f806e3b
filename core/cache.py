"""The user cache folder: where evaluator weights, teachers and measured records live."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "NAS_CACHE_DIR"
CACHE_NAME = "mobile-diffusion-nas"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: `override`, else $NAS_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, + CACHE_NAME."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / CACHE_NAME
