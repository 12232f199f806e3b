"""A search's exit status tells the truth (issue 30): one that completed no trial exits 1 with one line naming
the failure reasons and the resume command; one with some failures exits 0 and says how many failed and why."""

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
