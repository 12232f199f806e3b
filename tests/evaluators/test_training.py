"""Proxy training: a tiny real training learns, is reproducible, fails cleanly, samples and writes a grid."""

import math

import pytest
import torch
from PIL import Image

from core.errors import UserError
from evaluators.data import load_dataset
from evaluators.memory import TooLargeError
from evaluators.quality import get_quality_evaluator
from evaluators.training import Budget, check_proxy_fits, evaluate_arch, fit_heldout
from evaluators.training.diffusion import heldout_loss, sample, target, train_scheduler
from evaluators.training.model import build_proxy_model
from evaluators.training.text_encoder import TextEncoder, tokenize
from evaluators.training.train import train
from search_spaces.presets import get_preset
from search_spaces.proxy import to_proxy

# The MobileDiffusion topology at 8x8 pixels and 1/32 of its widths: ~0.1 s per step on one core.
TINY = dict(image_size=8, width_divisor=32, batch_size=16, n_train=256, lr=3e-3, warmup_steps=5, report_every=5)


def tiny_budget(**changes) -> Budget:
    return Budget(**(TINY | dict(n_val=32, n_samples=16, n_real=32, sample_steps=4, grid_images=8) | changes))


@pytest.fixture(scope="module")
def data():
    train_set = load_dataset(kind="synthetic", split="train", image_size=8, n=256, seed=0)
    held = load_dataset(kind="synthetic", split="heldout", image_size=8, n=64, seed=0)
    return train_set, held


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    return get_quality_evaluator(source="domain", image_size=8, cache_dir=tmp_path_factory.mktemp("cache"),
                                 steps=20, n_train=512, batch_size=64)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_training(data, budget: Budget, seed: int = 0, report=None):
    train_set, _ = data
    proxy = to_proxy(get_preset("mobilediffusion"), budget.scale)
    ids = tokenize(train_set.captions, proxy.context_len)
    model = build_proxy_model(proxy, ids, seed)
    scheduler = train_scheduler(budget.prediction, budget.beta_schedule)
    uncond = tokenize([""], proxy.context_len)[0]
    outcome = train(model, scheduler, train_set.images, ids, uncond, budget, seed, report)
    return model, scheduler, outcome


def mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.slow
def test_tiny_training_lowers_training_and_heldout_loss(data):
    _, held = data
    budget = tiny_budget(steps=40)
    proxy = to_proxy(get_preset("mobilediffusion"), budget.scale)
    held_ids = tokenize(held.captions, proxy.context_len)
    vocab = tokenize(data[0].captions, proxy.context_len)
    scheduler = train_scheduler(budget.prediction, budget.beta_schedule)
    before = heldout_loss(build_proxy_model(proxy, vocab, 0).eval(), scheduler, held.images, held_ids, 32)
    model, scheduler, outcome = run_training(data, budget)
    after = heldout_loss(model.eval(), scheduler, held.images, held_ids, 32)
    assert outcome.steps == 40 and outcome.failure_reason is None
    assert mean(outcome.losses[-10:]) < 0.6 * mean(outcome.losses[:5])  # seen: 0.45
    assert after < 0.6 * before  # seen: 0.42


@pytest.mark.slow
def test_same_seed_reproduces_bit_for_bit_and_another_seed_differs(data):
    budget = tiny_budget(steps=6, cfg_dropout=0.5)
    _, _, a = run_training(data, budget, seed=3)
    _, _, b = run_training(data, budget, seed=3)
    _, _, c = run_training(data, budget, seed=4)
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_absurd_learning_rate_ends_with_a_failure_reason_not_a_crash(data):
    _, _, outcome = run_training(data, tiny_budget(steps=40, lr=1e9, warmup_steps=0, grad_clip=1e30))
    assert outcome.failure_reason is not None and "non-finite" in outcome.failure_reason
    assert outcome.steps < 40


def test_failed_trial_is_a_result_with_reason(evaluator, tmp_path):
    result = evaluate_arch(get_preset("mobilediffusion"), tiny_budget(steps=40, lr=1e9, warmup_steps=0,
                                                                     grad_clip=1e30),
                           out_dir=tmp_path, evaluator=evaluator)
    assert result.failed and "non-finite" in result.failure_reason
    assert result.fid is None and result.clip_score is None and result.sample_grid is None
    assert result.to_dict()["failure_reason"] == result.failure_reason
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_v_prediction_trains_on_the_velocity(data):
    scheduler = train_scheduler("v_prediction", "squaredcos_cap_v2")
    clean, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 300, 600, 999])
    velocity = target(scheduler, clean, noise, t)
    assert torch.allclose(velocity, scheduler.get_velocity(clean, noise, t))
    assert not torch.allclose(velocity, noise)
    _, held = data
    budget = tiny_budget(steps=40, prediction="v_prediction")
    model, scheduler, outcome = run_training(data, budget)
    assert outcome.failure_reason is None
    assert mean(outcome.losses[-10:]) < 0.85 * mean(outcome.losses[:5])  # seen: 0.74
    held_ids = tokenize(held.captions, 16)
    untrained = build_proxy_model(model.config, tokenize(data[0].captions, 16), 0).eval()
    before = heldout_loss(untrained, scheduler, held.images, held_ids, 32)
    assert heldout_loss(model.eval(), scheduler, held.images, held_ids, 32) < 0.8 * before  # seen: 0.67


