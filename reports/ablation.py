"""Ablation tables in a report: a section of a search report when `ablation/` holds tables, and the whole report
of an ablation run folder (`nas ablate`). Every delta is labelled by `seed_spread.verdict`.

Deltas compare a row with its reference: the row above on the cumulative path, the `full_path` row for
leave-one-out rows (as `nas.ablation.plan` defines "delta vs previous").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import UserError
from core.metrics import METRIC_DIRECTIONS, names
from core.run_folder import RunFolder
from reports.proxy import proxy_summary
from reports.run_parts import SampleGrid, first_seed_grids, provenance_rows
from reports.seed_spread import verdict

QUALITY_METRICS = names("quality")  # the registry's proxy-quality metrics, in its order


@dataclass(frozen=True)
class AblationInfo:
    name: str  # CSV file stem
    table: pd.DataFrame  # the table as read
    has_fid: bool  # whether a FID column with values exists (drawn with intervals)
    reference: list[int | None]  # per row: position of the row its deltas compare with
    verdicts: dict[str, list[str]]  # quality metric -> per row: better / worse / within seed spread / single seed


def references(table: pd.DataFrame) -> list[int | None]:
    """Per row, the position of the row "delta vs previous" compares with (None for the first of a path)."""
    modes = table["mode"].tolist() if "mode" in table.columns else ["cumulative"] * len(table)
    steps = table["step"].tolist()
    out: list[int | None] = []
    for i, mode in enumerate(modes):
        if mode == "leave-one-out":
            full = next((j for j, (m, s) in enumerate(zip(modes, steps)) if m == mode and s == "full_path"), None)
            out.append(None if full == i else full)
        else:
            out.append(i - 1 if i > 0 and modes[i - 1] == mode else None)
    return out


def _get(table: pd.DataFrame, i: int, column: str) -> float | None:
    if column not in table.columns:
        return None
    value = table[column].iloc[i]
    return None if pd.isna(value) else float(value)


def ablation_info(name: str, table: pd.DataFrame) -> AblationInfo:
    refs = references(table)
    verdicts = {}
    for metric in (m for m in QUALITY_METRICS if m in table.columns):
        maximize = METRIC_DIRECTIONS[metric] == "maximize"
        verdicts[metric] = ["" if ref is None else verdict(
            _get(table, i, metric), _get(table, i, f"{metric}_ci"), _get(table, ref, metric),
            _get(table, ref, f"{metric}_ci"), maximize) for i, ref in enumerate(refs)]
    return AblationInfo(name, table, "fid" in table.columns and table["fid"].notna().any(), refs, verdicts)


def ablation_infos(folder: Path) -> tuple[list[AblationInfo], list[str]]:
    """Every ablation table (`*.csv` with a `step` column) in `folder`, and notes on files that are not."""
    out, notes = [], []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as err:
            notes.append(f"{path.name}: unreadable ({err})")
            continue
        if "step" not in table.columns:
            notes.append(f"{path.name}: no 'step' column, not an ablation table")
            continue
        out.append(ablation_info(path.stem, table))
    return out, notes


# ---------------------------------------------------------------------------------------------- ablation run folders
@dataclass
class AblationReportInfo:
    """The report of an ablation run folder."""

    name: str  # run name
    header: list[tuple[str, str]]  # (label, value) provenance rows
    tables: list[AblationInfo]  # cumulative first, then leave-one-out
    samples: list[SampleGrid]  # the lowest-seed sample grid of every distinct row architecture
    failures: list[str]  # "step: reason" of rows with failed seeds
    notes: list[str] = field(default_factory=list)


def _header(manifest: dict, trials: pd.DataFrame) -> list[tuple[str, str]]:
    budget = manifest.get("budget") or {}
    confidence = manifest.get("confidence")
    seeds = manifest.get("seeds")
    spread = (f"{seeds} per row; mean ± {confidence:.0%} t-interval half-width" if seeds and seeds > 1 and confidence
              else f"{seeds or 'not recorded'} per row: no intervals, deltas are not qualified by seed spread")
    return [("kind", "ablation study (nas ablate)"), ("space", str(manifest.get("space", "not recorded"))),
            ("baseline", str(manifest.get("baseline", "not recorded"))), ("seeds", spread),
            ("proxy budget", f"{budget.get('steps', '?')} training steps" if budget else "not recorded"),
            ("proxies", proxy_summary(manifest.get("proxy"), trials)),
            ("latency devices", ", ".join(manifest.get("latency_devices") or []) or "not recorded"),
            ("image size", str(manifest.get("image_size", "not recorded"))),
            ("training device", str(manifest.get("device", "not recorded")))] + provenance_rows(manifest, trials)


def compute_ablation_report(run: RunFolder) -> AblationReportInfo:
    """The ablation report's info.

    Raises:
        UserError: the study has written no table yet.
    """
    manifest = run.manifest()
    tables, notes = ablation_infos(run.ablation_dir)
    if not tables:
        raise UserError(f"{run.path}: the ablation run has no tables yet (ablation/*.csv); finish or resume it "
                        "with `nas ablate --run-dir`")
    order = {"cumulative": 0, "leave_one_out": 1}
    tables.sort(key=lambda t: (order.get(t.name, 2), t.name))
    trials = run.read_trials()
    wanted: dict[str, tuple[str, str]] = {}  # arch id -> (first step that names it, arch id)
    for t in tables:
        for _, r in t.table.iterrows() if "arch_id" in t.table.columns else ():
            wanted.setdefault(str(r["arch_id"]), (str(r["step"]), str(r["arch_id"])))
    failures = [f"{r['step']} ({t.name}): {r['failures']}" for t in tables if "failures" in t.table.columns
                for _, r in t.table.iterrows() if isinstance(r["failures"], str) and r["failures"]]
    return AblationReportInfo(str(manifest.get("name", run.path.name)), _header(manifest, trials), tables,
                              first_seed_grids(run.path, trials, list(wanted.values())), failures, notes)
