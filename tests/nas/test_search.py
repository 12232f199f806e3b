"""`nas search` with a real local Ray, real (tiny) trainings and a real SQLite study."""

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from search_helpers import tiny_options, tiny_settings

from core.run_folder import RunFolder
from nas.search import run_search, validate_options
from nas.trial_runner import run_trial
from search_spaces.presets import get_preset


@pytest.mark.slow
@pytest.mark.ray
def test_search_runs_resumes_and_never_reruns(tmp_path, search_env):
    run_dir = tmp_path / "run"
    result = run_search(tiny_options(run_dir, trials=3))
    assert result.n_complete == 3 and result.n_failed == 0
    t = result.timings  # the stages add up to (almost) the whole invocation
    assert t["ray_startup"] > 0 and t["ray_memory_mb"] > 50 and t["trials"] > 0
    assert 0.9 * result.seconds < t["prepare"] + t["ray_startup"] + t["trials"] + t["report"] <= result.seconds
    table = RunFolder(run_dir).read_trials()
    assert list(table["number"]) == [0, 1, 2]
    assert set(table["state"]) == {"COMPLETE"}
    assert table[["fid", "clip_score", "latency_ms", "kid", "val_loss"]].notna().all().all()
    assert list(table["preset"][:2]) == ["sd15", "mobilediffusion"]  # warm starts come first
    assert table["ray_node"].notna().all()
    for n in table["number"]:
        assert (run_dir / "trials" / f"{n:04d}" / "metrics.json").is_file()
    manifest = RunFolder(run_dir).manifest()
    assert manifest["evaluator"]["source"] == "domain" and manifest["latency"]["estimate"] is True
    assert result.pareto and all(p["arch_id"] for p in result.pareto)
    first_metrics = table.set_index("number")["fid"].to_dict()

    again = run_search(tiny_options(run_dir, trials=4, resume=True))
    table = RunFolder(run_dir).read_trials()
    assert again.n_complete == 4 and list(table["number"]) == [0, 1, 2, 3]
    assert table.set_index("number")["fid"][:3].to_dict() == first_metrics  # completed trials untouched
    study = optuna.load_study(study_name=manifest["study_name"], storage=RunFolder(run_dir).storage_url(manifest))
    assert len(study.trials) == 4


def test_repeated_architecture_reuses_cached_metrics(tmp_path, search_env):
    settings = tiny_settings(tmp_path, metrics=("fid", "val_loss"))
    config = get_preset("bk_sdm_tiny")
    first = run_trial(settings, config, 0, seed=1)
    second = run_trial(settings, config, 1, seed=1)
    assert first["state"] == second["state"] == "COMPLETE"
    assert not first["cached"] and second["cached"]
    assert second["fid"] == first["fid"] and second["val_loss"] == first["val_loss"]
    other_seed = run_trial(settings, config, 2, seed=2)
    assert not other_seed["cached"]


def test_a_losses_only_trial_skips_sampling_and_is_cached_apart(tmp_path, search_env):
    settings = tiny_settings(tmp_path, metrics=("val_loss_grid", "latency_ms"), samples=False)
    config = get_preset("bk_sdm_tiny")
    row = run_trial(settings, config, 0, seed=1)
    assert row["state"] == "COMPLETE" and row["val_loss_grid"] > 0 and row["val_loss"] > 0
    assert all(row.get(m) is None for m in ("fid", "kid", "clip_score", "cmmd")) and not row.get("sample_grid")
    assert "seconds_sample" not in row and "seconds_score" not in row and row["cache_key"].endswith("-losses")
    assert not list((tmp_path / "trials" / "0000").glob("*.png"))
    full = run_trial(dataclasses.replace(settings, samples=True), config, 1, seed=1)  # not served by the cache
    assert not full["cached"] and full["fid"] is not None and full["val_loss_grid"] == row["val_loss_grid"]
    # the run's set-up names the evaluator (the key of the fidelity on record) without building it
    from nas.trial_runner import _evaluator, prepare

    named = prepare(settings, [])["evaluator"]  # settings.latency_device: the roofline estimate, nothing timed
    assert named == dict(source="domain", model_id=_evaluator(settings).info["model_id"], used=False)


