"""Compute step of the search report: one info object per section, checked by tests without a browser.

`figures` draws these with Plotly and `page` lays them out as HTML; nothing here imports Plotly. Design
dimensions and the anchor diff are in `designs`, importances in `importance`, ablation tables in `ablation`.
"""

from __future__ import annotations

import base64
import json
import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Optuna's WFG hypervolume: its public `plot_hypervolume_history` only returns a figure (no values to test)
# and wants a reference point in raw units, so the history is computed here on normalised values.
from optuna._hypervolume import compute_hypervolume

from core.agreement_record import summary as agreement_summary
from core.fidelity_record import brief as fidelity_brief
from core.fidelity_record import summary as fidelity_summary
from core.metrics import METRIC_DIRECTIONS, METRICS, get_metric, names
from core.objectives import Objective
from reports.ablation import AblationInfo, ablation_infos
from reports.designs import DesignTableInfo, ParallelInfo, design_table, parallel_info
from reports.importance import ImportanceSection, importance_section
from reports.pareto import knee, losses, nondominated, pareto_numbers
from reports.proxy import is_inherit, proxy_summary
from reports.run_data import METRIC_LABELS, RunData
from reports.image_latency import ImageLatencyInfo, image_latency_info
from reports.rungs import RungsInfo, rungs_info
from search_spaces.blocks import part_of
from search_spaces.config import ArchConfig

TABLE_METRICS = names()  # every registered metric; the page shows those the run measured
QUALITY_SHOWN = names("quality")  # the proxy signals a trial records (those the run has are noted)
HV_REFERENCE = 1.1  # reference point per normalised objective (the worst value seen maps to 1.0)


# ---------------------------------------------------------------------------------------------- header
@dataclass(frozen=True)
class HeaderInfo:
    """Provenance shown at the top of the page."""

    name: str  # run name
    command: str  # the command that produced the run
    space: str  # search-space name
    objectives: list[str]  # e.g. ["FID ↓", "latency (ms) ↓"]
    sampler: str  # Optuna sampler
    seed: Any  # search seed
    n_planned: Any  # requested trials
    n_complete: int  # COMPLETE trials
    n_failed: int  # FAIL trials
    n_other: dict[str, int]  # other states (RUNNING, STALE) with counts
    device: str  # latency device
    lut: str  # LUT fingerprint
    latency_estimate: bool  # True for roofline profiles: the latencies are estimates, not measurements
    latency_calibrated: bool | None  # measured LUTs: end-to-end calibration applied (None: not recorded)
    image_size: Any  # image side the latencies are for
    feature_source: str  # evaluator feature space: "domain" or "standard"
    versions: dict[str, str]  # package versions
    created: str  # when the run was created
    notes: list[str]  # warnings about the data (e.g. the study could not be loaded)


def _command(command: Any) -> str:
    return shlex.join(map(str, command)) if isinstance(command, list) else str(command)


