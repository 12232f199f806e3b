"""`nas export`: the chosen architecture of a run as JSON, optionally as a checked ONNX model.

What is written (all or nothing: everything is staged, checked, then renamed into place):
- FILE (JSON): {"config": full-scale ArchConfig, "arch_id", "trial", "pick", "metrics", "run", "diffusers",
  "onnx", "provenance"}; `nas cost --config FILE` and `load_config_file` read it back.
- `<FILE stem>.diffusers_unet.json` beside FILE when the design is expressible as a diffusers
  `UNet2DConditionModel` config (`UNet2DConditionModel.from_config(json.load(f))`); otherwise the JSON's
  "diffusers" entry lists the features that prevent it.
- `--onnx PATH`: the full-scale UNet (random weights, seed 0) exported with opset 17; models over 2 GiB
  keep their weights in `PATH.data` beside it. It is run in onnxruntime on the same inputs as torch and
  the maximum absolute difference must be within ONNX_TOLERANCE.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io import write_json
from core.metrics import names
from core.provenance import provenance
from evaluators.memory import check_fits, model_memory
from reports.pareto import pick_trial
from reports.run_data import RunData, load_run
from search_spaces.config import ArchConfig
from search_spaces.diffusers_compat import to_diffusers_config, unsupported_features

ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-3
ONNX_INPUTS = ("sample", "timestep", "encoder_hidden_states")
ONNX_WEIGHT_COPIES = 3  # torch model + exported graph, then the exported graph + onnxruntime session (+ reload)
METRICS = ("macs_no_attention", *names())  # registry metrics, plus the cost record's attention-free MACs


class OnnxCheckError(RuntimeError):
    """onnxruntime and torch disagree beyond the tolerance: the exported model is not trustworthy."""


def _check_writable(path: Path, flag: str) -> None:
    """Fail before any work when `path` cannot be created (missing or read-only folder, a folder there)."""
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def diffusers_path(out: Path) -> Path:
    """Where the diffusers UNet config goes for an export written to `out`."""
    return out.with_name(f"{out.stem}.diffusers_unet.json")


def _metrics(row: Any) -> dict[str, float | None]:
    out = {}
    for name in METRICS:
        value = row.get(name)
        out[name] = None if pd.isna(value) else float(value)
    return out


def export_onnx(config: ArchConfig, path: Path, seed: int = 0, max_memory: int | None = None) -> dict[str, Any]:
    """Export the full-scale UNet of `config` to `path` and check it against torch in onnxruntime.

    Returns the check's summary (file names, opset, inputs, max abs difference).

    Raises:
        TooLargeError: the estimated memory (torch model, its ONNX export and the onnxruntime session, plus
            one forward's activations) exceeds `max_memory` or the available memory; nothing is built.
        OnnxCheckError: onnxruntime's output differs from torch's by more than ONNX_TOLERANCE.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from evaluators.latency.backends import model_inputs
    from evaluators.latency.onnx_export import export
    from search_spaces.unet import build_unet

    check_fits(model_memory(config, f"exporting arch {config.arch_id} to ONNX", ONNX_WEIGHT_COPIES), max_memory)
    torch.manual_seed(seed)
    model = build_unet(config).eval()
    inputs = model_inputs(config, 1, torch.float32, "cpu")
    with torch.no_grad():
        expected = model(*inputs).numpy()
    data_name = f"{path.name}.data"
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        raw = staging / "raw" / "model.onnx"
        raw.parent.mkdir()
        export(model, inputs, list(ONNX_INPUTS), raw)
        del model
        external = len(list(raw.parent.iterdir())) > 1  # the exporter spilled >2 GiB of weights to files
        final = staging / path.name
        if external:
            proto = onnx.load(str(raw))
            onnx.save_model(proto, str(final), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name)
            del proto
        else:
            os.replace(raw, final)
        shutil.rmtree(raw.parent)
        session = ort.InferenceSession(str(final), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}  # unused inputs (no attention: no text) are pruned
        feeds = {n: t.numpy() for n, t in zip(ONNX_INPUTS, inputs) if n in wanted}
        got = session.run(None, feeds)[0]
        del session
        diff = float(np.max(np.abs(got - expected)))
        if not diff <= ONNX_TOLERANCE:
            raise OnnxCheckError(f"onnxruntime differs from torch by {diff:.3g} (tolerance {ONNX_TOLERANCE:g})")
        if external:
            os.replace(staging / data_name, path.with_name(data_name))
        os.replace(final, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"file": str(path), "external_data": str(path.with_name(data_name)) if external else None,
            "opset": ONNX_OPSET, "inputs": {n: list(t.shape) for n, t in zip(ONNX_INPUTS, inputs)},
            "onnx_inputs": sorted(wanted), "max_abs_diff": diff, "tolerance": ONNX_TOLERANCE,
            "weights": f"random (torch seed {seed}): the architecture, not trained weights"}


def run_summary(data: RunData) -> dict[str, Any]:
    m = data.manifest
    return {"dir": str(data.run.path.resolve()), "name": m.get("name"), "space": m.get("space"),
            "objectives": [o.name for o in data.objectives], "sampler": m.get("sampler"), "seed": m.get("seed"),
            "latency": m.get("latency"), "evaluator": m.get("evaluator"),
            "run_provenance": m.get("provenance")}


def export_architecture(run_dir: str | Path, pick: str, out: str | Path, latency_budget_ms: float | None = None,
                        onnx_path: str | Path | None = None, max_memory: int | None = None) -> dict[str, Any]:
    """Pick a trial of the run and write its export (see the module docstring); returns the JSON written.

    Raises:
        UserError: not a run, no complete trial, a bad pick or trial number, nothing under the budget, an
            unwritable output path, or (TooLargeError) a full-scale model too large to export within
            `max_memory` or the available memory. OnnxCheckError: the ONNX model fails its check (nothing is
            written).
    """
    out = Path(out)
    onnx_file = Path(onnx_path) if onnx_path is not None else None
    data = load_run(run_dir)
    number = pick_trial(data, pick, latency_budget_ms)
    _check_writable(out, "--out")
    if onnx_file is not None:
        _check_writable(onnx_file, "--onnx")
        if onnx_file.resolve() == out.resolve():
            raise UserError("--onnx and --out name the same file")
    row = data.complete.loc[number]
    config = ArchConfig.from_json(str(row["config_json"]))
    reasons = unsupported_features(config)
    diffusers: dict[str, Any] = {"expressible": not reasons, "reasons": reasons}
    if not reasons:
        diffusers["file"] = str(diffusers_path(out))
    doc = {
        "config": config.to_dict(), "arch_id": config.arch_id, "trial": number, "pick": pick,
        "latency_budget_ms": latency_budget_ms, "preset": str(row.get("preset") or "") or None,
        "metrics": _metrics(row), "run": run_summary(data), "diffusers": diffusers,
        "onnx": export_onnx(config, onnx_file, max_memory=max_memory) if onnx_file is not None else None,
        "provenance": provenance(command="nas export"),
    }
    if not reasons:
        write_json(diffusers_path(out), to_diffusers_config(config))
    write_json(out, doc)
    return doc
