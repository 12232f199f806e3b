"""Quality evaluators: a tiny domain CLIP trained into a temporary cache, and the standard loading path on
small weights the tests make and save themselves."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.errors import UserError
from evaluators.data.synthetic import generate
from evaluators.quality import clip_score, get_quality_evaluator
from evaluators.quality.cache import sha256
from evaluators.quality.degrade import add_noise, gaussian_blur
from evaluators.quality.domain import load_or_train, sidecar_path, weights_path
from evaluators.quality.domain_clip import DomainClipRecipe
from evaluators.quality.metrics import fid, kid

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(steps=100, batch_size=64, lr=3e-3, warmup_steps=10)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("nas-cache")


@pytest.fixture(scope="module")
def domain(cache):
    return get_quality_evaluator("domain", image_size=16, cache_dir=cache, **TINY)


@pytest.fixture(scope="module")
def real():
    return generate("train", 16, 256, seed=11)


@pytest.mark.slow  # the module fixture trains a tiny domain CLIP (14-55 s measured on busy shared cores)
def test_domain_evaluator_info_and_cache(domain, cache):
    info = domain.info
    assert info["source"] == "domain" and info["image_size"] == 16 and info["seed"] == 0
    assert info["trained_now"] and info["train"]["steps"] == TINY["steps"]
    recipe = DomainClipRecipe(image_size=16, **TINY)
    assert info["model_id"] == recipe.key and info["cache_path"] == str(weights_path(recipe, cache))
    assert get_quality_evaluator("domain", image_size=16, cache_dir=cache, **TINY) is domain
    _, again = load_or_train(recipe, cache)
    assert not again["trained_now"] and again["weights_sha256"] == info["weights_sha256"]
    assert json.loads(weights_path(recipe, cache).with_suffix(".json").read_text())["recipe"]["steps"] == TINY["steps"]
    assert DomainClipRecipe(image_size=16, **(TINY | {"seed": 1})).key != recipe.key


def _other_recipes_weights(weights, recipe):
    """Weights of another architecture under this recipe's name, with a sidecar that vouches for them."""
    other = DomainClipRecipe(image_size=16, steps=1, batch_size=8, width=32)
    _, info = load_or_train(other, weights.parent.parent)
    weights.write_bytes(Path(info["cache_path"]).read_bytes())
    sidecar = sidecar_path(weights)
    sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"weights_sha256": sha256(weights)}))