def _text(value: Any) -> str:
    """A manifest value for display: dicts as `k=v, ...`, missing as "not recorded"."""
    if value is None or value == "":
        return "not recorded"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def header_info(data: RunData) -> HeaderInfo:
    m = data.manifest
    latency = m.get("latency") or {}
    evaluator = m.get("evaluator") or {}
    provenance = m.get("provenance") or {}
    states = data.trials["state"].value_counts().to_dict() if len(data.trials) else {}
    other = {str(s): int(n) for s, n in states.items() if s not in ("COMPLETE", "FAIL")}
    notes = [f"Optuna study unavailable: {data.study_error}; Pareto set computed from the trials table, "
             "importances omitted."] if data.study is None else []
    notes += [f"Proxy fidelity of {o.label} at this budget: {fidelity_summary(m.get('fidelity'), o.name)}."
              for o in data.objectives if get_metric(o.name).needs_training]
    notes += [f"Against published full-scale results ({o.label}): "
              f"{agreement_summary(m.get('published_agreement'), o.name)}."
              for o in data.objectives if get_metric(o.name).needs_training]
    objective_names = {o.name for o in data.objectives}
    shown = [n for n in QUALITY_SHOWN if n not in objective_names and n in data.trials.columns
             and data.trials[n].notna().any()]
    if shown and any(get_metric(o.name).needs_training for o in data.objectives):
        notes.append("Shown, not optimised (rank agreement with the reference at this budget): " + "; ".join(
            f"{METRIC_LABELS[n]} {fidelity_brief(m.get('fidelity'), n)}" for n in shown) + ".")
    if m.get("samples") is False:
        notes.append("Trials drew no samples (no objective is scored on them): FID, KID, CLIP score and CMMD were "
                     "not measured; `nas search --samples` scores them.")
    notes += [f"Proxies: {proxy_summary(m.get('proxy'), data.trials)}."] if is_inherit(m.get("proxy")) else []
    return HeaderInfo(
        name=str(m.get("name", data.run.path.name)), command=_command(m.get("command", "")),
        space=_text(m.get("space")), objectives=[o.label for o in data.objectives], sampler=_text(m.get("sampler")),
        seed=m.get("seed"), n_planned=m.get("n_trials"), n_complete=data.count("COMPLETE"),
        n_failed=data.count("FAIL"), n_other=other, device=_text(latency.get("device")),
        lut=_text(latency.get("fingerprint")), latency_estimate=bool(latency.get("estimate", False)),
        latency_calibrated=latency.get("calibrated"),
        image_size=latency.get("image_size"), feature_source=_text(evaluator.get("source")),
        versions={str(k): str(v) for k, v in (provenance.get("versions") or {}).items()},
        created=str(provenance.get("created", "")), notes=notes)


# ---------------------------------------------------------------------------------------------- Pareto table
def design_summary(config_json: str) -> str:
    """Key design choices in one line: channels, ResNets, transformer depths/kinds, global options."""
    try:
        c = ArchConfig.from_json(config_json)
    except ValueError:
        return "(unreadable config)"
    kinds = {"none": "-", "cross": "CA", "self": "SA", "self_cross": "SA+CA"}
    levels = " | ".join(f"{lv.channels}c {lv.down_res}/{lv.up_res}r "
                        f"{lv.transformer_depth}x{kinds[lv.attention]}{' sep' if lv.separable else ''}"
                        for lv in c.levels)
    mid = f"mid {c.mid.num_res}r {c.mid.transformer_depth}x{kinds[c.mid.attention]}" if c.mid.num_res else "no mid"
    opts = [c.attn_activation, "sharedKV" if c.shared_kv else "", c.ff_activation, f"ff{c.ff_mult}",
            f"{c.num_heads} heads" if c.num_heads else f"dim{c.head_dim}"]
    return f"{levels} ; {mid} ; {' '.join(o for o in opts if o)}"


@dataclass(frozen=True)
class ParetoRow:
    number: int  # trial number
    arch_id: str  # architecture id
    preset: str  # preset name for warm-start trials, else ""
    design: str  # key design choices (design_summary)
    metrics: dict[str, float | None]  # TABLE_METRICS (None when not measured)
    knee: bool  # whether this is the knee point


@dataclass(frozen=True)
class ParetoInfo:
    """The Pareto set, sorted by the first objective."""

    rows: list[ParetoRow]
    knee_number: int  # trial number of the knee
    source: str  # "optuna study.best_trials" or "trials table"
    spread: str  # what the front's quality differences are qualified by ("" for cost-only objectives)
    knee_definition: str = ("closest to the ideal point after min-max normalising each objective over the "
                            "Pareto set (Euclidean distance)")


