"""Where the wall time of a `nas search` went: framework overhead vs the work of its trials.

Reads the run folder's trials table and the `--json` summary that `nas search` printed (its `timings`), and
splits the wall time into: prepare (domain evaluator, warm-start latency blocks), Ray start-up, trial work
(training, sampling, scoring, latency lookup: the stage timings each trial records), in-trial remainder
(cost count, artifacts), and the framework's share of the trial phase (Ray Tune scheduling, Optuna's
ask/tell and storage, process hand-offs) = trial phase - sum of trial wall times. The issue's goal: framework
overhead (trial wall time not spent in training, sampling, scoring or latency lookup) below 3% of the total.

Usage: python benchmarks/search_overhead.py RUN_DIR SUMMARY.json
"""

from __future__ import annotations

import argparse
import json

from core.run_folder import RunFolder

STAGES = ("seconds_train", "seconds_sample", "seconds_score", "seconds_latency")


def breakdown(run_dir: str, summary: dict) -> dict[str, float]:
    trials = RunFolder(run_dir).read_trials()
    t = summary["timings"]
    work = float(trials[list(STAGES)].fillna(0).to_numpy().sum())
    trial_wall = float(trials["seconds_total"].fillna(0).sum())
    phase = t["trials"]
    out = {"total": summary["seconds"], "prepare": t.get("prepare", 0.0), "ray_startup": t.get("ray_startup", 0.0),
           "ray_memory_mb": t.get("ray_memory_mb", 0.0), "report": t.get("report", 0.0), "trial_phase": phase,
           "trial_work": work, "in_trial_other": trial_wall - work, "framework": phase - trial_wall,
           "n_trials": len(trials), "n_cached": int(trials["cached"].fillna(False).astype(bool).sum())}
    out["overhead_share_of_trial_phase"] = (phase - work) / phase
    out["framework_share_of_total"] = out["framework"] / out["total"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("summary", help="the JSON that `nas search ... --json` printed")
    args = parser.parse_args()
    out = breakdown(args.run_dir, json.load(open(args.summary)))
    print(json.dumps(out, indent=2))
    print("\n| stage | seconds | share |\n|---|---|---|")
    for key in ("prepare", "ray_startup", "trial_work", "in_trial_other", "framework", "report"):
        print(f"| {key} | {out[key]:.1f} | {out[key] / out['total']:.1%} |")
    print(f"| total | {out['total']:.1f} | |")


if __name__ == "__main__":
    main()
