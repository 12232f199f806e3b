"""The teacher: trained once per recipe and cached, resumable, validated, refused when it does not fit; and an
inherit-mode trial end to end (inherit, distil, fine-tune, teacher distance) at a tiny scale."""

import json
import math

import pytest
import torch

from core.errors import UserError
from evaluators.data import load_dataset
from evaluators.quality import get_quality_evaluator
from evaluators.training import Budget, evaluate_arch
from evaluators.training.proxy_mode import ProxyMode, default_steps
from evaluators.training.teacher import (
    CHECKPOINT,
    SIDECAR,
    WEIGHTS,
    TeacherRecipe,
    default_teacher_steps,
    forget_loaded,
    load_teacher,
    teacher_budget,
)
from search_spaces.config import ArchConfig, LevelConfig, MidConfig
from search_spaces.presets import get_preset

# Two levels of 8/16 proxy channels at 8x8 pixels: a teacher step takes ~0.05 s on one core.
TEACHER = ArchConfig(levels=(LevelConfig(256, 1, 2, 1, "cross"), LevelConfig(512, 1, 2, 1, "self_cross")),
                     mid=MidConfig(2, 1, "self_cross"))
TINY = dict(image_size=8, width_divisor=32, batch_size=16, n_train=256, lr=3e-3, warmup_steps=5, report_every=5,
            n_val=32, n_samples=16, n_real=32, sample_steps=4, grid_images=0)


@pytest.fixture(scope="module")
def budget(one_thread):
    return Budget(**TINY)


@pytest.fixture(scope="module")
def train_set():
    return load_dataset(kind="synthetic", split="train", image_size=8, n=256, seed=0)


@pytest.fixture(autouse=True)
def _fresh_process_memory():
    forget_loaded()
    yield
    forget_loaded()


def teacher(budget, cache, train_set, **kw):
    return load_teacher(TEACHER, budget, label="tiny", steps=kw.pop("steps", 12), cache=cache, train_set=train_set,
                        checkpoint_every=kw.pop("checkpoint_every", 4), **kw)


def test_defaults_train_four_times_the_trial_budget_at_the_trials_scale():
    assert default_teacher_steps() == 4 * Budget().steps and default_steps("inherit") == Budget().steps // 4
    trial = Budget(image_size=8, width_divisor=32, n_train=256, steps=7, lr=1e-4)
    tb = teacher_budget(trial)
    assert (tb.steps, tb.image_size, tb.width_divisor, tb.n_train, tb.lr) == (2000, 8, 32, 256, Budget().lr)


def test_the_recipe_key_follows_architecture_steps_scale_and_data(budget, train_set):
    key = TeacherRecipe.of(TEACHER, teacher_budget(budget, 12), train_set.info).key
    assert key == TeacherRecipe.of(TEACHER, teacher_budget(budget, 12), train_set.info).key
    others = [TeacherRecipe.of(TEACHER.replace(ff_mult=2), teacher_budget(budget, 12), train_set.info),
              TeacherRecipe.of(TEACHER, teacher_budget(budget, 13), train_set.info),
              TeacherRecipe.of(TEACHER, teacher_budget(budget.replace(width_divisor=16), 12), train_set.info),
              TeacherRecipe.of(TEACHER, teacher_budget(budget, 12), train_set.info | {"seed": 1})]
    assert len({key, *(r.key for r in others)}) == 5


def test_trained_once_then_loaded_from_the_cache(budget, train_set, tmp_path):
    calls = []
    first = teacher(budget, tmp_path, train_set, progress=lambda s, n, loss: calls.append((s, n)))
    assert first.info["trained_now"] and first.info["seconds_now"] > 0 and first.info["train"]["steps"] == 12
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    folder = tmp_path / "teachers" / first.recipe.key
    assert (folder / WEIGHTS).is_file() and not (folder / CHECKPOINT).exists()
    assert json.loads((folder / SIDECAR).read_text())["recipe"] == first.recipe.to_dict()
    assert not first.model.training and not any(p.requires_grad for p in first.model.parameters())
    again = teacher(budget, tmp_path, train_set)  # same process: memory; no training, no time
    assert again.model is first.model and not again.info["trained_now"] and again.info["seconds_now"] == 0
    forget_loaded()
    loaded = teacher(budget, tmp_path, train_set, train_allowed=False)  # from disk
    assert not loaded.info["trained_now"] and loaded.info["weights_sha256"] == first.info["weights_sha256"]
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                 first.model.state_dict().values()))


