"""Cause probes of the proxy's largest contradiction with MobileDiffusion (issue 27): sd15 vs
transformers_low_res (attention moved off the two highest-resolution levels), measured under one candidate
cause at a time, two seeds each, held-out losses only (the search's default signal, `val_loss_grid`, and the
random-timestep `val_loss`; no sampling).

The paper calls the step neutral at full scale (64x64 latents: 4096/1024/256/64 tokens per level); the
16 px proxy (16/8/4/2 pixels) calls it 25% worse in grid loss at 500 steps (2-seed means 0.0407 vs 0.0509,
`benchmarks/fidelity/trials.csv`). Each probe changes one thing of the default 500-step, 16 px, width / 16
budget:

- px32: image size 32 (levels 32/16/8/4).
- latent64: the deployment latent's level resolutions (64/32/16/8) at width / 32 and batch 8 (about the 16 px
  proxy's MACs per step for the convolutions; sd15's attention over 4096 tokens costs more).
- heads32: proxy attention heads at least 32 channels wide (16 px; the default floor 8 makes sd15's 8
  heads of 64 channels 8 heads of 8 channels at width / 16).
- text256: a 256-wide proxy text encoder (16 px; default 64).
- long2000: 2,000 steps at 16 px (does the gap close with training?).
- latent64b16: latent64 at batch 16 (twice the images per step: less seed noise, since latent64 at batch 8
  called both of the paper's harmful counterexamples neutral within a wide seed range).

One CSV row per finished trial (`benchmarks/fidelity/probes.csv`, committed as rows arrive); rows on file are
skipped, so the job resumes on any machine. Several processes may share the CSV (claims as in
`fidelity_study.py`), e.g. one single-threaded process per core:

    nice -n 19 python benchmarks/proxy_probes.py [--probes heads32,text256] [--seeds 2] [--threads 1]

`--archs` takes other labels (the paper panel's or the published panel's), e.g. the paper's harmful
counterexamples, whose base md_transformers_low_res is transformers_low_res (same arch id, rows shared):

    nice -n 19 python benchmarks/proxy_probes.py --probes latent64 \
        --archs md_no_transformers_high_res,md_narrow_transformers
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fidelity_study import append_row, budget_hash, release, take  # noqa: E402
from evaluators.training import Budget, evaluate_arch  # noqa: E402
from nas.ablation.panels import paper_panel  # noqa: E402
from nas.ablation.published import load_published  # noqa: E402

ARCHS = ("sd15", "transformers_low_res")
BASE = Budget()  # 500 steps, 16 px, width / 16, batch 32
PROBES = {
    "heads32": BASE.replace(min_head_dim=32),
    "text256": BASE.replace(context_dim=256),
    "latent64": BASE.replace(image_size=64, width_divisor=32, batch_size=8),
    "latent64b16": BASE.replace(image_size=64, width_divisor=32, batch_size=16),
    "px32": BASE.replace(image_size=32),
    "long2000": BASE.replace(steps=2000),
}
REGIME = ("steps", "image_size", "width_divisor", "batch_size", "min_head_dim", "context_dim")
COLUMNS = ("probe", "label", "arch_id", "budget_hash", *REGIME, "seed", "val_loss_grid", "val_loss", "train_loss",
           "seconds_train", "seconds_val", "seconds_val_grid", "seconds_total", "proxy_params", "failed",
           "failure_reason", "threads", "machine", "torch", "finished_at", "command")


def done_keys(path: Path) -> set[tuple[str, str, int, str, str]]:
    """The claim keys of the rows on file."""
    if not path.is_file():
        return set()
    with path.open() as f:
        return {(r["arch_id"], r["budget_hash"], int(r["seed"]), "losses", r["probe"]) for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/fidelity/probes.csv"))
    ap.add_argument("--probes", default=",".join(PROBES), help=f"comma-separated, in order (from {', '.join(PROBES)})")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--archs", default=",".join(ARCHS),
                    help="comma-separated labels of the paper panel or the published panel "
                         "(e.g. md_transformers_low_res,md_no_transformers_high_res,md_narrow_transformers)")
    args = ap.parse_args()
    names = [p.strip() for p in args.probes.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROBES]
    if unknown:
        ap.error(f"unknown probe {unknown[0]!r}; choose from {', '.join(PROBES)}")
    torch.set_num_threads(args.threads)
    panel = dict(paper_panel()) | load_published().configs
    labels = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in labels if a not in panel]
    if unknown:
        ap.error(f"unknown architecture {unknown[0]!r}; choose from {', '.join(panel)}")
    claims = args.out.with_suffix(".claims")
    command = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    for name in names:
        budget = PROBES[name]
        for seed in range(args.seeds):
            for label in labels:
                config = panel[label]
                key = (config.arch_id, budget_hash(budget), seed, "losses", name)
                if not take(claims, key, lambda: done_keys(args.out)):
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed} {label} ({config.arch_id})", flush=True)
                r = evaluate_arch(config, budget, seed=seed, samples=False)
                row = dict(probe=name, label=label, arch_id=config.arch_id, budget_hash=key[1], seed=seed,
                           val_loss_grid=r.val_loss_grid, val_loss=r.val_loss, train_loss=r.train_loss,
                           seconds_total=r.total_seconds, proxy_params=r.proxy_params, failed=r.failed,
                           failure_reason=r.failure_reason, threads=args.threads,
                           machine=f"{platform.node()} {platform.processor() or platform.machine()} "
                                   f"{os.cpu_count()} cpus", torch=torch.__version__,
                           finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), command=command)
                row |= {f: getattr(budget, f) for f in REGIME}
                row |= {f"seconds_{s}": r.seconds.get(s) for s in ("train", "val", "val_grid")}
                append_row(args.out, row, COLUMNS)
                release(claims, key)
                print(f"    grid {r.val_loss_grid} val {r.val_loss} {r.total_seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
