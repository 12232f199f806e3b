"""Resuming a search that runs with a trial scheduler: no trial loses the progress its rungs saved.

What is kept, and where:

- **Rung training states.** At every rung a trial saves its training state (weights, optimizer, data order,
  random state, loss history) as `trials/<NNNN>/train_state.pt`, next to the rung history in its record
  (`metrics.json`, field `rungs`). The file is removed when the trial ends by itself (complete, failed, or
  stopped by the scheduler); it stays when the driver stopped it (Ctrl-C: INTERRUPTED) or died (kill -9:
  settled STALE by the next driver).
- **Requeue** (`requeue_interrupted`). On resume, every INTERRUPTED or STALE trial with a saved state is
  enqueued again in Optuna with the same parameters and the user attributes `continues` (the interrupted
  trial it stands in for: each is enqueued once, a finished trial's attributes being read-only), `resumes`
  (the trial whose state file it loads) and `lineage` (the number its training started as). The new trial loads that state and continues from that rung (`load_state`): the steps
  before the rung are not trained again. Only the steps between the last rung and the interruption are
  trained twice (the rung is the unit of saved progress).
- **Rung records** (`rung_history`). The scheduler's records are rebuilt from the rung histories of the
  study's trials, keyed by lineage, so a resumed run ranks new results against every result recorded before
  (MO-ASHA; Ray's own ASHA keeps its records private, so an `asha` run starts its rungs afresh).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable

import optuna

from core.errors import UserError
from core.io import atomic_path
from core.run_folder import RunFolder
from evaluators.training.train import TrainState

TRAIN_STATE = "train_state.pt"
RESUMES_ATTR = "resumes"  # user attribute of a requeued trial: the trial whose rung state it loads
LINEAGE_ATTR = "lineage"  # user attribute of a requeued trial: the number its training started as
CONTINUES_ATTR = "continues"  # user attribute of a requeued trial: the interrupted or stale trial it stands in for
SETTLED = ("interrupted", "stale")  # user attributes of trials the driver stopped (nas.search.SETTLED_ATTRS)


def state_path(run: RunFolder, number: int) -> Path:
    return run.trial_dir(number) / TRAIN_STATE


def save_state(run: RunFolder, number: int, state: TrainState) -> Path:
    """Write the trial's rung training state atomically (a crash mid-write leaves the previous rung's)."""
    path = state_path(run, number)
    with atomic_path(path) as tmp:
        state.save(tmp)
    return path


def load_state(run: RunFolder, number: int) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trial `number`'s saved training state and its rung reports up to that state's step.

    Raises:
        UserError: no readable state file.
    """
    path = state_path(run, number)
    try:
        state = TrainState.load(path)
    except (OSError, EOFError, RuntimeError, TypeError) as err:
        raise UserError(f"{path}: cannot load the rung training state ({err})") from None
    return state, rungs_before(run, number, state.step)


def rungs_before(run: RunFolder, number: int, step: int) -> list[dict[str, Any]]:
    """Trial `number`'s rung reports at or below `step`, from its record (empty when it has none)."""
    try:
        record = run.read_trial_record(number)
    except UserError:
        return []
    return [r.model_dump() for r in record.rungs if r.step <= step] if record is not None else []


def discard_state(run: RunFolder, number: int, user_attrs: dict[str, Any]) -> None:
    """Remove the rung states a trial that ended by itself no longer needs: its own and the one it resumed."""
    state_path(run, number).unlink(missing_ok=True)
    if user_attrs.get(RESUMES_ATTR) is not None:
        state_path(run, int(user_attrs[RESUMES_ATTR])).unlink(missing_ok=True)


def _state_owner(run: RunFolder, trial: optuna.trial.FrozenTrial) -> int | None:
    """The trial whose state file holds `trial`'s progress: its own, else the one it resumed (that file is kept
    until the resumed trial ends by itself)."""
    if state_path(run, trial.number).is_file():
        return trial.number
    parent = trial.user_attrs.get(RESUMES_ATTR)
    if parent is not None and state_path(run, int(parent)).is_file():
        return int(parent)
    return None


def requeue_interrupted(study: optuna.Study, run: RunFolder) -> list[int]:
    """Enqueue again every interrupted or stale trial that saved a rung state; returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    done = {t.user_attrs[CONTINUES_ATTR] for t in trials if CONTINUES_ATTR in t.user_attrs}
    requeued = []
    for t in trials:
        if t.state != optuna.trial.TrialState.FAIL or not any(t.user_attrs.get(a) for a in SETTLED) \
                or t.number in done:
            continue
        owner = _state_owner(run, t)
        if owner is None:
            continue
        lineage = int(t.user_attrs.get(LINEAGE_ATTR, t.number))
        study.enqueue_trial(t.params, user_attrs={CONTINUES_ATTR: t.number, RESUMES_ATTR: owner,
                                                  LINEAGE_ATTR: lineage}, skip_if_exists=False)
        requeued.append(t.number)
    return requeued


def rung_history(run: RunFolder, study: optuna.Study) -> list[tuple[Hashable, dict[str, Any]]]:
    """(lineage, rung report) of every rung any trial of the study reported, read from the trial records; an
    unreadable record contributes nothing."""
    out: list[tuple[Hashable, dict[str, Any]]] = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        try:
            record = run.read_trial_record(t.number)
        except UserError:
            continue
        if record is None:
            continue
        key = int(t.user_attrs.get(LINEAGE_ATTR, t.number))
        out.extend((key, r.model_dump()) for r in record.rungs)
    return out
