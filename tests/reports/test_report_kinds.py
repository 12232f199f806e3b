"""Reports of ablation and fidelity run folders: their infos, checked against the tables and scipy."""

import itertools
import json
import math
import shutil

import pandas as pd
import pytest
from scipy import stats

from core.errors import UserError
from core.metrics import names
from core.run_folder import RunFolder
from nas.ablation.stats import mean_ci
from reports import build_report
from reports.ablation import AblationReportInfo, compute_ablation_report, references
from reports.fidelity import (
    FidelityReportInfo,
    compute_fidelity_report,
    half_width,
    reading,
)
from reports.seed_spread import SINGLE, WITHIN


# ---------------------------------------------------------------------------------------------- ablation
def test_references_follow_the_plan():
    table = pd.DataFrame({"step": ["baseline", "a", "b", "full_path", "a", "b"],
                          "mode": ["cumulative"] * 3 + ["leave-one-out"] * 3})
    assert references(table) == [None, 0, 1, None, 3, 3]
    assert references(pd.DataFrame({"step": ["x", "y"]})) == [None, 0]  # no mode column: a cumulative path


def test_ablation_report_labels_every_delta_by_the_seed_spread(ablation_run):
    info = compute_ablation_report(ablation_run)
    assert [t.name for t in info.tables] == ["cumulative", "leave_one_out"]
    cumulative, loo = info.tables
    assert list(cumulative.table["step"]) == ["baseline", "share_kv", "relu_attention", "swish_glu"]
    assert list(loo.table["step"]) == ["full_path", "share_kv", "relu_attention", "swish_glu"]
    for ab in info.tables:  # the rule, recomputed by hand from the CSV columns
        t = ab.table
        for i, ref in enumerate(ab.reference):
            if ref is None:
                assert ab.verdicts["fid"][i] == ""
                continue
            diff = t["fid"].iloc[i] - t["fid"].iloc[ref]
            spread = math.hypot(t["fid_ci"].iloc[i], t["fid_ci"].iloc[ref])
            expected = WITHIN if abs(diff) <= spread else ("worse" if diff > 0 else "better")
            assert ab.verdicts["fid"][i] == expected
            assert diff == pytest.approx(t["delta_prev_fid"].iloc[i])
    # ReLU attention costs FID beyond the seed spread (the fixture's synthetic quality says so); shared K/V does not
    assert cumulative.verdicts["fid"][1:3] == [WITHIN, "worse"] and loo.verdicts["fid"][2] == "better"
    assert len(info.samples) == 6 and len({g.number for g in info.samples}) == 6  # distinct architectures
    assert info.samples[0].title == "baseline (seed 0)" and info.failures == []
    assert ("seeds", "3 per row; mean ± 95% t-interval half-width") in info.header


def test_single_seed_ablation_is_not_qualified(tmp_path, ablation_builder):
    run = ablation_builder(tmp_path / "one", steps=("relu_attention",), seeds=1, mode="cumulative")
    info = compute_ablation_report(run)
    assert info.tables[0].verdicts["fid"] == ["", SINGLE]
    assert any(k == "seeds" and "not qualified by seed spread" in v for k, v in info.header)
    path, report, _ = build_report(run.path)
    assert path == run.report_path and SINGLE in report.html


def test_ablation_without_tables_says_so(tmp_path):
    RunFolder.create(tmp_path / "new", {"kind": "ablation", "name": "new"})
    with pytest.raises(UserError, match="no tables yet"):
        build_report(tmp_path / "new")
    assert not (tmp_path / "new" / "report.html").exists()


# ---------------------------------------------------------------------------------------------- fidelity
def test_fidelity_report_reads_the_study_tables(fidelity_run):
    info = compute_fidelity_report(fidelity_run)
    corr = pd.read_csv(fidelity_run.path / "fidelity" / "correlations.csv").set_index("metric")
    means = pd.read_csv(fidelity_run.path / "fidelity" / "architectures.csv")
    assert [a.metric for a in info.agreements] == list(names("quality"))
    for a in info.agreements:
        assert (a.tau, a.tau_low, a.tau_high) == pytest.approx(tuple(corr.loc[a.metric, ["tau", "tau_low", "tau_high"]]))
        assert a.n == 5 and a.reading.startswith("the short budget ranks like the reference")
        assert a.target == "fid" and a.target_tau == pytest.approx(
            tuple(corr.loc[a.metric, ["target_tau", "target_tau_low", "target_tau_high"]]))
    assert info.confidence == pytest.approx(0.95)
    # the t-interval of a seed mean, as nas.ablation.stats.mean_ci computes it from the seeds themselves
    trials = pd.read_csv(fidelity_run.path / "fidelity" / "trials.csv")
    one = trials[(trials["arch_id"] == means["arch_id"].iloc[0]) & (trials["budget"] == "short")]["fid"]
    assert info.half_widths[(means["arch_id"].iloc[0], "short", "fid")] == pytest.approx(mean_ci(list(one))[1])
    fid = info.agreements[0]
    for budget in ("short", "reference"):  # pairs within the seed spread, recounted by hand
        part = means[means["budget"] == budget]
        within = sum(abs(a["fid_mean"] - b["fid_mean"]) <= math.hypot(info.half_widths[(a["arch_id"], budget, "fid")],
                                                                     info.half_widths[(b["arch_id"], budget, "fid")])
                     for (_, a), (_, b) in itertools.combinations(part.iterrows(), 2))
        assert fid.pairs[budget] == (within, 10)
    assert 0 < fid.pairs["short"][0] < 10  # the fixture's seed offsets leave some pairs unsettled, not all


@pytest.mark.parametrize("tau, low, high, expected", [
    (0.8, 0.4, 1.0, "ranks like the reference"),
    (-0.8, -1.0, -0.3, "ranks opposite to the reference"),
    (0.3, -0.2, 0.7, "not distinguishable from unrelated rankings: tau's 95% interval includes 0 (6 architectures)"),
    (None, None, None, "undefined"),
])
def test_agreement_readings(tau, low, high, expected):
    assert expected in reading(tau, low, high, 6, 0.95)


def test_one_seed_has_no_interval():
    assert half_width(0.3, 1, 0.95) is None and half_width(None, 3, 0.95) is None
    assert half_width(0.3, 3, 0.95) == pytest.approx(stats.t.ppf(0.975, 2) * 0.3 / math.sqrt(3))


def test_fidelity_without_tables_says_so(tmp_path):
    RunFolder.create(tmp_path / "new", {"kind": "fidelity", "name": "new"})
    with pytest.raises(UserError, match="no tables yet"):
        build_report(tmp_path / "new")


# ---------------------------------------------------------------------------------------------- dispatch
def test_report_kind_follows_the_manifest(ablation_run, fidelity_run, tmp_path):
    assert isinstance(build_report(ablation_run.path, tmp_path / "a.html")[2], AblationReportInfo)
    assert isinstance(build_report(fidelity_run.path, tmp_path / "f.html")[2], FidelityReportInfo)
    odd = tmp_path / "odd"
    shutil.copytree(fidelity_run.path, odd)
    manifest = json.loads((odd / "manifest.json").read_text())
    (odd / "manifest.json").write_text(json.dumps(manifest | {"kind": "sweep"}))
    with pytest.raises(UserError, match="unknown run folder kind 'sweep'"):
        build_report(odd)
