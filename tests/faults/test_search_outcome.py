"""A search's exit status tells the truth (issue 30): one that completed no trial exits 1 with one line naming
the failure reasons and the resume command; one with some failures exits 0 and says how many failed and why; a
killed trial worker is one FAIL row, and Ray's traceback goes to the run folder's log, not to the terminal."""

import pandas as pd
import pytest

from core.run_folder import RunFolder
from nas.commands.search import failure_summary


def test_failure_summary_counts_reasons_by_their_first_sentence():
    trials = pd.DataFrame(dict(state=["COMPLETE", "FAIL", "FAIL", "FAIL", "INFEASIBLE", "FAIL"], failure_reason=[
        None, "out of memory. detail 1", "out of memory. detail 2", "the worker died", "infeasible: latency", None]))
    assert failure_summary(trials) == "2 x out of memory; 1 x the worker died; 1 x no reason recorded"
    assert failure_summary(trials, most=1) == "2 x out of memory; 2 more with 2 other reason(s)"
    assert failure_summary(trials[trials["state"] == "COMPLETE"]) == ""


@pytest.mark.slow
@pytest.mark.ray
def test_a_search_whose_every_trial_failed_exits_1_in_one_line_and_resumes(tmp_path, search_env, nas_cli):
    run_dir = tmp_path / "run"
    args = ["search", "--run-dir", run_dir, "--trials", "1", "--warm-start", "sd15", "--max-memory", "1MiB",
            "--latency-device", "iphone15pro", "--budget", "8", "--workers", "1", "--cpus-per-trial", "1"]
    code, out, err = nas_cli(*args)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("nas: error: no trial completed (1 FAIL; failed: 1 x training the proxy of arch ")
    assert f"nas search --run-dir {run_dir} --resume" in err
    table = RunFolder(run_dir).read_trials()
    assert list(table["state"]) == ["FAIL"] and "more than --max-memory" in table["failure_reason"][0]
    assert "run folder:" in out  # the usual summary came first

    code, _, err = nas_cli(*args, "--resume")  # the run folder resumes
    assert code == 1 and "no trial completed (1 FAIL" in err


DRIVER = """\
import dataclasses
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from search_helpers import tiny_options, tiny_settings
from nas.cli import run_guarded
from nas.search import run_search
run_dir = Path(sys.argv[1])
settings = tiny_settings(run_dir)
settings = dataclasses.replace(settings, budget=settings.budget.replace(steps=60))
run_guarded(lambda: run_search(tiny_options(run_dir, trials=2, warm_start=(), settings=settings, report=False)))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_trial_worker_is_one_failed_row_and_its_traceback_goes_to_the_run_log(tmp_path, search_env):
    """kill -9 of the process running a trial (as the kernel's OOM killer does): the trial is a FAIL row, the other
    trial completes, the exit status is 0, and Ray's traceback is in the run folder's log, not on the terminal."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    tests = Path(__file__).resolve().parents[1]
    script = tmp_path / "drive.py"
    script.write_text(DRIVER.format(root=str(tests.parent), tests=str(tests)))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ), start_new_session=True)
    deadline, victim = time.time() + 300, None
    while victim is None:  # this driver's own Ray runs the trial in a `ray::ImplicitFunc` worker (its descendant)
        assert proc.poll() is None and time.time() < deadline, "no trial worker in time"
        try:
            victim = next((p for p in psutil.Process(proc.pid).children(recursive=True)
                           if "ImplicitFunc" in " ".join(p.cmdline())), None)
        except psutil.Error:
            victim = None
        time.sleep(0.2)
    time.sleep(2)  # inside its training
    victim.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "ActorDiedError" not in err, err
    table = RunFolder(run_dir).read_trials()
    assert sorted(table["state"]) == ["COMPLETE", "FAIL"]
    assert "worker died" in table.set_index("state").loc["FAIL", "failure_reason"]  # a sentence, not the traceback
    log = (run_dir / "logs" / "ray.log").read_text()
    assert "ActorDiedError" in log or "Trial task failed" in log