def _value(row: pd.Series, col: str) -> float | None:
    v = row.get(col)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def pareto_info(data: RunData) -> ParetoInfo:
    numbers = pareto_numbers(data)
    front = data.complete.loc[numbers]
    knee_number = knee(front, data.objectives)
    first = data.objectives[0]
    front = front.sort_values(first.name, ascending=not first.maximize)
    rows = [ParetoRow(int(n), str(r["arch_id"]), str(r.get("preset") or ""), design_summary(str(r["config_json"])),
                      {m: _value(r, m) for m in TABLE_METRICS}, int(n) == knee_number) for n, r in front.iterrows()]
    source = "optuna study.best_trials" if data.study is not None else "trials table"
    quality = [METRIC_LABELS[o.name] for o in data.objectives if METRICS[o.name].needs_training]
    spread = (f"Each trial was trained once (seed {data.manifest.get('seed', 'not recorded')}): no seed spread was "
              f"measured, so differences in {', '.join(quality)} between these designs are not qualified by seed "
              "spread (single seed); `nas ablate --seeds K` measures it for chosen designs.") if quality else ""
    return ParetoInfo(rows, knee_number, source, spread)


# ---------------------------------------------------------------------------------------------- fronts
@dataclass(frozen=True)
class FrontPoint:
    number: int  # trial number
    values: tuple[float, ...]  # one per axis
    pareto: bool  # on the front of these axes (projection front for 2-D)
    preset: str  # preset label ("" for searched designs)
    hover: str  # design and metrics, HTML-escaped by the drawer


@dataclass(frozen=True)
class FrontInfo:
    """A 2-D or 3-D scatter of complete trials with its front."""

    axes: tuple[str, ...]  # metric columns
    labels: tuple[str, ...]  # axis titles
    points: list[FrontPoint]
    line: list[int]  # Pareto trial numbers in drawing order (2-D: sorted by x)


def _hover(row: pd.Series) -> str:
    metrics = ", ".join(f"{METRIC_LABELS[m]} {row[m]:.4g}" for m in TABLE_METRICS if _value(row, m) is not None)
    preset = f" (preset {row['preset']})" if row.get("preset") else ""
    return f"trial {int(row['number'])} · {row['arch_id']}{preset}\n{metrics}\n{design_summary(str(row['config_json']))}"


def front_info(data: RunData, axes: tuple[str, ...]) -> FrontInfo | None:
    """Front over `axes` (None when a metric has no values); directions from METRIC_DIRECTIONS."""
    frame = data.complete.dropna(subset=[a for a in axes if a in data.complete.columns])
    if any(a not in frame.columns for a in axes) or frame.empty:
        return None
    objs = [Objective(a, METRIC_DIRECTIONS[a]) for a in axes]
    mask = nondominated(losses(frame, objs))
    points = [FrontPoint(int(n), tuple(float(r[a]) for a in axes), bool(p), str(r.get("preset") or ""), _hover(r))
              for (n, r), p in zip(frame.iterrows(), mask)]
    line = sorted((p for p in points if p.pareto), key=lambda p: p.values)
    return FrontInfo(axes, tuple(METRIC_LABELS[a] for a in axes), points, [p.number for p in line])


def fronts(data: RunData) -> tuple[list[FrontInfo], FrontInfo | None, list[str]]:
    """The 2-D fronts (FID vs latency, CLIP vs latency), the 3-D front when there are 3 objectives, notes."""
    two_d, notes = [], []
    for quality in ("fid", "clip_score"):
        info = front_info(data, ("latency_ms", quality))
        if info is None:
            notes.append(f"No {METRIC_LABELS[quality]} vs latency front: no complete trial has both values.")
        else:
            two_d.append(info)
    names = tuple(o.name for o in data.objectives)
    if len(names) == 2 and set(names) not in [set(f.axes) for f in two_d]:
        two_d.insert(0, front_info(data, names))  # the run's own 2-objective front (e.g. latency vs params)
    three = front_info(data, names) if len(names) == 3 else None
    return two_d, three, notes


