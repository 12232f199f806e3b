"""`QualityEvaluator`: FID, KID and CLIP score of generated images in one feature source."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.quality.metrics import cmmd, fid, kid, mean_cosine

Embed = Callable[[torch.Tensor], torch.Tensor]  # images (N, 3, S, S) in [-1, 1] -> (N, D)


class QualityEvaluator:
    """Scores generated images against real ones and against their captions.

    Args:
        fid_features: images at `image_size` in [-1, 1] -> FID/KID features (N, D).
        embed_images: images at `image_size` in [-1, 1] -> CLIP image embeddings (N, E).
        embed_texts: captions -> CLIP text embeddings (N, E).
        image_size: the side images are resized to before `fid_features` and `embed_images`; None when
            those functions resize themselves.
        info: the feature source ("domain" or "standard"), model ids and hashes, image size, seed;
            every report carries it.
        batch_size: images per forward pass.
    """

    def __init__(self, fid_features: Embed, embed_images: Embed, embed_texts: Callable[[list[str]], torch.Tensor],
                 image_size: int | None, info: dict, batch_size: int = 256) -> None:
        self._fid_features = fid_features
        self._embed_images = embed_images
        self._embed_texts = embed_texts
        self.image_size = image_size
        self.info = info
        self.batch_size = batch_size

    def _batched(self, fn: Embed, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
            raise ValueError(f"expected a non-empty image batch (N, 3, H, W), got {tuple(images.shape)}")
        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                x = images[i:i + self.batch_size].float()
                if self.image_size is not None and x.shape[-2:] != (self.image_size, self.image_size):
                    x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                      antialias=True, align_corners=False)
                out.append(fn(x).float().cpu())
        return torch.cat(out)

    def features(self, images: torch.Tensor) -> np.ndarray:
        """FID/KID features of images (N, 3, H, W) in [-1, 1]: array (N, D)."""
        return self._batched(self._fid_features, images).numpy().astype(np.float64)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm CLIP image embeddings (N, E) of images (N, 3, H, W) in [-1, 1]."""
        return F.normalize(self._batched(self._embed_images, images), dim=-1)

    def text_embeddings(self, captions: list[str]) -> torch.Tensor:
        """Unit-norm CLIP text embeddings (N, E) of captions."""
        out = []
        with torch.no_grad():
            for i in range(0, len(captions), self.batch_size):
                out.append(self._embed_texts(list(captions[i:i + self.batch_size])).float().cpu())
        return F.normalize(torch.cat(out), dim=-1)

    def clip_score(self, images: torch.Tensor, captions: list[str]) -> float:
        """Mean cosine similarity between each image and its caption (not x100, not clipped at 0)."""
        if len(captions) != len(images):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        return mean_cosine(self.image_embeddings(images), self.text_embeddings(captions))

    def score(self, fake: torch.Tensor, captions: list[str], real: torch.Tensor) -> dict[str, float]:
        """FID, KID and CMMD of `fake` against `real`, and CLIP score of `fake` against `captions`.

        Args:
            fake: generated images (N, 3, H, W) in [-1, 1], N >= 2.
            captions: the N captions the images were generated from.
            real: reference images (M, 3, H', W') in [-1, 1], M >= 2.

        Returns:
            {"fid": float, "kid": float, "clip_score": float, "cmmd": float} (CMMD between the CLIP image
            embeddings of `fake` and `real`).
        """
        if len(fake) < 2 or len(real) < 2:
            raise ValueError(f"FID and KID need at least 2 images per set, got {len(fake)} and {len(real)}")
        if len(captions) != len(fake):
            raise ValueError(f"{len(fake)} images but {len(captions)} captions")
        feats_fake, feats_real = self.features(fake), self.features(real)
        emb_fake = self.image_embeddings(fake)
        return {"fid": fid(feats_fake, feats_real), "kid": kid(feats_fake, feats_real),
                "clip_score": mean_cosine(emb_fake, self.text_embeddings(captions)),
                "cmmd": cmmd(emb_fake, self.image_embeddings(real))}