DAMAGES = {  # what is done to a valid cache entry -> the file the warning names and what it says
    "garbage_weights": (lambda w, r: w.write_bytes(b"garbage"), "weights", "does not match the SHA-256"),
    "truncated_weights": (lambda w, r: w.write_bytes(w.read_bytes()[:-100]), "weights", "does not match the SHA-256"),
    "missing_weights": (lambda w, r: w.unlink(), "weights", "is missing"),
    "binary_sidecar": (lambda w, r: sidecar_path(w).write_bytes(bytes(range(256))), "sidecar",
                       "is not readable JSON text"),
    "list_sidecar": (lambda w, r: sidecar_path(w).write_text("[1, 2]"), "sidecar", "is not a JSON object"),
    "bad_checksum_type": (lambda w, r: sidecar_path(w).write_text(json.dumps(
        json.loads(sidecar_path(w).read_text()) | {"weights_sha256": 42})), "sidecar",
        "is not a JSON object with recipe, train and weights_sha256"),
    "missing_sidecar": (lambda w, r: sidecar_path(w).unlink(), "sidecar", "is missing"),
    "other_shapes": (_other_recipes_weights, "weights", "holds tensors of other names or shapes"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_corrupt_cache_is_retrained_with_a_one_line_warning(tmp_path, capsys, damage):
    inject, culprit, reason = DAMAGES[damage]
    recipe = DomainClipRecipe(image_size=16, steps=3, batch_size=8, n_train=32)
    _, first = load_or_train(recipe, tmp_path)
    weights = weights_path(recipe, tmp_path)
    capsys.readouterr()
    inject(weights, recipe)
    _, second = load_or_train(recipe, tmp_path)
    err = capsys.readouterr().err
    named = weights if culprit == "weights" else sidecar_path(weights)
    assert err.count("\n") == 1 and err.startswith(f"nas: warning: domain CLIP cache {named} {reason}")
    assert err.rstrip().endswith(f"retraining it ({recipe.steps} steps)")
    assert first["trained_now"] and second["trained_now"]
    assert second["weights_sha256"] == first["weights_sha256"] == sha256(weights)  # deterministic on CPU
    assert json.loads(sidecar_path(weights).read_text())["weights_sha256"] == sha256(weights)
    _, third = load_or_train(recipe, tmp_path)  # repaired: loads without a word
    assert not third["trained_now"] and capsys.readouterr().err == ""
    assert not list(weights.parent.glob(".*"))  # no temporary files left


def test_a_previous_versions_sidecar_without_checksum_is_upgraded_not_retrained(tmp_path, capsys):
    recipe = DomainClipRecipe(image_size=16, steps=3, batch_size=8, n_train=32)
    _, first = load_or_train(recipe, tmp_path)
    sidecar = sidecar_path(weights_path(recipe, tmp_path))
    legacy = {k: v for k, v in json.loads(sidecar.read_text()).items() if k != "weights_sha256"}
    sidecar.write_text(json.dumps(legacy))
    capsys.readouterr()
    _, second = load_or_train(recipe, tmp_path)
    assert not second["trained_now"] and capsys.readouterr().err == ""
    assert json.loads(sidecar.read_text()) == legacy | {"weights_sha256": first["weights_sha256"]}


def test_shipped_weights_cover_the_default_recipe():
    """The package's trained weights are those of the default recipe: a recipe change without new shipped weights
    would make every fresh machine train (and score with) its own domain CLIP."""
    from evaluators.quality import domain

    recipe = DomainClipRecipe(image_size=16)
    shipped = domain.SHIPPED_DIR / f"{recipe.key}.safetensors"
    assert shipped.is_file(), f"no shipped weights for the default recipe {recipe.key}: run `nas evaluators check` " \
        "on a fresh cache and copy <cache>/domain_clip/<key>.* into evaluators/quality/weights/"
    model, meta, problem = domain._load_cached(shipped, recipe)
    assert problem == "" and model is not None and meta["weights_sha256"] == sha256(shipped)


def test_an_empty_cache_takes_the_shipped_weights(tmp_path, monkeypatch, capsys):
    from evaluators.quality import domain

    recipe = DomainClipRecipe(image_size=16, steps=3, batch_size=8, n_train=32)
    _, trained = load_or_train(recipe, tmp_path / "maker")  # the "shipped" copy: made here, put in a package dir
    package = tmp_path / "package"
    package.mkdir()
    made = weights_path(recipe, tmp_path / "maker")
    for f in (made, sidecar_path(made)):
        (package / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(domain, "SHIPPED_DIR", package)
    capsys.readouterr()
    _, info = load_or_train(recipe, tmp_path / "fresh")
    assert info["shipped"] and not info["trained_now"] and info["weights_sha256"] == trained["weights_sha256"]
    assert sha256(weights_path(recipe, tmp_path / "fresh")) == trained["weights_sha256"] and capsys.readouterr().err == ""
    _, again = load_or_train(recipe, tmp_path / "fresh")  # now an ordinary cache entry
    assert not again["shipped"] and not again["trained_now"]
    # a damaged shipped copy: named in one line, the recipe is trained instead, the package is left as it is
    (package / made.name).write_bytes(b"garbage")
    _, trained_again = load_or_train(recipe, tmp_path / "other")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shipped weights" in err and "does not match the SHA-256" in err
    assert trained_again["trained_now"] and not trained_again["shipped"]
    assert trained_again["weights_sha256"] == trained["weights_sha256"]  # deterministic on CPU
    assert (package / made.name).read_bytes() == b"garbage"


@pytest.mark.parametrize("n_train", [None, 32])  # fresh images every step, or a fixed pool
def test_training_is_deterministic(tmp_path, n_train):
    recipe = DomainClipRecipe(image_size=16, steps=3, batch_size=8, n_train=n_train)
    _, first = load_or_train(recipe, tmp_path / "a")
    _, second = load_or_train(recipe, tmp_path / "b")
    assert first["trained_now"] and second["trained_now"]
    assert second["weights_sha256"] == first["weights_sha256"]


@pytest.mark.slow
def test_fid_of_identical_sets_is_zero_and_noise_raises_it(domain, real):
    feats = domain.features(real.images)
    assert abs(fid(feats, feats)) < 1e-6
    noisy = [fid(feats, domain.features(add_noise(real.images, s))) for s in (0.1, 0.4)]
    assert 0.1 < noisy[0] < noisy[1]
    assert kid(feats, feats) < kid(feats, domain.features(add_noise(real.images, 0.4)))


@pytest.mark.slow
def test_clip_score_real_above_shuffled(domain, real):
    shuffled = [real.captions[i] for i in np.random.default_rng(0).permutation(len(real))]
    matched, mismatched = clip_score(real.images, real.captions, domain), domain.clip_score(real.images, shuffled)
    assert -1 <= mismatched < matched <= 1
    assert matched - mismatched > 0.2


@pytest.mark.slow
def test_score_contract(domain, real):
    fake = generate("heldout", 32, 64, seed=3)  # other resolution: resized to the evaluator's
    out = domain.score(fake.images, fake.captions, real.images)
    assert set(out) == {"fid", "kid", "clip_score", "cmmd"} and all(isinstance(v, float) for v in out.values())
    assert out == domain.score(fake.images, fake.captions, real.images)  # deterministic
    with pytest.raises(ValueError):
        domain.score(fake.images[:1], fake.captions[:1], real.images)
    with pytest.raises(ValueError):
        domain.clip_score(fake.images, fake.captions[:3])


def test_kid_equals_clean_fid_and_leaves_numpy_state_alone():
    from cleanfid.fid import kernel_distance
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(0.3, 1, size=(60, 8))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    assert kid(a, b) == kid(a, b) > 0
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(0)
    assert kid(a, b) == pytest.approx(kernel_distance(a, b), rel=1e-9)


def test_degradations():
    x = generate("train", 16, 8, seed=0).images
    blurred = gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape and torch.allclose(blurred.mean(), x.mean(), atol=0.02)
    assert blurred.diff(dim=-1).abs().mean() < x.diff(dim=-1).abs().mean()
    assert torch.equal(add_noise(x, 0.1, seed=1), add_noise(x, 0.1, seed=1))
    assert add_noise(x, 0.4).min() >= -1 and add_noise(x, 0.4).max() <= 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(source="inception"), "unknown feature source 'inception'"),
    (dict(source="domain", image_size=18), "must be divisible by 4"),
    (dict(source="domain", epochs=3), "unexpected keyword argument 'epochs'"),
    (dict(source="standard", clip_size=3), "unexpected keyword argument 'clip_size'"),
])
def test_bad_evaluator_options(kwargs, message, tmp_path):
    with pytest.raises(UserError, match=message):
        get_quality_evaluator(cache_dir=tmp_path, **kwargs)


