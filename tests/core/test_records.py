"""Typed, versioned records: one writer and one reader of trial records and manifests, clear errors for
records of another version or shape, and a numpy-only core (no torch to read a run folder)."""

import json
import subprocess
import sys

import pytest

from core.errors import UserError
from core.metrics import METRICS
from core.records import TRIAL_FIELDS, TRIAL_SCHEMA, trial_record
from core.run_folder import TRIAL_COLUMNS, RunFolder


def _run(tmp_path) -> RunFolder:
    return RunFolder.create(tmp_path / "run", {"command": "nas search", "objectives": [
        {"name": "fid", "direction": "minimize"}], "storage": None, "study_file": "study.db"})


def test_every_registered_metric_is_a_record_field_and_a_table_column():
    assert set(METRICS) <= set(TRIAL_FIELDS)
    assert set(METRICS) <= set(TRIAL_COLUMNS)


def test_trial_record_round_trip_through_the_one_writer_and_reader(tmp_path):
    run = _run(tmp_path)
    rungs = [{"step": 10, "train_loss": 0.5, "val_loss_grid": 0.4}, {"step": 30, "train_loss": 0.3}]
    written = run.write_trial_record({"number": 3, "state": "COMPLETE", "fid": 12.5, "p_width": 64,
                                      "rungs": rungs, "sample_captions": ["a red circle"],
                                      "latency_blocks": [{"path": "down.0", "ms": 1.5}]})
    read = run.read_trial_record(3)
    assert read == written and read.record_version == TRIAL_SCHEMA
    assert read.fid == 12.5 and read.p_width == 64 and read.rungs[0].val_loss_grid == 0.4
    row = read.row()  # the table row: history as one JSON text, no per-block breakdown
    assert json.loads(row["rungs"])[1] == {"step": 30, "train_loss": 0.3}
    assert "latency_blocks" not in row and row["sample_captions"] == '["a red circle"]'
    assert run.read_trial_record(4) is None


@pytest.mark.parametrize("data, message", [
    ({"number": 1, "state": "DONE"}, "state"),
    ({"number": -1, "state": "COMPLETE"}, "number"),
    ({"number": 1, "state": "COMPLETE", "fid": "low"}, "fid"),
    ({"number": 1, "state": "COMPLETE", "record_version": TRIAL_SCHEMA + 1}, "this version reads version"),
    ({"number": 1, "state": "COMPLETE", "rungs": [{"train_loss": 0.1}]}, "rungs.0.step"),
])
def test_bad_trial_records_are_one_line_user_errors(tmp_path, data, message):
    run = _run(tmp_path)
    with pytest.raises(UserError, match=message) as err:
        run.write_trial_record(data)
    assert len(str(err.value).splitlines()) == 1
    assert not run.trial_dir(1).exists()  # nothing half-written


def test_reading_a_record_of_another_version_names_it(tmp_path):
    run = _run(tmp_path)
    run.trial_dir(2).mkdir(parents=True)
    run.record_path(2).write_text(json.dumps({"number": 2, "state": "COMPLETE", "record_version": 99}))
    with pytest.raises(UserError, match="trial record version 99; this version reads version 1"):
        run.read_trial_record(2)
    run.record_path(2).write_text("{not json")
    with pytest.raises(UserError, match="unreadable trial record"):
        run.read_trial_record(2)


def test_table_rows_are_validated_and_read_back_typed(tmp_path):
    run = _run(tmp_path)
    run.append_trial({"number": 0, "state": "COMPLETE", "fid": 20.0, "rungs": [{"step": 5, "train_loss": 1.0}]})
    run.append_trial({"number": 1, "state": "STOPPED", "stopped_at_step": 5, "val_loss_grid": 0.2})
    frame = run.read_trials()
    assert list(frame["state"]) == ["COMPLETE", "STOPPED"] and frame.loc[1, "stopped_at_step"] == 5
    with pytest.raises(UserError, match="state"):
        run.append_trial({"number": 2, "state": "FINISHED"})
    run.write_trials([trial_record(r).row() for r in frame.to_dict("records")])  # a table read back validates
    assert len(run.read_trials()) == 2


@pytest.mark.parametrize("manifest, message", [
    ({"format": 3}, "run manifest format 3"),
    ({"format": 2, "kind": "sweep"}, "unknown run folder kind 'sweep'"),
    ({"format": 2, "objectives": [{"name": "beauty", "direction": "maximize"}]}, "unknown metric 'beauty'"),
    ({"format": 2, "objectives": [{"name": "fid", "direction": "up"}]}, "objectives.0.direction"),
])
def test_manifests_of_another_version_or_shape_fail_in_one_line(tmp_path, manifest, message):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=message):
        RunFolder.open(tmp_path / "run")


def test_previous_format_still_opens(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({
        "format": 1, "storage": f"sqlite:///{tmp_path}/elsewhere/study.db", "study_name": "search",
        "objectives": [{"name": "fid", "direction": "minimize"}], "sampler": "tpe"}))
    run = RunFolder.open(tmp_path / "old")
    assert run.manifest()["sampler"] == "tpe"


def test_reading_records_and_pareto_needs_no_torch():
    code = ("import sys; import core.run_folder, core.records, reports.pareto; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
