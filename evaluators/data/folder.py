"""An image folder with a captions file (JSONL or CSV with the columns `file` and `caption`)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from core.errors import UserError
from evaluators.data.dataset import CaptionedImages
from evaluators.data.images import collect
from evaluators.data.split import in_split

CAPTION_FILES = ("captions.jsonl", "captions.csv")  # looked for when the path is a folder
COLUMNS = ("file", "caption")


def _captions_file(path: Path) -> Path:
    if path.is_file():
        if path.suffix.lower() not in (".jsonl", ".csv"):
            raise UserError(f"captions file {path} must end in .jsonl or .csv")
        return path
    if path.is_dir():
        for name in CAPTION_FILES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"no {' or '.join(CAPTION_FILES)} in {path}")
    raise UserError(f"dataset path {path} does not exist")


def _row(raw: object, where: str) -> tuple[str, str]:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected an object with keys {', '.join(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in raw or raw[c] is None]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    if not all(isinstance(raw[c], str) for c in COLUMNS):
        raise UserError(f"{where}: {' and '.join(COLUMNS)} must be text")
    return raw["file"], raw["caption"]


def _read_rows(captions: Path) -> list[tuple[str, str]]:
    try:
        text = captions.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {captions}: {err}") from None
    rows = []
    if captions.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{captions} line {number}: not JSON ({err.msg})") from None
            rows.append(_row(raw, f"{captions} line {number}"))
    else:
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
            raise UserError(f"{captions}: header must name the columns {', '.join(COLUMNS)}, "
                            f"got {', '.join(reader.fieldnames or []) or 'nothing'}")
        for raw in reader:
            rows.append(_row(raw, f"{captions} line {reader.line_num}"))
    if not rows:
        raise UserError(f"{captions} has no rows")
    return rows


def load_folder(path: str | Path, split: str, image_size: int, n: int | None = None,
                seed: int = 0) -> CaptionedImages:
    """Load an image folder with a captions file.

    Args:
        path: the captions file, or the folder that holds `captions.jsonl` or `captions.csv`; image
            paths in the file are relative to the file's folder (or absolute).
        split: "train" or "heldout"; split by caption, so a held-out caption never occurs in "train".
        image_size: side of the square images (centre-cropped, then resized).
        n: at most this many images, drawn in a seeded order; None for all.
        seed: the order in which images are drawn when `n` is given.

    Raises:
        UserError: missing path or captions file, a malformed row, or no usable pair. Rows with an empty
            caption, a missing or an unreadable image are skipped and counted in `info["skipped"]`.
    """
    captions = _captions_file(Path(path))
    rows = [(captions.parent / f, c) for f, c in _read_rows(captions)
            if in_split(" ".join(c.lower().split()), split)]
    skipped: Counter = Counter()
    images, texts = collect(rows, image_size, n, seed, skipped, str(captions), split)
    info = dict(kind="folder", split=split, seed=seed, image_size=image_size, n=len(texts),
                path=str(captions), skipped=dict(skipped))
    return CaptionedImages(images, texts, info)