def test_search_samples_only_when_an_objective_needs_them(tmp_path, nas_cli):
    from nas.commands.search import _samples

    assert _samples(None, ["val_loss_grid", "latency_ms"], {}) is False  # the default objectives
    assert _samples(None, ["fid", "latency_ms"], {}) is True and _samples(True, ["val_loss_grid"], {}) is True
    old = {"objectives": [{"name": "val_loss_grid"}]}
    assert _samples(None, ["val_loss_grid"], old) is True  # a run from before the choice sampled: it still does
    assert _samples(None, ["val_loss_grid"], old | {"samples": False}) is False
    code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", "--objectives", "fid,latency", "--no-samples")
    assert code == 2 and "objective fid is scored on generated samples" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_failures_are_recorded_with_reason(tmp_path, search_env):
    settings = tiny_settings(tmp_path, metrics=("fid",))
    broken = settings.__class__(**{**settings.__dict__, "budget": settings.budget.replace(
        data="folder", data_path=str(tmp_path / "missing"))})
    row = run_trial(broken, get_preset("mobilediffusion"), 0, seed=0)
    assert row["state"] == "FAIL" and "missing" in row["failure_reason"]
    saved = json.loads((tmp_path / "trials" / "0000" / "metrics.json").read_text())
    assert saved["state"] == "FAIL" and saved["params"] > 0  # cost still recorded


def test_constraint_violation_skips_training(tmp_path, search_env):
    settings = tiny_settings(tmp_path, metrics=("fid", "latency_ms"), max_params=100_000_000)
    row = run_trial(settings, get_preset("sd15"), 0, seed=0)
    assert row["state"] == "INFEASIBLE" and "params exceeds" in row["failure_reason"]
    assert row.get("fid") is None and row["seconds_total"] < 30


@pytest.mark.slow
@pytest.mark.ray
def test_measured_cpu_latency_keeps_its_threads_and_calibrates_only_for_a_budget(tmp_path):
    import torch

    from evaluators.latency import LutStore

    lut = tmp_path / "lut"
    settings = tiny_settings(tmp_path, metrics=("latency_ms",), latency_device="cpu", image_size=64,
                             lut_dir=str(lut), threads=2, lut_threads=1)
    row = run_trial(settings, get_preset("mobilediffusion"), 0, seed=0)
    assert row["state"] == "COMPLETE" and row["latency_ms"] > 0
    assert torch.get_num_threads() == 2  # the trial's training threads, not the LUT's
    stored = LutStore(lut).load("cpu")
    assert stored.fingerprint["threads"] == 1 and stored.fingerprint["clock"] == "thread"
    assert not stored.calibration  # block sums only: a monotone fit would not change the ranking

    # The calibration archs' blocks, measured with 3 rounds instead of 15 to keep the test short (the trial
    # measures only what its table lacks, so what follows is the calibration itself: 9 archs end to end).
    from evaluators.latency import get_predictor
    from evaluators.latency.predictor import MeasuredPredictor

    get_predictor("cpu", lut_dir=str(lut), image_size=64, rounds=3).ensure(MeasuredPredictor.calibration_configs())
    budget = settings.__class__(**{**settings.__dict__, "latency_budget_ms": 1e6})
    budgeted = run_trial(budget, get_preset("mobilediffusion"), 1, seed=0)
    assert budgeted["state"] == "COMPLETE" and budgeted["latency_ms"] != row["latency_ms"]
    assert len(LutStore(lut).load("cpu").calibration["8"]["points"]) == 9  # presets + the fixed random archs


@pytest.mark.parametrize("changes, message", [
    (dict(space="nope"), "unknown search space"),
    (dict(sampler="annealing"), "unknown sampler"),
    (dict(trials=0), "--trials must be positive"),
    (dict(warm_start=("nope",)), "unknown preset"),
    (dict(address="127.0.0.1:9"), "cannot reach the Ray cluster"),
])
def test_bad_options_fail_before_writing(tmp_path, changes, message):
    from core.errors import UserError

    opts = tiny_options(tmp_path / "run", **changes)
    with pytest.raises(UserError, match=message):
        validate_options(opts)
    with pytest.raises(UserError, match=message):  # the search itself refuses before creating its run folder
        run_search(opts)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_asha_stops_trials_early_and_records_them_as_stopped(tmp_path, search_env):
    from nas.schedulers import Rungs

    run_dir = tmp_path / "asha"
    settings = tiny_settings(run_dir, metrics=("val_loss",))
    settings = dataclasses.replace(settings, budget=settings.budget.replace(steps=24))
    opts = tiny_options(run_dir, trials=6, objectives="val_loss", settings=settings, warm_start=(),
                        rungs=Rungs("asha", min_budget=3, eta=2, steps=24), report=False)
    result = run_search(opts)
    study = optuna.load_study(study_name=RunFolder(run_dir).manifest()["study_name"],
                              storage=RunFolder(run_dir).storage_url())
    stopped = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert stopped and complete and len(stopped) + len(complete) == 6 == len(study.trials)
    assert result.n_complete == len(complete)
    table = RunFolder(run_dir).read_trials().set_index("number")
    for t in stopped:  # stopped at a rung, with the value it last reported there, never complete
        row = table.loc[t.number]
        assert row["state"] == "STOPPED" and row["stopped_at_step"] in (3, 6, 12)
        assert row["val_loss"] == t.user_attrs["stopped_values"]["val_loss"] and "asha" in row["failure_reason"]
    for t in complete:  # a full-budget trial reported every rung on the way, continuing (no restart)
        row = table.loc[t.number]
        rungs = json.loads(row["rungs"])
        assert [r["step"] for r in rungs] == [3, 6, 12] and row["steps"] == 24
    assert RunFolder(run_dir).manifest()["scheduler"]["rungs"] == [3, 6, 12]


