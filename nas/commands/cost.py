"""`nas presets` and `nas cost`: parameters, MACs and activation memory at full scale."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Column, Table

from core.console import console, human, print_json
from core.provenance import provenance
from evaluators.cost import analytic_cost, fvcore_cost
from evaluators.pipeline_cost import image_cost
from nas.arch_input import resolve_arch
from nas.commands.sampling_options import DECODER, GUIDANCE, STEPS, sampling_from
from search_spaces.presets import PRESETS, get_preset


def presets(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the named architectures with their size."""
    rows = []
    for name in PRESETS.names():
        config = get_preset(name)
        cost = analytic_cost(config)
        doc = (PRESETS.get(name).__doc__ or "").strip().splitlines()[0]
        rows.append(dict(name=name, arch_id=config.arch_id, params=cost.params, macs=cost.macs, description=doc))
    if json_out:
        print_json(rows)
        return
    table = Table("preset", "arch id", "params", "MACs", "description", title="Presets")
    for r in rows:
        table.add_row(r["name"], r["arch_id"], human(r["params"]), human(r["macs"]), r["description"])
    console.print(table)


def cost(preset: Optional[str] = typer.Option(None, "--preset", help="A preset name (see `nas presets`)."),
         config: Optional[Path] = typer.Option(None, "--config", help="An ArchConfig JSON file (or an export)."),
         exact: bool = typer.Option(False, "--fvcore", help="Count with fvcore on a real forward (slow) "
                                    "instead of the analytic count (equal within 1%, tested)."),
         steps: int = STEPS, guidance: str = GUIDANCE, decoder: str = DECODER,
         device: Optional[str] = typer.Option(None, "--device", help="Also predict per-image latency on this "
                                              "device (as `nas lut predict`: cpu, onnxruntime, a roofline phone, "
                                              "an imported LUT; measured devices measure missing blocks)."),
         lut_dir: Optional[Path] = typer.Option(None, "--lut-dir", help="LUT directory of --device."),
         json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Parameters, MACs (with and without attention products) and activation memory, per level; then one image:
    text encoder + steps x UNet (x2 with CFG) + VAE decoder, and its latency on --device."""
    arch, label = resolve_arch(preset, config)
    sampling = sampling_from(steps, guidance, decoder)
    report = fvcore_cost(arch) if exact else analytic_cost(arch)
    image = image_cost(arch, sampling, report.params, report.macs, exact)
    latency = None
    if device is not None:
        from nas.commands.lut import image_prediction

        latency = image_prediction(device, arch, sampling, lut_dir, arch.latent_size * 8)
    if json_out:
        print_json(report.to_dict() | {"source": label, "latent_size": arch.latent_size, "image": image.to_dict(),
                                       "image_latency": None if latency is None else latency.to_dict(),
                                       "provenance": provenance(counter=report.method, device=device)})
        return
    table = Table("part", "params", "MACs", "MACs w/o attention", title=f"{label}  (arch {report.arch_id}, "
                  f"{arch.latent_size}x{arch.latent_size} latents, batch 1, {report.method} count)")
    for lv in report.per_level:
        table.add_row(lv.part, human(lv.params), human(lv.macs), human(lv.macs_no_attention))
    table.add_row("total", f"{report.params:,}", human(report.macs), human(report.macs_no_attention), style="bold")
    console.print(table)
    console.print(f"peak activations (estimate, fp32): {human(report.activation_bytes, 'B')}")
    console.print(image_table(image, latency, f"one {arch.latent_size * 8}px image: {sampling.label}"))


def image_table(image, latency=None, title: str = "") -> Table:
    """The per-image breakdown: calls, params and MACs of each network; with a latency prediction, its MACs
    and milliseconds (params and MACs per call are then left to the JSON: 80 columns hold no more)."""
    part = Column("part", no_wrap=True, min_width=12)
    if latency is None:
        table = Table(part, "calls", "params", "MACs/call", "MACs/image", "share", title=title)
    else:
        title += f"; latency on {latency.device}" + (" (ESTIMATE: roofline)" if latency.estimate else "")
        table = Table(part, "calls", "MACs/image", "share", "ms/call", "ms/image", "ms share", title=title)
    times = {p.part: p for p in latency.parts} if latency is not None else {}
    for p in image.parts:
        share = f"{p.image_macs / image.macs:.1%}"
        if latency is None:
            table.add_row(p.part, str(p.calls), human(p.params), human(p.macs), human(p.image_macs), share)
        else:
            t = times[p.part]
            table.add_row(p.part, str(p.calls), human(p.image_macs), share, f"{t.ms_per_call:,.1f}", f"{t.ms:,.1f}",
                          f"{t.ms / latency.latency_ms:.1%}")
    if latency is None:
        table.add_row("image", "", "", "", human(image.macs), "100%", style="bold")
    else:
        table.add_row("image", "", human(image.macs), "100%", "", f"{latency.latency_ms:,.1f}", "100%", style="bold")
    return table


def register(app: typer.Typer) -> None:
    app.command("presets")(presets)
    app.command("cost")(cost)
