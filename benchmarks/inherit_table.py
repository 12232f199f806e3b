"""Issue 13's comparison: teacher-anchored (inherit) against from-scratch proxies, at their measured costs.

Reads the committed fidelity rows (`benchmarks/fidelity/trials.csv`: the from-scratch short budgets and the
2,000-step reference; `benchmarks/fidelity/trials_inherit.csv`: inherit fine-tunes) and gives, for every budget
(from-scratch steps, or inherit fine-tune steps) and ranking signal:

- `tau_ref`: Kendall tau of the signal's 2-seed mean against the reference's FID, over the paper panel, oriented
  so that a positive tau calls the same architectures better, with its paired bootstrap interval
  (`nas.ablation.fidelity_stats.agreement`, the same statistics `nas fidelity` reports);
- `tau_seed0`, `tau_seed1`: the same for one seed alone (what one search trial sees);
- `ceiling`: tau between the two seeds (how reproducible the ranking itself is);
- `seed_sd`: the median over architectures of the seed standard deviation, and `seed_cv` the same divided by
  the architecture's mean (inherit losses sit at another level than scratch losses);
- `seconds`: the median seconds a trial spends to produce the signal (set-up, training and the signal's stage).

`teacher_distance` (inherit only) has no reference value of its own, so it is ranked against the reference FID
only; `inherited_fraction` is listed as a diagnostic (more inherited = predicted better): a signal that costs
nothing, and tells how much of a ranking is the teacher's.

    python benchmarks/inherit_table.py --out benchmarks/fidelity/inherit_vs_scratch.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fidelity_curve import fmt  # noqa: E402
from nas.ablation.fidelity_stats import agreement  # noqa: E402

STAGE = {"val_loss_grid": "seconds_val_grid", "val_loss": "seconds_val", "teacher_distance":
         "seconds_teacher_distance", "inherited_fraction": None}


def _rows(csv: Path) -> pd.DataFrame:
    """The finished (not failed) trial rows of a fidelity CSV."""
    rows = pd.read_csv(csv)
    return rows[~rows["failed"].astype(str).str.lower().isin(("true", "1"))]


def _signal(rows: pd.DataFrame, metric: str) -> pd.Series:
    """The signal oriented so that smaller predicts better (like FID)."""
    return -rows[metric] if metric == "inherited_fraction" else rows[metric]


def table(scratch_csv: Path, inherit_csv: Path, scratch_steps: tuple[int, ...]) -> pd.DataFrame:
    scratch = _rows(scratch_csv)
    fid = scratch[scratch["budget"] == "reference"].groupby("arch_id")["fid"].mean()
    budgets = [("scratch", s, scratch[(scratch["steps"] == s) & (scratch["budget"] != "reference")])
               for s in scratch_steps]
    inherit = _rows(inherit_csv)
    budgets += [("inherit", s, rows) for s, rows in inherit.groupby("steps")]
    out = []
    for proxy, steps, rows in budgets:
        rows = rows.drop_duplicates(["arch_id", "seed"], keep="last")  # a losses-only and a full row: one trial
        for metric, stage in STAGE.items():
            if metric not in rows or rows[metric].isna().all():
                continue
            value = rows.assign(v=_signal(rows, metric))
            mean = value.groupby("arch_id")["v"].mean()
            a = agreement(mean, fid)
            per_seed = {f"tau_seed{s}": agreement(g.set_index("arch_id")["v"], fid).tau
                        for s, g in value.groupby("seed")}
            wide = value.pivot_table(index="arch_id", columns="seed", values="v")
            ceiling = (float(kendalltau(wide[0], wide[1]).statistic)
                       if wide.shape[1] >= 2 and wide[0].nunique() > 1 else None)
            diagnostic = metric == "inherited_fraction"  # not a quality signal: no seed spread to speak of
            sd = rows.groupby("arch_id")[metric].std()
            cv = sd / rows.groupby("arch_id")[metric].mean()
            seconds = rows["seconds_setup"].fillna(0)  # the inherited fraction is known once the proxy is built
            if stage:
                seconds = seconds + rows["seconds_train"].fillna(0) + rows[stage].fillna(0)
            out.append(dict(proxy=proxy, steps=int(steps), signal=metric, n=a.n, tau_ref=a.tau,
                            tau_ref_low=a.tau_low, tau_ref_high=a.tau_high, **per_seed, ceiling=ceiling,
                            seed_sd=None if diagnostic else float(sd.median()),
                            seed_cv=None if diagnostic else float(cv.median()),
                            seconds=float(seconds.median()), trials=len(rows)))
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scratch-csv", type=Path, default=ROOT / "benchmarks/fidelity/trials.csv")
    ap.add_argument("--inherit-csv", type=Path, default=ROOT / "benchmarks/fidelity/trials_inherit.csv")
    ap.add_argument("--scratch-steps", default="32,64,125", help="from-scratch budgets to list beside inherit")
    ap.add_argument("--out", type=Path, default=None, help="CSV of the table (default: print only)")
    args = ap.parse_args()
    t = table(args.scratch_csv, args.inherit_csv, tuple(int(s) for s in args.scratch_steps.split(",")))
    if args.out:
        t.to_csv(args.out, index=False)
    print("| proxy | steps | signal | n | tau vs reference FID [95% CI] | one seed (0, 1) | seed ceiling | "
          "seed sd (cv) | s / trial |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in t.to_dict("records"):
        print(f"| {r['proxy']} | {r['steps']} | {r['signal']} | {r['n']} | {fmt(r['tau_ref'])} "
              f"[{fmt(r['tau_ref_low'])}, {fmt(r['tau_ref_high'])}] | {fmt(r.get('tau_seed0'))}, "
              f"{fmt(r.get('tau_seed1'))} | {fmt(r['ceiling'])} | {fmt(r['seed_sd'], '.2g')} "
              f"({fmt(r['seed_cv'], '.1%')}) | {fmt(r['seconds'], '.0f')} |")
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
