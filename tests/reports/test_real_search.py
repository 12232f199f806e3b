"""`nas search` -> `nas report` -> `nas export` on a real (tiny, cost-only) search run."""

import json
import subprocess
import sys

import pytest

from reports import build_report


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(900)
def test_report_and_export_of_a_real_search(tmp_path):
    run_dir = tmp_path / "run"
    search = subprocess.run(
        [sys.executable, "-m", "nas.cli", "search", "--trials", "3", "--objectives", "latency,params",
         "--latency-device", "iphone15pro", "--warm-start", "sd15", "--run-dir", str(run_dir), "--json"],
        capture_output=True, text=True, timeout=840, cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-3000:]
    summary = json.loads(search.stdout.strip().splitlines()[-1])
    path, report, info = build_report(run_dir, tmp_path / "report.html")
    assert info.header.n_complete == summary["n_complete"] == 3
    assert sorted(r.number for r in info.pareto.rows) == sorted(t["number"] for t in summary["pareto"])
    assert info.fronts_2d[0].axes == ("latency_ms", "params")  # the run's own front, no quality metrics measured
    assert "hypervolume" in [fig_id for fig_id, _ in report.figures]
    assert all(a.blocks for a in info.architectures)  # per-block latency recorded by the search

    export = subprocess.run([sys.executable, "-m", "nas.cli", "export", str(run_dir), "--pick", "min-latency",
                             "--out", str(tmp_path / "fast.json"), "--json"], capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-3000:]
    doc = json.loads(export.stdout)
    fastest = min(info.fronts_2d[0].points, key=lambda p: p.values[0])
    assert doc["trial"] == fastest.number and doc["run"]["objectives"] == ["latency_ms", "params"]
