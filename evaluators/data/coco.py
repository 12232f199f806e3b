"""COCO captions: a `captions_*.json` annotation file and the folder of its images."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from core.errors import UserError
from evaluators.data.dataset import CaptionedImages
from evaluators.data.images import collect
from evaluators.data.split import in_split


def _annotation_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("captions_*.json")) + sorted(path.glob("annotations/captions_*.json"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise UserError(f"no captions_*.json in {path} or {path / 'annotations'}")
        raise UserError(f"several captions files in {path}: {', '.join(p.name for p in found)}; pass one")
    raise UserError(f"dataset path {path} does not exist")


def _image_folder(annotations: Path, first_file: str) -> Path:
    """COCO keeps `annotations/captions_val2017.json` next to `val2017/`; also accept images beside it."""
    name = annotations.stem.removeprefix("captions_")
    here = annotations.parent
    candidates = [here / name, here.parent / name, here / "images", here]
    for folder in candidates:
        if (folder / first_file).is_file():
            return folder
    raise UserError(f"images of {annotations.name} not found (looked for {first_file} in "
                    f"{', '.join(str(c) for c in candidates)})")


def _load_json(annotations: Path) -> dict:
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {annotations}: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{annotations} is not JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError(f"{annotations} is not a COCO captions file (needs lists 'images' and 'annotations')")
    return data


def load_coco(path: str | Path, split: str, image_size: int, n: int | None = None,
              seed: int = 0) -> CaptionedImages:
    """Load COCO-format captions, one caption per image (chosen by `seed` among the image's captions).

    Args:
        path: a `captions_*.json` file, or a folder holding exactly one (directly or in `annotations/`).
            Images are looked up in the folder named like the file (`captions_val2017.json` ->
            `val2017/`, beside the file or one level up), else in `images/` or beside the file.
        split: "train" or "heldout"; split by image id, so held-out images and their captions never
            occur in "train".
        image_size: side of the square images (centre-cropped, then resized).
        n: at most this many images, drawn in a seeded order; None for all.
        seed: which caption of each image, and the order in which images are drawn.

    Raises:
        UserError: missing path, malformed file or entries, image folder not found, or no usable pair.
            Images without a caption and annotations of unknown images are skipped and counted.
    """
    annotations = _annotation_file(Path(path))
    data = _load_json(annotations)
    files: dict[int, str] = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) \
                or not isinstance(im.get("file_name"), str):
            raise UserError(f"{annotations}: images[{k}] needs an integer 'id' and a 'file_name'")
        files[im["id"]] = im["file_name"]
    if not files:
        raise UserError(f"{annotations} lists no images")
    skipped: Counter = Counter()
    captions: dict[int, list[str]] = defaultdict(list)
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int) \
                or not isinstance(ann.get("caption"), str):
            raise UserError(f"{annotations}: annotations[{k}] needs an integer 'image_id' and a 'caption'")
        if ann["image_id"] not in files:
            skipped["unknown_image_id"] += 1
            continue
        captions[ann["image_id"]].append(ann["caption"])
    skipped["no_caption"] += sum(1 for i in files if i not in captions)
    folder = _image_folder(annotations, next(iter(files.values())))
    rng = np.random.default_rng(seed)
    rows = [(folder / files[i], caps[rng.integers(len(caps))]) for i, caps in sorted(captions.items())
            if in_split(str(i), split)]
    images, texts = collect(rows, image_size, n, seed, skipped, str(annotations), split)
    info = dict(kind="coco", split=split, seed=seed, image_size=image_size, n=len(texts),
                path=str(annotations), images_dir=str(folder),
                skipped={k: v for k, v in skipped.items() if v})
    return CaptionedImages(images, texts, info)
