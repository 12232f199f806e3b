"""Forward latency of our `sd15` UNet vs diffusers' SD-1.5 UNet2DConditionModel, and `nas cost` time.

Same weights (converted), same inputs, same threads, batch 1, 64x64 latents; the two models are timed in
interleaved rounds and the medians compared (ratio < 1: ours is faster).

    python benchmarks/unet_forward.py [--device cpu|cuda] [--threads 2] [--rounds 7] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from diffusers import UNet2DConditionModel

from core.provenance import provenance
from evaluators.cost import analytic_cost
from search_spaces.diffusers_compat import (
    convert_diffusers_state_dict,
    to_diffusers_config,
)
from search_spaces.presets import get_preset
from search_spaces.space import get_space
from search_spaces.unet import build_unet


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    config = get_preset("sd15")
    with torch.device("meta"):
        ref = UNet2DConditionModel(**to_diffusers_config(config))
    ref = ref.to_empty(device="cpu")
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.02)
    ours = build_unet(config, device="meta")
    ours.load_state_dict(convert_diffusers_state_dict(ref.state_dict(), config), assign=True)
    ref, ours = ref.to(args.device, dtype).eval(), ours.to(args.device, dtype).eval()
    x = torch.randn(1, 4, 64, 64, device=args.device, dtype=dtype)
    t = torch.tensor([500], device=args.device)
    ctx = torch.randn(1, 77, 768, device=args.device, dtype=dtype)
    runs = {"ours": lambda: ours(x, t, ctx), "diffusers": lambda: ref(x, t, encoder_hidden_states=ctx)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for name, fn in runs.items():
                times[name].append(_time(fn, args.device))
        diff = (runs["ours"]() - runs["diffusers"]().sample).abs().max().item()
    med = {k: statistics.median(v) for k, v in times.items()}
    configs = get_space("unet_mobile").sample_random(10, seed=0)
    cost_times = []
    for c in configs:
        start = time.perf_counter()
        analytic_cost(c)
        cost_times.append(time.perf_counter() - start)
    print(json.dumps(dict(
        device=args.device, dtype=args.dtype, threads=args.threads, rounds=args.rounds,
        ours_ms=med["ours"], diffusers_ms=med["diffusers"], ratio=med["ours"] / med["diffusers"],
        max_abs_diff=diff, cost_seconds_median=statistics.median(cost_times), cost_seconds_max=max(cost_times),
        gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
        provenance=provenance()), indent=2))


if __name__ == "__main__":
    main()