def test_an_interrupted_training_resumes_to_the_same_weights(budget, train_set, tmp_path):
    straight = teacher(budget, tmp_path / "a", train_set)

    def interrupt(step, total, loss):
        if step == 10:  # after the checkpoint at step 8, before the one at step 12 (reports every 10 steps)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        teacher(budget, tmp_path / "b", train_set, progress=interrupt)
    folder = tmp_path / "b" / "teachers" / straight.recipe.key
    assert (folder / CHECKPOINT).is_file() and not (folder / WEIGHTS).exists()
    resumed = teacher(budget, tmp_path / "b", train_set)
    assert resumed.info["train"]["resumed_from_step"] == 8
    assert resumed.info["weights_sha256"] == straight.info["weights_sha256"]  # bit for bit on CPU


def test_a_corrupt_cache_is_retrained_with_a_warning_or_refused(budget, train_set, tmp_path, capsys):
    first = teacher(budget, tmp_path, train_set)
    weights = tmp_path / "teachers" / first.recipe.key / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    forget_loaded()
    with pytest.raises(UserError, match="does not match the SHA-256 .* not allowed"):
        teacher(budget, tmp_path, train_set, train_allowed=False)
    rebuilt = teacher(budget, tmp_path, train_set)
    assert rebuilt.info["trained_now"] and rebuilt.info["weights_sha256"] == first.info["weights_sha256"]
    assert "nas: warning: teacher cache" in capsys.readouterr().err
    (tmp_path / "teachers" / first.recipe.key / SIDECAR).write_text("{not json")
    forget_loaded()
    assert teacher(budget, tmp_path, train_set).info["trained_now"]
    assert "is not readable JSON text; retraining" in capsys.readouterr().err


def test_no_cached_teacher_and_no_training_allowed_is_one_error(budget, train_set, tmp_path):
    with pytest.raises(UserError, match="no trained teacher tiny in .*not allowed"):
        teacher(budget, tmp_path, train_set, train_allowed=False)


def test_a_teacher_of_another_scale_or_data_is_refused(budget, train_set, tmp_path):
    trained = teacher(budget, tmp_path, train_set)
    trained.check_matches(budget.replace(steps=3, lr=1e-4))  # fine-tune options may differ
    for change in (dict(image_size=16), dict(width_divisor=16), dict(data_seed=1), dict(n_train=512),
                   dict(prediction="v_prediction")):
        with pytest.raises(UserError, match=f"trained with {next(iter(change))}="):
            trained.check_matches(budget.replace(**change))


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    return get_quality_evaluator(source="domain", image_size=8, cache_dir=tmp_path_factory.mktemp("clip"),
                                 steps=20, n_train=512, batch_size=64)


