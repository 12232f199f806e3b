"""MO-ASHA against a search without a scheduler in the same wall time, on this machine (issue 14).

For each seed S:

1. **Without a scheduler**: `nas search --space unet_mobile --seed S --trials 8 --scheduler none` (every trial
   trains to the full budget), run to the end with `--json`; T = its trials stage (`timings.trials`: Ray Tune's
   fit, start-up excluded).
2. **MO-ASHA**: `nas search --space unet_mobile --seed S --scheduler mo-asha --trials 100000`, interrupted with
   SIGINT (Ctrl-C) T seconds after its trials stage began (the moment Ray Tune creates the run's `ray/` folder,
   right after Ray's start-up). Its parallelism is the one `nas search` chooses (printed on stderr, recorded).

Measured per seed, from the two run folders:

- architectures scored: distinct architectures with a result at a rung or at the full budget (STOPPED or
  COMPLETE rows; interrupted trials are not counted);
- architectures at the full budget: distinct COMPLETE architectures;
- hypervolume of each search's final front, from the full-budget metrics of its members (COMPLETE rows only: a
  stopped trial has no full-budget value of its quality objective), every objective min-max normalised over the
  COMPLETE rows of both searches of the seed (maximised ones negated first), reference point 1.1 per objective,
  Optuna's WFG hypervolume (as the report's hypervolume history);
- scheduler overhead: the rung decisions of the MO-ASHA run replayed through `nas.moasha.RungRecords` (the rung
  reports of every trial record, in trial-number order), timed, against the trials' summed `seconds_total`
  (a stopped trial: its training seconds up to its last rung). The rung checkpoints (saving the training state
  at each rung) are part of the trials' time, not of this.

The median over seeds of each number is printed as a Markdown table (and all of it as JSON with --out-json).
The first default search of a fresh machine also trains the domain CLIP and measures the latency table; run
`nas evaluators check` and one search beforehand to keep that out of T, or read T from the JSON.

Each seed's numbers are added to --out-json as soon as they are measured; a rerun with the same arguments skips
the seeds already there (the benchmark resumes per seed, across sessions).

Usage (at the default 125-step budget, trials drawing no samples: about 15 min of trials per search and seed on
2 cores, so ~35 min per seed):

    HF_HUB_OFFLINE=1 tools/loopback.sh .venv/bin/python benchmarks/moasha_demo.py --seeds 0,1,2 --root runs/moasha \
        --out-json benchmarks/moasha/moasha.json

Tiny smoke test (checks the script end to end; the numbers mean nothing):

    HF_HUB_OFFLINE=1 tools/loopback.sh .venv/bin/python benchmarks/moasha_demo.py --seeds 0 --root /tmp/mb \\
        --default-trials 2 --args "--budget 12 --n-val 16 --n-samples 16 --n-real 32 --latency-device iphone15pro" \\
        --mo-args "--min-budget 3 --eta 2"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optuna._hypervolume import compute_hypervolume  # noqa: E402  (Optuna's exact WFG implementation)

from core.metrics import get_metric  # noqa: E402
from core.provenance import provenance  # noqa: E402
from core.run_folder import RunFolder  # noqa: E402
from nas.moasha import RungRecords, rung_metrics  # noqa: E402
from reports.pareto import nondominated  # noqa: E402

HV_REFERENCE = 1.1


def nas(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas.cli", *args]


def run_default(run_dir: Path, seed: int, trials: int, extra: list[str]) -> dict:
    """The default search, to the end; its --json summary."""
    began = time.perf_counter()
    out = subprocess.run(nas("search", "--space", "unet_mobile", "--seed", str(seed), "--trials", str(trials),
                             "--run-dir", str(run_dir), "--scheduler", "none", "--json", *extra),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"default search failed ({out.returncode}): {out.stderr[-2000:]}")
    summary = json.loads(out.stdout)
    summary["wall"] = time.perf_counter() - began
    return summary


def run_moasha(run_dir: Path, seed: int, seconds: float, extra: list[str]) -> dict:
    """The MO-ASHA search, interrupted `seconds` after its trials stage began; what it printed on stderr."""
    proc = subprocess.Popen(nas("search", "--space", "unet_mobile", "--seed", str(seed), "--trials", "100000",
                                "--run-dir", str(run_dir), "--scheduler", "mo-asha", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    began = time.perf_counter()
    while not (run_dir / "ray").exists():
        if proc.poll() is not None:
            raise SystemExit(f"MO-ASHA search ended before its trials: {proc.communicate()[1][-2000:]}")
        time.sleep(0.5)
    trials_began = time.perf_counter()
    while proc.poll() is None and time.perf_counter() - trials_began < seconds:
        time.sleep(0.5)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the trials are settled as interrupted, the table written
    stdout, stderr = proc.communicate(timeout=600)
    if proc.returncode not in (0, 130):
        raise SystemExit(f"MO-ASHA search failed ({proc.returncode}): {stderr[-2000:]}")
    return dict(returncode=proc.returncode, prepare_s=trials_began - began, trials_s=time.perf_counter() - trials_began,
                parallelism=next((ln for ln in (stdout + stderr).splitlines() if "parallelism:" in ln), ""))


def _rows(run_dir: Path):
    table = RunFolder(run_dir).read_trials()
    return table, RunFolder(run_dir).manifest()


def counts(run_dir: Path) -> dict:
    table, _ = _rows(run_dir)
    scored = table[table["state"].isin(["COMPLETE", "STOPPED"])]
    full = table[table["state"] == "COMPLETE"]
    return dict(trials=len(table), scored=int(scored["arch_id"].nunique()), full=int(full["arch_id"].nunique()),
                states={str(k): int(v) for k, v in table["state"].value_counts().items()})


def hypervolumes(run_dirs: list[Path]) -> list[float]:
    """Hypervolume of each run's front of COMPLETE rows, normalised over the COMPLETE rows of all `run_dirs`."""
    frames, objectives = [], None
    for d in run_dirs:
        table, manifest = _rows(d)
        objectives = [o["name"] for o in manifest["objectives"]]
        complete = table[table["state"] == "COMPLETE"].dropna(subset=objectives)
        frames.append(np.stack([(-1.0 if get_metric(o).maximize else 1.0) * complete[o].astype(float).to_numpy()
                                for o in objectives], axis=1))
    union = np.concatenate([f for f in frames if len(f)])
    lo, hi = union.min(axis=0), union.max(axis=0)
    out = []
    for f in frames:
        if not len(f):
            out.append(0.0)
            continue
        norm = (f - lo) / np.where(hi > lo, hi - lo, 1.0)
        front = norm[nondominated(norm)]
        out.append(float(compute_hypervolume(front, np.full(norm.shape[1], HV_REFERENCE))))
    return out


