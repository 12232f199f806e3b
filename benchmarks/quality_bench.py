"""Quality-evaluator benchmark: synthetic data generation time, domain CLIP training time, and the
`nas evaluators check` numbers (retrieval, FID/KID under noise and blur, FID floor). Writes Markdown.

    .venv/bin/python benchmarks/quality_bench.py --cache-dir /tmp/bench-cache --out benchmarks/results_quality.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time

import torch

from core.io import write_text
from core.provenance import cpu_model
from evaluators.data.synthetic import generate
from evaluators.quality import get_quality_evaluator
from evaluators.quality.check import MILD_BLUR, check_evaluator


def _gen_seconds(image_size: int, n: int) -> float:
    start = time.perf_counter()
    generate("train", image_size, n, seed=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="domain CLIP cache (default: a fresh temporary one)")
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[16])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results_quality.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="nas-quality-bench-")
    load_before = os.getloadavg()
    lines = [
        "# Quality evaluators: measured numbers", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {args.threads}; "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; load average at start "
        f"{load_before[0]:.1f} (the cores were shared with other jobs, so times are upper bounds).", "",
        "Produced by `benchmarks/quality_bench.py`.", "",
        "## Synthetic data generation (20,000 captioned images)", "",
        "| image size | seconds |", "|---|---|",
    ]
    for size in (16, 32):
        lines.append(f"| {size}x{size} | {_gen_seconds(size, 20000):.1f} |")
    for size in args.image_sizes:
        start = time.perf_counter()
        evaluator = get_quality_evaluator("domain", image_size=size, cache_dir=cache)
        load_s = time.perf_counter() - start
        info = evaluator.info
        report = check_evaluator(evaluator, size)
        trained = (f"trained in {info['train']['seconds']:.1f} s ({info['train']['steps']} steps of "
                   f"{info['recipe']['batch_size']}, final loss {info['train']['final_loss']})"
                   + ("" if info["trained_now"] else f"; loaded from the cache in {load_s:.1f} s for this run"))
        lines += [
            "", f"## Domain evaluator at {size}x{size}", "",
            f"Domain CLIP `{info['model_id']}` {trained}. Check took {report['seconds']:.1f} s "
            f"({report['n_real']} reference and {report['n_test']} test images, independent draws of the "
            "held-out split).", "",
            f"- held-out image->text retrieval top-1 (128 distinct held-out captions, 4 images each): "
            f"**{report['retrieval_top1']:.3f}** (goal >= {report['retrieval_goal']})",
            f"- CLIP score: real captions {report['clip_score_real']:.3f}, "
            f"shuffled {report['clip_score_shuffled']:.3f}",
            f"- FID floor (reference vs other real images): {report['fid_floor']:.3f}; mild blur ({MILD_BLUR:g} px): "
            f"{report['fid_mild_blur']:.3f}; far below: {report['floor_far_below_blur']}",
            f"- FID monotone: noise {report['fid_monotone_noise']}, blur {report['fid_monotone_blur']}; "
            f"KID monotone: noise {report['kid_monotone_noise']}, blur {report['kid_monotone_blur']}", "",
            "| damage | level | FID | KID |", "|---|---|---|---|",
            f"| none (other real images) | 0 | {report['fid_floor']:.3f} | {report['kid_floor']:.4f} |",
        ]
        for name, unit in (("noise", "sigma"), ("blur", "px")):
            for level, f, k in zip(report[f"{name}_levels"], report[f"fid_{name}"], report[f"kid_{name}"]):
                lines.append(f"| {name} | {level:g} {unit} | {f:.3f} | {k:.4f} |")
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
