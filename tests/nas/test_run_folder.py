"""The run folder's trials log and table, its manifest formats and its portable study path."""

import json
import time

import pytest

from core.errors import UserError
from core.run_folder import RunFolder


def test_the_log_grows_by_appends_and_a_later_line_replaces_an_earlier_one(tmp_path):
    run = RunFolder(tmp_path)
    run.append_trial(dict(number=0, state="COMPLETE", fid=20.0))
    run.append_trial(dict(number=1, state="RUNNING"))
    with run.trials_log.open("a") as f:
        f.write('{"number": 2, "sta')  # a line cut by a crash mid-write
    run.append_trial(dict(number=1, state="STALE", failure_reason="stale"))
    table = run.read_trials()
    assert list(table["number"]) == [0, 1] and list(table["state"]) == ["COMPLETE", "STALE"]
    assert table.loc[0, "fid"] == 20.0 and "p_x" not in table.columns


def test_the_table_written_at_the_end_wins_until_the_log_grows_again(tmp_path):
    run = RunFolder(tmp_path)
    run.append_trial(dict(number=0, state="COMPLETE"))
    run.write_trials([dict(number=0, state="COMPLETE"), dict(number=1, state="FAIL")])
    assert list(run.read_trials()["number"]) == [0, 1]
    time.sleep(0.01)
    run.append_trial(dict(number=2, state="COMPLETE"))
    assert list(run.read_trials()["number"]) == [0, 2]  # the log of the run going on


def test_manifest_formats(tmp_path):
    run = RunFolder(tmp_path / "a")
    run.path.mkdir()
    (run.path / "study.db").write_bytes(b"")
    for fmt, storage, expected in ((2, None, run.default_storage()),
                                   (1, "sqlite:////elsewhere/a/study.db", run.default_storage()),
                                   (2, "postgresql://u@h/db", "postgresql://u@h/db")):
        run.manifest_path.write_text(json.dumps(dict(format=fmt, storage=storage, study_file="study.db")))
        assert run.storage_url() == expected
    run.manifest_path.write_text(json.dumps(dict(format=99)))
    with pytest.raises(UserError, match="format 99; this version reads formats 1, 2"):
        run.manifest()