def test_reports_window_means_every_report_every_steps(data):
    reports = []
    _, _, outcome = run_training(data, tiny_budget(steps=12), report=reports.append)
    assert [r["step"] for r in reports] == [5, 10, 12]
    assert math.isclose(reports[0]["loss"], mean(outcome.losses[:5]))
    assert math.isclose(reports[-1]["loss"], mean(outcome.losses[10:12]))
    assert all(set(r) == {"step", "loss", "lr", "seconds"} for r in reports)


def test_seconds_budget_stops_on_time(data):
    _, _, outcome = run_training(data, tiny_budget(steps=10_000, seconds=0.5))
    assert 1 <= outcome.steps < 10_000
    assert outcome.seconds < 5


def test_cfg_sampling_is_deterministic_batched_and_in_range(data):
    budget = tiny_budget(steps=5)
    model, scheduler, _ = run_training(data, budget)
    model.eval()
    ids = tokenize(data[1].captions[:6], 16)
    uncond = tokenize([""], 16)[0]

    def draw(kind, batch_size, cfg):
        return sample(model, scheduler, ids, uncond, kind=kind, steps=3, cfg_scale=cfg, batch_size=batch_size,
                      image_shape=(3, 8, 8), generator=torch.Generator().manual_seed(0))

    a = draw("dpm", 6, 3.0)
    assert a.shape == (6, 3, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert torch.allclose(a, draw("dpm", 4, 3.0), atol=1e-5)  # chunking does not change the result
    assert not torch.allclose(a, draw("dpm", 6, 1.0))
    assert draw("ddim", 6, 2.0).shape == (6, 3, 8, 8)


def test_heldout_loss_ignores_the_global_rng(data):
    budget = tiny_budget()
    proxy = to_proxy(get_preset("mobilediffusion"), budget.scale)
    held = data[1]
    ids = tokenize(held.captions, proxy.context_len)
    model = build_proxy_model(proxy, ids, 0).eval()
    scheduler = train_scheduler("epsilon", "squaredcos_cap_v2")
    first = heldout_loss(model, scheduler, held.images, ids, 64)
    torch.manual_seed(123)
    assert heldout_loss(model, scheduler, held.images, ids, 16) == pytest.approx(first, rel=1e-6)


def test_model_init_depends_on_seed_only():
    proxy = to_proxy(get_preset("mobilediffusion"), tiny_budget().scale)
    vocab = tokenize(["a red circle"], 16)
    a, b, c = (build_proxy_model(proxy, vocab, seed) for seed in (1, 1, 2))
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)


def test_text_encoder_knows_its_vocabulary_and_maps_the_rest_to_one_row():
    ids = tokenize(["a red circle", "", "a red circle"], 16)
    assert ids.shape == (3, 16) and torch.equal(ids[0], ids[2])
    encoder = TextEncoder(16, 64, vocab=ids)
    assert encoder.token.num_embeddings == len(torch.unique(ids)) + 1
    assert encoder(ids).shape == (3, 16, 64)
    unseen = tokenize(["a blue square", "a green triangle"], 16)
    assert torch.equal(encoder.lookup[unseen[0, 2:4]], torch.zeros(2, dtype=torch.long))
    assert torch.equal(encoder(unseen)[0, 2:4], encoder(unseen)[1, 2:4])  # both unknown: same input row


@pytest.mark.slow
def test_trial_end_to_end_writes_a_labelled_grid(evaluator, tmp_path):
    reports = []
    result = evaluate_arch(get_preset("mobilediffusion"), tiny_budget(steps=10), seed=1, out_dir=tmp_path,
                           evaluator=evaluator, report=reports.append)
    assert not result.failed and result.steps == 10 and len(reports) == 2
    for key in ("fid", "kid", "clip_score", "val_loss"):
        assert math.isfinite(getattr(result, key))
    assert set(result.seconds) == {"setup", "train", "val", "val_grid", "sample", "score"}
    assert result.total_seconds >= sum(result.seconds.values()) - 1e-6
    assert result.evaluator["source"] == "domain" and result.proxy_params > 0
    with Image.open(result.sample_grid) as grid:
        assert grid.format == "PNG" and grid.size[0] > 4 * 128 and grid.size[1] > 2 * 128
    assert [p.name for p in tmp_path.iterdir()] == [f"samples-{result.arch_id}-seed1.png"]


