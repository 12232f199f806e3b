"""Train / held-out split of real data by a stable hash of a group key (a caption or an image id)."""

from __future__ import annotations

import hashlib

from core.errors import UserError

HELDOUT_PERCENT = 10  # share of groups held out
SPLITS = ("train", "heldout")


def in_split(key: str, split: str) -> bool:
    """Whether the group `key` belongs to `split`; the same key always lands on the same side.

    Raises:
        UserError: unknown split.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100
    return (bucket < HELDOUT_PERCENT) == (split == "heldout")
