"""Is a feature source fit to rank? Retrieval on held-out captions and FID/KID under controlled damage."""

from __future__ import annotations

import time

import torch

from evaluators.data.synthetic import generate, heldout_retrieval_set
from evaluators.quality.degrade import add_noise, gaussian_blur
from evaluators.quality.evaluator import QualityEvaluator
from evaluators.quality.metrics import fid, kid

NOISE_LEVELS = (0.05, 0.1, 0.2, 0.4)  # Gaussian noise sigma, in units of the [0, 1] pixel range
BLUR_LEVELS = (0.5, 1.0, 2.0, 3.0)  # Gaussian blur sigma in pixels
MILD_BLUR = 1.0  # the "mildly blurred" level the FID floor must stay far below
FLOOR_RATIO = 0.25  # far below: FID(real, held-out real) <= FLOOR_RATIO * FID(real, mildly blurred)
RETRIEVAL_GOAL = 0.9  # held-out image->text top-1
KID_SUBSETS = 20  # subsets of up to 1,000 per KID value (clean-fid's 100 would take minutes here)


def _increasing(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def retrieval_top1(evaluator: QualityEvaluator, image_size: int, n_captions: int = 128,
                   per_caption: int = 4, seed: int = 0) -> float:
    """Image->text top-1 accuracy of held-out images among `n_captions` distinct held-out captions."""
    data, candidates = heldout_retrieval_set(image_size, n_captions, per_caption, seed)
    sims = evaluator.image_embeddings(data.images) @ evaluator.text_embeddings(candidates).T  # (N, C)
    truth = torch.arange(len(candidates)).repeat_interleave(per_caption)
    return float((sims.argmax(1) == truth).float().mean())


def check_evaluator(evaluator: QualityEvaluator, image_size: int, n_real: int = 4096, n_test: int = 2048,
                    seed: int = 0) -> dict:
    """Run the fitness checks on the synthetic data.

    The reference set is `n_real` held-out-split images and the test set `n_test` other held-out-split
    images (independent draws of the same distribution, as in a trial: samples of held-out captions are
    scored against held-out real images), compared clean (the FID floor) and under four levels of noise
    and of blur.

    Returns:
        retrieval_top1, fid_monotone_noise, fid_monotone_blur, kid_monotone_noise, kid_monotone_blur,
        floor_far_below_blur, passed, the raw values per level, CLIP scores of real and shuffled
        captions, the evaluator info and the seconds taken. Monotone means strictly increasing from the
        clean test set through the four levels.
    """
    start = time.perf_counter()
    real = generate("heldout", image_size, n_real, seed + 1)
    test = generate("heldout", image_size, n_test, seed + 2)
    ref = evaluator.features(real.images)
    clean = evaluator.features(test.images)
    floor_fid, floor_kid = fid(ref, clean), kid(ref, clean, subsets=KID_SUBSETS)
    out: dict = dict(noise_levels=list(NOISE_LEVELS), blur_levels=list(BLUR_LEVELS))
    for name, levels, damage in (("noise", NOISE_LEVELS, lambda x, s: add_noise(x, s, seed)),
                                 ("blur", BLUR_LEVELS, gaussian_blur)):
        feats = [evaluator.features(damage(test.images, s)) for s in levels]
        out[f"fid_{name}"] = [fid(ref, f) for f in feats]
        out[f"kid_{name}"] = [kid(ref, f, subsets=KID_SUBSETS) for f in feats]
        out[f"fid_monotone_{name}"] = _increasing([floor_fid, *out[f"fid_{name}"]])
        out[f"kid_monotone_{name}"] = _increasing([floor_kid, *out[f"kid_{name}"]])
    mild = out["fid_blur"][BLUR_LEVELS.index(MILD_BLUR)]
    shuffled = [test.captions[i] for i in torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))]
    out.update(
        retrieval_top1=retrieval_top1(evaluator, image_size, seed=seed),
        retrieval_goal=RETRIEVAL_GOAL,
        fid_floor=floor_fid, kid_floor=floor_kid, fid_mild_blur=mild,
        floor_far_below_blur=floor_fid <= FLOOR_RATIO * mild,
        clip_score_real=evaluator.clip_score(test.images, test.captions),
        clip_score_shuffled=evaluator.clip_score(test.images, shuffled),
        n_real=n_real, n_test=n_test, seed=seed,
    )
    out["passed"] = bool(out["retrieval_top1"] >= RETRIEVAL_GOAL and out["fid_monotone_noise"]
                         and out["fid_monotone_blur"] and out["floor_far_below_blur"])
    out["evaluator"] = evaluator.info
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out
