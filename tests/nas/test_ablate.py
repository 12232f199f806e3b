"""`nas ablate`: intervals against scipy, a tiny real ablation through Ray Tune, resume, bad inputs."""

import io
import json
import math

import pandas as pd
import pytest
from rich.console import Console
from rich.progress import Progress
from scipy import stats
from search_helpers import tiny_settings

from core.errors import UserError
from core.run_folder import RunFolder
from nas.ablation import get_step, mean_ci, plan_rows
from nas.ablation.study import AblationSpec, run_ablation
from nas.commands.ablate import BarProgress
from search_spaces.presets import get_preset

REPORT_COLUMNS = ["step", "params", "latency_ms", "fid", "fid_ci", "clip_score", "clip_score_ci", "mode"]


@pytest.mark.parametrize("values, confidence", [([12.5, 13.1], 0.95), ([0.31, 0.29, 0.35, 0.30], 0.95),
                                                 ([1.0, 2.0, 4.0], 0.9)])
def test_interval_matches_scipy_by_hand(values, confidence):
    mean, half = mean_ci(values, confidence)
    n = len(values)
    by_hand_mean = sum(values) / n
    sd = math.sqrt(sum((v - by_hand_mean) ** 2 for v in values) / (n - 1))
    by_hand = stats.t.ppf((1 + confidence) / 2, df=n - 1) * sd / math.sqrt(n)
    assert mean == pytest.approx(by_hand_mean) and half == pytest.approx(by_hand)
    low, high = stats.t.interval(confidence, n - 1, loc=by_hand_mean, scale=stats.sem(values))
    assert (mean - half, mean + half) == pytest.approx((low, high))


def test_interval_edge_cases():
    assert mean_ci([3.0]) == (3.0, None)
    assert mean_ci([]) == (None, None)
    assert mean_ci([2.0, None, float("nan"), 4.0])[0] == 3.0
    assert mean_ci([5.0, 5.0]) == (5.0, 0.0)
    with pytest.raises(UserError):
        mean_ci([1.0, 2.0], confidence=1.5)


def tiny_spec(seeds=2, mode="cumulative"):
    steps = [get_step("share_kv"), get_step("swish_glu")]
    rows = plan_rows("bk_sdm_tiny", get_preset("bk_sdm_tiny"), steps, mode)
    return AblationSpec(space="unet_mobile", baseline="bk_sdm_tiny", rows=tuple(rows), seeds=seeds,
                        latency_devices=("iphone15pro", "pixel8"), command=["pytest"])


