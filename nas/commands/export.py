"""`nas export`: the architecture a run chose, as JSON (+ ONNX of the full-scale UNet, + diffusers config)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from core.console import console, human, print_json


def export(run_dir: Path = typer.Argument(..., help="A run folder (from `nas search`)."),
           pick: str = typer.Option(..., "--pick", help="knee | min-latency | min-fid | max-clip | trial:N"),
           out: Path = typer.Option(..., "--out", help="JSON file to write (full-scale ArchConfig under \"config\")."),
           latency_budget_ms: Optional[float] = typer.Option(None, "--latency-budget-ms",
                                                             help="Pick only among trials at or under this latency."),
           onnx: Optional[Path] = typer.Option(None, "--onnx", help="Also export the full-scale UNet to this ONNX "
                                               "file (opset 17), checked in onnxruntime against torch."),
           max_memory: Optional[str] = typer.Option(None, "--max-memory", help="With --onnx: refuse a model whose "
                                                    "estimated export memory exceeds this (e.g. 8GiB; default: the "
                                                    "available memory)."),
           json_out: bool = typer.Option(False, "--json", help="Print the written JSON document.")) -> None:
    """Export one architecture of a run; `nas cost --config FILE` reads the JSON back."""
    from evaluators.memory import parse_size
    from nas.export import export_architecture

    doc = export_architecture(run_dir, pick, out, latency_budget_ms, onnx,
                              None if max_memory is None else parse_size(max_memory))
    if json_out:
        print_json(doc)
        return
    m = doc["metrics"]
    shown = ", ".join(f"{k} {human(v) if k in ('params', 'macs') else f'{v:.4g}'}" for k, v in m.items()
                      if v is not None and k != "macs_no_attention")
    console.print(f"trial {doc['trial']} (arch {doc['arch_id']}, pick {pick}): {shown}")
    console.print(f"config: {out}")
    d = doc["diffusers"]
    console.print(f"diffusers UNet2DConditionModel config: {d['file']}" if d["expressible"]
                  else f"no diffusers config: {'; '.join(d['reasons'])}")
    if doc["onnx"]:
        o = doc["onnx"]
        extra = f" (+ weights {o['external_data']})" if o["external_data"] else ""
        console.print(f"ONNX: {o['file']}{extra}; onnxruntime vs torch max abs diff {o['max_abs_diff']:.2e}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
