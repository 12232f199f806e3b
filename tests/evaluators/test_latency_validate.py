"""Validation against the measurement's own repeatability, the in-model source, and the record beside the LUT."""

import json

import pytest
from scipy.stats import kendalltau

from core.errors import UserError
from evaluators.latency import (
    get_predictor,
    latency_budget_warning,
    validation_on_record,
)
from evaluators.latency.inmodel import InModelTable, load_table, profile_model
from evaluators.latency.record import record_path, save_record
from evaluators.latency.signature import arch_signatures, with_image_size
from evaluators.latency.store import Entry
from evaluators.latency.validate import (
    Scores,
    ValidationInfo,
    ValidationPoint,
    run_validation,
)


def _point(i, predicted, pass1, pass2, inmodel=None):
    return ValidationPoint(f"a{i}", predicted, inmodel, pass1, pass2, 0.0)


def test_scores_against_a_reference():
    s = Scores.of([105.0, 130.0, 50.0, 200.0], [100.0, 100.0, 60.0, 190.0])
    assert s.n == 4 and s.within_10pct == 0.5
    assert s.mape == pytest.approx(100 * (0.05 + 0.30 + 1 / 6 + 10 / 190) / 4)
    assert s.kendall_tau == pytest.approx(kendalltau([105, 130, 50, 200], [100, 100, 60, 190]).statistic)


def test_repeatability_is_pass_two_scored_against_pass_one_and_decides_the_verdict():
    # pass 2 repeats pass 1 within 10% for 2 of 4 archs; the isolated source is within 10% of the mean for 3 of 4
    points = (_point(0, 100, 100, 104, inmodel=230), _point(1, 205, 200, 240, inmodel=200),
              _point(2, 300, 300, 290, inmodel=300), _point(3, 420, 400, 460, inmodel=520))
    info = ValidationInfo("cpu", 64, points, {})
    r = info.repeatability
    assert r.within_10pct == 0.5 and r.kendall_tau == pytest.approx(1.0)
    assert info.scores("isolated", "pass1").within_10pct == 1.0
    assert info.scores("isolated", "mean").within_10pct == 1.0 and info.at_repeatability_limit("isolated")
    assert info.scores("inmodel").within_10pct == 0.5 and info.scores("inmodel").kendall_tau < 1.0
    assert info.at_repeatability_limit("inmodel") is False  # as often within 10%, but ranks worse
    assert info.better_source == "isolated"
    data = info.to_dict()
    assert data["repeatability"]["within_10pct"] == 0.5
    assert set(data["sources"]["isolated"]) >= {"vs_pass1", "vs_pass2", "vs_mean", "at_repeatability_limit"}
    assert data["at_repeatability_limit"] is True and "as good as this device allows" in data["summary"]
    assert data["points"][0]["measured_ms"] == 102.0


def test_a_missing_source_is_said_not_scored():
    info = ValidationInfo("onnxruntime", 64, (_point(0, 10, 10, 11), _point(1, 20, 21, 20)), {}, None, "no hooks")
    assert info.scores("inmodel") is None and info.at_repeatability_limit("inmodel") is None
    assert info.to_dict()["sources"]["inmodel"] == {"available": False, "note": "no hooks"}
    assert "inmodel: not available (no hooks)" in info.summary() and info.better_source == "isolated"


