"""Proxy-training budget benchmark: training speed, one default trial by stage, learning, seed spread.

Usage (results as JSON lines on stdout; record them in benchmarks/results_proxy.md):

    python benchmarks/proxy_budget.py speed --presets mobilediffusion,sd15 --threads 2
    python benchmarks/proxy_budget.py trial --preset mobilediffusion --seeds 0,1,2 --threads 2 --init
    python benchmarks/proxy_budget.py trial --preset mobilediffusion --set steps=300 --set batch_size=64

`speed` times optimizer steps of the proxy training loop (after warm-up steps) and one batch of CFG
sampling; `trial` runs `evaluate_arch` with the default Budget (or `--set` overrides) and, with `--init`,
scores the untrained proxy the same way (the "before" of the learning goal).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.provenance import cpu_model  # noqa: E402
from evaluators.data import load_dataset  # noqa: E402
from evaluators.quality import get_quality_evaluator  # noqa: E402
from evaluators.training import Budget, evaluate_arch  # noqa: E402
from evaluators.training.diffusion import sample, train_scheduler  # noqa: E402
from evaluators.training.model import build_proxy_model  # noqa: E402
from evaluators.training.text_encoder import tokenize  # noqa: E402
from evaluators.training.train import train  # noqa: E402
from search_spaces.presets import get_preset  # noqa: E402
from search_spaces.proxy import to_proxy  # noqa: E402


def emit(record: dict) -> None:
    print(json.dumps(record, default=str), flush=True)


def parse_sets(items: list[str]) -> dict:
    fields = {f.name: f for f in dataclasses.fields(Budget)}
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown budget field {key!r}")
        out[key] = None if text == "None" else json.loads(text) if text[:1].isdigit() or text[:1] in "-." \
            else text
    return out


def speed(args, budget: Budget, device: torch.device) -> None:
    data = load_dataset(kind=budget.data, split="train", image_size=budget.image_size, n=4096,
                        seed=budget.data_seed)
    for name in args.presets.split(","):
        proxy = to_proxy(get_preset(name), budget.scale)
        ids = tokenize(data.captions, proxy.context_len)
        uncond = tokenize([""], proxy.context_len)[0].to(device)
        model = build_proxy_model(proxy, ids, 0).to(device)
        scheduler = train_scheduler(budget.prediction, budget.beta_schedule)
        marks = []
        run = budget.replace(steps=args.warmup + args.steps, report_every=1, seconds=None)
        train(model, scheduler, data.images.to(device), ids.to(device), uncond, run, 0,
              report=lambda r: marks.append(r["seconds"]))
        steps_per_s = args.steps / (marks[-1] - marks[args.warmup - 1])
        model.eval()
        n = budget.sample_batch_size
        began = time.perf_counter()
        sample(model, scheduler, ids[:n].to(device), uncond, kind=budget.sampler, steps=budget.sample_steps,
               cfg_scale=budget.cfg_scale, batch_size=n, image_shape=(3, budget.image_size, budget.image_size),
               generator=torch.Generator().manual_seed(0))
        if device.type == "cuda":
            torch.cuda.synchronize()
        sample_s = time.perf_counter() - began
        emit(dict(bench="speed", preset=name, proxy_params=model.unet_params, batch_size=budget.batch_size,
                  steps_per_s=round(steps_per_s, 3), images_per_s=round(steps_per_s * budget.batch_size, 1),
                  sample_images=n, sample_steps=budget.sample_steps, sample_seconds=round(sample_s, 2),
                  seconds_per_default_budget=round(budget.steps / steps_per_s, 1), **context(args, device)))


def untrained_scores(config, budget: Budget, seed: int, evaluator, device: torch.device) -> dict:
    """FID/KID/CLIP of the proxy at initialisation, sampled and scored exactly as a trial does."""
    proxy = to_proxy(config, budget.scale)
    train_set = load_dataset(kind=budget.data, split="train", image_size=budget.image_size, n=budget.n_train,
                             seed=budget.data_seed)
    held = load_dataset(kind=budget.data, split="heldout", image_size=budget.image_size, seed=budget.data_seed)
    model = build_proxy_model(proxy, tokenize(train_set.captions, proxy.context_len), seed).to(device).eval()
    captions = held.captions[:budget.n_samples]
    fake = sample(model, train_scheduler(budget.prediction, budget.beta_schedule),
                  tokenize(captions, proxy.context_len).to(device), tokenize([""], proxy.context_len)[0].to(device),
                  kind=budget.sampler, steps=budget.sample_steps, cfg_scale=budget.cfg_scale,
                  batch_size=budget.sample_batch_size, image_shape=(3, budget.image_size, budget.image_size),
                  generator=torch.Generator().manual_seed(seed + 1)).float().cpu()
    return evaluator.score(fake, captions, held.images[:budget.n_real])


def trial(args, budget: Budget, device: torch.device) -> None:
    config = get_preset(args.preset)
    recipe = {"steps": args.evaluator_steps} if args.evaluator_steps else {}
    evaluator = get_quality_evaluator(source="domain", image_size=budget.image_size, device=str(device), **recipe)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.init:
        began = time.perf_counter()
        scores = untrained_scores(config, budget, seeds[0], evaluator, device)
        emit(dict(bench="init", preset=args.preset, seed=seeds[0], seconds=round(time.perf_counter() - began, 1),
                  **scores, **context(args, device)))
    results = []
    for seed in seeds:
        out = Path(args.out) if args.out else None
        r = evaluate_arch(config, budget, seed=seed, out_dir=out, evaluator=evaluator, device=device)
        results.append(r)
        emit(dict(bench="trial", preset=args.preset, seed=seed, failed=r.failed, failure_reason=r.failure_reason,
                  fid=r.fid, kid=r.kid, clip_score=r.clip_score, val_loss=r.val_loss, train_loss=r.train_loss,
                  steps=r.steps, seconds={k: round(v, 2) for k, v in r.seconds.items()},
                  total_seconds=round(r.total_seconds, 1), proxy_params=r.proxy_params, grid=r.sample_grid,
                  budget={k: v for k, v in r.budget.items() if v != getattr(Budget(), k)},
                  **context(args, device)))
    ok = [r for r in results if not r.failed]
    if len(ok) > 1:
        emit(dict(bench="spread", preset=args.preset, seeds=[r.seed for r in ok],
                  **{f"{k}_mean": statistics.mean(getattr(r, k) for r in ok) for k in ("fid", "clip_score", "val_loss")},
                  **{f"{k}_sd": statistics.stdev(getattr(r, k) for r in ok) for k in ("fid", "clip_score", "val_loss")}))


def context(args, device: torch.device) -> dict:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return dict(device=str(device), machine=where, threads=torch.get_num_threads(),
                date=time.strftime("%Y-%m-%d", time.gmtime()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "trial"))
    parser.add_argument("--presets", default="mobilediffusion,sd15", help="speed: presets to time")
    parser.add_argument("--preset", default="mobilediffusion", help="trial: the architecture")
    parser.add_argument("--seeds", default="0", help="trial: comma-separated seeds")
    parser.add_argument("--init", action="store_true", help="trial: also score the untrained proxy")
    parser.add_argument("--steps", type=int, default=20, help="speed: timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="speed: untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--evaluator-steps", type=int, default=None, help="domain CLIP steps (smoke tests only)")
    parser.add_argument("--out", default=None, help="trial: folder for sample grids")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="Budget override")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(**parse_sets(args.set))
    device = torch.device(args.device)
    (speed if args.what == "speed" else trial)(args, budget, device)


if __name__ == "__main__":
    main()
