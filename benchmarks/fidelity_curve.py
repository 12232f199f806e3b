"""The fidelity study's budget curve: Kendall tau against seconds per trial, for every short budget on record.

For each short budget (training steps) this runs the study's own analysis on the committed rows (`nas fidelity
--panel paper --short-steps N --reference-steps R --import CSV --no-train --json`, so nothing is trained and
every number is what `nas fidelity` itself reports) and collects, per quality signal:

- tau (and rho) of the short signal against the same signal at the reference, with the bootstrap interval;
- tau of the short signal against the reference's target metric (default FID), oriented so that a positive
  tau calls the same architectures better: does the cheap signal predict the quality the reference measures?
- the seed ceiling (tau between the two short seeds) and the median seed sd;
- the median seconds one trial spends to produce the signal (set-up, training, and the signal's own stages);
- the agreement with the reference's target metric of each short seed alone (`target_tau_seed0`, ...): what
  a search trial or a scheduler's rung sees, since it trains one seed (the study's own numbers rank 2-seed means).

Writes `--out` (CSV, one row per budget and signal) and prints a Markdown table. A budget with missing trials
is reported with the trials it has and flagged `complete = False`.

    python benchmarks/fidelity_curve.py --steps 32,64,125,250,500 --out benchmarks/fidelity/curve.csv
    python benchmarks/fidelity_curve.py --proxy inherit --teacher-steps 2000 --steps 16,32 \
        --csv benchmarks/fidelity/trials_inherit.csv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.metrics import get_metric  # noqa: E402
COLUMNS = ("tau", "tau_low", "tau_high", "rho", "target", "target_tau", "target_tau_low", "target_tau_high",
           "ceiling_short_tau", "ceiling_short_tau_low", "ceiling_short_tau_high", "seed_sd_short", "seconds_short")


def study(steps: int, args: argparse.Namespace, folder: Path) -> dict:
    """The analysis of one short budget, as `nas fidelity --json` reports it."""
    cmd = [str(Path(sys.executable).with_name("nas")), "fidelity", "--panel", "paper", "--short-steps", str(steps),
           "--reference-steps", str(args.reference_steps), "--import", str(args.csv), "--no-train",
           "--target", args.target, "--run-dir", str(folder / f"short{steps}"), "--json"]
    if args.proxy == "inherit":  # teacher-anchored short trials; the reference rows come from --reference-csv
        cmd += ["--proxy", "inherit", "--teacher", args.teacher, "--import", str(args.reference_csv)]
        cmd += ["--teacher-steps", str(args.teacher_steps)] if args.teacher_steps else []
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def per_seed(folder: Path, metric: str, target: str) -> dict[str, float | None]:
    """Kendall tau of each short seed's `metric` against the reference's `target`, oriented so that a positive
    tau calls the same architectures better (what one seed, as a search trial trains, says)."""
    trials = pd.read_csv(folder / "fidelity" / "trials.csv")
    trials = trials[trials["state"] == "COMPLETE"]
    ref = trials[trials["budget"] == "reference"].groupby("arch_id")[target].mean()
    sign = (-1.0 if get_metric(metric).maximize else 1.0) * (-1.0 if get_metric(target).maximize else 1.0)
    out = {}
    for seed, rows in trials[trials["budget"] == "short"].groupby("seed"):
        both = pd.concat([rows.set_index("arch_id")[metric], ref], axis=1, keys=["x", "y"]).dropna()
        out[f"target_tau_seed{seed}"] = (float(sign * kendalltau(both["x"], both["y"]).statistic)
                                         if len(both) >= 3 else None)
    return out


def fmt(value, spec=".2f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=ROOT / "benchmarks/fidelity/trials.csv")
    ap.add_argument("--steps", default="32,64,125,250,500", help="short budgets (training steps), comma-separated")
    ap.add_argument("--reference-steps", type=int, default=2000)
    ap.add_argument("--target", default="fid")
    ap.add_argument("--out", type=Path, default=None, help="CSV of the curve (default: print only)")
    ap.add_argument("--proxy", choices=("scratch", "inherit"), default="scratch",
                    help="inherit: the short budgets are teacher-anchored fine-tunes (--csv their rows, e.g. "
                    "benchmarks/fidelity/trials_inherit.csv); --steps are fine-tune steps")
    ap.add_argument("--teacher", default="sd15")
    ap.add_argument("--teacher-steps", type=int, default=None, help="the teacher's training steps (default: "
                    "nas's default)")
    ap.add_argument("--reference-csv", type=Path, default=ROOT / "benchmarks/fidelity/trials.csv",
                    help="rows of the from-scratch reference (with --proxy inherit)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (int(s) for s in args.steps.split(",")):
            result = study(steps, args, Path(tmp))
            for r in result["correlations"]:
                seeds = per_seed(Path(tmp) / f"short{steps}", r["metric"], args.target) if r["n"] else {}
                rows.append(dict(steps=steps, metric=r["metric"], n=r["n"], complete=result["missing"] == 0,
                                 missing=result["missing"]) | {k: r.get(k) for k in COLUMNS} | seeds)
    curve = pd.DataFrame(rows)
    if args.out:
        curve.to_csv(args.out, index=False)
    print(f"| steps | signal | n | tau vs itself at reference [95% CI] | tau vs reference {args.target} [95% CI] | "
          f"one seed vs reference {args.target} (seed 0, 1) | seed ceiling tau | seed sd | s / trial |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in curve.to_dict("records"):
        if r["n"] == 0:
            continue
        print(f"| {r['steps']}{'' if r['complete'] else ' (incomplete)'} | {r['metric']} | {r['n']} | "
              f"{fmt(r['tau'])} [{fmt(r['tau_low'])}, {fmt(r['tau_high'])}] | {fmt(r['target_tau'])} "
              f"[{fmt(r['target_tau_low'])}, {fmt(r['target_tau_high'])}] | "
              f"{fmt(r.get('target_tau_seed0'))}, {fmt(r.get('target_tau_seed1'))} | {fmt(r['ceiling_short_tau'])} | "
              f"{fmt(r['seed_sd_short'], '.3g')} | {fmt(r['seconds_short'], '.0f')} |")
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
