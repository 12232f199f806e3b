"""`nas fidelity`: a tiny real run through Ray Tune, the correlations, and bad inputs."""

import json

import pandas as pd
import pytest
from scipy import stats

from nas.ablation.fidelity import correlations, fidelity_archs, run_fidelity
from nas.errors import UserError
from nas.trial_runner import QUALITY_KEYS, TrialSettings
from search_helpers import tiny_settings


def test_correlations_match_scipy_and_handle_degenerate_columns():
    table = pd.DataFrame({f"{m}_{b}": v for m in QUALITY_KEYS for b, v in
                          (("short", [1.0, 2.0, 3.0, 4.0]), ("long", [1.5, 1.0, 3.5, 4.5]))})
    table["kid_long"] = [0.1, 0.1, 0.1, 0.1]  # constant: rank correlation undefined
    table["val_loss_short"] = [None, None, 1.0, 2.0]  # two pairs left: too few
    tau, rho = correlations(table)
    assert tau["fid"] == pytest.approx(stats.kendalltau([1, 2, 3, 4], [1.5, 1.0, 3.5, 4.5]).statistic)
    assert rho["clip_score"] == pytest.approx(stats.spearmanr([1, 2, 3, 4], [1.5, 1.0, 3.5, 4.5]).statistic)
    assert tau["kid"] is None and rho["kid"] is None and tau["val_loss"] is None


def test_architectures_are_presets_then_distinct_samples():
    archs = fidelity_archs("unet_mobile", 5, seed=0)
    labels = [label for label, _ in archs]
    assert labels[:3] == ["bk_sdm_tiny", "mobilediffusion", "sd15"] and len({c.arch_id for _, c in archs}) == 5
    assert archs == fidelity_archs("unet_mobile", 5, seed=0)
    with pytest.raises(UserError, match="at least 3"):
        fidelity_archs("unet_mobile", 2, seed=0)


@pytest.mark.slow
def test_tiny_fidelity_run_reports_tau_and_rho(tmp_path, search_env):
    short = tiny_settings(tmp_path / "fid", metrics=QUALITY_KEYS)
    long = TrialSettings(**{**short.__dict__, "budget": short.budget.replace(steps=16)})
    result = run_fidelity("unet_mobile", 3, short, long, seeds=1, cpus_per_trial=1, command=["pytest"])
    assert len(result.architectures) == 3
    for metric in QUALITY_KEYS:
        assert metric in result.kendall_tau and metric in result.spearman_rho
        for value in (result.kendall_tau[metric], result.spearman_rho[metric]):
            assert value is None or -1 <= value <= 1
    assert result.kendall_tau["fid"] is not None
    for row in result.architectures:
        assert row["n_ok_short"] == row["n_ok_long"] == 1 and row["fid_short"] != row["fid_long"]
    out = tmp_path / "fid" / "fidelity"
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved["kendall_tau"] == result.kendall_tau and saved["provenance"]["budgets"]["long"]["steps"] == 16
    assert "plotly" in (out / "scatter.html").read_text()[:5000].lower()
    corr = pd.read_csv(out / "correlations.csv")
    assert list(corr["metric"]) == list(QUALITY_KEYS)
    assert len(list((tmp_path / "fid" / "trials").glob("*/metrics.json"))) == 6


@pytest.mark.parametrize("args, message", [
    (["--archs", "2"], "--archs must be at least 3"),
    (["--short", "100", "--long", "50"], "must be fewer steps than --long"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--space", "nope"], "unknown search space"),
])
def test_bad_inputs_exit_2(nas_cli, tmp_path, args, message):
    code, _, err = nas_cli("fidelity", "--run-dir", tmp_path / "run", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
