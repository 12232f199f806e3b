"""Cost along MobileDiffusion's cumulative ablation path, sd15 -> mobilediffusion: params, MACs, latency.

Usage (a Markdown table on stdout, plus one line per step whose cost moves against the paper; record them
in benchmarks/results_ablation.md):

    python benchmarks/ablation_cost_path.py
    python benchmarks/ablation_cost_path.py --devices iphone15pro,pixel8,cpu --image-size 256 --threads 2

Roofline phones are estimates (instant); `cpu` measures the blocks into the LUT cache first (minutes).
The expected directions come from the paper's reported effect of each step (DESIGN.md section 2): "fall"
where it reports fewer parameters or a speed-up, "same" where the change is numerical only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.provenance import cpu_model, versions  # noqa: E402
from evaluators.cost import analytic_cost  # noqa: E402
from evaluators.latency import get_predictor  # noqa: E402
from nas.ablation import PAPER_PATH, get_step  # noqa: E402
from nas.ablation.paper_steps import resnet_blocks  # noqa: E402
from search_spaces.presets import get_preset  # noqa: E402

# step -> (params, latency) direction the paper reports: "fall", "same" or None (not reported).
PAPER = {
    "transformers_low_res": (None, "fall"),  # ~26% faster, no parameter claim
    "decouple_sa_ca": (None, "fall"),  # ~15% faster
    "share_kv": ("fall", None),  # ~5% fewer parameters
    "swish_glu": ("same", "same"),  # numerical robustness on device only
    "relu_attention": ("same", None),  # no softmax on device; no speed number reported
    "trim_ffn": ("fall", None),  # ~10% fewer parameters
    "separable_deep": ("fall", None),  # ~10% fewer parameters
    "fewer_resnet_blocks": ("fall", "fall"),  # ~15% fewer parameters, ~19% more efficient
}


def moved(before: float, after: float) -> str:
    if abs(after - before) <= 1e-9 * max(abs(before), 1.0):
        return "same"
    return "fall" if after < before else "rise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="iphone15pro,iphone14pro,pixel8,galaxys24")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    devices = [d for d in args.devices.split(",") if d]

    configs = [("sd15", get_preset("sd15"))]
    for name in PAPER_PATH:
        configs.append((name, get_step(name)(configs[-1][1])))
    predictors = {}
    for device in devices:
        began = time.perf_counter()
        predictors[device] = get_predictor(device, image_size=args.image_size, threads=args.threads)
        predictors[device].ensure([c for _, c in configs])
        print(f"<!-- {device}: blocks ready in {time.perf_counter() - began:.0f} s -->")
    rows = []
    for name, config in configs:
        cost = analytic_cost(config)
        rows.append(dict(step=name, params=cost.params, macs=cost.macs, macs_no_attention=cost.macs_no_attention,
                         resnets=resnet_blocks(config),
                         **{d: predictors[d].predict(config).latency_ms for d in devices}))

    print(f"Image size {args.image_size}; CPU {cpu_model()}, {args.threads} thread(s); "
          f"torch {versions()['torch']}. Latency in ms (roofline devices are estimates). "
          f"Δ% is relative to the previous row.\n")
    head = ["step", "ResNets", "params (M)", "Δ%", "GMACs", "Δ%", "GMACs w/o attn"]
    for d in devices:
        head += [f"{d} ms", "Δ%"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    pct = lambda a, b: f"{100 * (a - b) / b:+.1f}"  # noqa: E731
    for i, r in enumerate(rows):
        prev = rows[i - 1] if i else r
        cells = [r["step"], str(r["resnets"]), f"{r['params'] / 1e6:.1f}",
                 pct(r["params"], prev["params"]) if i else "", f"{r['macs'] / 1e9:.1f}",
                 pct(r["macs"], prev["macs"]) if i else "", f"{r['macs_no_attention'] / 1e9:.1f}"]
        for d in devices:
            cells += [f"{r[d]:.1f}", pct(r[d], prev[d]) if i else ""]
        print("| " + " | ".join(cells) + " |")
    first, last = rows[0], rows[-1]
    print(f"\nWhole path: params {pct(last['params'], first['params'])}%, MACs {pct(last['macs'], first['macs'])}%, "
          + ", ".join(f"{d} {pct(last[d], first[d])}%" for d in devices))

    print("\nSteps whose cost moves against the paper's direction:")
    found = False
    for i, r in enumerate(rows[1:], start=1):
        want_params, want_latency = PAPER[r["step"]]
        got_params = moved(rows[i - 1]["params"], r["params"])
        if want_params and got_params != want_params:
            found = True
            print(f"- {r['step']}: params {got_params} (paper: {want_params})")
        for d in devices:
            got = moved(rows[i - 1][d], r[d])
            if want_latency and got != want_latency:
                found = True
                print(f"- {r['step']}: {d} latency {got} (paper: {want_latency})")
    if not found:
        print("- none")


if __name__ == "__main__":
    main()
