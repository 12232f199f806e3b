"""`nas report`: the offline HTML report of a run folder (and its figures as PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from core.console import console, warn


def _summary(info: Any) -> str:
    """What the report holds, in one line (by the kind of run folder)."""
    from reports.ablation import AblationReportInfo
    from reports.fidelity import FidelityReportInfo

    if isinstance(info, AblationReportInfo):
        return f"ablation: {sum(len(t.table) for t in info.tables)} rows in {len(info.tables)} tables"
    if isinstance(info, FidelityReportInfo):
        return f"fidelity: {info.means['arch_id'].nunique()} architectures"
    return f"{len(info.pareto.rows)} Pareto architectures, knee: trial {info.pareto.knee_number}"


def report(run_dir: Path = typer.Argument(..., help="A run folder (from `nas search`, `nas ablate` or "
                                          "`nas fidelity`)."),
           out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default RUN_DIR/report.html)."),
           png_dir: Optional[Path] = typer.Option(None, "--png-dir", help="Also write every figure as a PNG "
                                                  "here (kaleido; needs a Chrome/Chromium binary).")) -> None:
    """Write one self-contained HTML page. A search: provenance, Pareto set and its designs against the anchors,
    fronts, hypervolume, design dimensions per UNet part, importances (above a trial-count threshold), samples and
    per-block latency of each Pareto architecture. An ablation: its tables with seed intervals, labelled deltas,
    waterfalls and samples. A fidelity study: rank agreement with its intervals and reading, pairs of architectures
    within the seed spread, the short-vs-reference scatter and the seed means."""
    from reports import build_report
    from reports.png import check_available, export_pngs

    if png_dir is not None:
        check_available()  # before writing anything
    path, page, info = build_report(run_dir, out)
    study_note = next((n for n in getattr(getattr(info, "header", None), "notes", []) if "study unavailable" in n), None)
    if study_note:  # the page says it too, but a script or a reader of the terminal must not miss it
        warn(study_note.splitlines()[0])
    console.print(f"report: {path}  ({_summary(info)}, {len(page.figures)} figures)", soft_wrap=True)
    if png_dir is not None:
        written = export_pngs(page.figures, png_dir)
        console.print(f"PNGs: {len(written)} figures in {png_dir}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
