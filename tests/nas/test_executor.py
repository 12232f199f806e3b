"""Fixed job lists on a real local Ray: every job once, finished jobs never rerun."""

import json

import pytest
from search_helpers import tiny_settings

from nas.executor import Job, run_jobs
from search_spaces.presets import get_preset


@pytest.mark.slow
@pytest.mark.ray
def test_jobs_run_once_and_resume(tmp_path, search_env):
    settings = tiny_settings(tmp_path, metrics=("fid", "val_loss", "latency_ms"))
    jobs = [Job(0, "baseline", get_preset("bk_sdm_tiny"), 0), Job(1, "md", get_preset("mobilediffusion"), 0)]
    seen = []
    rows = run_jobs(jobs, settings, cpus_per_trial=1, progress=lambda d, t: seen.append((d, t)))
    assert [r["preset"] for r in rows] == ["baseline", "md"]
    assert all(r["state"] == "COMPLETE" and r["fid"] is not None for r in rows)
    assert seen[-1] == (2, 2)
    stamp = (tmp_path / "trials" / "0000" / "metrics.json").stat().st_mtime_ns
    jobs.append(Job(2, "md seed 1", get_preset("mobilediffusion"), 1))
    again = run_jobs(jobs, settings, cpus_per_trial=1)
    assert (tmp_path / "trials" / "0000" / "metrics.json").stat().st_mtime_ns == stamp  # not rerun
    assert again[:2] == rows and again[2]["seed"] == 1 and not again[2]["cached"]
    assert json.loads((tmp_path / "trials" / "0002" / "metrics.json").read_text())["state"] == "COMPLETE"
