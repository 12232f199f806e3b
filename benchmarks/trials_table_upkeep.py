"""Trials-table upkeep over a long run, with synthetic records: the append-only log (what a search does after
each trial) against rewriting the whole table after each trial (what it did before). Prints the median
seconds per trial over the first and the last 20 trials of a 200-trial run.

    python benchmarks/trials_table_upkeep.py [--trials 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.run_folder import RunFolder  # noqa: E402


def record(number: int) -> dict:
    row = dict(number=number, state="COMPLETE", arch_id=f"{number:012x}", preset="", params=300_000_000 + number,
               macs=1e11, latency_ms=500.0 + number, fid=20.0, kid=0.01, clip_score=0.2, cmmd=1.5, val_loss=0.05,
               val_loss_grid=0.04, seconds_total=180.0, failure_reason=None, config_json="{}" * 200)
    return row | {f"p_dim{i}": i for i in range(34)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    n = ap.parse_args().trials
    with tempfile.TemporaryDirectory() as tmp:
        append, rewrite = RunFolder(Path(tmp) / "a"), RunFolder(Path(tmp) / "b")
        append.path.mkdir(), rewrite.path.mkdir()
        times: dict[str, list[float]] = {"append": [], "rewrite": []}
        rows = []
        for i in range(n):
            rows.append(record(i))
            began = time.perf_counter()
            append.append_trial(rows[-1])
            times["append"].append(time.perf_counter() - began)
            began = time.perf_counter()
            rewrite.write_trials(rows)
            times["rewrite"].append(time.perf_counter() - began)
        began = time.perf_counter()
        assert len(append.read_trials()) == n
        read = time.perf_counter() - began
    for name, ts in times.items():
        first, last = statistics.median(ts[:20]), statistics.median(ts[-20:])
        print(f"{name:8s} first 20: {first * 1e3:8.3f} ms/trial  last 20: {last * 1e3:8.3f} ms/trial  "
              f"ratio {last / first:5.2f}  total {sum(ts):.2f} s")
    print(f"reading the {n}-trial log back as a table: {read * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