def test_scheduler_bad_inputs_exit_2(tmp_path, nas_cli):
    for args, message in ((["--scheduler", "nope"], "--scheduler must be one of"),
                          (["--scheduler", "asha", "--objectives", "val_loss", "--eta", "1"], "--eta must be"),
                          (["--scheduler", "asha", "--objectives", "val_loss", "--min-budget", "900"], "--min-budget"),
                          (["--scheduler", "asha"], "ranks one objective"),
                          (["--scheduler", "asha", "--objectives", "fid"], "no intermediate signal")):
        code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not (tmp_path / "run").exists()


def test_default_objectives_and_budget_are_the_fidelity_studys_and_a_resumed_run_keeps_its_own(tmp_path):
    from evaluators.training.proxy_mode import INHERIT_SEARCH_STEPS, SEARCH_STEPS, search_steps
    from nas.commands.search import DEFAULT_OBJECTIVES, _manifest, _stored_budget, _stored_objectives

    # benchmarks/results_fidelity.md: the ranking metric and the budget the study chose
    assert DEFAULT_OBJECTIVES.split(",")[0] == "val_loss_grid" and search_steps("scratch") == SEARCH_STEPS == 125
    assert search_steps("inherit") == INHERIT_SEARCH_STEPS == 16  # the inherit study's fine-tune (BENCHMARKS.md)
    path = tmp_path / "run"
    assert _manifest(path) == {} == _manifest(None)  # a new run: the defaults
    assert _stored_objectives({}) is None and _stored_budget({}) == {}
    RunFolder.create(path, dict(name="run", objectives=[{"name": "fid", "direction": "minimize"},
                                                        {"name": "latency_ms", "direction": "minimize"}],
                                budget={"steps": 500}))
    stored = _manifest(path)
    assert _stored_objectives(stored) == "fid,latency_ms" and _stored_budget(stored)["steps"] == 500
    (path / "manifest.json").write_text("{broken")
    assert _manifest(path) == {}  # unreadable: the search's own checks say so


def test_resuming_with_another_budget_exits_2_and_leaves_the_folder_alone(tmp_path, nas_cli):
    from evaluators.training import Budget

    path, budget = tmp_path / "run", Budget(steps=100)
    RunFolder.create(path, dict(name="run", space="unet_mobile", study_name="nas-run", study_file="study.db",
                                objectives=[{"name": "fid", "direction": "minimize"},
                                            {"name": "clip_score", "direction": "maximize"},
                                            {"name": "latency_ms", "direction": "minimize"}],
                                budget=budget.to_dict(), proxy={"mode": "scratch"}))
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    code, _, err = nas_cli("search", "--run-dir", path, "--resume", "--budget", "200")
    assert code == 2 and "another budget or proxy mode (steps)" in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


