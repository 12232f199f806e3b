"""`nas search --scheduler mo-asha` for real: a local Ray, tiny real trainings, a real SQLite study. Trials stop
at rungs with their reason and rung values, promoted ones run to the full budget, a resumed run ranks against
the rungs recorded before, a driver killed with SIGKILL mid-trial resumes that trial from its last rung, and a cluster started with
`ray start` on loopback runs it too."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from search_helpers import ray_start_cluster, tiny_options, tiny_settings

from core.run_folder import RunFolder
from nas import rung_resume
from nas.schedulers import Rungs
from nas.search import run_search

TESTS_DIR = Path(__file__).resolve().parents[1]
REASON = re.compile(r"^mo-asha: rank (\d+) of (\d+) at rung (\d+) steps, top (\d+) continue$")


def mo_options(run_dir, trials, steps=12, min_budget=3, eta=2, **changes):
    """A tiny MO-ASHA search on FID (ranked at rungs by the held-out grid loss) and latency."""
    settings = tiny_settings(run_dir, metrics=("fid", "latency_ms"))
    settings = dataclasses.replace(settings, budget=settings.budget.replace(steps=steps))
    return tiny_options(run_dir, trials=trials, objectives="fid,latency_ms", settings=settings, warm_start=(),
                        rungs=Rungs("mo-asha", min_budget=min_budget, eta=eta, steps=steps), **changes)


def _study(run_dir: Path) -> optuna.Study:
    run = RunFolder(run_dir)
    manifest = run.manifest()
    return optuna.load_study(study_name=manifest["study_name"], storage=run.storage_url(manifest))


@pytest.mark.slow
@pytest.mark.ray
def test_mo_asha_stops_trials_at_rungs_and_resumes_its_records(tmp_path, search_env):
    run_dir = tmp_path / "run"
    result = run_search(mo_options(run_dir, trials=6, workers=2))
    study = _study(run_dir)
    stopped = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert stopped and complete and len(stopped) + len(complete) == 6 == len(study.trials)
    assert result.n_complete == len(complete) and 0 < result.timings["scheduler"] < 0.03 * result.timings["trials"]
    assert result.n_stopped == len(stopped) and result.n_failed == 0  # a stopped trial did not fail
    table = RunFolder(run_dir).read_trials().set_index("number")
    for t in stopped:  # PRUNED in the study, STOPPED in the table, with the rung's values and why
        row = table.loc[t.number]
        position, n, rung, keep = map(int, REASON.match(t.user_attrs["stop_reason"]).groups())
        assert position > keep and rung == t.user_attrs["stopped_at_step"] == row["stopped_at_step"]
        assert row["state"] == "STOPPED" and row["stop_reason"] == t.user_attrs["stop_reason"]
        values = t.user_attrs["rung_values"]
        assert values["step"] == rung and values["val_loss_grid"] > 0 and values["latency_ms"] == row["latency_ms"]
        assert [r["step"] for r in json.loads(row["rungs"])][-1] == rung
        assert t.user_attrs["rung_decisions"][-1]["reason"] == t.user_attrs["stop_reason"]
    for t in complete:  # promoted at every rung, continued to the full budget without a restart
        row = table.loc[t.number]
        assert [r["step"] for r in json.loads(row["rungs"])] == [3, 6] and row["steps"] == 12
        assert all(d["promoted"] for d in t.user_attrs["rung_decisions"])
        assert row["fid"] > 0 and row["state"] == "COMPLETE"
    assert not list(run_dir.glob(f"trials/*/{rung_resume.TRAIN_STATE}"))  # every trial ended by itself
    manifest = RunFolder(run_dir).manifest()
    assert manifest["scheduler"] == dict(scheduler="mo-asha", min_budget=3, eta=2, steps=12, rungs=[3, 6])
    assert manifest["rung_fidelity"] == {"3": None, "6": None}  # tiny budgets: no study on record for them
    html = result.report.read_text()
    assert 'id="rungs-table"' in html and "<h2>Rungs</h2>" in html and "why it stopped" in html

    before = {t.number: t.user_attrs.get("rung_decisions") for t in study.trials}
    at_first_rung = sum(1 for t in study.trials if t.user_attrs.get("rung_decisions"))
    again = run_search(mo_options(run_dir, trials=8, workers=2, resume=True, report=False))
    study = _study(run_dir)
    assert len(study.trials) == 8 and again.n_complete + sum(
        t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == 8
    for t in study.trials[:6]:  # nothing of the first six changed
        assert t.user_attrs.get("rung_decisions") == before[t.number]
    decided = [t.user_attrs["rung_decisions"][0] for t in study.trials[6:] if "rung_decisions" in t.user_attrs]
    assert decided  # (a repeated architecture would be answered by the quality cache, without rungs)
    for first in decided:  # ranked against every result recorded at rung 3 before the resume
        assert first["rung"] == 3 and first["n"] > at_first_rung


DRIVER = """\
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}, {here!r}]  # the repo first: tests/reports must not shadow the reports package
from test_moasha_ray import mo_options
from nas.cli import run_guarded
from nas.search import run_search
run_guarded(lambda: run_search(mo_options(Path(sys.argv[1]), trials=1, steps=40, min_budget=4, eta=9,
                                          workers=1, report=False)))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_driver_resumes_the_trial_from_its_last_rung(tmp_path, search_env):
    run_dir = tmp_path / "run"
    script = tmp_path / "drive.py"
    script.write_text(DRIVER.format(root=str(TESTS_DIR.parent), tests=str(TESTS_DIR), here=str(TESTS_DIR / "nas")))
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ), start_new_session=True)
    state = run_dir / "trials" / "0000" / rung_resume.TRAIN_STATE
    deadline = time.time() + 300
    while not state.exists():  # the trial passed its first rung (4 of 40 steps): kill everything, at once
        assert proc.poll() is None, f"the driver ended first: {proc.communicate()[1]}"
        assert time.time() < deadline, "no rung state in time"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    first_rung = json.loads((run_dir / "trials" / "0000" / "metrics.json").read_text())["rungs"]
    assert [r["step"] for r in first_rung] == [4]

    result = run_search(mo_options(run_dir, trials=1, steps=40, min_budget=4, eta=9, workers=1, resume=True,
                                   report=False))
    study = _study(run_dir)
    old, new = study.trials
    assert old.user_attrs.get("stale") and old.state == optuna.trial.TrialState.FAIL  # settled by the new driver
    assert new.state == optuna.trial.TrialState.COMPLETE and result.n_complete == 1
    assert new.user_attrs["continues"] == 0 and new.user_attrs["lineage"] == 0
    row = RunFolder(run_dir).read_trials().set_index("number").loc[1]
    assert row["resumed_from"] == 0 and row["resumed_at_step"] == 4 and row["steps"] == 40
    rungs = json.loads(row["rungs"])
    assert [r["step"] for r in rungs] == [4, 36] and rungs[0] == first_rung[0]  # the rung before the kill, kept
    # continued, not restarted: the new trial's decision at rung 36 is its only one (rung 4 was not reported again)
    assert [d["rung"] for d in new.user_attrs["rung_decisions"]] == [36]
    assert not list(run_dir.glob(f"trials/*/{rung_resume.TRAIN_STATE}"))


@pytest.mark.slow
@pytest.mark.ray
def test_mo_asha_on_a_ray_cluster_started_with_ray_start(tmp_path, search_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with ray_start_cluster() as address:
        run_dir = tmp_path / "run"
        result = run_search(mo_options(run_dir, trials=6, workers=2, address=address, report=False))
        table = RunFolder(run_dir).read_trials()
        assert set(table["ray_gcs"]) == {address} and len(table) == 6  # every trial ran on that cluster
        assert set(table["state"]) == {"COMPLETE", "STOPPED"}  # the scheduler stopped some at a rung there
        assert result.n_complete == int((table["state"] == "COMPLETE").sum())
        for _, row in table[table["state"] == "STOPPED"].iterrows():
            assert REASON.match(row["stop_reason"]) and row["stopped_at_step"] in (3, 6)
