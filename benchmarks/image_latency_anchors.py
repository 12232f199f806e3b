"""The seed's per-image numbers beside this project's estimates on a phone (issue 29).

Published: SD-1.5, 50 steps with classifier-free guidance, ~80 s per 512 px image on an iPhone 15 Pro (the
MobileDiffusion paper's comparison, arXiv 2311.16567); MobileDiffusion, one step (UFOGen-style), 0.2 s per image on
the same phone. The estimates come from the roofline profile (`evaluators/latency/roofline.py`: public peak
figures, one compute fraction anchored on SD-1.5's UNet at ~1.7 s per step on an iPhone 14 Pro) or from an
imported LUT given with --device. Writes one JSON file of the rows and prints a Markdown table.

    python benchmarks/image_latency_anchors.py [--device iphone15pro] [--out benchmarks/latency/anchors.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.provenance import provenance  # noqa: E402
from evaluators.latency import get_predictor  # noqa: E402
from evaluators.latency.image import predict_image  # noqa: E402
from search_spaces.pipeline import SamplingConfig  # noqa: E402
from search_spaces.presets import get_preset  # noqa: E402

# (label, preset, sampling, published seconds per image or None, source)
ROWS = (
    ("SD-1.5, 50 steps, CFG", "sd15", SamplingConfig(50, "cfg", "sd"), 80.0, "MobileDiffusion (arXiv 2311.16567)"),
    ("MobileDiffusion, 8 steps, distilled", "mobilediffusion", SamplingConfig(8, "distilled", "sd"), None, ""),
    ("MobileDiffusion, 1 step, distilled", "mobilediffusion", SamplingConfig(1, "distilled", "sd"), 0.2,
     "MobileDiffusion (arXiv 2311.16567)"),
    ("MobileDiffusion, 1 step, distilled, half_shallow decoder", "mobilediffusion",
     SamplingConfig(1, "distilled", "half_shallow"), None, ""),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="iphone15pro")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/latency/anchors.json"))
    args = ap.parse_args()
    predictor = get_predictor(args.device)
    rows = []
    for label, preset, sampling, published, source in ROWS:
        image = predict_image(predictor, get_preset(preset), sampling)
        parts = {p.part: p.ms for p in image.parts}
        rows.append(dict(label=label, preset=preset, sampling=image.to_dict()["sampling"], estimate=image.estimate,
                         seconds=image.latency_ms / 1e3, text_encoder_ms=parts["text_encoder"],
                         unet_ms_per_call=image.unet.latency_ms, unet_calls=sampling.unet_calls,
                         decoder_ms=parts["vae_decoder"], published_seconds=published, source=source,
                         ratio=None if published is None else image.latency_ms / 1e3 / published))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": args.device, "rows": rows, "provenance": provenance(device=args.device)},
                                   indent=2) + "\n")
    print(f"| image on {args.device} | estimate s | text encoder ms | UNet ms x calls | decoder ms | published s | "
          "estimate / published |\n|---|---|---|---|---|---|---|")
    for r in rows:
        pub = "-" if r["published_seconds"] is None else f"{r['published_seconds']:g}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"| {r['label']} | {r['seconds']:.2f} | {r['text_encoder_ms']:.1f} | {r['unet_ms_per_call']:.0f} x "
              f"{r['unet_calls']} | {r['decoder_ms']:.0f} | {pub} | {ratio} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
