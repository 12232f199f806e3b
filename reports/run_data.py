"""Everything a report or an export reads from a run folder, loaded once and checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from core.errors import UserError
from core.metrics import METRIC_DIRECTIONS, METRICS
from core.objectives import Objective
from core.run_folder import RunFolder

METRIC_LABELS = {n: m.label for n, m in METRICS.items()}


@dataclass
class RunData:
    """A run folder's manifest, trials and (when reachable) its Optuna study."""

    run: RunFolder  # the folder
    manifest: dict[str, Any]  # manifest.json
    trials: pd.DataFrame  # every row of the trials table
    complete: pd.DataFrame  # COMPLETE rows with every objective value present, indexed by trial number
    objectives: list[Objective]  # in the study's value order
    study: optuna.Study | None = None  # None when the storage cannot be opened (see study_error)
    study_error: str = ""  # why the study could not be loaded
    design_columns: list[str] = field(default_factory=list)  # the `p_<dimension>` columns

    def count(self, state: str) -> int:
        return int((self.trials["state"] == state).sum()) if len(self.trials) else 0

    def trial_record(self, number: int) -> dict[str, Any]:
        """The trial's record (`core.records.TrialRecord`, as a dict; empty when missing or unreadable: the
        report then says what it could not show)."""
        try:
            record = self.run.read_trial_record(number)
        except UserError:
            return {}
        return record.model_dump() if record is not None else {}

    def grid_path(self, number: int) -> Path | None:
        """The trial's sample grid PNG, if the table names one that exists."""
        rel = self.complete.loc[number].get("sample_grid") if number in self.complete.index else None
        if not isinstance(rel, str) or not rel:
            return None
        path = self.run.path / rel
        return path if path.is_file() else None


def run_kind(manifest: dict[str, Any], path: Path) -> str:
    """"search", "ablation" or "fidelity" (`RunFolder.manifest` already refused other kinds)."""
    return manifest.get("kind", "search")


def _objectives(manifest: dict[str, Any], path: Path) -> list[Objective]:
    raw = manifest.get("objectives")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{path}: the run manifest lists no objectives")
    out = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else item
        if name not in METRIC_DIRECTIONS:
            raise UserError(f"{path}: unknown objective {name!r} in the run manifest")
        direction = item.get("direction", METRIC_DIRECTIONS[name]) if isinstance(item, dict) else METRIC_DIRECTIONS[name]
        out.append(Objective(name, direction))
    return out


def _load_study(run: RunFolder, manifest: dict[str, Any]) -> tuple[optuna.Study | None, str]:
    storage, name = run.storage_url(manifest), manifest.get("study_name")
    if not storage or not name:
        return None, "the manifest names no study storage"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage), ""
    except Exception as err:  # storage drivers raise many types (KeyError, OperationalError, ...)
        return None, f"study {name!r} could not be loaded from {storage}: {type(err).__name__}: {err}"


def load_run(path: str | Path, need_study: bool = True) -> RunData:
    """Open a run folder for reporting or export.

    Raises:
        UserError: not a search run folder, or a run without a single complete trial.
    """
    run = RunFolder.open(path)
    manifest = run.manifest()
    kind = run_kind(manifest, run.path)
    if kind != "search":
        raise UserError(f"{run.path}: a run folder of kind {kind!r} has no searched architectures to pick from; "
                        f"`nas report {run.path}` shows its results")
    objectives = _objectives(manifest, run.path)
    trials = run.read_trials()
    if "state" in trials.columns and len(trials):
        complete = trials[trials["state"] == "COMPLETE"]
        complete = complete.dropna(subset=[o.name for o in objectives if o.name in complete.columns])
        missing = [o.name for o in objectives if o.name not in complete.columns]
        if missing:
            raise UserError(f"{run.path}: the trials table has no column for objective(s) {', '.join(missing)}")
    else:
        complete = trials.iloc[0:0]
    if complete.empty:
        states = trials["state"].value_counts().to_dict() if "state" in trials.columns else {}
        detail = ", ".join(f"{n} {s.lower()}" for s, n in states.items()) or "no trials"
        raise UserError(f"{run.path}: the run has no complete trial to report ({detail})")
    complete = complete.set_index("number", drop=False).sort_index()
    study, error = _load_study(run, manifest) if need_study else (None, "not loaded")
    design = [c for c in trials.columns if c.startswith("p_")]
    return RunData(run, manifest, trials, complete, objectives, study, error, design)
