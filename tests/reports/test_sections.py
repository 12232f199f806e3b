"""Info objects of every report section, checked without a browser (quality values are synthetic: conftest)."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.objectives import Objective
from reports.pareto import knee, losses, nondominated, pareto_numbers
from reports.run_data import load_run
from reports.sections import compute_report, header_info, hypervolume_info


@pytest.fixture(scope="module")
def data(finished_run):
    return load_run(finished_run.path)


@pytest.fixture(scope="module")
def info(data):
    return compute_report(data)


def test_nondominated_on_known_points():
    loss = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [2, 2], [6, 6]], dtype=float)
    assert nondominated(loss).tolist() == [True, True, True, False, True, False]


def test_knee_is_closest_to_ideal_after_normalising():
    frame = pd.DataFrame({"fid": [10.0, 20.0, 13.0, 30.0], "clip_score": [0.30, 0.31, 0.33, 0.34]}, index=[4, 7, 9, 11])
    objs = [Objective("fid", "minimize"), Objective("clip_score", "maximize")]
    # normalised (fid, -clip): 4 -> (0, 1), 7 -> (.5, .75), 9 -> (.15, .25), 11 -> (1, 0): trial 9 is closest
    assert knee(frame, objs) == 9
    assert knee(frame.iloc[[0, 3]], objs) == 4  # a tie goes to the lower trial number


def test_header_reports_provenance(data):
    h = header_info(data)
    assert (h.n_complete, h.n_failed, h.n_other) == (12, 2, {})
    assert h.latency_estimate and h.device == "iphone15pro" and h.lut == "roofline:iphone15pro"
    assert h.objectives == ["FID ↓", "CLIP score ↑", "latency (ms) ↓"]
    assert (h.space, h.sampler, h.seed, h.feature_source) == ("unet_mobile", "nsga2", 0, "domain")
    # the only notes: each quality objective's proxy fidelity and published-panel agreement, both not measured
    # for the fixture's budget, and the quality signals the trials recorded beside the objectives
    assert [n for n in h.notes if n.startswith("Proxy fidelity of")] == h.notes[:2]
    assert [n for n in h.notes if n.startswith("Against published full-scale results")] == h.notes[2:4]
    assert all("not measured" in n for n in h.notes[:4])
    assert h.notes[4:] == ["Shown, not optimised (rank agreement with the reference at this budget): KID not "
                           "measured; val loss not measured."]


def test_header_states_the_fidelity_on_record_for_each_quality_objective(data, monkeypatch):
    """A run whose manifest carries the study on record for its budget (as `nas search` writes it) states tau,
    its interval, the seed ceiling and the agreement with the reference's target metric."""
    entry = dict(panel="paper", reference="2000 steps, 16 px, width / 16", created="2026-12-02", metrics=dict(
        fid=dict(tau=-0.07, tau_low=-0.8, tau_high=0.6, n=10, ceiling_short_tau=-0.07, target="fid",
                 target_tau=-0.07, target_tau_low=-0.8, target_tau_high=0.6),
        clip_score=dict(tau=0.45, tau_low=-0.1, tau_high=0.9, n=10, ceiling_short_tau=0.51, target="fid",
                        target_tau=0.1, target_tau_low=-0.5, target_tau_high=0.7)))
    monkeypatch.setattr(data, "manifest", data.manifest | {"fidelity": entry})
    notes = header_info(data).notes
    fid = next(n for n in notes if n.startswith("Proxy fidelity of FID"))
    assert "Kendall tau -0.07 [-0.80, 0.60] against 2000 steps" in fid and "(10 architectures)" in fid
    assert "reference's fid" not in fid  # its own target: said once
    clip = next(n for n in notes if n.startswith("Proxy fidelity of CLIP score"))
    assert "seed ceiling 0.51" in clip and "against the reference's fid: tau 0.10 [-0.50, 0.70]" in clip
    assert notes[-1].endswith("KID not measured; val loss not measured.")  # the record has neither


def test_header_states_the_published_panel_agreement_on_record(data, monkeypatch):
    """A run whose manifest carries the published-panel study on record for its budget states "agrees with the
    papers on k of n", what was not measured and which outcomes it called otherwise."""
    entry = dict(budget="125 steps, 16 px, width / 16", seeds=2, created="2026-12-08", signals=dict(
        fid=dict(signal="fid", agree=8, measured=8, harm_agree=8, missing=8, misses=[])))
    monkeypatch.setattr(data, "manifest", data.manifest | {"published_agreement": entry})
    notes = [n for n in header_info(data).notes if n.startswith("Against published full-scale results")]
    assert "agrees with the published full-scale results on 8 of 8 measured outcomes (8 of 16 not measured; " \
           "125 steps, 16 px, width / 16, 2 seeds" in notes[0]
    assert "not measured for clip_score" in notes[1]  # the record has no call on it


