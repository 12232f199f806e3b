"""Proxy-fidelity reference data: the paper panel trained at the default budget (2 seeds) and at a 4x longer
reference (1 seed), one CSV row per finished trial, resumable.

Each trial is exactly what `nas evaluate` / a search trial runs (`evaluators.training.evaluate_arch` with the
embedded domain evaluator), so with the same architecture, seed, budget and evaluator a trial reproduces these
numbers bit for bit on CPU. Rows already in the CSV are skipped, so the job resumes from the committed data on
any machine (commit the CSV as rows arrive).

    python benchmarks/fidelity_study.py --out benchmarks/fidelity/trials.csv [--threads 1] [--only short]
    python benchmarks/fidelity_study.py --short-steps 250 --only short   # another point of the budget curve
    python benchmarks/fidelity_study.py --panel published --only short   # the published panel's architectures
    python benchmarks/fidelity_study.py --short-steps 32 --only short --no-samples   # a rung budget: losses only

Several processes may share one CSV (e.g. one single-threaded process per core): each claims a trial in
`<out>.claims/` (a file per trial holding its pid) before training it, and skips trials another live process
has claimed; a claim left by a dead process is taken over.

Order of the work: short budget seed 0 for every architecture, then seed 1, then the reference seed 0, so that
a partial run already gives the seed ceiling of the short budget.

Teacher-anchored proxies (`--proxy inherit --teacher sd15`): each architecture starts from the trained teacher,
fine-tunes with distillation for a quarter of the default steps (`--finetune-steps`), 2 seeds, budget name
"inherit", into their own CSV (default `benchmarks/fidelity/trials_inherit.csv`, with the scratch columns plus
the teacher, the inherited fraction and the teacher distance); the reference is the scratch reference of
`trials.csv`. The teacher trains once on first use (cached; its seconds are in the teacher columns, not in the
trials').

    python benchmarks/fidelity_study.py --proxy inherit --teacher sd15 [--teacher-steps 2000]
    python benchmarks/fidelity_study.py --proxy inherit --finetune-steps 16 --no-samples \
        --out benchmarks/fidelity/trials_inherit.csv   # held-out losses and teacher distance only ("inherit-losses")

The evaluator is the embedded domain CLIP; the package ships its trained weights
(`evaluators/quality/weights/`), which an empty cache takes instead of training its own (a domain CLIP retrained
on another machine may differ in its last bits, and rows scored by other weights are not comparable:
`nas fidelity --import` refuses them).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluators.quality import get_quality_evaluator  # noqa: E402
from evaluators.training import Budget, evaluate_arch  # noqa: E402
from evaluators.training.proxy_mode import ProxyMode, default_steps  # noqa: E402
from evaluators.training.proxy_mode import budget_hash as mode_budget_hash  # noqa: E402
from nas.ablation.panels import paper_panel  # noqa: E402
from nas.ablation.published import load_published  # noqa: E402

METRICS = ("fid", "kid", "clip_score", "cmmd", "val_loss", "val_loss_grid", "train_loss")
STAGES = ("setup", "train", "val", "val_grid", "sample", "score")
COLUMNS = ("label", "arch_id", "budget", "budget_hash", "steps", "seed", "evaluator", "evaluator_sha256", *METRICS,
           *(f"seconds_{s}" for s in STAGES), "seconds_total", "proxy_params", "failed", "failure_reason",
           "threads", "machine", "torch", "finished_at")
# Rows of teacher-anchored (inherit) trials: the scratch columns, then what anchored them.
INHERIT_COLUMNS = COLUMNS + ("proxy", "teacher", "teacher_key", "teacher_steps", "teacher_train_seconds",
                             "inherited_fraction", "teacher_distance", "seconds_teacher_distance")


def budget_hash(budget: Budget) -> str:
    return hashlib.sha256(json.dumps(budget.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def done_keys(path: Path) -> set[tuple[str, str, int, str, str]]:
    """(arch_id, budget_hash, seed, evaluator, budget label) of the rows on file: a losses-only row
    (label short<steps>-losses) is not the full row of its budget."""
    if not path.is_file():
        return set()
    with path.open() as f:
        return {(r["arch_id"], r["budget_hash"], int(r["seed"]), r["evaluator"], r["budget"])
                for r in csv.DictReader(f)}


def append_row(path: Path, row: dict, columns: tuple[str, ...] = COLUMNS) -> None:
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k) for k in columns})
        f.flush()
        os.fsync(f.fileno())


def claim(claims: Path, key: tuple) -> bool:
    """Claim one trial for this process: True if it is ours now (created, or taken from a dead process)."""
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(path.read_text() or 0)
            os.kill(pid, 0)  # raises if that process is gone
            return False
        except (ValueError, ProcessLookupError, FileNotFoundError):
            path.unlink(missing_ok=True)  # stale: its process died; race for it again
            return claim(claims, key)
        except PermissionError:  # alive, another user's
            return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def take(claims: Path, key: tuple, done: Callable[[], set]) -> bool:
    """True if this process should train the trial `key` now: not on file, and claimed by this process (a trial
    finished by another process between the two checks is released again)."""
    if key in done() or not claim(claims, key):
        return False
    if key in done():
        release(claims, key)
        return False
    return True


def release(claims: Path, key: tuple) -> None:
    (claims / hashlib.sha256(repr(key).encode()).hexdigest()[:16]).unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="CSV of the rows (default benchmarks/fidelity/trials.csv, "
                    "or trials_inherit.csv with --proxy inherit)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--panel", choices=("paper", "published"), default="paper",
                    help="published: the architectures of `nas fidelity --panel published` (nas/ablation/"
                    "published.json) instead of the paper panel; rows already in --out are skipped as always")
    ap.add_argument("--short-seeds", type=int, default=2)
    ap.add_argument("--short-steps", type=int, default=None,
                    help="steps of the short budget (default: the 500-step budget the study started with, rows "
                    "labelled short); other values give further points of the curve, rows labelled short<steps>")
    ap.add_argument("--reference-factor", type=int, default=4, help="reference steps = factor x default steps")
    ap.add_argument("--only", choices=("short", "reference"), default=None)
    ap.add_argument("--no-samples", action="store_true",
                    help="held-out losses only (no sampling, no FID/KID/CLIP/CMMD): the signals a scheduler's rungs "
                    "report, for rung budgets below the search's; rows labelled short<steps>-losses")
    ap.add_argument("--proxy", choices=("scratch", "inherit"), default="scratch",
                    help="inherit: teacher-anchored trials (budget name 'inherit') instead of the scratch study")
    ap.add_argument("--teacher", default="sd15", help="teacher preset of --proxy inherit")
    ap.add_argument("--teacher-steps", type=int, default=None, help="teacher training steps (default 4x the "
                    "default trial's)")
    ap.add_argument("--finetune-steps", type=int, default=default_steps("inherit"),
                    help="fine-tune steps of an inherit trial (default a quarter of the default trial's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    default = Budget()
    short = default.replace(steps=args.short_steps) if args.short_steps else default
    # the reference is the default budget's, whatever short budget is under test, so every curve point is
    # measured against the same reference rows
    reference = default.replace(steps=default.steps * args.reference_factor)
    short_label = "short" if short.steps == default.steps else f"short{short.steps}"
    if args.no_samples:
        if args.only != "short" and args.proxy != "inherit":
            ap.error("--no-samples needs --only short (the reference is scored on its samples)")
        short_label += "-losses"
    evaluator = get_quality_evaluator("domain", image_size=short.image_size, device="cpu")
    ev_key = evaluator.info["model_id"]  # the domain CLIP's recipe key; its weights' hash is recorded beside it
    panel = paper_panel() if args.panel == "paper" else load_published().architectures()
    if args.proxy == "inherit":
        _inherit_study(args, panel, short.replace(steps=args.finetune_steps), evaluator)
        return
    args.out = args.out or Path("benchmarks/fidelity/trials.csv")
    jobs = [(short_label, short, s) for s in range(args.short_seeds)] + [("reference", reference, 0)]
    if args.only:
        jobs = [j for j in jobs if (j[0] == "reference") == (args.only == "reference")]
    claims = args.out.with_suffix(".claims")
    for name, budget, seed in jobs:
        for label, config in panel:
            key = (config.arch_id, budget_hash(budget), seed, ev_key, name)
            if not take(claims, key, lambda: done_keys(args.out)):
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed} {label} ({config.arch_id})", flush=True)
            r = evaluate_arch(config, budget, seed=seed, evaluator=evaluator, samples=not args.no_samples)
            row = dict(label=label, arch_id=config.arch_id, budget=name, budget_hash=key[1], steps=budget.steps,
                       seed=seed, evaluator=ev_key, evaluator_sha256=evaluator.info.get("weights_sha256", "")[:16],
                       seconds_total=r.total_seconds, proxy_params=r.proxy_params,
                       failed=r.failed, failure_reason=r.failure_reason, threads=args.threads,
                       machine=f"{platform.node()} {platform.processor() or platform.machine()} "
                               f"{os.cpu_count()} cpus", torch=torch.__version__,
                       finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
            row |= {m: getattr(r, m) for m in METRICS} | {f"seconds_{s}": r.seconds.get(s) for s in STAGES}
            append_row(args.out, row)
            release(claims, key)
            print(f"    fid {r.fid} clip {r.clip_score} cmmd {r.cmmd} val {r.val_loss} grid {r.val_loss_grid} "
                  f"{r.total_seconds:.0f} s", flush=True)


def _inherit_study(args: argparse.Namespace, panel: list, budget: Budget, evaluator) -> None:
    """Teacher-anchored trials of the panel: `--short-seeds` seeds each, rows in their own CSV, resumable."""
    out = args.out or Path("benchmarks/fidelity/trials_inherit.csv")
    mode = ProxyMode(mode="inherit", teacher=args.teacher, teacher_steps=args.teacher_steps or 0)
    ev_key = evaluator.info["model_id"]
    key_hash = mode_budget_hash(budget, mode)
    name = "inherit-losses" if args.no_samples else "inherit"  # losses only: no sampling, no FID/CLIP/CMMD
    claims = out.with_suffix(".claims")
    for seed in range(args.short_seeds):
        for label, config in panel:
            key = (config.arch_id, key_hash, seed, ev_key, name)
            if not take(claims, key, lambda: done_keys(out)):
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {name} {budget.steps} steps seed {seed} {label} ({config.arch_id})",
                  flush=True)
            r = evaluate_arch(config, budget, seed=seed, evaluator=evaluator, proxy_mode=mode,
                              teacher_progress=_teacher_log, samples=not args.no_samples)
            row = dict(label=label, arch_id=config.arch_id, budget=name, budget_hash=key_hash,
                       steps=budget.steps, seed=seed, evaluator=ev_key,
                       evaluator_sha256=evaluator.info.get("weights_sha256", "")[:16],
                       seconds_total=r.total_seconds, proxy_params=r.proxy_params, failed=r.failed,
                       failure_reason=r.failure_reason, threads=args.threads,
                       machine=f"{platform.node()} {platform.processor() or platform.machine()} "
                               f"{os.cpu_count()} cpus", torch=torch.__version__,
                       finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), proxy="inherit", teacher=args.teacher,
                       teacher_key=r.teacher.get("key"), teacher_steps=r.teacher.get("steps"),
                       teacher_train_seconds=r.teacher.get("train", {}).get("seconds"),
                       inherited_fraction=r.inherited_fraction, teacher_distance=r.teacher_distance,
                       seconds_teacher_distance=r.seconds.get("teacher_distance"))
            row |= {m: getattr(r, m) for m in METRICS} | {f"seconds_{s}": r.seconds.get(s) for s in STAGES}
            append_row(out, row, INHERIT_COLUMNS)
            release(claims, key)
            print(f"    inherited {r.inherited_fraction} fid {r.fid} clip {r.clip_score} val {r.val_loss} "
                  f"teacher distance {r.teacher_distance} {r.total_seconds:.0f} s", flush=True)


def _teacher_log(done: int, total: int, loss: float) -> None:
    if done % 100 == 0 or done == total:
        print(f"    teacher {done}/{total} steps, loss {loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
