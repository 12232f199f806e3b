"""`nas report`: the offline HTML report of a run folder (and its figures as PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.console import console


def report(run_dir: Path = typer.Argument(..., help="A run folder (from `nas search`)."),
           out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default RUN_DIR/report.html)."),
           png_dir: Optional[Path] = typer.Option(None, "--png-dir", help="Also write every figure as a PNG "
                                                  "here (kaleido; needs a Chrome/Chromium binary).")) -> None:
    """Write one self-contained HTML page: provenance, Pareto set and fronts, hypervolume, importances,
    samples and per-block latency of each Pareto architecture, and the ablation study when present."""
    from reports import build_report
    from reports.png import check_available, export_pngs

    if png_dir is not None:
        check_available()  # before writing anything
    path, page, info = build_report(run_dir, out)
    console.print(f"report: {path}  ({len(info.pareto.rows)} Pareto architectures, knee: trial "
                  f"{info.pareto.knee_number}, {len(page.figures)} figures)")
    if png_dir is not None:
        written = export_pngs(page.figures, png_dir)
        console.print(f"PNGs: {len(written)} figures in {png_dir}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
