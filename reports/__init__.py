"""The HTML report of a run: compute section infos (`sections`), draw them (`figures`), lay out (`page`).

    from reports import build_report
    path, report, info = build_report("runs/demo")          # writes runs/demo/report.html
"""

from __future__ import annotations

from pathlib import Path

from nas.errors import UserError
from nas.io import write_text
from reports.page import Report, render
from reports.run_data import load_run
from reports.sections import ReportInfo, compute_report


def build_report(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Report, ReportInfo]:
    """Compute, render and atomically write the report of `run_dir` (default: its report.html).

    Raises:
        UserError: not a run folder, a run without complete trials, or an unwritable output path.
    """
    if out is not None and Path(out).is_dir():
        raise UserError(f"--out {out}: is a folder")
    data = load_run(run_dir)
    info = compute_report(data)
    report = render(info)
    path = Path(out) if out is not None else data.run.report_path
    write_text(path, report.html)
    return path, report, info
