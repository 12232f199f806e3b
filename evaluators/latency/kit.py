"""The phone measurement kit: every block as an ONNX file plus a manifest, ready for a benchmark tool.

Layout of a kit directory:
- `blocks/<id>.onnx`: one block with seeded random weights and fixed input shapes (opset 17);
- `manifest.json`: for each block its `key` (the LUT key), `file`, `kind`, inputs (name, shape, dtype),
  parameters and MACs, plus the image size and the CSV schema of `nas lut import`;
- `measurements_template.csv`: `file,latency_ms,std_ms` with one row per block, to fill on the phone.
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

from evaluators.cost import block_macs, block_params
from evaluators.latency import imported, onnx_export
from evaluators.latency.backends import materialize
from evaluators.latency.predictor import Progress
from evaluators.latency.signature import BlockSignature, SignatureError
from nas.errors import UserError
from nas.io import atomic_path, write_json, write_text
from nas.provenance import provenance
from search_spaces.blocks import block_inputs, build_block

MANIFEST = "manifest.json"
KIT_SCHEMA = "nas-lut-kit/1"


@dataclass(frozen=True)
class KitResult:
    """What `write_kit` did."""

    manifest: Path  # the manifest written
    written: int  # ONNX files exported now
    kept: int  # ONNX files already present (resumed)
    bytes_estimate: int  # estimated size of all block files


def block_file(sig: BlockSignature) -> str:
    return f"{sig.spec.kind}_{hashlib.sha256(sig.key.encode()).hexdigest()[:16]}.onnx"


def estimate_bytes(sigs: Sequence[BlockSignature]) -> int:
    """fp32 weights of all blocks (the bulk of the ONNX files)."""
    return sum(4 * block_params(s.spec) for s in sigs)


def check_fits(sigs: Sequence[BlockSignature], out: Path) -> int:
    """Create `out/blocks` and return the kit's estimated size.

    Raises:
        UserError: the directory cannot be created, or the blocks would not fit on its disk.
    """
    need = estimate_bytes(sigs)
    try:
        (out / "blocks").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {out}: {err.strerror or err}") from None
    free = shutil.disk_usage(out).free
    if need > free:
        raise UserError(f"the kit needs ~{need / 1e9:.1f} GB for {len(sigs)} blocks but {out} has "
                        f"{free / 1e9:.1f} GB free; restrict it (--sample N, --preset, --config)")
    return need


def write_kit(sigs: Sequence[BlockSignature], out_dir: str | Path, image_size: int,
              progress: Progress | None = None) -> KitResult:
    """Export `sigs` into a kit directory.

    Raises:
        UserError: the blocks would not fit on the disk, or the directory cannot be written.
    """
    out = Path(out_dir)
    need = check_fits(sigs, out)
    entries, written, kept = [], 0, 0
    for i, sig in enumerate(sigs):
        path = out / "blocks" / block_file(sig)
        names = onnx_export.input_names(sig.spec.kind)
        inputs = block_inputs(sig.spec, sig.batch, getattr(torch, sig.dtype))
        if path.exists():
            kept += 1
        else:
            module = materialize(lambda: build_block(sig.spec), "cpu", getattr(torch, sig.dtype))
            with atomic_path(path, suffix=".onnx") as tmp:
                onnx_export.export(module, inputs, names, tmp)
            written += 1
        entries.append({
            "key": sig.key, "file": path.name, "kind": sig.spec.kind,
            "inputs": [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
                       for n, t in zip(names, inputs)],
            "params": block_params(sig.spec), "macs": block_macs(sig.spec, sig.batch)[0]})
        if progress:
            progress(i + 1, len(sigs))
    manifest = {"schema": KIT_SCHEMA, "image_size": image_size, "opset": onnx_export.OPSET, "blocks": entries,
                "import_csv_schema": imported.__doc__, "provenance": provenance()}
    write_text(out / "measurements_template.csv",
               "file,latency_ms,std_ms\n" + "".join(f"{e['file']},,\n" for e in entries))
    return KitResult(write_json(out / MANIFEST, manifest), written, kept, need)


def read_manifest(kit_dir: str | Path) -> dict[str, str]:
    """The kit's ONNX file name -> block key.

    Raises:
        UserError: no manifest, or one that is corrupt or not a kit manifest.
    """
    path = Path(kit_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != KIT_SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {KIT_SCHEMA}")
        out = {b["file"]: b["key"] for b in data["blocks"]}
        for key in out.values():
            BlockSignature.from_key(key)
    except OSError as err:
        raise UserError(f"cannot read kit manifest {path}: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError, AttributeError, SignatureError) as err:
        raise UserError(f"kit manifest {path} is corrupt: {err}") from None
    return out