def test_header_says_when_trials_drew_no_samples(data, monkeypatch):
    assert not any("drew no samples" in n for n in header_info(data).notes)
    monkeypatch.setattr(data, "manifest", data.manifest | {"samples": False})
    assert any(n.startswith("Trials drew no samples") and "--samples" in n for n in header_info(data).notes)


def test_pareto_set_is_optunas_and_matches_the_table(data, info):
    best = sorted(t.number for t in data.study.best_trials)
    assert sorted(r.number for r in info.pareto.rows) == best == pareto_numbers(data)
    mask = nondominated(losses(data.complete, data.objectives))
    assert best == sorted(int(n) for n in data.complete.index[mask])
    assert info.pareto.source == "optuna study.best_trials"
    knees = [r for r in info.pareto.rows if r.knee]
    assert len(knees) == 1 and knees[0].number == info.pareto.knee_number
    assert all(r.metrics["params"] and r.metrics["latency_ms"] and r.design for r in info.pareto.rows)


def test_two_d_fronts_fade_dominated_and_join_pareto(data, info):
    assert [f.axes for f in info.fronts_2d] == [("latency_ms", "fid"), ("latency_ms", "clip_score")]
    for front, sign in zip(info.fronts_2d, (1, -1)):
        assert len(front.points) == len(data.complete)
        pareto = [p for p in front.points if p.pareto]
        for p in front.points:
            if not p.pareto:  # each faded point is dominated by a Pareto point
                assert any(q.values[0] <= p.values[0] and sign * q.values[1] <= sign * p.values[1] for q in pareto)
        xs = [next(p for p in pareto if p.number == n).values[0] for n in front.line]
        assert xs == sorted(xs) and set(front.line) == {p.number for p in pareto}
        assert {p.preset for p in front.points} >= {"sd15", "mobilediffusion"}
        assert all(data.complete.loc[p.number, "arch_id"] in p.hover for p in front.points)
    assert info.front_3d is not None and info.front_3d.axes == ("fid", "clip_score", "latency_ms")
    assert sorted(info.front_3d.line) == sorted(r.number for r in info.pareto.rows)


def test_hypervolume_never_decreases(info, data):
    hv = info.hypervolume
    assert hv.numbers == sorted(data.complete.index)
    assert all(b >= a - 1e-12 for a, b in zip(hv.values, hv.values[1:])) and hv.values[-1] > hv.values[0] > 0


def test_parallel_coordinates_are_grouped_per_unet_part(info, data):
    groups = info.parallel.groups
    assert [g.title for g in groups] == ["global", "level 0", "level 1", "level 2", "level 3", "bottleneck"]
    dims = [d for g in groups for d in g.dimensions]
    assert sorted(dims) == sorted(c[2:] for c in data.design_columns) and len(set(dims)) == len(dims)
    level1 = next(g for g in groups if g.title == "level 1")
    assert level1.dimensions[:3] == ["channels_1", "down_res_1", "up_res_1"]  # the space's order
    assert [a.name for a in level1.axes][:3] == ["channels", "down_res", "up_res"]  # short labels in a group
    assert all(len(g.axes) <= 7 for g in groups)
    attn = next(a for g in groups for a in g.axes if a.name == "attn_activation")
    assert [t[1] for t in attn.ticks] == ["relu", "softmax"] and set(attn.values) <= {0.0, 1.0}
    assert info.parallel.colour_by == "fid" and len(info.parallel.colour) == len(data.complete)


