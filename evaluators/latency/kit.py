"""The phone measurement kit: every block as ONNX plus the phones' own formats, with how to time them.

Layout of a kit directory:
- `blocks/<id>.onnx`: one block with seeded random weights and fixed input shapes (opset 17);
- `blocks/<id>.mlpackage` (Core ML, coremltools) and `blocks/<id>.tflite` (LiteRT, litert-torch), where
  the converter is installed and handles the block (see `phone`);
- `manifest.json`: for each block its `key` (the LUT key), `file` (the ONNX file), `kind`, inputs (name,
  shape, dtype), parameters and MACs, and per format the file written or the converter's reason for not
  writing it; the kit's `not_converted` list repeats every block a converter could not handle;
- `TIMING.md`: how to time the files on a phone (Xcode's Core ML performance report, TFLite's
  `benchmark_model`) and fill the CSV;
- `measurements_template.csv` (ONNX files) and `measurements_<format>_template.csv` (each phone format):
  `file,latency_ms,std_ms` with one row per block, to fill on the phone and give to `nas lut import`.
Files are written atomically and existing ones are kept, so an interrupted kit run resumes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from core.errors import UserError
from core.io import atomic_path, write_json, write_text
from core.provenance import provenance
from evaluators.cost import block_macs, block_params
from evaluators.latency import imported, onnx_export
from evaluators.latency.backends import materialize
from evaluators.latency.phone import FORMATS, failure_reason
from evaluators.latency.predictor import Progress
from evaluators.latency.signature import BlockSignature, SignatureError
from search_spaces.blocks import block_inputs, build_block

MANIFEST = "manifest.json"
INSTRUCTIONS = "TIMING.md"
KIT_SCHEMAS = ("nas-lut-kit/1", "nas-lut-kit/2")  # readable; 2 adds the phone formats
KIT_SCHEMA = KIT_SCHEMAS[-1]


@dataclass(frozen=True)
class KitResult:
    """What `write_kit` did."""

    manifest: Path  # the manifest written
    written: int  # ONNX files exported now
    kept: int  # ONNX files already present (resumed)
    bytes_estimate: int  # estimated size of all block files
    formats: dict  # phone format -> {"written", "kept", "failed", "unavailable" (reason or None)}
    not_converted: tuple[dict, ...]  # {"file", "kind", "format", "reason"} per block a converter did not handle


def block_file(sig: BlockSignature, suffix: str = ".onnx") -> str:
    return f"{sig.spec.kind}_{hashlib.sha256(sig.key.encode()).hexdigest()[:16]}{suffix}"


def resolve_formats(requested: Sequence[str] | None) -> tuple[list[str], dict[str, str | None]]:
    """The phone formats to write and, per format, why it is unavailable (None when it is available).

    `requested=None` means every format, and unavailable ones are reported rather than refused.

    Raises:
        UserError: an unknown format, or one explicitly requested whose converter is not installed.
    """
    names = list(FORMATS) if requested is None else [f for f in requested if f]
    unknown = [f for f in names if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown phone format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    missing = {name: FORMATS[name].unavailable() for name in names}
    if requested is not None:
        refused = [f"{name}: {why}" for name, why in missing.items() if why]
        if refused:
            raise UserError(f"--formats asks for a converter this environment lacks ({'; '.join(refused)})")
    return names, missing


def estimate_bytes(sigs: Sequence[BlockSignature], formats: Sequence[str] = ()) -> int:
    """Weights of all blocks in every file written (fp32 ONNX plus each phone format)."""
    per_param = 4 + sum(FORMATS[f].bytes_per_param for f in formats)
    return sum(per_param * block_params(s.spec) for s in sigs)


def check_fits(sigs: Sequence[BlockSignature], out: Path, formats: Sequence[str] = ()) -> int:
    """Create `out/blocks` and return the kit's estimated size.

    Raises:
        UserError: the directory cannot be created, or the blocks would not fit on its disk.
    """
    need = estimate_bytes(sigs, formats)
    try:
        (out / "blocks").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {out}: {err.strerror or err}") from None
    free = shutil.disk_usage(out).free
    if need > free:
        raise UserError(f"the kit needs ~{need / 1e9:.1f} GB for {len(sigs)} blocks but {out} has "
                        f"{free / 1e9:.1f} GB free; restrict it (--sample N, --preset, --config)")
    return need


def _exists(path: Path) -> bool:
    """A finished file, or a finished Core ML package (its manifest is written last)."""
    return (path / "Manifest.json").is_file() if path.suffix == ".mlpackage" else path.is_file()


def write_kit(sigs: Sequence[BlockSignature], out_dir: str | Path, image_size: int,
              progress: Progress | None = None, formats: Sequence[str] | None = None) -> KitResult:
    """Export `sigs` into a kit directory: ONNX, then each phone format the converters handle.

    Args:
        sigs: the blocks.
        out_dir: the kit directory.
        image_size: the image size the blocks' resolutions come from (recorded).
        progress: callback (done, total) over blocks.
        formats: phone formats (default: all, unavailable converters reported in the result).

    Raises:
        UserError: the blocks would not fit on the disk, the directory cannot be written, or an explicitly
            requested format has no converter here.
    """
    out = Path(out_dir)
    names_of_formats, unavailable = resolve_formats(formats)
    usable = [f for f in names_of_formats if not unavailable[f]]
    need = check_fits(sigs, out, usable)
    entries, written, kept = [], 0, 0
    stats = {f: {"written": 0, "kept": 0, "failed": 0, "unavailable": unavailable[f]} for f in names_of_formats}
    not_converted: list[dict] = []
    for i, sig in enumerate(sigs):
        path = out / "blocks" / block_file(sig)
        names = onnx_export.input_names(sig.spec.kind)
        inputs = block_inputs(sig.spec, sig.batch, getattr(torch, sig.dtype))
        module = None
        if path.exists():
            kept += 1
        else:
            module = materialize(lambda: build_block(sig.spec), "cpu", getattr(torch, sig.dtype))
            with atomic_path(path, suffix=".onnx") as tmp:
                onnx_export.export(module, inputs, names, tmp)
            written += 1
        entry = {"key": sig.key, "file": path.name, "kind": sig.spec.kind,
                 "inputs": [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
                            for n, t in zip(names, inputs)],
                 "params": block_params(sig.spec), "macs": block_macs(sig.spec, sig.batch)[0],
                 "formats": {"onnx": {"file": path.name, "status": "ok"}}}
        for name in names_of_formats:
            fmt = FORMATS[name]
            target = out / "blocks" / block_file(sig, fmt.suffix)
            if unavailable[name]:
                entry["formats"][name] = {"status": "unavailable", "reason": unavailable[name]}
                continue
            if _exists(target):
                stats[name]["kept"] += 1
                entry["formats"][name] = {"file": target.name, "status": "ok"}
                continue
            module = module or materialize(lambda: build_block(sig.spec), "cpu", getattr(torch, sig.dtype))
            try:
                input_names = fmt.write(module, inputs, target)
            except Exception as err:  # a converter that cannot handle a block: listed with its reason
                reason = failure_reason(err)
                stats[name]["failed"] += 1
                entry["formats"][name] = {"status": "failed", "reason": reason}
                not_converted.append({"file": path.name, "kind": sig.spec.kind, "format": name, "reason": reason})
                continue
            stats[name]["written"] += 1
            entry["formats"][name] = {"file": target.name, "status": "ok", "inputs": input_names}
        entries.append(entry)
        if progress:
            progress(i + 1, len(sigs))
    manifest = {"schema": KIT_SCHEMA, "image_size": image_size, "opset": onnx_export.OPSET, "blocks": entries,
                "formats": {name: {"runtime": FORMATS[name].runtime, "converter": FORMATS[name].package,
                                   "converter_version": FORMATS[name].version(), **stats[name]}
                            for name in names_of_formats},
                "not_converted": not_converted, "import_csv_schema": imported.__doc__, "provenance": provenance()}
    _write_templates(out, entries, names_of_formats)
    write_text(out / INSTRUCTIONS, instructions(usable, unavailable, image_size, len(entries)))
    return KitResult(write_json(out / MANIFEST, manifest), written, kept, need, stats, tuple(not_converted))


def _write_templates(out: Path, entries: list[dict], formats: Sequence[str]) -> None:
    write_text(out / "measurements_template.csv",
               "file,latency_ms,std_ms\n" + "".join(f"{e['file']},,\n" for e in entries))
    for name in formats:
        files = [e["formats"][name]["file"] for e in entries if e["formats"][name]["status"] == "ok"]
        if files:
            write_text(out / f"measurements_{name}_template.csv",
                       "file,latency_ms,std_ms\n" + "".join(f"{f},,\n" for f in files))


def instructions(formats: Sequence[str], unavailable: dict[str, str | None], image_size: int, n_blocks: int) -> str:
    """The kit's TIMING.md: how to time the files of `formats` on a phone and bring the numbers back; the
    formats not written are listed with their reason."""
    lines = [
        f"# Timing this kit on a phone ({n_blocks} blocks at {image_size}px images)",
        "",
        "Each block is one model with fixed input shapes and random weights (latency does not depend on the",
        "values); the text encoder's input is int64 token ids, the decoder's the latents (per-image latency",
        "needs both: `nas lut predict --steps N`). Time every file of one format on the phone, the way",
        "nn-Meter does: one thread or one accelerator, 10 warm-up runs, then at least 50 timed runs; take the",
        "median. Keep the phone on power,",
        "cool, with nothing else running, and note the OS and runtime versions: they are the fingerprint.",
        "",
        "Record **milliseconds** per block in a copy of the template CSV of that format",
        "(`measurements_<format>_template.csv`: `file,latency_ms,std_ms`). `nas lut import` refuses other units,",
        "missing blocks (with `--kit`) and duplicates. Then:",
        "",
        "    nas lut import measured.csv --device <name, e.g. iphone15pro-coreml> --kit <this folder> \\",
        "        --fingerprint '<phone model, OS version, runtime and compute units>' --image-size "
        f"{image_size}",
        "",
        "Import each format and each compute unit under its own device name; a second import with another",
        "fingerprint under the same name is refused unless `--replace` is given.",
        "",
    ]
    if "coreml" in formats:
        lines += [
            "## Core ML (`blocks/*.mlpackage`, iOS 17+, float16 compute)",
            "",
            "1. Open a `.mlpackage` in Xcode (15 or later) on a Mac, with the iPhone connected and trusted.",
            "2. Select the **Performance** tab, press **+**, choose the connected device and the compute units",
            "   to measure (All, CPU and Neural Engine, CPU and GPU, or CPU only), and run the report.",
            "3. Read **Median** prediction latency (milliseconds) and enter it as `latency_ms` for that file.",
            "",
            "The report runs the model several times after loading and compiling it; the load and compile",
            "times it also shows are not per-step latency and do not belong in the CSV.",
            "",
        ]
    if "tflite" in formats:
        lines += [
            "## LiteRT / TFLite (`blocks/*.tflite`, Android)",
            "",
            "Use the TFLite `benchmark_model` binary for the phone's ABI (android_aarch64) from the LiteRT",
            "releases. For each file:",
            "",
            "    adb push blocks/<file>.tflite /data/local/tmp/",
            "    adb shell taskset f0 /data/local/tmp/benchmark_model --graph=/data/local/tmp/<file>.tflite \\",
            "        --num_threads=1 --warmup_runs=10 --num_runs=50 --use_gpu=false",
            "",
            "(`--use_gpu=true` for the GPU delegate, which runs float16; `taskset f0` pins to the big cores.)",
            "It prints `Inference timings in us: ... Inference (avg): <microseconds>` and a percentile line with",
            "`median=<microseconds>`: divide by 1000 and enter milliseconds.",
            "",
        ]
    lines += ["## ONNX (`blocks/*.onnx`)", "",
              "Any ONNX runtime (onnxruntime's `onnxruntime_perf_test -I -r 50 <file>`); use",
              "`measurements_template.csv`.", ""]
    skipped = [f"- {name}: {why}" for name, why in unavailable.items() if why]
    if skipped:
        lines += ["## Formats not written by this kit", "", *skipped, ""]
    return "\n".join(lines)


def read_manifest(kit_dir: str | Path) -> dict[str, str]:
    """The kit's file name (ONNX and every phone format) -> block key.

    Raises:
        UserError: no manifest, or one that is corrupt or not a kit manifest.
    """
    path = Path(kit_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
        if data.get("schema") not in KIT_SCHEMAS:
            raise ValueError(f"schema {data.get('schema')!r}, expected one of {', '.join(KIT_SCHEMAS)}")
        out = {b["file"]: b["key"] for b in data["blocks"]}
        for b in data["blocks"]:
            out |= {f["file"]: b["key"] for f in b.get("formats", {}).values() if f.get("status") == "ok"}
        for key in out.values():
            BlockSignature.from_key(key)
    except OSError as err:
        raise UserError(f"cannot read kit manifest {path}: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError, AttributeError, SignatureError) as err:
        raise UserError(f"kit manifest {path} is corrupt: {err}") from None
    return out


def kit_blocks(kit_dir: str | Path, files: Sequence[str]) -> set[str]:
    """The keys of the blocks the kit has in the format of `files` (the format of an imported CSV).

    A CSV of Core ML timings must cover the blocks the kit has as Core ML packages, not those only ONNX has.
    """
    data = json.loads((Path(kit_dir) / MANIFEST).read_text())
    suffixes = {Path(f).suffix for f in files}
    keys = set()
    for block in data["blocks"]:
        for fmt in block.get("formats", {"onnx": {"file": block["file"], "status": "ok"}}).values():
            if fmt.get("status") == "ok" and Path(fmt["file"]).suffix in suffixes:
                keys.add(block["key"])
    return keys
