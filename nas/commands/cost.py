"""`nas presets` and `nas cost`: parameters, MACs and activation memory at full scale."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from core.console import console, human, print_json
from core.provenance import provenance
from evaluators.cost import analytic_cost, fvcore_cost
from nas.arch_input import resolve_arch
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
         json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Parameters, MACs (with and without attention products) and activation memory, per level."""
    arch, label = resolve_arch(preset, config)
    report = fvcore_cost(arch) if exact else analytic_cost(arch)
    if json_out:
        print_json(report.to_dict() | {"source": label, "latent_size": arch.latent_size,
                                       "provenance": provenance(counter=report.method)})
        return
    table = Table("part", "params", "MACs", "MACs w/o attention", title=f"{label}  (arch {report.arch_id}, "
                  f"{arch.latent_size}x{arch.latent_size} latents, batch 1, {report.method} count)")
    for lv in report.per_level:
        table.add_row(lv.part, human(lv.params), human(lv.macs), human(lv.macs_no_attention))
    table.add_row("total", f"{report.params:,}", human(report.macs), human(report.macs_no_attention), style="bold")
    console.print(table)
    console.print(f"peak activations (estimate, fp32): {human(report.activation_bytes, 'B')}")


def register(app: typer.Typer) -> None:
    app.command("presets")(presets)
    app.command("cost")(cost)