def test_group_names_and_splitting(tmp_path, finished_run):
    from reports.designs import MAX_AXES, group_of, parallel_info

    assert group_of("channels_3") == ("level 3", "channels")
    assert group_of("mid_depth") == ("bottleneck", "depth")
    assert group_of("ff_mult") == ("global", "ff_mult")
    data = load_run(finished_run.path)
    extra = [f"p_extra{chr(97 + k)}" for k in range(MAX_AXES + 2)]  # global dimensions (no level suffix)
    data.design_columns = data.design_columns + extra
    data.complete = data.complete.assign(**{c: 1.0 for c in extra})
    data.manifest = {**data.manifest, "space": "not-a-space"}  # unknown space: alphabetical order
    groups = parallel_info(data).groups
    n_global = 6 + len(extra)  # num_levels, attn_activation, shared_kv, ff_activation, ff_mult, heads + extra
    chunks = -(-n_global // MAX_AXES)
    assert [g.title for g in groups if g.title.startswith("global")] == [f"global ({k} of {chunks})"
                                                                          for k in range(1, chunks + 1)]
    assert all(len(g.axes) <= MAX_AXES for g in groups)
    assert groups[0].dimensions == sorted(groups[0].dimensions)


def test_architectures_have_grids_and_block_latency(info, data):
    assert [a.number for a in info.architectures] == [r.number for r in info.pareto.rows]
    for arch in info.architectures:
        import base64
        assert base64.b64decode(arch.grid_png) == data.grid_path(arch.number).read_bytes()  # the trial's grid
        assert Image.open(io.BytesIO(base64.b64decode(arch.grid_png))).format == "PNG"
        assert sum(ms for _, _, ms in arch.blocks) == pytest.approx(data.complete.loc[arch.number, "latency_ms"])
        assert {part for _, part, _ in arch.blocks} >= {"stem", "level0"}
        assert "a small <b>green</b> triangle & friends" in arch.captions


def test_ablation_section_reads_tables(tmp_path, finished_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run.path, run)
    (run / "ablation").mkdir()
    table = pd.DataFrame({"step": ["sd15", "no_self_attention_64"], "mode": ["cumulative"] * 2,
                          "params": [859520964, 845000000], "latency_ms": [1001.3, 930.0], "fid": [14.3, 14.9],
                          "fid_ci": [0.4, 0.5], "clip_score": [0.318, 0.316], "clip_score_ci": [0.002, 0.003]})
    table.to_csv(run / "ablation" / "mobilediffusion.csv", index=False)
    (run / "ablation" / "broken.csv").write_text("not,an\nablation,table\n")
    info = compute_report(load_run(run))
    assert [a.name for a in info.ablations] == ["mobilediffusion"] and info.ablations[0].has_fid
    assert any("broken.csv" in n for n in info.notes)


def test_missing_study_falls_back_to_the_table(tmp_path, finished_run):
    import shutil

    run = tmp_path / "moved"
    shutil.copytree(finished_run.path, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["storage"] = f"sqlite:///{tmp_path / 'gone' / 'study.db'}"
    (run / "manifest.json").write_text(json.dumps(manifest))
    data = load_run(run)
    info = compute_report(data)
    assert data.study is None and "could not be loaded" in info.header.notes[0]
    assert info.pareto.source == "trials table" and info.pareto.rows
    assert not info.importances.shown and "study could not be loaded" in info.importances.message


def test_hypervolume_two_objectives(two_objective_run):
    data = load_run(two_objective_run.path)
    hv = hypervolume_info(data)
    assert len(hv.values) == 6 and hv.values[-1] <= 1.1 ** 2
    assert compute_report(data).front_3d is None


def test_parallel_axis_of_mixed_choices():
    from reports.designs import _axis

    ch = _axis("channels_3", pd.Series([1280.0, None, 1024.0, 1280.0]))
    assert ch.values == [1.0, -1.0, 0.0, 1.0] and ch.ticks == [(-1.0, "n/a"), (0.0, "1024"), (1.0, "1280")]
    flag = _axis("shared_kv", pd.Series([True, False, True], dtype=object))
    assert flag.values == [1.0, 0.0, 1.0] and [t[1] for t in flag.ticks] == ["False", "True"]


def test_cost_only_run_draws_its_own_front(tmp_path, run_builder):
    run = run_builder(tmp_path / "cost", n_random=4, n_failed=0, presets=("sd15",), objectives=("latency_ms", "params"))
    info = compute_report(load_run(run.path))
    assert [f.axes for f in info.fronts_2d] == [("latency_ms", "params"), ("latency_ms", "fid"),
                                                ("latency_ms", "clip_score")]


def test_header_counts_stale_and_running_trials(tmp_path, finished_run):
    import shutil

    from core.run_folder import RunFolder

    shutil.copytree(finished_run.path, tmp_path / "run")
    run = RunFolder(tmp_path / "run")
    rows = run.read_trials().to_dict("records")
    run.write_trials(rows + [{"number": 90, "state": "STALE", "failure_reason": "driver killed"},
                             {"number": 91, "state": "RUNNING"}])
    h = header_info(load_run(run.path))
    assert (h.n_complete, h.n_failed, h.n_other) == (12, 2, {"STALE": 1, "RUNNING": 1})


def test_ablation_figures_waterfalls_and_leave_one_out_bars():
    from reports.ablation import ablation_info
    from reports.figures import ablation_figures

    table = pd.DataFrame({
        "step": ["sd15", "share_kv", "trim_ffn", "full_path", "share_kv", "trim_ffn"],
        "mode": ["cumulative"] * 3 + ["leave-one-out"] * 3,
        "latency_ms": [1000.0, 950.0, 900.0, 900.0, 950.0, 960.0],
        "fid": [14.0, 14.5, 15.0, 15.0, 14.2, 14.9], "fid_ci": [0.4, 0.5, 0.5, 0.4, 0.3, 0.6],
    })
    figs = dict(ablation_figures(ablation_info("steps", table)))
    assert list(figs) == ["waterfall-latency_ms", "waterfall-fid", "leave-one-out-fid"]
    latency = figs["waterfall-latency_ms"].data[0]
    assert list(latency.measure) == ["absolute", "relative", "relative"]
    assert list(latency.y) == [1000.0, -50.0, -50.0]  # what each step changed
    bars = figs["leave-one-out-fid"].data[0]
    assert list(bars.x) == ["share_kv", "trim_ffn"] and [round(v, 6) for v in bars.y] == [-0.8, -0.1]
    assert list(bars.error_y.array) == [0.3, 0.6]