def scheduler_overhead(run_dir: Path) -> dict:
    """The run's rung decisions replayed and timed, against the trials' summed seconds."""
    table, manifest = _rows(run_dir)
    entry = manifest["scheduler"]
    records = RungRecords(entry["rungs"], entry["eta"], rung_metrics([o["name"] for o in manifest["objectives"]]))
    reports = []
    for row in table.sort_values("number").to_dict("records"):
        cell = row.get("rungs")
        reports += [(int(row["number"]), r) for r in (json.loads(cell) if isinstance(cell, str) and cell else [])]
    began = time.perf_counter()
    for key, report in reports:
        records.on_result(key, int(report["step"]), report)
    seconds = time.perf_counter() - began
    # a stopped trial has no total: its training seconds up to the rung it stopped at stand for it
    trial_seconds = float(table["seconds_total"].fillna(table["seconds_train"]).fillna(0).sum())
    return dict(decisions=len(reports), decision_s=seconds, trial_s=trial_seconds,
                fraction=seconds / trial_seconds if trial_seconds else None)


def _arguments(row: dict) -> tuple:
    """What makes two rows of one seed the same measurement: the arguments both searches were given."""
    return row.get("args"), row.get("mo_args"), row.get("default_trials")


def _done_rows(path: Path | None, extra: str, mo_extra: str, default_trials: int) -> dict[int, dict]:
    """Seeds already in `path` measured with the same arguments."""
    if path is None or not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {int(r["seed"]): r for r in rows if _arguments(r) == (extra, mo_extra, default_trials)}


