"""Proxy-fidelity study: does the short proxy budget rank a panel of architectures the way a reference does?

The reference is the same proxy trained longer (more steps) and/or a larger proxy (larger image side,
smaller width divisor). Every trial is cached by (architecture, seed, budget) in the run folder, and rows
recorded elsewhere (a committed CSV of earlier trials with the same evaluator) are imported instead of
retrained, so a study resumes from the repository's data as well as from its own folder.

Files under `<run>/fidelity/`: `trials.csv` (the raw data: one row per trial), `architectures.csv` (seed
mean, sd and count per architecture and budget), `correlations.csv` / `correlations.md` (per metric: Kendall
tau and Spearman rho with bootstrap intervals, the seed ceilings, the seed spread, sign agreement along the
paper path, seconds per trial) and `fidelity.json` (all of it with provenance).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from core.console import warn
from core.errors import UserError
from core.fidelity_record import ENTRY_KEYS, record
from core.io import atomic_path, write_json, write_text
from core.provenance import provenance
from core.run_folder import RunFolder
from evaluators.training import Budget
from nas.ablation.fidelity_stats import BUDGETS, correlations, seed_means
from nas.ablation.study import open_run
from nas.executor import Job, finished_row, run_jobs
from nas.trial_runner import QUALITY_KEYS, TrialSettings, prepare
from search_spaces.config import ArchConfig

KIND = "fidelity"
TAU_GOAL = 0.8  # the fidelity issue's goal for the default ranking metric
CEILING_SHARE_GOAL = 0.9  # ... and no lower than this share of the seed ceiling
IMPORT_KEYS = ("arch_id", "budget_hash", "seed", "evaluator")  # what makes an imported row the same trial


@dataclass
class FidelityResult:
    """The study's per-metric table and where it was written."""

    run_dir: Path
    correlations: list[dict[str, Any]]  # one per metric (see fidelity_stats.correlations)
    architectures: list[dict[str, Any]]  # seed means per architecture and budget
    missing: int  # trials of the plan with no result (not trained with --no-train, or failed)
    files: list[Path]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(run_dir=str(self.run_dir), correlations=self.correlations, architectures=self.architectures,
                    missing=self.missing, files=[str(f) for f in self.files], provenance=self.provenance)


def check_reference(short: Budget, reference: Budget) -> None:
    """The reference must be at least as large as the short budget in steps, image side and width, and larger
    in one of them (UserError otherwise)."""
    if short.seconds is not None or reference.seconds is not None:
        raise UserError("fidelity budgets are counted in steps; wall-clock budgets rank by speed")
    not_smaller = (reference.steps >= short.steps and reference.image_size >= short.image_size
                   and reference.width_divisor <= short.width_divisor)
    if not not_smaller or reference.scale == short.scale and reference.steps == short.steps:
        raise UserError(f"the reference ({reference.steps} steps, {reference.image_size} px, width / "
                        f"{reference.width_divisor}) must be larger than the short budget ({short.steps} steps, "
                        f"{short.image_size} px, width / {short.width_divisor}) and smaller in nothing")


