"""Huge pages vs 4 KiB pages for CPU block latency, side by side (core/hugepages.py).

Each process times a fixed set of blocks of the 256 px UNets, as the LUT does (the cpu backend: one thread,
timing thread pinned, thread CPU clock), each block in several fresh instances (new weights, new addresses);
processes alternate between THP_MEM_ALLOC_ENABLE=1 and =0 (A/B paired, `--pairs` of each), so a drift of
the machine falls on both. Reported per block and mode: the median over all instances, and the spread of
the instance medians (max / min): the page-size lottery shows as spread on 4 KiB pages.

    .venv/bin/python benchmarks/hugepages.py --pairs 3 --out benchmarks/latency/hugepages-cpu-<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BLOCKS = {  # name -> block at 256 px (latent 32): large-weight low-resolution blocks, and small ones
    "resnet 1664->1280 @8": dict(kind="resnet", in_ch=1664, out_ch=1280, res=8, temb_ch=768, groups=32),
    "resnet 1280 @8": dict(kind="resnet", in_ch=1280, out_ch=1280, res=8, temb_ch=768, groups=32),
    "downsample 1280 @8": dict(kind="downsample", in_ch=1280, out_ch=1280, res=8),
    "transformer 1280 @8": dict(kind="transformer", in_ch=1280, out_ch=1280, res=8, groups=32, depth=1,
                                attention="self_cross", heads=8, attn_activation="softmax", ff_mult=4,
                                ff_activation="gelu", context_len=77, context_dim=768),
    "resnet 320 @32": dict(kind="resnet", in_ch=320, out_ch=320, res=32, temb_ch=1280, groups=32),
    "separable resnet 640->256 @32": dict(kind="resnet", in_ch=640, out_ch=256, res=32, temb_ch=1024, groups=32,
                                          separable=True),
}


def child(instances: int, calls: int) -> None:
    """Time every block in `instances` fresh instances; print JSON {name: [instance medians ms], pages}."""
    import gc

    from core.hugepages import torch_cpu_pages
    from evaluators.latency.backends import CpuBackend
    from evaluators.latency.signature import BlockSignature
    from evaluators.latency.timing import robust_stats
    from search_spaces.blocks import BlockSpec

    backend = CpuBackend()
    out: dict = {"pages": torch_cpu_pages(), "blocks": {}}
    with backend.measuring():
        for name, fields in BLOCKS.items():
            sig = BlockSignature(BlockSpec(**fields))
            medians = []
            for _ in range(instances):
                run = backend.block_runner(sig)
                run(), run()
                samples = []
                for _ in range(calls):
                    start = time.thread_time()
                    run()
                    samples.append((time.thread_time() - start) * 1e3)
                medians.append(robust_stats(samples).ms)
                del run
                gc.collect()
            out["blocks"][name] = medians
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="processes per mode, alternating")
    parser.add_argument("--instances", type=int, default=3, help="fresh instances of each block per process")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per instance")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.instances, args.calls)
        return
    from core.io import write_json
    from core.provenance import provenance

    runs: dict[str, list] = {"1": [], "0": []}
    began = time.time()
    for i in range(args.pairs):
        for mode in (("1", "0") if i % 2 == 0 else ("0", "1")):
            env = os.environ | {"THP_MEM_ALLOC_ENABLE": mode, "PYTHONPATH": str(Path(__file__).parents[1])}
            proc = subprocess.run([sys.executable, __file__, "--child", "--out", "-", "--instances",
                                   str(args.instances), "--calls", str(args.calls)], env=env, capture_output=True,
                                  text=True, check=True)
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"pair {i + 1}/{args.pairs} THP_MEM_ALLOC_ENABLE={mode}: {runs[mode][-1]['pages']}", flush=True)
    table = {}
    for name in BLOCKS:
        row = {}
        for mode, label in (("1", "huge"), ("0", "4k")):
            values = [ms for run in runs[mode] for ms in run["blocks"][name]]
            row[label] = {"median_ms": statistics.median(values), "min_ms": min(values), "max_ms": max(values),
                          "spread": max(values) / min(values), "instances": len(values)}
        row["ratio_4k_over_huge"] = row["4k"]["median_ms"] / row["huge"]["median_ms"]
        table[name] = row
        print(f"{name:32s} 4 KiB {row['4k']['median_ms']:7.1f} ms (spread {row['4k']['spread']:.2f})   "
              f"2 MiB {row['huge']['median_ms']:7.1f} ms (spread {row['huge']['spread']:.2f})   "
              f"ratio {row['ratio_4k_over_huge']:.2f}")
    write_json(args.out, {"command": " ".join(sys.argv), "seconds": time.time() - began,
                          "pages": {m: sorted({r["pages"] for r in runs[m]}) for m in runs},
                          "load_average": list(os.getloadavg()), "blocks": table, "raw": runs,
                          "provenance": provenance(device="cpu", threads=1)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
