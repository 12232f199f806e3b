"""Phone-kit coverage: does every block of sd15, mobilediffusion and N random samples convert to a phone format?

Each distinct block (at the image size given) goes through `write_kit` alone, in a scratch directory that is
deleted afterwards (the whole set is tens of GB of weights), with every phone converter installed here. The
result per block and format (converted, or the converter's reason) is appended to the JSON as it goes, so
an interrupted run resumes where it stopped.

    .venv/bin/python benchmarks/lut_kit_coverage.py --samples 20 --image-size 512 --out benchmarks/lut_kit_coverage.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from core.io import write_json
from core.provenance import provenance
from evaluators.latency.kit import resolve_formats, write_kit
from evaluators.latency.signature import arch_signatures, with_image_size
from search_spaces.presets import get_preset
from search_spaces.space import get_space


def blocks(samples: int, seed: int, image_size: int) -> dict:
    """Distinct block signatures of the presets and the samples, in first-seen order, with who uses them."""
    configs = [("sd15", get_preset("sd15")), ("mobilediffusion", get_preset("mobilediffusion"))]
    configs += [(f"sample_{c.arch_id[:6]}", c) for c in get_space("unet_mobile").sample_random(samples, seed)]
    out: dict = {}
    for name, config in configs:
        for _, sig in arch_signatures(with_image_size(config, image_size)):
            out.setdefault(sig.key, {"sig": sig, "archs": []})["archs"].append(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-minutes", type=float, default=None, help="Stop (resumable) after this long.")
    args = parser.parse_args()
    names, unavailable = resolve_formats(None)
    todo = blocks(args.samples, args.seed, args.image_size)
    done = json.loads(args.out.read_text())["blocks"] if args.out.exists() else {}
    start = time.perf_counter()
    for i, (key, item) in enumerate(todo.items()):
        if key in done:
            continue
        if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
            break
        scratch = Path(tempfile.mkdtemp(prefix="kit-coverage-"))
        t0 = time.perf_counter()
        try:
            result = write_kit([item["sig"]], scratch, args.image_size)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        reasons = {m["format"]: m["reason"] for m in result.not_converted}
        done[key] = {"kind": item["sig"].spec.kind, "archs": item["archs"], "seconds": time.perf_counter() - t0,
                     "formats": {f: ("unavailable" if unavailable[f] else "ok" if result.formats[f]["written"]
                                     else reasons.get(f, "failed")) for f in names}}
        print(f"{i + 1}/{len(todo)} {item['sig'].spec.kind}: {done[key]['formats']} "
              f"({done[key]['seconds']:.0f} s)", flush=True)
        summary = {f: {"ok": sum(b["formats"][f] == "ok" for b in done.values()),
                       "failed": sum(b["formats"][f] not in ("ok", "unavailable") for b in done.values()),
                       "unavailable": unavailable[f]} for f in names}
        covered = sum(any(v == "ok" for v in b["formats"].values()) for b in done.values())
        write_json(args.out, {"image_size": args.image_size, "samples": args.samples, "seed": args.seed,
                              "blocks_total": len(todo), "blocks_done": len(done), "covered": covered,
                              "formats": summary, "load_average": list(os.getloadavg()),
                              "provenance": provenance(benchmark="lut_kit_coverage"), "blocks": done})


if __name__ == "__main__":
    main()