# ---- standard source, on small weights made here ----

class _TinyLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(12, 16)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


class _TinyInception(torch.nn.Module):
    """Inception-shaped: clean-fid calls `.layers` on (N, 3, 299, 299) normalised to [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.layers = _TinyLayers()

    def forward(self, x, return_features: bool = False):
        assert x.shape[2] == 299
        return self.layers(x)


@pytest.fixture(scope="module")
def standard_weights(tmp_path_factory):
    import open_clip
    root = tmp_path_factory.mktemp("standard")
    inception = root / "inception-tiny.pt"
    torch.jit.script(_TinyInception()).save(str(inception))
    model_cfg = dict(embed_dim=16, vision_cfg=dict(image_size=32, patch_size=16, width=32, layers=1, head_width=16),
                     text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
    clip_dir = root / "tiny-clip"
    clip_dir.mkdir()
    (clip_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(clip_dir / "open_clip_model.safetensors"))
    return inception, clip_dir, model


def test_standard_source_on_self_made_weights(standard_weights, tmp_path, real):
    inception, clip_dir, model = standard_weights
    ev = get_quality_evaluator("standard", cache_dir=tmp_path, inception_weights=str(inception),
                               clip_model=f"local-dir:{clip_dir}")
    assert ev.info["source"] == "standard" and ev.info["inception_weights"] == str(inception)
    x = real.images[:40]
    out = ev.score(x, real.captions[:40], x)
    assert abs(out["fid"]) < 1e-6 and -1 <= out["clip_score"] <= 1
    import open_clip
    tokens = open_clip.get_tokenizer(f"local-dir:{clip_dir}")(real.captions[:4])
    expect = torch.nn.functional.normalize(model.eval().encode_text(tokens), dim=-1)
    assert torch.allclose(ev.text_embeddings(real.captions[:4]), expect, atol=1e-5)  # the saved weights, loaded


def test_standard_weights_that_are_not_models(standard_weights, tmp_path):
    inception, clip_dir, _ = standard_weights
    bad = tmp_path / "inception.pt"
    bad.write_bytes(b"\x80\x04not a model")
    with pytest.raises(UserError, match="is not clean-fid's TorchScript Inception"):
        get_quality_evaluator("standard", cache_dir=tmp_path, inception_weights=str(bad))
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "open_clip_config.json").write_text((clip_dir / "open_clip_config.json").read_text())
    torch.save({"state_dict": _TinyLayers()}, evil / "open_clip_pytorch_model.bin")  # a pickled module
    with pytest.raises(UserError, match="cannot load open_clip local-dir:"):
        get_quality_evaluator("standard", cache_dir=tmp_path, inception_weights=str(inception),
                              clip_model=f"local-dir:{evil}")
    with pytest.raises(UserError, match="does not exist"):
        get_quality_evaluator("standard", cache_dir=tmp_path, inception_weights=str(tmp_path / "none.pt"))


def test_standard_missing_weights_offline_fail_fast_in_one_line(standard_weights, tmp_path, monkeypatch):
    inception, _, _ = standard_weights
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NAS_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("NAS_CLIP_WEIGHTS", raising=False)
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        get_quality_evaluator("standard", cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "inception-2015-12-05.pt") in message
    assert "NAS_INCEPTION_WEIGHTS" in message and "offline" in message
    monkeypatch.setenv("NAS_INCEPTION_WEIGHTS", str(inception))
    with pytest.raises(UserError) as err:
        get_quality_evaluator("standard", cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "ViT-B-32/laion2b_s34b_b79k" in message and "NAS_CLIP_WEIGHTS" in message
    assert time.perf_counter() - start < 5


def test_fid_matches_clean_fid_formula():
    import numpy as np
    from cleanfid import fid as cleanfid

    from evaluators.quality.metrics import fid

    a = np.random.RandomState(0).randn(300, 16)
    b = np.random.RandomState(1).randn(200, 16) * 1.2 + 0.1
    assert fid(a, b) == pytest.approx(cleanfid.fid_from_feats(a, b), rel=1e-9)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