def test_an_inherit_trial_records_mode_teacher_fraction_and_distance(budget, evaluator, tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    mode = ProxyMode(mode="inherit", teacher="tiny", teacher_config=TEACHER.to_json(), teacher_steps=12)
    candidate = TEACHER.with_level(1, transformer_depth=2, separable=True)
    first = evaluate_arch(candidate, budget.replace(steps=6), seed=0, evaluator=evaluator, proxy_mode=mode)
    assert not first.failed and first.proxy_mode == "inherit" and first.steps == 6
    assert first.teacher["trained_now"] and first.teacher["label"] == "tiny"
    assert first.teacher["arch_id"] == TEACHER.arch_id and first.teacher["train"]["steps"] == 12
    assert 0 < first.inherited_fraction < 1 and first.inherit["by_rule"]["factorise"] > 0
    assert first.inherit["text_inherited"] and first.inherit["feature_points"] == ["down0", "down1", "mid", "up0",
                                                                                   "up1"]
    assert math.isfinite(first.teacher_distance) and first.teacher_distance > 0
    assert first.total_seconds < first.teacher["seconds_now"] + sum(first.seconds.values())  # training excluded
    again = evaluate_arch(candidate, budget.replace(steps=6), seed=0, evaluator=evaluator, proxy_mode=mode)
    assert not again.teacher["trained_now"] and again.val_loss == first.val_loss  # reproducible
    same = evaluate_arch(TEACHER, budget.replace(steps=1, lr=1e-9), seed=0, evaluator=evaluator, proxy_mode=mode)
    assert same.inherited_fraction == 1.0 and same.teacher_distance < 1e-6  # the teacher itself, barely moved
    scratch = evaluate_arch(candidate, budget.replace(steps=6), seed=0, evaluator=evaluator)
    assert scratch.proxy_mode == "scratch" and scratch.teacher_distance is None and scratch.inherited_fraction is None
    with pytest.raises(UserError, match="no trained teacher"):
        evaluate_arch(candidate, budget.replace(n_train=128), evaluator=evaluator,
                      proxy_mode=ProxyMode(**{**mode.__dict__, "train_teacher": False}))


def test_proxy_mode_options_are_checked():
    with pytest.raises(UserError, match="unknown proxy mode 'warm'"):
        ProxyMode(mode="warm")
    with pytest.raises(UserError, match="unknown feature point 'side'"):
        ProxyMode(mode="inherit", feature_points=("side",))
    with pytest.raises(UserError, match="unknown inheritance fallback"):
        ProxyMode(mode="inherit", inherit_fresh=("everything",))
    assert ProxyMode().key == "" and ProxyMode(mode="inherit").key != ProxyMode(mode="inherit", distill_output=0).key
    assert ProxyMode(mode="inherit").teacher_arch == get_preset("sd15")


def test_trial_records_and_manifests_say_which_mode_teacher_and_fraction(budget, tmp_path, monkeypatch):
    from core.metrics import names
    from core.run_folder import RunFolder
    from nas.trial_runner import TrialSettings, prepare, run_trial

    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    mode = ProxyMode(mode="inherit", teacher="tiny", teacher_config=TEACHER.to_json(), teacher_steps=6)
    recipe = dict(steps=20, n_train=256, batch_size=32)
    settings = TrialSettings(run_dir=str(tmp_path / "run"), metrics=names("quality"), budget=budget.replace(steps=3),
                             evaluator_recipe=recipe, proxy=mode)
    scratch = TrialSettings(**{**settings.__dict__, "proxy": ProxyMode()})
    assert settings.budget_hash != scratch.budget_hash and settings.cache_key("a", 0) != scratch.cache_key("a", 0)
    info = prepare(settings, [])
    assert info["proxy"]["mode"] == "inherit" and info["proxy"]["teacher_info"]["trained_now"]
    assert info["proxy"]["teacher_arch_id"] == TEACHER.arch_id and prepare(scratch, [])["proxy"] == {"mode": "scratch"}
    RunFolder.create(tmp_path / "run", {"kind": "search", "name": "run"})
    row = run_trial(settings, TEACHER.with_level(1, transformer_depth=2), 0, 0)
    assert row["state"] == "COMPLETE", row.get("failure_reason")
    assert row["proxy_mode"] == "inherit" and row["teacher"] == "tiny" and 0 < row["inherited_fraction"] < 1
    assert row["teacher_distance"] > 0 and row["seconds_teacher_distance"] > 0


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--preset", "mobilediffusion", "--proxy", "warm"], "unknown proxy mode 'warm'"),
    (["evaluate", "--preset", "mobilediffusion", "--proxy", "inherit", "--teacher", "nope"], "unknown preset 'nope'"),
    (["evaluate", "--preset", "mobilediffusion", "--proxy", "inherit", "--inherit-fresh", "convs"],
     "unknown inheritance fallback 'convs'"),
    (["evaluate", "--preset", "mobilediffusion", "--proxy", "inherit", "--feature-points", "side"],
     "unknown feature point 'side'"),
    (["search", "--proxy", "inherit", "--teacher", "missing.json"], "unknown preset 'missing.json'"),
    (["ablate", "--proxy", "inherit", "--teacher", "nope"], "unknown preset 'nope'"),
    (["fidelity", "--proxy", "inherit", "--teacher", "nope"], "unknown preset 'nope'"),
])
def test_bad_proxy_flags_are_one_line_errors(nas_cli, tmp_path, args, message):
    code, _, err = nas_cli(*args, "--run-dir" if args[0] != "evaluate" else "--out", tmp_path / "out")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
