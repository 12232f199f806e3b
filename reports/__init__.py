"""The HTML report of a run folder: compute section infos, draw them (`figures`), lay them out (`*page`).

Each kind of run folder has its own report: a search (`sections` + `page`), an ablation study (`ablation` +
`ablation_page`) and a proxy-fidelity check (`fidelity` + `fidelity_page`).

    from reports import build_report
    path, report, info = build_report("runs/demo")          # writes runs/demo/report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.io import write_text
from core.run_folder import RunFolder

if TYPE_CHECKING:  # the report modules import Plotly: only when a report is built
    from reports.layout import Report


def _compute_and_render(run: RunFolder, kind: str) -> tuple[Report, Any]:
    if kind == "ablation":
        from reports.ablation import compute_ablation_report
        from reports.ablation_page import render_ablation

        info = compute_ablation_report(run)
        return render_ablation(info), info
    if kind == "fidelity":
        from reports.fidelity import compute_fidelity_report
        from reports.fidelity_page import render_fidelity

        info = compute_fidelity_report(run)
        return render_fidelity(info), info
    from reports.page import render
    from reports.run_data import load_run
    from reports.sections import compute_report

    info = compute_report(load_run(run.path))
    return render(info), info


def build_report(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Report, Any]:
    """Compute, render and atomically write the report of `run_dir` (default: its report.html).

    Returns:
        (path written, rendered report, info): a `sections.ReportInfo`, `ablation.AblationReportInfo` or
        `fidelity.FidelityReportInfo`, by the run folder's kind.

    Raises:
        UserError: not a run folder, an unknown kind, a run with nothing to report yet, or an unwritable path.
    """
    if out is not None and Path(out).is_dir():
        raise UserError(f"--out {out}: is a folder")
    from reports.run_data import run_kind

    run = RunFolder.open(run_dir)
    report, info = _compute_and_render(run, run_kind(run.manifest(), run.path))
    path = Path(out) if out is not None else run.report_path
    write_text(path, report.html)
    return path, report, info
