"""LUT accuracy benchmark: validation on random `unet_mobile` archs per backend, build time, preset ratios.

For each backend: build the LUT of the blocks that N held-out random architectures and the calibration
presets need (timed), calibrate on the presets, measure the N architectures end to end and compare
(MAPE, within +-10%, Kendall tau) in two passes beside the measurement's repeatability (see
`evaluators/latency/validate.py`), then predict SD-1.5 and MobileDiffusion and set their latency ratio
next to the MACs ratio. Writes one JSON document (and a scatter HTML per backend).

    .venv/bin/python benchmarks/lut_accuracy.py --backends cpu onnxruntime --n 30 --image-size 128 \
        --lut-dir /tmp/lut-bench --out benchmarks/lut_accuracy.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.io import write_json
from core.provenance import cpu_model, provenance
from evaluators.cost import analytic_cost
from evaluators.latency import get_predictor
from evaluators.latency.signature import with_image_size
from evaluators.latency.validate import held_out_sample, run_validation, write_scatter
from search_spaces.presets import get_preset


def bench_backend(backend: str, n: int, seed: int, image_size: int, lut_dir: Path, rounds: int,
                  model_rounds: int) -> dict:
    predictor = get_predictor(backend, lut_dir, image_size, rounds=rounds, model_rounds=model_rounds)
    configs = held_out_sample("unet_mobile", n, seed)  # as `nas lut validate`: no calibration arch
    calibration = predictor.calibration_configs()
    blocks = len(predictor.missing(configs + calibration))
    start = time.perf_counter()
    predictor.ensure(configs + calibration, lambda done, total: print(f"  {backend}: blocks {done}/{total}", flush=True))
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    info = run_validation(predictor, configs, lambda done, total: print(f"  {backend}: {done}/{total}", flush=True))
    validate_s = time.perf_counter() - start
    html = write_scatter(info, lut_dir / f"bench-{backend}-{image_size}px-n{n}.html")
    sd, md = (predictor.predict(get_preset(p)).latency_ms for p in ("sd15", "mobilediffusion"))
    sd_macs, md_macs = (analytic_cost(with_image_size(get_preset(p), image_size)).macs for p in ("sd15", "mobilediffusion"))
    return {"backend": backend, "fingerprint": predictor.lut.fingerprint, "validation": info.to_dict(),
            "blocks_built": blocks, "build_seconds": build_s, "seconds_per_block": build_s / max(blocks, 1),
            "validate_seconds": validate_s, "html": str(html),
            "sd15_ms": sd, "mobilediffusion_ms": md, "latency_ratio_sd15_over_md": sd / md,
            "macs_ratio_sd15_over_md": sd_macs / md_macs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["cpu", "onnxruntime"])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model-rounds", type=int, default=5)
    parser.add_argument("--lut-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = {"cpu_model": cpu_model(), "n": args.n, "seed": args.seed, "image_size": args.image_size,
               "backends": {}, "provenance": provenance(benchmark="lut_accuracy")}
    for backend in args.backends:
        print(f"{backend}: {args.n} archs at {args.image_size}px", flush=True)
        results["backends"][backend] = bench_backend(backend, args.n, args.seed, args.image_size, args.lut_dir,
                                                     args.rounds, args.model_rounds)
        write_json(args.out, results)
        v = results["backends"][backend]["validation"]
        print(f"{backend}: MAPE {v['mape']:.2f}% within10 {v['within_10pct']:.2f} tau {v['kendall_tau']}; "
              f"repeatability within10 {v['repeatability']['within_10pct']:.2f} tau {v['repeatability']['kendall_tau']}",
              flush=True)


if __name__ == "__main__":
    main()
