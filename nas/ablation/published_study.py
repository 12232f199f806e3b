"""`nas fidelity --panel published`: does the short proxy call published full-scale outcomes as the papers do?

Trains (or imports, or with `train=False` only reads) every architecture of the published panel at the short
budget for `seeds` seeds, exactly as the fidelity study trains its short budget (same trial code, same run
folder cache, same `--import` of committed rows), then sets the proxy's call on each row (by
`published_calls.NEUTRAL_RULE`) beside the paper's.

Files under `<run>/published/`: `trials.csv` (one row per trial), `calls.csv` (one row per published outcome:
the paper's numbers and call, per signal the proxy's difference, spread and call), `published.md` (the table
with the rule and the agreement counts) and `published.json` (all of it with provenance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from core import agreement_record
from core.console import warn
from core.errors import UserError
from core.io import atomic_path, write_json, write_text
from core.provenance import provenance
from evaluators.training.regimes import regime_name
from nas.ablation.fidelity import KIND, budget_rows, describe, import_trials, read_imports
from nas.ablation.published import PublishedPanel
from nas.ablation.published_calls import NEUTRAL_RULE, agreement, call_table, order_taus
from nas.ablation.study import open_run
from nas.executor import Job
from nas.trial_runner import QUALITY_KEYS, TrialSettings, prepare

EXTRA_SIGNALS = ("fid", "clip_score")  # also called where the trials drew samples


@dataclass
class PublishedResult:
    """The published panel's calls, agreement counts and where they were written."""

    run_dir: Path
    signals: list[str]  # the chosen signal first, then the sample metrics the trials have
    calls: list[dict[str, Any]]  # one per published row (see published_calls.call_table)
    agreement: list[dict[str, Any]]  # one per signal (see published_calls.agreement)
    orders: list[dict[str, Any]]  # Kendall tau per published order and signal
    missing: int  # planned trials with no result
    files: list[Path]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(run_dir=str(self.run_dir), signals=self.signals, rule=NEUTRAL_RULE, calls=self.calls,
                    agreement=self.agreement, orders=self.orders, missing=self.missing,
                    files=[str(f) for f in self.files], provenance=self.provenance)


def published_jobs(panel: PublishedPanel, seeds: int) -> list[Job]:
    """One job per (architecture, seed), architectures in panel order."""
    return [Job(number=i * seeds + seed, label=label, config=config, seed=seed)
            for i, (label, config) in enumerate(panel.architectures()) for seed in range(seeds)]


def _trials(jobs: list[Job], rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = [dict(label=job.label, arch_id=job.config.arch_id, budget="short", seed=job.seed, state=row.get("state"),
                cached=row.get("cached"), imported_from=row.get("imported_from"))
           | {k: v for k, v in row.items() if k in QUALITY_KEYS or k.startswith("seconds_")}
           for job, row in zip(jobs, rows)]
    trials = pd.DataFrame(out)
    for metric in QUALITY_KEYS:
        if metric not in trials.columns:
            trials[metric] = None
    return trials


def run_published(panel: PublishedPanel, settings: TrialSettings, *, seeds: int = 2, signal: str = "val_loss_grid",
                  imports: list[Path] = (), train: bool = True, command: list[str] | None = None,
                  address: str | None = None, workers: int = 1, cpus_per_trial: float = 2.0,
                  gpus_per_trial: float = 0.0, progress: Callable[[int, int], None] | None = None,
                  record_shipped: bool = False) -> PublishedResult:
    """Train (or resume, import, or only read with `train=False`) the published panel and write its calls; the
    agreement counts go on the user's agreement record (and with `record_shipped` on the package's), keyed by the
    budget, where every search at that budget finds them (`core.agreement_record`).

    Raises:
        UserError: fewer than 2 seeds, a signal that is no quality metric, a wall-clock budget, unreadable imports.
    """
    if seeds < 2:
        raise UserError("--short-seeds must be at least 2 for the published panel (its neutral band is the seed range)")
    if signal not in QUALITY_KEYS:
        raise UserError(f"--signal must be a quality metric ({', '.join(QUALITY_KEYS)}), got {signal!r}")
    if settings.budget.seconds is not None:
        raise UserError("fidelity budgets are counted in steps; wall-clock budgets rank by speed")
    imported = read_imports(list(imports))
    archs = panel.architectures()
    manifest = dict(command=command or [], panel="published", published_file=str(panel.path),
                    archs=[label for label, _ in archs], seeds=dict(short=seeds),
                    budgets=dict(short=settings.budget.to_dict()), proxy=dict(short=settings.proxy.to_dict()),
                    metrics=list(QUALITY_KEYS), signal=signal, device=settings.device,
                    provenance=provenance(device=settings.device))
    run, _ = open_run(Path(settings.run_dir), KIND, manifest, same=("panel", "budgets"))
    jobs = published_jobs(panel, seeds)
    evaluator = prepare(settings, []).get("evaluator", {})
    other_weights = import_trials(run, jobs, settings, evaluator, imported)
    if other_weights:
        warn(f"{other_weights} imported trial(s) were scored by other weights of the same domain-CLIP recipe; "
             "they are not used")
    rows = budget_rows(run, jobs, settings, train=train, address=address, workers=workers,
                       cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, progress=progress)
    if progress:
        progress(len(jobs), len(jobs))
    trials = _trials(jobs, rows)
    signals = [signal] + [s for s in EXTRA_SIGNALS if s != signal and trials[s].notna().any()]
    prov = provenance(seeds=dict(short=seeds), device=settings.device, evaluator=dict(short=evaluator),
                      budgets=dict(short=settings.budget.to_dict()), panel="published",
                      published_file=str(panel.path), budget=describe(settings))
    result = write_published(run.path, panel, trials, signals, prov)
    entry = dict(signals={a["signal"]: a for a in result.agreement}, orders=result.orders,
                 budget=describe(settings), regime=regime_name(settings.budget), seeds=seeds,
                 created=prov.get("created"), run_dir=str(run.path), evaluator=evaluator.get("model_id"),
                 command=" ".join(command or []))
    agreement_record.record(settings.budget_hash, entry)
    if record_shipped:
        agreement_record.record(settings.budget_hash, entry, shipped=True)
    return result


def write_published(run_path: Path, panel: PublishedPanel, trials: pd.DataFrame, signals: list[str],
                    prov: dict[str, Any]) -> PublishedResult:
    """Compute the calls from the trial rows and write them under `<run>/published/`."""
    from nas.ablation.published_table import markdown

    calls = call_table(panel, trials, tuple(signals))
    agree = [agreement(calls, s) for s in signals]
    orders = order_taus(panel, trials, tuple(signals))
    out = run_path / "published"
    files = []
    for stem, frame in (("trials", trials), ("calls", calls)):
        with atomic_path(out / f"{stem}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        files.append(out / f"{stem}.csv")
    missing = int((trials["state"] != "COMPLETE").sum())
    records = calls.astype(object).where(calls.notna(), None).to_dict("records")
    result = PublishedResult(run_path, signals, records, agree, orders, missing, files, prov)
    files.append(write_text(out / "published.md", markdown(result, panel)))
    files.append(write_json(out / "published.json", result.to_dict()))
    return result
