"""Run an ablation study: evaluate the planned rows over seeds (Ray Tune trials), aggregate, write tables.

Files written under `<run>/ablation/` (atomically, rewritten on every run of the study):

    cumulative.csv / cumulative.md          the cumulative path (when the mode includes it)
    leave_one_out.csv / leave_one_out.md    the leave-one-out rows (when the mode includes it)
    ablation.json                           every row plus the provenance of the study

CSV columns: ROW_COLUMNS, then `latency_ms_<device>` per latency device, then `delta_prev_<metric>` and
`delta_base_<metric>` for every metric in DELTA_METRICS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from core.errors import UserError
from core.io import atomic_path, write_json, write_text
from core.provenance import provenance
from core.run_folder import RunFolder
from evaluators.cost import analytic_cost
from nas.ablation.plan import PlannedRow
from nas.ablation.stats import mean_ci
from nas.executor import Job, finished_row, run_jobs
from nas.trial_runner import QUALITY_KEYS, TrialSettings, prepare

# Every quality metric of the registry with its interval (so the search's default signal, val_loss_grid, CMMD and
# the teacher distance are in the table like FID), between the cost columns and the seed counts.
ROW_COLUMNS = ("step", "mode", "description", "arch_id", "params", "macs", "latency_ms",
               *(c for m in QUALITY_KEYS for c in (m, f"{m}_ci")), "n_seeds", "n_ok", "in_space", "failures")
DELTA_METRICS = ("params", "macs", "latency_ms") + QUALITY_KEYS
KIND = "ablation"
TABLE_FILES = {"cumulative": "cumulative", "leave-one-out": "leave_one_out"}


@dataclass(frozen=True)
class AblationSpec:
    """What an ablation study evaluates and how it reports."""

    space: str  # search space name (rows record whether the space contains their config)
    baseline: str  # preset the path starts from
    rows: tuple[PlannedRow, ...]  # the planned rows (see plan_rows)
    seeds: int = 2  # proxy-training seeds per row
    confidence: float = 0.95  # coverage of the intervals
    require_ci: bool = False  # fail unless intervals can be computed (seeds >= 2)
    latency_devices: tuple[str, ...] = ("iphone15pro",)  # latency_ms is the first; every one gets a column
    command: list[str] = field(default_factory=list)  # the command line, for the manifest


@dataclass
class AblationResult:
    """The rows of a finished study and where they were written."""

    run_dir: Path
    rows: list[dict[str, Any]]
    files: list[Path]
    provenance: dict[str, Any]
    ray_trials: int  # trials that ran this time (the rest were finished already)

    def to_dict(self) -> dict[str, Any]:
        return dict(run_dir=str(self.run_dir), rows=self.rows, files=[str(f) for f in self.files],
                    provenance=self.provenance, ray_trials=self.ray_trials)


def validate_spec(spec: AblationSpec) -> None:
    """Fail before anything is written on inputs a user can get wrong."""
    from search_spaces.space import get_space

    get_space(spec.space)
    if spec.seeds < 1:
        raise UserError(f"--seeds must be positive, got {spec.seeds}")
    if spec.require_ci and spec.seeds < 2:
        raise UserError(f"confidence intervals need at least 2 seeds, got --seeds {spec.seeds}")
    if not 0 < spec.confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {spec.confidence}")
    if not spec.latency_devices:
        raise UserError("--latency-devices names no device")
    from evaluators.latency import DEVICES

    for device in spec.latency_devices:
        DEVICES.get(device)


def open_run(path: Path, kind: str, manifest: dict[str, Any],
             same: tuple[str, ...] = ()) -> tuple[RunFolder, bool]:
    """Create the run folder of a study, or reopen one of the same kind (resume). Returns (run, resumed).

    Args:
        same: manifest keys a resumed run must keep (one run folder holds one study: its tables must not
            mix rows trained with different budgets).
    """
    run = RunFolder(path)
    if run.exists():
        old = run.manifest()
        if old.get("kind") != kind:
            raise UserError(f"{run.path} is a run folder of kind {old.get('kind', 'search')!r}, not {kind!r}")
        for key in same:
            if old.get(key) != manifest[key]:
                raise UserError(f"{run.path} was run with another {key} ({old.get(key)}); use a new --run-dir")
        run.write_manifest(old | {k: v for k, v in manifest.items() if k != "provenance"}
                           | {"resumed": provenance()["created"]})
        return run, True
    if run.path.exists() and any(run.path.iterdir()):
        raise UserError(f"{run.path} exists and is not an empty folder or a run folder")
    return RunFolder.create(path, {"kind": kind, "name": run.path.name, **manifest}), False


def unique_jobs(configs: list, seeds: int) -> list[Job]:
    """One job per distinct (architecture, seed), numbered in order of first appearance."""
    seen: dict[tuple[str, int], Job] = {}
    for label, config in configs:
        for seed in range(seeds):
            key = (config.arch_id, seed)
            if key not in seen:
                seen[key] = Job(number=len(seen), label=label, config=config, seed=seed)
    return list(seen.values())


def device_latencies(configs: list, devices: tuple[str, ...], settings: TrialSettings) -> dict[tuple[str, str], float]:
    """(arch id, device) -> predicted latency in ms, measuring missing LUT blocks first."""
    from evaluators.latency import get_predictor

    out = {}
    for device in devices:
        predictor = get_predictor(device, lut_dir=settings.lut_dir, image_size=settings.image_size,
                                  threads=settings.lut_threads)
        predictor.ensure(configs)
        for config in configs:
            out[(config.arch_id, device)] = predictor.predict(config).latency_ms
    return out


def _missing(value: Any) -> bool:
    return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False


def _delta(a: Any, b: Any) -> float | None:
    return None if _missing(a) or _missing(b) else a - b


def aggregate(spec: AblationSpec, trial_rows: dict[tuple[str, int], dict], latencies: dict) -> list[dict[str, Any]]:
    """The table rows: cost, per-device latency, seed means with intervals, and deltas."""
    from search_spaces.space import get_space

    space = get_space(spec.space)
    out: list[dict[str, Any]] = []
    for planned in spec.rows:
        config = planned.config
        trials = [trial_rows[(config.arch_id, s)] for s in range(spec.seeds)]
        ok = [t for t in trials if t.get("state") == "COMPLETE"]
        cost = analytic_cost(config)  # in the driver too: a trial whose worker died has no cost columns
        row: dict[str, Any] = dict(step=planned.step, mode=planned.mode, description=planned.description,
                                   arch_id=config.arch_id, params=cost.params, macs=cost.macs,
                                   n_seeds=spec.seeds, n_ok=len(ok),
                                   in_space=space.contains(config),
                                   failures="; ".join(sorted({t["failure_reason"] for t in trials
                                                              if t.get("failure_reason")})) or None)
        for device in spec.latency_devices:
            row[f"latency_ms_{device}"] = latencies[(config.arch_id, device)]
        row["latency_ms"] = row[f"latency_ms_{spec.latency_devices[0]}"]
        for metric in QUALITY_KEYS:
            row[metric], row[f"{metric}_ci"] = mean_ci([t.get(metric) for t in ok], spec.confidence)
        out.append(row)
    base = next((r for r in out if r["step"] == "baseline"), None)  # absent in a leave-one-out-only study
    for planned, row in zip(spec.rows, out):
        previous = out[planned.previous] if planned.previous is not None else None
        for metric in DELTA_METRICS:
            row[f"delta_prev_{metric}"] = _delta(row[metric], previous[metric]) if previous else None
            row[f"delta_base_{metric}"] = _delta(row[metric], base[metric]) if base else None
    return out


def columns(spec: AblationSpec) -> list[str]:
    """CSV column order."""
    return (list(ROW_COLUMNS) + [f"latency_ms_{d}" for d in spec.latency_devices]
            + [f"delta_{kind}_{m}" for kind in ("prev", "base") for m in DELTA_METRICS])


def _fmt(value: Any, ci: Any = None, digits: int = 3) -> str:
    if _missing(value):
        return "-"
    text = f"{value:.{digits}f}"
    return text if _missing(ci) else f"{text} ± {ci:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]], spec: AblationSpec, mode: str, prov: dict[str, Any]) -> str:
    """A paper-style table of one mode, with the provenance above it."""
    devices = " | ".join(f"{d} ms" for d in spec.latency_devices)
    delta = "Δ vs full path" if mode == "leave-one-out" else "Δ vs previous"
    lines = [
        f"# Ablation ({mode}) from `{spec.baseline}`", "",
        f"- seeds: {spec.seeds} (mean ± {spec.confidence:.0%} t-interval half-width; no interval with 1 seed)",
        f"- proxy budget: {prov['budget']}",
        f"- evaluator: {prov.get('evaluator')}",
        f"- latency devices: {', '.join(spec.latency_devices)} (image size {prov['image_size']}); "
        f"training device: {prov['device']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}; created {prov['created']}",
        "",
        f"| step | params (M) | GMACs | {devices} | FID | KID | CLIP score | val loss | grid loss | {delta}: FID | "
        f"{delta}: latency ms |",
        "|" + "---|" * (10 + len(spec.latency_devices)),
    ]
    for r in (r for r in rows if r["mode"] == mode):
        lat = " | ".join(_fmt(r[f"latency_ms_{d}"], digits=1) for d in spec.latency_devices)
        lines.append(
            f"| {r['step']} | {r['params'] / 1e6:.1f} | {r['macs'] / 1e9:.1f} | {lat} | "
            f"{_fmt(r['fid'], r['fid_ci'], 2)} | "
            f"{_fmt(r['kid'], r['kid_ci'], 4)} | {_fmt(r['clip_score'], r['clip_score_ci'])} | "
            f"{_fmt(r['val_loss'], r['val_loss_ci'], 4)} | {_fmt(r['val_loss_grid'], r['val_loss_grid_ci'], 4)} | "
            f"{_fmt(r['delta_prev_fid'], digits=2)} | "
            f"{_fmt(r['delta_prev_latency_ms'], digits=1)} |")
    return "\n".join(lines) + "\n"


def write_tables(run: RunFolder, spec: AblationSpec, rows: list[dict[str, Any]], prov: dict[str, Any]) -> list[Path]:
    """Write the CSV + Markdown table of each mode and ablation.json; returns the paths."""
    files = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        stem = run.ablation_dir / TABLE_FILES[mode]
        frame = pd.DataFrame([r for r in rows if r["mode"] == mode], columns=columns(spec))
        with atomic_path(stem.with_suffix(".csv")) as tmp:
            frame.to_csv(tmp, index=False)
        files += [stem.with_suffix(".csv"), write_text(stem.with_suffix(".md"), markdown_table(rows, spec, mode, prov))]
    files.append(write_json(run.ablation_dir / "ablation.json", dict(rows=rows, provenance=prov)))
    return files


def run_ablation(spec: AblationSpec, settings: TrialSettings, *, address: str | None = None, workers: int = 1,
                 cpus_per_trial: float = 2.0, gpus_per_trial: float = 0.0,
                 progress: Callable[[int, int], None] | None = None) -> AblationResult:
    """Evaluate every planned row over `spec.seeds` seeds as Ray Tune trials and write the tables.

    Rows already finished in the run folder are not run again; the quality cache makes a repeated
    (architecture, seed, budget) free, so rows shared by both modes are trained once.

    Args:
        spec: the planned rows and reporting options (validated here).
        settings: how trials are evaluated; `settings.run_dir` is the run folder (created or resumed) and
            `settings.latency_device` must be the first latency device.
        address, workers, cpus_per_trial, gpus_per_trial: Ray execution (see `nas.executor.run_jobs`).
        progress: called (done, total) as trials finish.
    """
    validate_spec(spec)
    if settings.latency_device != spec.latency_devices[0]:
        raise UserError("settings.latency_device must be the first of the study's latency devices")
    configs = list({r.config.arch_id: r.config for r in spec.rows}.values())
    manifest = dict(command=spec.command, space=spec.space, baseline=spec.baseline, seeds=spec.seeds,
                    confidence=spec.confidence, steps=[[r.mode, r.step] for r in spec.rows],
                    budget=settings.budget.to_dict(), proxy=settings.proxy.to_dict(),
                    latency_devices=list(spec.latency_devices),
                    image_size=settings.image_size, metrics=list(settings.metrics), device=settings.device,
                    provenance=provenance(seeds=spec.seeds, device=settings.device))
    run, _ = open_run(Path(settings.run_dir), KIND, manifest, same=("budget",))
    info = prepare(settings, configs)
    latencies = device_latencies(configs, spec.latency_devices, settings)
    jobs = unique_jobs([(r.step, r.config) for r in spec.rows], spec.seeds)
    to_run = sum(finished_row(run, j, settings) is None for j in jobs)
    results = run_jobs(jobs, settings, address=address, workers=workers, cpus_per_trial=cpus_per_trial,
                       gpus_per_trial=gpus_per_trial, progress=progress)
    run.write_trials([{k: v for k, v in r.items() if k not in ("traceback", "latency_blocks")} for r in results])
    trial_rows = {(j.config.arch_id, j.seed): r for j, r in zip(jobs, results)}
    rows = aggregate(spec, trial_rows, latencies)
    prov = provenance(seeds=list(range(spec.seeds)), device=settings.device, budget=settings.budget.to_dict(),
                      evaluator=info.get("evaluator"), latency=info.get("latency"), proxy=info.get("proxy"),
                      image_size=settings.image_size,
                      latency_devices=list(spec.latency_devices), baseline=spec.baseline,
                      confidence=spec.confidence)
    files = write_tables(run, spec, rows, prov)
    return AblationResult(run_dir=run.path, rows=rows, files=files, provenance=prov, ray_trials=to_run)