@pytest.mark.parametrize("changes", [dict(steps=0), dict(batch_size=-1), dict(seconds=0.0), dict(lr=0),
                                     dict(n_samples=0), dict(cfg_dropout=1.0), dict(prediction="x0"),
                                     dict(sampler="euler"), dict(cfg_scale=0.5), dict(n_train=4)])
def test_bad_budgets_are_user_errors(changes):
    with pytest.raises(UserError, match="budget"):
        Budget(**changes)


def _folder_dataset(root, n=48):
    """`n` random 16x16 PNGs with distinct captions (4 of the 48 fall in the held-out split) + captions.jsonl."""
    import json

    import numpy as np

    root.mkdir(parents=True)
    captions = [f"a {c} {s} at the {p}" for c in ("red", "green", "blue", "yellow")
                for s in ("circle", "square", "triangle") for p in ("left", "right", "top", "bottom")][:n]
    rng = np.random.default_rng(0)
    lines = []
    for i, caption in enumerate(captions):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"file": f"{i}.png", "caption": caption}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_heldout_defaults_adapt_to_a_small_split_with_a_warning(tmp_path, capsys):
    budget = Budget(data="folder", data_path=str(_folder_dataset(tmp_path / "d")))
    fitted = fit_heldout(budget)
    assert (fitted.n_val, fitted.n_samples, fitted.n_real) == (4, 4, 4)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: warning: the held-out split of ")
    assert "has 4 images" in err and "--n-real 512" in err and err.rstrip().endswith("using 4")
    assert fit_heldout(budget, n_val=2, n_real=3) == budget.replace(n_val=2, n_samples=4, n_real=3)
    with pytest.raises(UserError, match="has 4 images, fewer than --n-real 10$"):
        fit_heldout(budget, n_real=10)
    with pytest.raises(UserError, match="budget n_val must be a positive integer"):
        fit_heldout(budget, n_val=0)


def test_synthetic_heldout_split_fits_the_defaults_and_refuses_more(capsys):
    assert fit_heldout(Budget()) == Budget()
    assert capsys.readouterr().err == ""
    with pytest.raises(UserError, match="has 2048 images, fewer than --n-samples 3000, --n-real 4000"):
        fit_heldout(Budget(), n_samples=3000, n_real=4000)


def test_training_split_smaller_than_a_batch_is_refused(tmp_path):
    budget = Budget(data="folder", data_path=str(_folder_dataset(tmp_path / "d")), batch_size=64, n_val=4,
                    n_samples=4, n_real=4)
    with pytest.raises(UserError, match="has 44 images, fewer than one batch"):
        evaluate_arch(get_preset("mobilediffusion"), budget)


def test_too_large_proxy_is_refused_before_anything_is_built():
    with pytest.raises(TooLargeError, match=r"training the proxy of arch .* more than --max-memory 1.0 MiB"):
        evaluate_arch(get_preset("mobilediffusion"), tiny_budget(), max_memory=1 << 20)
    wide = get_preset("mobilediffusion").with_level(0, channels=102_400)
    with pytest.raises(TooLargeError, match=r"levels\[0\]\.channels 102400"):  # ~75 GiB: built, it would die
        check_proxy_fits(wide, Budget(), max_memory=32 << 30)


def test_an_inherit_trial_needs_room_for_its_teacher_too():
    from evaluators.memory import training_memory, with_teacher
    from evaluators.training.proxy_mode import ProxyMode
    from search_spaces.proxy import to_proxy

    student, teacher, budget = get_preset("bk_sdm_tiny"), get_preset("sd15"), Budget()
    alone = training_memory(student, to_proxy(student, budget.scale), budget.batch_size, budget.sample_batch_size)
    both = with_teacher(alone, teacher, to_proxy(teacher, budget.scale), budget.batch_size)
    assert both.total > alone.total and both.weight_bytes > alone.weight_bytes
    limit = (alone.total + both.total) // 2  # room for the student alone, not with its teacher
    check_proxy_fits(student, budget, max_memory=limit)
    check_proxy_fits(student, budget, max_memory=limit, proxy_mode=ProxyMode("scratch"))  # scratch: no teacher to make room for
    with pytest.raises(TooLargeError, match=r"teacher \(arch "):
        check_proxy_fits(student, budget, max_memory=limit, proxy_mode=ProxyMode("inherit", teacher="sd15"))
    small = get_preset("mobilediffusion")  # a teacher smaller than the student: the resident pair decides
    pair = with_teacher(alone, small, to_proxy(small, budget.scale), budget.batch_size)
    with pytest.raises(TooLargeError, match=r"with its teacher \(arch .*\) resident"):
        check_proxy_fits(student, budget, max_memory=(alone.total + pair.total) // 2,
                         proxy_mode=ProxyMode("inherit", teacher="mobilediffusion"))