def read_imports(paths: list[Path]) -> dict[tuple, dict[str, Any]]:
    """Trial rows recorded elsewhere (CSV with at least IMPORT_KEYS, the metrics and `failed`), by key."""
    rows: dict[tuple, dict[str, Any]] = {}
    for path in paths:
        try:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                missing = [k for k in IMPORT_KEYS if k not in (reader.fieldnames or [])]
                if missing:
                    raise UserError(f"{path}: not a fidelity trials CSV (no column {missing[0]!r})")
                for row in reader:
                    rows[(row["arch_id"], row["budget_hash"], int(row["seed"]), row["evaluator"])] = row | {
                        "imported_from": str(path)}
        except OSError as err:
            raise UserError(f"cannot read {path}: {err.strerror or err}") from None
        except (ValueError, csv.Error) as err:
            raise UserError(f"{path}: unreadable fidelity trials CSV ({err})") from None
    return rows


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _json_value(value: Any) -> Any:
    """A record value as strict JSON has it: an undefined statistic (NaN) is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _imported_row(row: dict[str, Any], job: Job, settings: TrialSettings) -> dict[str, Any]:
    failed = str(row.get("failed", "")).lower() in ("true", "1")
    out = dict(number=job.number, state="FAIL" if failed else "COMPLETE", arch_id=job.config.arch_id,
               preset=job.label, seed=job.seed, cache_key=settings.cache_key(job.config.arch_id, job.seed),
               cached=True, imported_from=row["imported_from"], failure_reason=row.get("failure_reason") or None)
    out |= {k: _float(v) for k, v in row.items() if k in QUALITY_KEYS or k.startswith("seconds_")}
    return out


def import_trials(run: RunFolder, jobs: list[Job], settings: TrialSettings, evaluator: dict[str, Any],
                  imported: dict[tuple, dict[str, Any]]) -> int:
    """Write the imported rows of `jobs` (same architecture, budget, seed and evaluator) that the run folder has
    no finished row for; returns how many were skipped as scored by other weights of the same evaluator recipe."""
    budget_hash, weights = settings.budget_hash, evaluator.get("weights_sha256", "")
    other_weights = 0
    for job in jobs:
        key = (job.config.arch_id, budget_hash, job.seed, evaluator.get("model_id"))
        if key not in imported or finished_row(run, job, settings) is not None:
            continue
        if not weights.startswith(imported[key].get("evaluator_sha256") or ""):
            other_weights += 1  # same recipe, other weights (retrained elsewhere): not the same scores
            continue
        run.write_trial_record(_imported_row(imported[key], job, settings))
    return other_weights


def budget_rows(run: RunFolder, jobs: list[Job], settings: TrialSettings, *, train: bool, address: str | None = None,
                workers: int = 1, cpus_per_trial: float = 2.0, gpus_per_trial: float = 0.0,
                progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """One row per job: trained (or from the run folder) with `train`, else what the folder has (MISSING rows
    for the rest)."""
    if train:
        return run_jobs(jobs, settings, address=address, workers=workers, cpus_per_trial=cpus_per_trial,
                        gpus_per_trial=gpus_per_trial, progress=progress)
    return [finished_row(run, job, job.settings or settings) or dict(number=job.number, state="MISSING")
            for job in jobs]


@dataclass(frozen=True)
class StudyPlan:
    """What a fidelity study trains: the panel and the two budgets with their seeds."""

    panel_name: str  # "paper", "random" or the panel file
    panel: list[tuple[str, ArchConfig]]  # (label, config), in panel order
    short: TrialSettings
    reference: TrialSettings
    short_seeds: int = 2
    reference_seeds: int = 1
    target: str = "fid"  # the reference's quality metric every short signal is also scored against

    def budgets(self) -> list[tuple[str, TrialSettings, int]]:
        return [("short", self.short, self.short_seeds), ("reference", self.reference, self.reference_seeds)]

    def jobs(self) -> dict[str, list[Job]]:
        out, number = {}, 0
        for name, _, seeds in self.budgets():
            out[name] = []
            for label, config in self.panel:
                for seed in range(seeds):
                    out[name].append(Job(number=number, label=label, config=config, seed=seed))
                    number += 1
        return out


def run_fidelity(plan: StudyPlan, *, imports: list[Path] = (), train: bool = True, confidence: float = 0.95,
                 record_shipped: bool = False, command: list[str] | None = None, address: str | None = None,
                 workers: int = 1,
                 cpus_per_trial: float = 2.0, gpus_per_trial: float = 0.0,
                 progress: Callable[[int, int], None] | None = None) -> FidelityResult:
    """Run (or resume, or only analyse with `train=False`) a fidelity study and write its tables. A study
    with every planned trial complete is put on record for its short budget and evaluator (the user's record;
    also the package's shipped one with `record_shipped`), so searches at that budget can state it.

    Raises:
        UserError: seeds out of range, a reference not larger than the short budget, unreadable imports.
    """
    if plan.short_seeds < 1 or plan.reference_seeds < 1:
        raise UserError("--short-seeds and --reference-seeds must be positive")
    check_reference(plan.short.budget, plan.reference.budget)
    if plan.target not in QUALITY_KEYS:
        raise UserError(f"--target must be a quality metric ({', '.join(QUALITY_KEYS)}), got {plan.target!r}")
    imported = read_imports(list(imports))
    manifest = dict(command=command or [], panel=plan.panel_name, archs=[lbl for lbl, _ in plan.panel],
                    seeds=dict(short=plan.short_seeds, reference=plan.reference_seeds),
                    budgets=dict(short=plan.short.budget.to_dict(), reference=plan.reference.budget.to_dict()),
                    proxy=dict(short=plan.short.proxy.to_dict(), reference=plan.reference.proxy.to_dict()),
                    metrics=list(QUALITY_KEYS), target=plan.target, device=plan.short.device,
                    provenance=provenance(device=plan.short.device))
    run, _ = open_run(Path(plan.short.run_dir), KIND, manifest, same=("budgets",))
    jobs = plan.jobs()
    total = sum(len(j) for j in jobs.values())
    evaluators: dict[str, dict] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    other_weights = 0
    budgets = {name: settings for name, settings, _ in plan.budgets()}
    for name, settings in budgets.items():
        evaluators[name] = prepare(settings, []).get("evaluator", {})
        other_weights += import_trials(run, jobs[name], settings, evaluators[name], imported)
    # Both budgets in one call: one Ray session for the study (each start costs seconds), each job with its
    # budget's settings.
    every = [dataclasses.replace(job, settings=budgets[name]) for name in budgets for job in jobs[name]]
    flat = budget_rows(run, every, budgets["short"], train=train, address=address, workers=workers,
                       cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, progress=progress)
    start = 0
    for name in budgets:
        rows[name], start = flat[start:start + len(jobs[name])], start + len(jobs[name])
    if progress:
        progress(total, total)
    if other_weights:
        warn(f"{other_weights} imported trial(s) were scored by other weights of the same domain-CLIP recipe "
             "(the evaluator was retrained on another machine); they are not used")
    result = write_study(run.path, plan, jobs, rows, evaluators, confidence)
    if result.missing == 0:
        entry = dict(panel=plan.panel_name, short=describe(plan.short), reference=describe(plan.reference),
                     n_archs=len(plan.panel), seeds=dict(short=plan.short_seeds, reference=plan.reference_seeds),
                     created=result.provenance["created"], command=" ".join(command or []),
                     metrics={r["metric"]: {k: _json_value(r.get(k)) for k in ENTRY_KEYS}
                              for r in result.correlations})
        model_id = evaluators["short"].get("model_id")
        record(plan.short.budget_hash, model_id, entry | {"run": str(run.path)})
        if record_shipped:  # the package's record: no path of this machine
            record(plan.short.budget_hash, model_id, entry, shipped=True)
    return result


def write_study(run_path: Path, plan: StudyPlan, jobs: dict[str, list[Job]], rows: dict[str, list[dict]],
                evaluators: dict[str, dict], confidence: float) -> FidelityResult:
    """Compute the study's tables from the trial rows and write them under `<run>/fidelity/`."""
    long_rows = []
    for name in BUDGETS:
        for job, row in zip(jobs[name], rows[name]):
            long_rows.append(dict(label=job.label, arch_id=job.config.arch_id, budget=name, seed=job.seed,
                                  state=row.get("state"), cached=row.get("cached"),
                                  imported_from=row.get("imported_from"))
                             | {k: v for k, v in row.items() if k in QUALITY_KEYS or k.startswith("seconds_")})
    trials = pd.DataFrame(long_rows)
    for metric in QUALITY_KEYS:
        if metric not in trials.columns:
            trials[metric] = None
    metrics = QUALITY_KEYS
    order = [c.arch_id for _, c in plan.panel[:-1]] if plan.panel_name == "paper" else None
    corr = correlations(trials, metrics, order, confidence, target=plan.target)
    archs = seed_means(trials, metrics)
    missing = int((trials["state"] != "COMPLETE").sum())
    prov = provenance(seeds=dict(short=plan.short_seeds, reference=plan.reference_seeds), device=plan.short.device,
                      evaluator=evaluators, budgets=dict(short=plan.short.budget.to_dict(),
                                                         reference=plan.reference.budget.to_dict()),
                      confidence=confidence, panel=plan.panel_name)
    out = run_path / "fidelity"
    files = []
    for stem, frame in (("trials", trials), ("architectures", archs), ("correlations", corr)):
        with atomic_path(out / f"{stem}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        files.append(out / f"{stem}.csv")
    files.append(write_text(out / "correlations.md", markdown(corr, plan, trials, prov)))
    result = FidelityResult(run_path, corr.to_dict("records"), archs.to_dict("records"), missing, files, prov)
    files.append(write_json(out / "fidelity.json", result.to_dict()))
    return result


def _ci(value: float | None, low: float | None, high: float | None) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _num(value: Any, fmt: str = ".3g") -> str:
    return "-" if pd.isna(value) else format(value, fmt)


def describe(settings: TrialSettings) -> str:
    b = settings.budget
    anchored = f", inherit from {settings.proxy.teacher}" if settings.proxy.inherit else ""
    return f"{b.steps} steps, {b.image_size} px, width / {b.width_divisor}{anchored}"


def markdown(corr: pd.DataFrame, plan: StudyPlan, trials: pd.DataFrame, prov: dict[str, Any]) -> str:
    """The study's table as Markdown, with what it was measured on and how much of the plan is done."""
    ok = trials[trials["state"] == "COMPLETE"].groupby("budget")["arch_id"].count().to_dict()
    lines = [
        f"# Proxy fidelity: {plan.panel_name} panel, short ({describe(plan.short)}) vs reference "
        f"({describe(plan.reference)})", "",
        f"- {len(plan.panel)} architectures: {', '.join(lbl for lbl, _ in plan.panel)}",
        f"- seeds: {plan.short_seeds} short, {plan.reference_seeds} reference; complete trials: "
        f"{ok.get('short', 0)} of {len(plan.panel) * plan.short_seeds} short, {ok.get('reference', 0)} of "
        f"{len(plan.panel) * plan.reference_seeds} reference",
        f"- device {plan.short.device}; evaluator {prov.get('evaluator', {}).get('short', {}).get('model_id')}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}; created {prov['created']}",
        f"- intervals: {int(prov['confidence'] * 100)}% percentile bootstrap over architectures; seed ceiling = "
        "the same agreement between seeds 0 and 1 of one budget; goal for the ranking metric: tau >= "
        f"{TAU_GOAL} and >= {CEILING_SHARE_GOAL} x the ceiling",
        f"- last column: Kendall tau of the short signal against the reference's {plan.target} (both oriented so "
        "that a positive tau calls the same architectures better): does the cheap signal predict the quality the "
        "reference measures?",
        "", "| metric | n | Kendall tau [95% CI] | Spearman rho [95% CI] | seed ceiling tau (short) | "
            "median seed sd (short) | same sign along the path | s / trial short | s / trial reference | "
            f"tau vs reference {plan.target} [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in corr.to_dict("records"):
        sign = f"{int(r['sign_same'])} of {int(r['sign_compared'])}" if pd.notna(r.get("sign_compared")) \
            and r.get("sign_compared") else "-"
        lines.append(
            f"| {r['metric']} | {r['n']} | {_ci(r['tau'], r['tau_low'], r['tau_high'])} | "
            f"{_ci(r['rho'], r['rho_low'], r['rho_high'])} | "
            f"{_ci(r['ceiling_short_tau'], r['ceiling_short_tau_low'], r['ceiling_short_tau_high'])} | "
            f"{_num(r['seed_sd_short'])} | {sign} | {_num(r['seconds_short'], '.0f')} | "
            f"{_num(r['seconds_reference'], '.0f')} | "
            f"{_ci(r.get('target_tau'), r.get('target_tau_low'), r.get('target_tau_high'))} |")
    return "\n".join(lines) + "\n"


def replace_budget(settings: TrialSettings, **changes) -> TrialSettings:
    """`settings` with a changed budget (e.g. the reference's steps or scale)."""
    return dataclasses.replace(settings, budget=settings.budget.replace(**changes))
