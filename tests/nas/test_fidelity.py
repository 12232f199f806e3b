"""`nas fidelity`: panels, the statistics against scipy, imported trials, a tiny real run, bad inputs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from search_helpers import tiny_settings

from core.errors import UserError
from nas.ablation.fidelity import StudyPlan, check_reference, run_fidelity
from nas.ablation.fidelity_stats import (
    agreement,
    correlations,
    seed_means,
    sign_agreement,
)
from nas.ablation.panels import load_panel, paper_panel
from nas.trial_runner import QUALITY_KEYS
from search_spaces.presets import get_preset


def test_paper_panel_walks_the_paper_path_from_sd15_to_mobilediffusion():
    panel = paper_panel()
    labels = [label for label, _ in panel]
    assert labels[0] == "sd15" and labels[-1] == "bk_sdm_tiny" and len(panel) == 10
    assert panel[-2][1] == get_preset("mobilediffusion")  # the last cumulative step is the paper's model
    assert len({c.arch_id for _, c in panel}) == 10


def test_panels_from_a_file_and_at_random(tmp_path):
    configs = [get_preset(n).to_dict() for n in ("sd15", "mobilediffusion", "bk_sdm_tiny")]
    (tmp_path / "list.json").write_text(json.dumps(configs))
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(c) for c in configs))
    for name in ("list.json", "lines.jsonl"):
        assert [c for _, c in load_panel(str(tmp_path / name))] == [get_preset(n) for n in
                                                                    ("sd15", "mobilediffusion", "bk_sdm_tiny")]
    random = load_panel("random", n=4, seed=3)
    assert len(random) == 4 and random == load_panel("random", n=4, seed=3)
    (tmp_path / "two.json").write_text(json.dumps(configs[:2] + configs[:1]))
    with pytest.raises(UserError, match="2 distinct architecture"):
        load_panel(str(tmp_path / "two.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="neither JSON nor JSON lines"):
        load_panel(str(tmp_path / "bad.json"))


def test_agreement_matches_scipy_and_its_interval_covers_it():
    x = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], index=list("abcdef"))
    y = pd.Series([1.5, 1.0, 3.5, 4.5, 6.0, 5.5], index=list("abcdef"))
    a = agreement(x, y)
    assert a.n == 6
    assert a.tau == pytest.approx(stats.kendalltau(x, y).statistic)
    assert a.rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert -1 <= a.tau_low <= a.tau <= a.tau_high <= 1 and a.tau_low < a.tau_high
    assert agreement(x, pd.Series(0.1, index=x.index)).tau is None  # constant: undefined
    assert agreement(x[:2], y[:2]).tau is None  # too few


def _trials(rng, n_archs=8, noise=0.3):
    rows = []
    for i in range(n_archs):
        quality = float(i)
        for budget, seeds in (("short", 2), ("reference", 1)):
            for seed in range(seeds):
                rows.append(dict(label=f"a{i}", arch_id=f"id{i}", budget=budget, seed=seed, state="COMPLETE",
                                 fid=quality + rng.normal() * noise, clip_score=rng.normal(), val_loss=rng.normal(),
                                 seconds_setup=1.0, seconds_train=10.0, seconds_val=2.0, seconds_sample=5.0,
                                 seconds_score=1.0))
    return pd.DataFrame(rows)


def test_correlations_separate_a_real_signal_from_noise_and_count_seconds():
    trials = _trials(np.random.default_rng(0))
    table = correlations(trials, ("fid", "clip_score", "val_loss")).set_index("metric")
    assert table.loc["fid", "tau"] > 0.7 and table.loc["fid", "tau_low"] > 0  # the signal ranks
    assert table.loc["clip_score", "tau_low"] < 0 < table.loc["clip_score", "tau_high"]  # noise does not
    assert table.loc["fid", "ceiling_short_n"] == 8 and table.loc["fid", "ceiling_reference_tau"] is None
    means = seed_means(trials, ("fid",)).set_index(["arch_id", "budget"])
    spread = means.xs("short", level="budget")["fid_std"].median()
    assert table.loc["fid", "seed_sd_short"] == pytest.approx(spread)
    assert table.loc["fid", "seconds_short"] == 17.0  # set-up + training + sampling + scoring
    assert table.loc["val_loss", "seconds_short"] == 13.0  # a held-out loss needs no sampling
    # losses-only trials (no samples drawn) count for the losses, not for the image metrics' seconds
    losses_only = trials.assign(fid=np.where(trials["seed"] == 1, np.nan, trials["fid"]),
                                seconds_sample=np.where(trials["seed"] == 1, np.nan, 5.0),
                                seconds_setup=np.where(trials["seed"] == 1, 3.0, 1.0))
    table = correlations(losses_only, ("fid", "val_loss")).set_index("metric")
    assert table.loc["fid", "seconds_short"] == 17.0 and table.loc["val_loss", "seconds_short"] == 14.0


def test_short_signals_are_scored_against_the_reference_target_metric_in_its_direction():
    rng = np.random.default_rng(1)
    trials = _trials(rng)
    quality = trials["arch_id"].str[2:].astype(float)  # fid rises with the index: higher index is worse
    # a held-out loss that tracks the quality, and a CLIP score that falls as the quality worsens (maximised)
    trials = trials.assign(val_loss=quality + rng.normal(size=len(trials)) * 0.3,
                           clip_score=-quality + rng.normal(size=len(trials)) * 0.3)
    table = correlations(trials, ("fid", "clip_score", "val_loss"), target="fid").set_index("metric")
    assert (table["target"] == "fid").all()
    assert table.loc["fid", "target_tau"] == pytest.approx(table.loc["fid", "tau"])  # itself: the same agreement
    assert table.loc["val_loss", "target_tau"] > 0.7 and table.loc["val_loss", "target_tau_low"] > 0
    # CLIP is maximised and FID minimised: oriented, a CLIP score that tracks the quality agrees positively
    assert table.loc["clip_score", "target_tau"] > 0.7
    # a target with no values at the reference: undefined, not an error
    none = correlations(trials.drop(columns=["clip_score"]), ("fid",), target="clip_score")
    assert none.loc[0, "target_n"] == 0 and none.loc[0, "target_tau"] is None


def test_sign_agreement_along_an_ordered_path():
    means = pd.DataFrame(dict(arch_id=["a", "b", "c"] * 2, budget=["short"] * 3 + ["reference"] * 3,
                              fid_mean=[3.0, 2.0, 2.5, 30.0, 20.0, 10.0]))
    assert sign_agreement(means, "fid", ["a", "b", "c"]) == (1, 2)


def test_reference_must_be_larger():
    short = tiny_settings("x").budget
    check_reference(short, short.replace(steps=short.steps * 4))
    check_reference(short, short.replace(image_size=32))
    for bad in (short, short.replace(steps=short.steps * 4, width_divisor=short.width_divisor * 2)):
        with pytest.raises(UserError, match="must be larger"):
            check_reference(short, bad)


def _plan(run_dir, short_seeds=2):
    short = tiny_settings(run_dir, metrics=QUALITY_KEYS)
    reference = short.__class__(**{**short.__dict__, "budget": short.budget.replace(steps=16)})
    panel = [(n, get_preset(n)) for n in ("sd15", "mobilediffusion", "bk_sdm_tiny")]
    return StudyPlan("test", panel, short, reference, short_seeds=short_seeds, reference_seeds=1)


@pytest.mark.slow
@pytest.mark.ray
def test_tiny_study_trains_caches_and_imports(tmp_path, search_env):
    plan = _plan(tmp_path / "fid")
    result = run_fidelity(plan, cpus_per_trial=1, command=["pytest"])
    assert result.missing == 0 and len(result.correlations) == len(QUALITY_KEYS)
    out = tmp_path / "fid" / "fidelity"
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 9 and set(trials["state"]) == {"COMPLETE"}
    assert trials[["cmmd", "val_loss_grid"]].notna().all().all()  # the new signals are recorded
    fid = {r["metric"]: r for r in result.correlations}["fid"]
    assert fid["n"] == 3 and -1 <= fid["tau"] <= 1 and fid["ceiling_short_n"] == 3
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved["provenance"]["budgets"]["reference"]["steps"] == 16
    assert "Kendall tau" in (out / "correlations.md").read_text()

    again = run_fidelity(plan, cpus_per_trial=1, command=["pytest"])  # resumed: every trial from the folder
    assert again.correlations[0]["tau"] == result.correlations[0]["tau"]

    # A fresh folder given the first study's raw rows imports them instead of training (no Ray starts).
    evaluator = json.loads((out / "fidelity.json").read_text())["provenance"]["evaluator"]["short"]["model_id"]
    rows = trials.assign(budget_hash=[plan.short.budget_hash if b == "short" else plan.reference.budget_hash
                                      for b in trials["budget"]], evaluator=evaluator, failed=False)
    rows.to_csv(tmp_path / "recorded.csv", index=False)
    imported = run_fidelity(_plan(tmp_path / "other"), imports=[tmp_path / "recorded.csv"], train=False)
    assert imported.missing == 0
    assert imported.correlations[0]["tau"] == result.correlations[0]["tau"]
    assert not (tmp_path / "other" / "ray").exists()


@pytest.mark.parametrize("args, message", [
    (["--panel", "nope"], "--panel must be one of"),
    (["--panel", "random", "--archs", "2"], "needs at least 3"),
    (["--short-steps", "100", "--reference-steps", "50"], "must be larger"),
    (["--short-seeds", "0"], "must be positive"),
    (["--panel", "random", "--space", "nope"], "unknown search space"),
    (["--import", "/nonexistent.csv", "--no-train"], "cannot read"),
    (["--target", "latency", "--no-train"], "--target must be a quality metric"),
    (["--proxy-scale", "huge"], "unknown proxy scale 'huge'"),
    (["--reference-proxy-scale", "huge"], "unknown proxy scale 'huge'"),
    (["--proxy-scale", "px32", "--reference-proxy-scale", "fast", "--reference-steps", "125"], "must be larger"),
])
def test_bad_inputs_exit_2(nas_cli, tmp_path, args, message):
    code, _, err = nas_cli("fidelity", "--run-dir", tmp_path / "run", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_record_values_are_strict_json():
    from nas.ablation.fidelity import _json_value

    assert _json_value(float("nan")) is None and _json_value(0.5) == 0.5 and _json_value("fid") == "fid"
    shipped = json.loads(Path(__file__).parents[2].joinpath("core", "fidelity_record.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in the shipped record"))
    assert all("run" not in entry and entry["command"].startswith("nas fidelity") for entry in shipped.values())
