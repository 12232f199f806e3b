"""Captioned image data: the embedded synthetic default, image folders with captions, COCO captions."""

from evaluators.data.dataset import CaptionedImages
from evaluators.data.load import KINDS, load_dataset

__all__ = ["CaptionedImages", "KINDS", "load_dataset"]