def test_inmodel_table_is_leave_one_out_with_kind_ratio_fallback(tiny):
    sigs = arch_signatures(with_image_size(tiny, 64))
    keys = list(dict.fromkeys(s.key for _, s in sigs))
    isolated = {k: Entry(10.0, 0.0, 1) for k in keys}
    table = InModelTable("cpu", {})
    table.add("A", sigs, {path: 8.0 for path, _ in sigs})  # every block 0.8x its isolated time inside A
    assert table.archs() == {"A"}
    assert table.block_ms(sigs, isolated, exclude="B") == [8.0] * len(sigs)  # B is predicted from A's profile
    assert table.block_ms(sigs, isolated, exclude="A") == [10.0] * len(sigs)  # A never from its own: no ratio
    table.add("B", sigs[:3], {path: 6.0 for path, _ in sigs[:3]})
    own = table.block_ms(sigs, isolated, exclude="A")  # blocks only B saw: B's times; others: isolated x ratio
    seen_by_b = {s.key for _, s in sigs[:3]}
    ratios = table.kind_ratios(isolated, exclude="A")
    for (path, sig), ms in zip(sigs, own):
        assert ms == (6.0 if sig.key in seen_by_b else 10.0 * ratios.get(sig.spec.kind, 1.0)), path
    assert table.coverage(sigs, exclude="A") == pytest.approx(sum(s.key in seen_by_b for _, s in sigs) / len(sigs))


def test_profile_times_every_block_inside_one_forward(lut_dir, tiny):
    predictor = get_predictor("cpu", image_size=64)
    config = with_image_size(tiny, 64)
    with predictor.backend.measuring():
        ms = profile_model(predictor.backend, config, rounds=2, warmup=1)
    assert list(ms) == [path for path, _ in arch_signatures(config)]
    assert all(v > 0 for v in ms.values())


def test_corrupt_inmodel_table_is_a_user_error(lut_dir):
    lut_dir.mkdir(parents=True)
    (lut_dir / "cpu.inmodel.json").write_text("{broken")
    with pytest.raises(UserError, match="in-model profile .* is corrupt"):
        load_table(get_predictor("cpu", image_size=64).store, "cpu", {})


@pytest.mark.slow
def test_validation_runs_two_passes_and_its_record_counts_until_the_lut_changes(lut_dir, tiny, tiny_variants):
    predictor = get_predictor("cpu", image_size=64, rounds=2, model_rounds=3)
    held_out = [tiny.replace(ff_mult=3), tiny.replace(ff_activation="swish", ff_mult=2),
                tiny.replace(shared_kv=True, ff_mult=2)]
    assert "no validation on record" in latency_budget_warning(predictor)
    ticks = []
    info = run_validation(predictor, held_out, lambda done, total: ticks.append((done, total)),
                          calibration_configs=tiny_variants)
    assert info.n == 3 and ticks[-1][0] == ticks[-1][1]
    assert all(p.pass1_ms > 0 and p.pass2_ms > 0 and p.pass1_ms != p.pass2_ms for p in info.points)
    assert all(p.inmodel_ms is not None and p.inmodel_ms > 0 for p in info.points)
    assert info.inmodel_calibration is not None and len(info.inmodel_calibration["points"]) == len(tiny_variants)
    table = load_table(predictor.store, "cpu", predictor.lut.fingerprint)
    assert table.archs() == {c.arch_id for c in tiny_variants + held_out}  # stored beside the LUT
    assert validation_on_record(predictor) is None
    path = save_record(predictor, info, seed=0)
    assert path == record_path(predictor) and path.parent == lut_dir
    record = validation_on_record(get_predictor("cpu", image_size=64))
    assert record is not None and record["repeatability"] == json.loads(json.dumps(info.to_dict()))["repeatability"]
    assert latency_budget_warning(get_predictor("cpu", image_size=64)) is None
    assert validation_on_record(get_predictor("cpu", image_size=128)) is None  # another image size
    predictor.calibrate(tiny_variants[:2])  # a new overhead fit: the validation no longer applies
    assert validation_on_record(predictor) is None
    warning = latency_budget_warning(predictor)
    assert "before the LUT's fingerprint or calibration changed" in warning and "median" in warning
    assert "\n" not in warning


def test_roofline_and_imported_devices_have_no_record_and_warn():
    predictor = get_predictor("iphone15pro")
    assert validation_on_record(predictor) is None
    assert "ESTIMATES" in latency_budget_warning(predictor)
