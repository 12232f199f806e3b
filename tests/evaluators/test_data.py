"""The captioned data sources: synthetic determinism and split, folder and COCO loaders, bad inputs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import UserError
from evaluators.data import CaptionedImages, load_dataset
from evaluators.data.synthetic import (
    COLOURS,
    RELATIONS,
    SHAPES,
    SIZES,
    all_captions,
    generate,
    heldout_retrieval_set,
    split_captions,
    swapped,
)
from evaluators.quality.domain_clip import tokenize

pytestmark = pytest.mark.usefixtures("one_thread")


def test_synthetic_is_deterministic_by_seed():
    a = load_dataset("synthetic", "train", 16, n=64, seed=3)
    b = load_dataset("synthetic", "train", 16, n=64, seed=3)
    c = load_dataset("synthetic", "train", 16, n=64, seed=4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (64, 3, 16, 16) and a.images.dtype == torch.float32
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert a.info["kind"] == "synthetic" and a.info["seed"] == 3 and a.info["split"] == "train"


def test_synthetic_resolution_and_anti_aliasing():
    data = generate("train", 32, 16, seed=0)
    assert data.images.shape == (16, 3, 32, 32)
    # drawn at 4x and averaged: object edges take values between object and background colours
    levels = torch.unique((data.images[0] * 1000).round())
    assert len(levels) > 20


def test_heldout_captions_never_in_train_and_compose_seen_words():
    train, held = set(split_captions("train")), set(split_captions("heldout"))
    assert train and held and not train & held
    assert len(train) + len(held) == len(SHAPES) * len(COLOURS) * len(SIZES) * (
        4 + (len(SHAPES) * len(COLOURS) * len(SIZES) - 1) * len(RELATIONS))
    train_words = {w for c in train for w in c.split()}
    assert all(set(c.split()) <= train_words for c in held)
    a = load_dataset("synthetic", "train", 16, n=2000, seed=0)
    b = load_dataset("synthetic", "heldout", 16, n=500, seed=0)
    assert set(a.captions) <= train and set(b.captions) <= held
    assert {c for c in b.captions if " in the " in c} and {c for c in b.captions if " above " in c}


def test_captions_fit_the_text_context():
    tokens = tokenize(split_captions("train") + split_captions("heldout"), context_length=32)
    assert int((tokens != 0).sum(1).max()) <= 15


def test_caption_describes_the_image():
    scene = all_captions().index("a large red square in the top left")
    img = generate("train", 32, 1, seed=0, scene_ids=np.array([scene])).images[0]
    top_left, bottom_right = img[:, 4:12, 4:12], img[:, 20:28, 20:28]
    assert top_left[0].mean() > 0.5 and top_left[1].mean() < -0.5  # red: high R, low G
    assert (top_left.mean((1, 2)) - bottom_right.mean((1, 2))).abs().max() > 0.5


def test_swapped_scenes_exchange_the_objects():
    ids = np.array([all_captions().index(c) for c in split_captions("train") if " above " in c][:50])
    partners = swapped(ids, "train")
    for i, j in zip(ids, partners):
        a, b = all_captions()[i].split(" above ")
        assert j == -1 or all_captions()[j] == f"{b} above {a}"
    assert (partners >= 0).sum() > 30


def test_retrieval_set_has_distinct_heldout_captions():
    data, candidates = heldout_retrieval_set(16, n_captions=32, per_caption=2, seed=1)
    assert len(set(candidates)) == 32 and set(candidates) <= set(split_captions("heldout"))
    assert data.captions == [c for c in candidates for _ in range(2)]


def test_dataset_is_a_torch_dataset():
    data = load_dataset("synthetic", "heldout", 16, n=10)
    image, caption = data[3]
    assert image.shape == (3, 16, 16) and caption == data.captions[3] and len(data) == 10
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch[0].shape == (4, 3, 16, 16) and len(batch[1]) == 4
    with pytest.raises(ValueError):
        CaptionedImages(torch.zeros(2, 3, 4, 4), ["one"])


def _png(path, colour, size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(tmp_path, fmt="jsonl", n=40):
    rows = []
    for i in range(n):
        _png(tmp_path / "img" / f"{i}.png", (i * 6, 100, 200))
        rows.append({"file": f"img/{i}.png", "caption": f"picture number {i}"})
    if fmt == "jsonl":
        (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        lines = "".join(f"{r['file']},{r['caption']}\n" for r in rows)
        (tmp_path / "captions.csv").write_text("file,caption\n" + lines)
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_folder_loader_splits_by_caption(tmp_path, fmt):
    _folder(tmp_path, fmt)
    train = load_dataset("folder", "train", 8, path=str(tmp_path))
    held = load_dataset("folder", "heldout", 8, path=str(tmp_path))
    assert len(train) + len(held) == 40 and len(held) > 0
    assert not set(train.captions) & set(held.captions)
    assert train.images.shape[1:] == (3, 8, 8) and train.images.min() >= -1 and train.images.max() <= 1
    assert train.info["kind"] == "folder" and train.info["skipped"] == {}
    some = load_dataset("folder", "train", 8, n=5, seed=1, path=str(tmp_path / f"captions.{fmt}"))
    again = load_dataset("folder", "train", 8, n=5, seed=1, path=str(tmp_path / f"captions.{fmt}"))
    assert len(some) == 5 and some.captions == again.captions


def test_folder_loader_counts_and_skips_bad_items(tmp_path):
    rows = _folder(tmp_path, n=30)
    (tmp_path / "img" / "3.png").write_bytes(b"not a png")
    (tmp_path / "img" / "4.png").unlink()
    rows[5]["caption"] = "   "
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    both = [load_dataset("folder", s, 8, path=str(tmp_path)) for s in ("train", "heldout")]
    skipped = {k: sum(d.info["skipped"].get(k, 0) for d in both)
               for k in ("unreadable_image", "missing_file", "empty_caption")}
    assert skipped == {"unreadable_image": 1, "missing_file": 1, "empty_caption": 1}
    assert sum(len(d) for d in both) == 27


@pytest.mark.parametrize("content, message", [
    ('{"file": "a.png", "caption": "x"}\n{oops', "line 2: not JSON"),
    ('{"file": "a.png"}', "missing caption"),
    ('["a.png", "x"]', "expected an object"),
    ('{"file": 3, "caption": "x"}', "must be text"),
    ("", "has no rows"),
])
def test_folder_loader_rejects_malformed_rows(tmp_path, content, message):
    (tmp_path / "captions.jsonl").write_text(content)
    with pytest.raises(UserError, match=message):
        load_dataset("folder", "train", 8, path=str(tmp_path))


def test_folder_loader_bad_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("folder", "train", 8, path=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no captions.jsonl or captions.csv"):
        load_dataset("folder", "train", 8, path=str(tmp_path))
    (tmp_path / "captions.csv").write_text("name,text\na.png,x\n")
    with pytest.raises(UserError, match="header must name the columns file, caption"):
        load_dataset("folder", "train", 8, path=str(tmp_path))
    (tmp_path / "captions.txt").write_text("x")
    with pytest.raises(UserError, match="must end in .jsonl or .csv"):
        load_dataset("folder", "train", 8, path=str(tmp_path / "captions.txt"))
    (tmp_path / "captions.jsonl").write_text('{"file": "gone.png", "caption": "x"}\n' * 3)
    with pytest.raises(UserError, match="no usable image-caption pairs .*3 missing file"):
        load_dataset("folder", "train", 8, path=str(tmp_path / "captions.jsonl"))
    with pytest.raises(UserError, match="no usable image-caption pairs .*no rows in the heldout split"):
        load_dataset("folder", "heldout", 8, path=str(tmp_path / "captions.jsonl"))


def _coco(root, n=30):
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 12, "width": 20} for i in range(n)]
    anns = [{"id": 100 + k, "image_id": k // 2, "caption": f"photo {k // 2} caption {k % 2}"} for k in range(2 * n)]
    anns.append({"id": 999, "image_id": 4242, "caption": "orphan"})
    for im in images:
        root.joinpath("val2017").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 12), (im["id"] * 8, 50, 50)).save(root / "val2017" / im["file_name"])
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": anns}))


def test_coco_loader_layout_split_and_skips(tmp_path):
    _coco(tmp_path)
    train = load_dataset("coco", "train", 8, path=str(tmp_path))
    held = load_dataset("coco", "heldout", 8, path=str(tmp_path / "annotations" / "captions_val2017.json"))
    assert len(train) + len(held) == 30 and len(held) > 0
    ids = lambda d: {c.split()[1] for c in d.captions}  # noqa: E731
    assert not ids(train) & ids(held)
    assert train.info["skipped"] == {"unknown_image_id": 1}
    assert train.info["images_dir"].endswith("val2017")
    assert all(c.startswith("photo") for c in train.captions)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(images="x"), "not a COCO captions file"),
    (lambda d: d["images"].append({"id": "7"}), r"images\[30\] needs an integer 'id'"),
    (lambda d: d["annotations"].append({"image_id": 1}), "needs an integer 'image_id' and a 'caption'"),
    (lambda d: d.update(images=[]), "lists no images"),
    (lambda d: d["images"].insert(0, {"id": 77, "file_name": "elsewhere.jpg"}),
     "images of captions_val2017.json not found"),
])
def test_coco_loader_rejects_malformed_files(tmp_path, mutate, message):
    _coco(tmp_path, n=30)
    path = tmp_path / "annotations" / "captions_val2017.json"
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        load_dataset("coco", "train", 8, path=str(tmp_path))


def test_coco_loader_bad_paths(tmp_path):
    with pytest.raises(UserError, match="no captions_\\*.json"):
        load_dataset("coco", "train", 8, path=str(tmp_path))
    (tmp_path / "captions_a.json").write_text("{")
    with pytest.raises(UserError, match="is not JSON"):
        load_dataset("coco", "train", 8, path=str(tmp_path))
    (tmp_path / "captions_b.json").write_text("{}")
    with pytest.raises(UserError, match="several captions files"):
        load_dataset("coco", "train", 8, path=str(tmp_path))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="imagenet", split="train"), "unknown dataset kind 'imagenet'"),
    (dict(kind="synthetic", split="test"), "unknown split 'test'"),
    (dict(kind="synthetic", split="train", path="/tmp"), "takes no path"),
    (dict(kind="folder", split="train"), "needs a path"),
    (dict(kind="coco", split="train", path="/does/not/exist"), "does not exist"),
    (dict(kind="synthetic", split="train", n=0), "must be positive"),
    (dict(kind="synthetic", split="train", image_size=4), "at least 8 pixels"),
])
def test_load_dataset_rejects_bad_arguments(kwargs, message):
    kwargs = dict(image_size=16, n=4) | kwargs
    with pytest.raises(UserError, match=message):
        load_dataset(**kwargs)
