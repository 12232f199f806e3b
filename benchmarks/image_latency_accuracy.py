"""Per-image latency predicted from the LUT against the same image timed end to end (issue 29's goal).

For N held-out architectures of the space and each step count: the prediction is the table's text encoder +
calls x (calibrated UNet) + decoder (`evaluators.latency.image.predict_image`); the measurement runs the real
pipeline in one process — the text encoder, then the UNet `calls` times, then the decoder — timed as the
table's blocks are (interleaved rounds, speed probe, pinned thread), in two passes. Scored like `nas lut
validate`: the share of images within 10% of the mean of the passes, beside the measurement's own
repeatability (pass 2 within 10% of pass 1). Rows go to a CSV as each architecture finishes (resumable).

    python benchmarks/image_latency_accuracy.py --image-size 512 --n 10 --steps 1,4,8
    python benchmarks/image_latency_accuracy.py --image-size 128 --n 10   # what a 2-core VM affords
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluators.latency import get_predictor  # noqa: E402
from evaluators.latency.image import pipeline_signatures, predict_image  # noqa: E402
from evaluators.latency.predictor import WARMUP_CALLS, WARMUP_SECONDS  # noqa: E402
from evaluators.latency.timing import measure_interleaved  # noqa: E402
from evaluators.latency.validate import held_out_sample  # noqa: E402
from search_spaces.pipeline import SamplingConfig  # noqa: E402

COLUMNS = ("arch_id", "image_size", "steps", "guidance", "decoder", "unet_calls", "predicted_ms", "text_encoder_ms",
           "unet_ms", "decoder_ms", "pass1_ms", "pass2_ms", "calibrated", "rounds", "machine", "load_1m", "finished_at")


def _done(path: Path) -> set[tuple[str, int, int]]:
    if not path.is_file():
        return set()
    with path.open() as f:
        return {(r["arch_id"], int(r["image_size"]), int(r["steps"])) for r in csv.DictReader(f)}


def _pipeline(te_run, unet_run, dec_run, calls: int):
    def run() -> None:
        te_run()
        for _ in range(calls):
            unet_run()
        dec_run()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--n", type=int, default=10, help="held-out architectures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", default="1,4,8")
    ap.add_argument("--guidance", default="distilled")
    ap.add_argument("--decoder", default="sd")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per pass")
    ap.add_argument("--lut-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/latency/image_accuracy.csv"))
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    predictor = get_predictor("cpu", args.lut_dir, args.image_size)
    configs = held_out_sample("unet_mobile", args.n, args.seed)
    samplings = [SamplingConfig(s, args.guidance, args.decoder).validate() for s in steps]
    print(f"[{time.strftime('%H:%M:%S')}] blocks of {len(configs)} archs and the pipeline at {args.image_size}px",
          flush=True)
    predictor.ensure(configs)
    predictor.block_ms(pipeline_signatures(predictor, configs[0], samplings[0]))
    if predictor.calibration() is None:
        print(f"[{time.strftime('%H:%M:%S')}] end-to-end calibration", flush=True)
        predictor.calibrate()
    done = _done(args.out)
    backend = predictor.backend
    te_sig, dec_sig = (sig for _, sig in pipeline_signatures(predictor, configs[0], samplings[0]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, config in enumerate(configs):
        todo = [s for s in samplings if (config.arch_id, args.image_size, s.steps) not in done]
        if not todo:
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {i + 1}/{len(configs)} {config.arch_id}", flush=True)
        sized = config.replace(latent_size=args.image_size // 8)
        passes = []
        for seed in (1, 2):  # fresh modules per pass, as `nas lut validate` builds fresh models
            with backend.measuring():
                te_run, dec_run = backend.block_runner(te_sig), backend.block_runner(dec_sig)
                unet_run = backend.model_runner(sized)
                runners = {str(s.steps): _pipeline(te_run, unet_run, dec_run, s.unet_calls) for s in todo}
                passes.append(measure_interleaved(runners, args.rounds, warmup=WARMUP_CALLS, sync=backend.sync,
                                                  seed=seed, clock=backend.clock, warmup_s=WARMUP_SECONDS,
                                                  probe=predictor.speed_probe()))
            del te_run, dec_run, unet_run, runners
        for s in todo:
            image = predict_image(predictor, config, s, calibrate=False)
            parts = {p.part: p.ms for p in image.parts}
            row = dict(arch_id=config.arch_id, image_size=args.image_size, steps=s.steps, guidance=s.guidance,
                       decoder=s.decoder, unet_calls=s.unet_calls, predicted_ms=image.latency_ms,
                       text_encoder_ms=parts["text_encoder"], unet_ms=parts["unet"], decoder_ms=parts["vae_decoder"],
                       pass1_ms=passes[0][str(s.steps)].ms, pass2_ms=passes[1][str(s.steps)].ms,
                       calibrated=image.unet.calibrated, rounds=args.rounds,
                       machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                       load_1m=os.getloadavg()[0], finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
            new = not args.out.is_file()
            with args.out.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
            mean = (row["pass1_ms"] + row["pass2_ms"]) / 2
            print(f"    {s.label}: predicted {image.latency_ms:.0f} ms, measured {row['pass1_ms']:.0f} / "
                  f"{row['pass2_ms']:.0f} ms ({image.latency_ms / mean - 1:+.1%})", flush=True)
    _summary(args.out, args.image_size)


def _summary(path: Path, image_size: int) -> None:
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["image_size"]) == image_size]
    if not rows:
        return
    within = sum(abs(float(r["predicted_ms"]) / ((float(r["pass1_ms"]) + float(r["pass2_ms"])) / 2) - 1) <= 0.10
                 for r in rows)
    repeat = sum(abs(float(r["pass2_ms"]) / float(r["pass1_ms"]) - 1) <= 0.10 for r in rows)
    print(f"{len(rows)} images at {image_size}px: prediction within 10% of the mean of two passes for {within}; "
          f"pass 2 within 10% of pass 1 for {repeat} (the measurement's own repeatability)")


if __name__ == "__main__":
    main()