# ---------------------------------------------------------------------------------------------- hypervolume
@dataclass(frozen=True)
class HypervolumeInfo:
    """Hypervolume of the front found so far, after each complete trial (in trial-number order)."""

    numbers: list[int]
    values: list[float]
    normalisation: str  # how objectives were scaled


def hypervolume_info(data: RunData) -> HypervolumeInfo:
    frame = data.complete.sort_index()
    loss = losses(frame, data.objectives)
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    norm = (loss - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(loss.shape[1], HV_REFERENCE)
    values = [float(compute_hypervolume(norm[: k + 1], ref)) for k in range(len(norm))]
    text = (f"each objective min-max normalised over all complete trials (0 = best, 1 = worst), maximised ones "
            f"negated first; reference point {HV_REFERENCE} per objective; Optuna's WFG hypervolume")
    return HypervolumeInfo([int(n) for n in frame.index], values, text)


# ---------------------------------------------------------------------------------------------- per architecture
@dataclass(frozen=True)
class ArchitectureInfo:
    number: int
    arch_id: str
    preset: str
    knee: bool
    metrics: dict[str, float | None]
    grid_png: str  # base64 PNG of the sample grid ("" when missing)
    grid_note: str  # why the grid is missing
    captions: list[str]  # captions of the samples (from the trial record), unescaped
    blocks: list[tuple[str, str, float]]  # (module path, part, ms) in forward order
    latency_note: str  # why the breakdown is missing


def architecture_infos(data: RunData, pareto: ParetoInfo) -> list[ArchitectureInfo]:
    out = []
    for row in pareto.rows:
        grid = data.grid_path(row.number)
        png = base64.b64encode(grid.read_bytes()).decode() if grid else ""
        metrics = data.trial_record(row.number)
        n_levels = len(json.loads(data.complete.loc[row.number, "config_json"])["levels"])
        blocks = []
        for b in metrics.get("latency_blocks") or []:
            if isinstance(b, dict) and isinstance(b.get("ms"), (int, float)):
                path = str(b.get("path", "?"))
                blocks.append((path, part_of(path, n_levels), float(b["ms"])))
        captions = [str(c) for c in metrics.get("sample_captions") or []]
        out.append(ArchitectureInfo(
            row.number, row.arch_id, row.preset, row.knee, row.metrics, png,
            "" if grid else "no sample grid recorded for this trial", captions, blocks,
            "" if blocks else "no per-block latency breakdown recorded for this trial"))
    return out


# ---------------------------------------------------------------------------------------------- all sections
@dataclass
class ReportInfo:
    header: HeaderInfo
    pareto: ParetoInfo
    fronts_2d: list[FrontInfo]
    front_3d: FrontInfo | None
    hypervolume: HypervolumeInfo
    parallel: ParallelInfo
    importances: ImportanceSection
    designs: DesignTableInfo
    architectures: list[ArchitectureInfo]
    ablations: list[AblationInfo]
    notes: list[str] = field(default_factory=list)  # section-level notes (missing fronts, bad ablation files)
    rungs: RungsInfo | None = None  # the trial scheduler's rungs (runs with --scheduler only)
    image_latency: ImageLatencyInfo | None = None  # per-image breakdown of the front (runs that predicted it)


def compute_report(data: RunData) -> ReportInfo:
    """Every section's info, computed from the loaded run."""
    pareto = pareto_info(data)
    two_d, three_d, notes = fronts(data)
    ablations, ablation_notes = ablation_infos(data.run.ablation_dir)
    return ReportInfo(header_info(data), pareto, two_d, three_d, hypervolume_info(data), parallel_info(data),
                      importance_section(data.study, data.objectives, data.study_error),
                      design_table(data, pareto.rows), architecture_infos(data, pareto), ablations,
                      notes + ablation_notes, rungs_info(data),
                      image_latency_info(data, [r.number for r in pareto.rows]))