def _save(path: Path, row: dict) -> None:
    """Add one seed's row to `path` (replacing a row of the same seed and arguments), atomically."""
    def key(r: dict) -> tuple:
        return r["seed"], *_arguments(r)

    rows = json.loads(path.read_text()).get("rows", []) if path.is_file() else []
    rows = sorted([r for r in rows if key(r) != key(row)] + [row], key=lambda r: (r["seed"], str(r.get("args"))))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(rows=rows), indent=2, default=str))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", type=Path, default=Path("runs/moasha-bench"), help="folder for the run folders")
    parser.add_argument("--default-trials", type=int, default=8)
    parser.add_argument("--args", default="", help="extra `nas search` arguments of both searches (e.g. --budget)")
    parser.add_argument("--mo-args", default="", help="extra arguments of the MO-ASHA search (--min-budget, --eta)")
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()
    extra, mo_extra = shlex.split(args.args), shlex.split(args.mo_args)
    # seeds already measured (same arguments) are read back from --out-json: the benchmark resumes per seed
    done = _done_rows(args.out_json, args.args, args.mo_args, args.default_trials)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        if seed in done:
            rows.append(done[seed])
            continue
        base, mo = args.root / f"default-s{seed}", args.root / f"moasha-s{seed}"
        summary = run_default(base, seed, args.default_trials, extra)
        budget = summary["timings"]["trials"]
        print(f"seed {seed}: default search {summary['n_complete']} complete, trials stage {budget:.0f} s",
              file=sys.stderr)
        info = run_moasha(mo, seed, budget, extra + mo_extra)
        hv_default, hv_mo = hypervolumes([base, mo])
        rows.append(dict(seed=seed, trials_s=budget, default=counts(base), moasha=counts(mo) | info,
                         hv_default=hv_default, hv_moasha=hv_mo, overhead=scheduler_overhead(mo),
                         args=args.args, mo_args=args.mo_args, default_trials=args.default_trials,
                         finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), provenance=provenance(seed=seed)))
        print(json.dumps(rows[-1], default=str), file=sys.stderr)
        if args.out_json:  # after every seed, so a stopped benchmark keeps what it measured
            _save(args.out_json, rows[-1])

    def median(key):
        return statistics.median(key(r) for r in rows)

    print(f"| seeds {args.seeds} (median) | no scheduler ({args.default_trials} full trials) | MO-ASHA, same trials "
          "time |")
    print("|---|---|---|")
    print(f"| trials stage (s) | {median(lambda r: r['trials_s']):.0f} | "
          f"{median(lambda r: r['moasha']['trials_s']):.0f} |")
    print(f"| architectures scored | {median(lambda r: r['default']['scored']):g} | "
          f"{median(lambda r: r['moasha']['scored']):g} |")
    print(f"| architectures at the full budget | {median(lambda r: r['default']['full']):g} | "
          f"{median(lambda r: r['moasha']['full']):g} |")
    print(f"| hypervolume of the final front (full-budget metrics) | {median(lambda r: r['hv_default']):.3f} | "
          f"{median(lambda r: r['hv_moasha']):.3f} |")
    ratios = ", ".join(f"{r['hv_moasha'] / r['hv_default']:.2f}" if r["hv_default"] else "-" for r in rows)
    print(f"| MO-ASHA hypervolume / default, per seed | | {ratios} |")
    print(f"| scheduler decisions / trial time | | {median(lambda r: r['overhead']['fraction'] or 0):.2e} |")
    print(f"\n{rows[0]['moasha']['parallelism']}")


if __name__ == "__main__":
    main()