@pytest.mark.slow
@pytest.mark.ray
def test_tiny_ablation_runs_and_resumes_without_rerunning(tmp_path, search_env):
    run_dir = tmp_path / "ablate"
    settings = tiny_settings(run_dir, metrics=("latency_ms", "fid", "kid", "clip_score", "val_loss"))
    with Progress(console=Console(file=io.StringIO())) as bar:  # the CLI's bar: Ray must pickle its callback
        task = bar.add_task("trials", total=None)
        result = run_ablation(tiny_spec(mode="both"), settings, cpus_per_trial=1,
                              progress=BarProgress(bar, task))
        done = bar.tasks[0].completed, bar.tasks[0].total
    # 4 distinct architectures x 2 seeds: the full path is both the last cumulative and the first leave-one-out
    # row, and leaving out swish_glu gives the share_kv row again.
    assert result.ray_trials == 8 and done == (8, 8)
    rows = result.rows[:3]
    assert [r["step"] for r in rows] == ["baseline", "share_kv", "swish_glu"]
    for r in rows:
        assert r["n_ok"] == 2 and r["failures"] is None
        for metric in ("fid", "kid", "clip_score", "val_loss"):
            assert r[metric] is not None and r[f"{metric}_ci"] is not None and r[f"{metric}_ci"] >= 0
        assert r["latency_ms"] == r["latency_ms_iphone15pro"] and r["latency_ms_pixel8"] > 0
    assert rows[0]["delta_prev_params"] is None and rows[0]["delta_base_fid"] == 0
    assert rows[1]["params"] < rows[0]["params"]  # shared K/V removes the value projections
    assert rows[1]["delta_prev_params"] == rows[1]["params"] - rows[0]["params"]
    assert rows[2]["delta_base_fid"] == pytest.approx(rows[2]["fid"] - rows[0]["fid"])
    assert rows[2]["delta_prev_clip_score"] == pytest.approx(rows[2]["clip_score"] - rows[1]["clip_score"])

    trials = json.loads((run_dir / "trials" / "0000" / "metrics.json").read_text())
    seed_values = [json.loads((run_dir / "trials" / f"{n:04d}" / "metrics.json").read_text())["fid"] for n in (0, 1)]
    assert rows[0]["fid"] == pytest.approx(sum(seed_values) / 2) and trials["seed"] == 0

    table = pd.read_csv(run_dir / "ablation" / "cumulative.csv")
    assert list(table.columns[:2]) == ["step", "mode"] and set(REPORT_COLUMNS) <= set(table.columns)
    assert list(table["mode"]) == ["cumulative"] * 3
    assert table[["val_loss_grid", "val_loss_grid_ci", "cmmd"]].notna().all().all()  # the search's default signal
    markdown = (run_dir / "ablation" / "cumulative.md").read_text()
    assert "| share_kv |" in markdown and "±" in markdown and "versions:" in markdown
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table_lines}) == 1  # header, separator and rows line up
    saved = json.loads((run_dir / "ablation" / "ablation.json").read_text())
    assert saved["provenance"]["seeds"] == [0, 1] and saved["provenance"]["evaluator"]["source"] == "domain"
    assert RunFolder(run_dir).manifest()["kind"] == "ablation"
    assert len(RunFolder(run_dir).read_trials()) == 8
    loo = [r for r in result.rows if r["mode"] == "leave-one-out"]
    assert [r["step"] for r in loo] == ["full_path", "share_kv", "swish_glu"]
    assert loo[0]["fid"] == rows[2]["fid"] and loo[2]["fid"] == rows[1]["fid"]
    assert loo[1]["delta_prev_fid"] == pytest.approx(loo[1]["fid"] - loo[0]["fid"])
    assert list(pd.read_csv(run_dir / "ablation" / "leave_one_out.csv")["mode"]) == ["leave-one-out"] * 3

    mtimes = {p: p.stat().st_mtime_ns for p in (run_dir / "trials").glob("*/metrics.json")}
    again = run_ablation(tiny_spec(mode="both"), settings, cpus_per_trial=1)
    assert again.ray_trials == 0  # every (architecture, seed) finished already: nothing reruns, no Ray
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "trials").glob("*/metrics.json")} == mtimes
    assert [r["fid"] for r in again.rows] == [r["fid"] for r in result.rows]


@pytest.mark.parametrize("args, message", [
    (["--steps", "share_kv,nope"], "unknown ablation step 'nope'"),
    (["--steps", "relu_attention", "--baseline", "mobilediffusion"], "'relu_attention' does not apply"),
    (["--steps", "share_kv,share_kv"], "listed twice"),
    (["--seeds", "1", "--require-ci"], "need at least 2 seeds"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--mode", "sideways"], "--mode must be one of"),
    (["--baseline", "sd99"], "unknown preset 'sd99'"),
    (["--space", "nope"], "unknown search space"),
    (["--latency-devices", "toaster"], "toaster"),
    (["--confidence", "2"], "--confidence must be in (0, 1)"),
    (["--proxy-scale", "huge"], "unknown proxy scale 'huge'"),
])
def test_bad_inputs_exit_2_in_one_line_before_writing(nas_cli, tmp_path, args, message):
    code, out, err = nas_cli("ablate", "--run-dir", tmp_path / "run", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_bad_patch_file_and_wrong_run_kind(nas_cli, tmp_path):
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"name": "x", "set": {"ff_mult": 2}, "color": "red"}))
    code, _, err = nas_cli("ablate", "--run-dir", tmp_path / "run", "--patch", patch)
    assert code == 2 and "patch.json.color: unknown field" in err and len(err.strip().splitlines()) == 1
    RunFolder.create(tmp_path / "search", {"kind": "search"})
    code, _, err = nas_cli("ablate", "--run-dir", tmp_path / "search", "--steps", "share_kv", "--seeds", "1")
    assert code == 2 and "not 'ablation'" in err


def test_resume_with_another_budget_is_refused(nas_cli, tmp_path):
    from evaluators.training import Budget

    RunFolder.create(tmp_path / "run", {"kind": "ablation", "budget": Budget(steps=100).to_dict()})
    code, _, err = nas_cli("ablate", "--run-dir", tmp_path / "run", "--steps", "share_kv", "--budget", "200")
    assert code == 2 and "another budget" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "trials").exists()