@pytest.mark.parametrize("stored, args, message", [
    (dict(steps=100), ["--proxy-scale", "latent64"], "width_divisor, proxy scale fast -> latent64"),
    (dict(steps=100, image_size=64, width_divisor=32, batch_size=8, min_head_dim=32), ["--budget", "100"],
     "min_head_dim"),  # a later field away from its default, given back at its default: changed, not ignored
])
def test_resuming_at_another_proxy_scale_exits_2_naming_both(tmp_path, nas_cli, stored, args, message):
    from evaluators.training import Budget

    path = tmp_path / "run"
    RunFolder.create(path, dict(name="run", space="unet_mobile", study_name="nas-run", study_file="study.db",
                                objectives=[{"name": "val_loss_grid", "direction": "minimize"},
                                            {"name": "latency_ms", "direction": "minimize"}],
                                budget=Budget(**stored).to_dict(), proxy={"mode": "scratch"}, proxy_scale="latent64"
                                if "image_size" in stored else "fast"))
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    code, _, err = nas_cli("search", "--run-dir", path, "--resume", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


def test_an_unknown_proxy_scale_exits_2_before_writing(tmp_path, nas_cli):
    code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", "--proxy-scale", "tiny")
    assert code == 2 and "unknown proxy scale 'tiny'" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_trial_predicts_its_image_and_the_budget_can_bound_it(tmp_path):
    from search_spaces.pipeline import SamplingConfig

    sampling = SamplingConfig(steps=4, guidance="distilled", decoder="half")
    settings = tiny_settings(tmp_path, metrics=("image_latency_ms",), sampling=sampling)
    row = run_trial(settings, get_preset("mobilediffusion"), 0, seed=0)
    assert row["state"] == "COMPLETE" and row["unet_calls"] == 4
    assert row["image_latency_ms"] == pytest.approx(row["text_encoder_ms"] + 4 * row["latency_ms"] + row["decoder_ms"])
    stored = RunFolder(tmp_path).read_trial_record(0)  # the typed record carries the parts
    assert stored.image_latency_ms == row["image_latency_ms"] and stored.decoder_ms == row["decoder_ms"]
    per_step = tiny_settings(tmp_path, metrics=("latency_ms",))
    assert "image_latency_ms" not in {k for k, v in run_trial(per_step, get_preset("mobilediffusion"), 1, 0).items()
                                      if v is not None}
    bounded = tiny_settings(tmp_path, metrics=("latency_ms",), sampling=sampling, latency_budget_on="image_latency_ms",
                            latency_budget_ms=row["image_latency_ms"] - 1)
    infeasible = run_trial(bounded, get_preset("mobilediffusion"), 2, seed=0)
    assert infeasible["state"] == "INFEASIBLE" and "image_latency_ms exceeds the limit" in infeasible["failure_reason"]


@pytest.mark.parametrize("args, message", [
    (["--latency-budget-on", "step"], "--latency-budget-on must be unet or image"),
    (["--steps", "0"], "steps: must be an integer from 1 to 1000"),
    (["--guidance", "none"], "unknown guidance mode 'none'"),
    (["--decoder", "big"], "unknown decoder 'big'"),
])
def test_bad_sampling_options_exit_2_before_writing(tmp_path, nas_cli, args, message):
    code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", "--objectives", "fid,image_latency_ms", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_resuming_with_other_image_sampling_exits_2(tmp_path, nas_cli):
    path = tmp_path / "run"
    RunFolder.create(path, dict(name="run", space="unet_mobile", study_name="nas-run", study_file="study.db",
                                objectives=[{"name": "fid", "direction": "minimize"},
                                            {"name": "image_latency_ms", "direction": "minimize"}],
                                proxy={"mode": "scratch"}, sampling=dict(steps=8, guidance="distilled",
                                                                         decoder="sd", text_encoder="clip_l14")))
    code, _, err = nas_cli("search", "--run-dir", path, "--resume", "--steps", "4")
    assert code == 2 and "steps 8 (given: 4)" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
@pytest.mark.ray
def test_search_on_image_latency_records_it_per_trial(tmp_path, search_env):
    from search_spaces.pipeline import SamplingConfig

    run_dir = tmp_path / "run"
    objectives = "val_loss_grid,image_latency_ms"
    settings = tiny_settings(run_dir, ("val_loss_grid", "image_latency_ms"), samples=False,
                             sampling=SamplingConfig(steps=8, guidance="distilled"))
    result = run_search(tiny_options(run_dir, trials=2, objectives=objectives, settings=settings))
    table = RunFolder(run_dir).read_trials()
    assert result.n_complete == 2 and table["image_latency_ms"].notna().all() and set(table["unet_calls"]) == {8}
    manifest = RunFolder(run_dir).manifest()
    assert manifest["sampling"]["steps"] == 8 and manifest["latency"]["per_image"] is True
    assert [o["name"] for o in manifest["objectives"]] == ["val_loss_grid", "image_latency_ms"]
    page = Path(result.report).read_text()  # the front's per-image breakdown, stacked by part
    assert "<h2>Per-image latency</h2>" in page and "8 steps, distilled, sd decoder" in page
    assert 'id="image-latency"' in page
