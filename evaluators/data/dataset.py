"""`CaptionedImages`: the one in-memory form every data source produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True, eq=False)
class CaptionedImages(Dataset):
    """Images with one caption each, held in memory.

    Attributes:
        images: float tensor (N, 3, H, W) with values in [-1, 1].
        captions: N captions, `captions[i]` describes `images[i]`.
        info: where the data came from (kind, split, seed, path, counts of skipped items, ...).
    """

    images: torch.Tensor  # (N, 3, H, W) in [-1, 1]
    captions: list[str]  # one caption per image
    info: dict = field(default_factory=dict)  # description of the source, carried into reports

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(self.images.shape)}")
        if len(self.captions) != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {len(self.captions)} captions")

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.images[index], self.captions[index]
