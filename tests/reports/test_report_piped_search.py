"""`nas search ... | cat`: a real (tiny, cost-only) search whose output is a pipe prints one line per finished
trial, no progress-bar frames, and a final table that fits 80 columns with full arch ids."""

import os
import re
import subprocess
import sys

import pytest

from core.run_folder import RunFolder


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(900)
def test_piped_search_prints_one_line_per_trial(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    search = subprocess.run(
        [sys.executable, "-m", "nas.cli", "search", "--trials", "3", "--objectives", "latency,params",
         "--latency-device", "iphone15pro", "--warm-start", "sd15", "--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=840, cwd=tmp_path, env=env)
    assert search.returncode == 0, search.stderr[-3000:]
    lines = search.stdout.splitlines()
    beats = [line for line in lines if re.match(r"trial \d+ ", line)]
    assert len(beats) == 3, search.stdout
    table = RunFolder(tmp_path / "run").read_trials().set_index("number")
    for k, line in enumerate(beats):
        number = int(line.split()[1])
        assert line.split()[2] == "COMPLETE" and table.loc[number, "arch_id"] in line
        assert f"| {k + 1}/3 finished" in line and "latency_ms=" in line and ", eta " in line
        assert f"params={table.loc[number, 'params'] / 1e6:.1f}M" in line
    assert "━" not in search.stdout  # no progress-bar frames in a pipe
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Pareto set ("))
    end = next(i for i, line in enumerate(lines) if line.strip().endswith("--json or trials.csv"))
    assert all(len(line) <= 80 for line in lines[start:end + 1])
    pareto_ids = [a for a in table["arch_id"] if any(a in line for line in lines[start:end])]
    assert pareto_ids and all(len(a) == 12 for a in pareto_ids)  # full ids, not cut
    assert any(line.startswith("run folder: ") and str(tmp_path / "run") in line for line in lines)
