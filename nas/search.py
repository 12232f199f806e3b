"""`nas search`: Optuna chooses architectures, Ray Tune runs the trials, the run folder keeps everything.

Flow: validate every input -> lock the run folder (one driver per folder; runs on an external database are
coordinated by trial heartbeats instead) -> create (or reopen, on resume) the run folder and the Optuna
study -> settle trials a gone driver left RUNNING -> enqueue presets as warm starts (first run only) ->
prepare evaluators in the driver -> start (or join) Ray -> Tuner(OptunaSearch) until the requested number of
trials has finished -> rebuild the trials table from the study + per-trial metrics -> report.

The first SIGINT/SIGTERM stops scheduling, settles the running trials as interrupted, writes the table and
raises `Interrupted` (the CLI exits 130/143 with a resume hint); a second one exits at once. A search that
fails before its first trial removes the run folder it created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import pickle
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import pandas as pd

from core import agreement_record
from core.errors import UserError
from core.fidelity_record import on_record
from core.metrics import METRICS, names
from core.objectives import Objective
from core.provenance import provenance
from core.run_folder import FORMAT_VERSION, STUDY_FILE, RunFolder
from evaluators.training.budget import LATER_FIELDS
from evaluators.training.regimes import REGIME_FIELDS, regime_name
from nas import rung_resume
from nas.heartbeat import DRIVER_ATTR, Heartbeat, heartbeat_storage, stale_trial_ids
from nas.interrupt import Interrupted, SignalGuard
from nas.run_lock import HOLDER_FILE, LOCK_FILE, RunLock, driver_id
from nas.samplers import make_sampler
from nas.schedulers import Rungs, make_scheduler, rung_signals, validate_rungs
from nas.trial_runner import TrialSettings, check_gpu_share, constraint_values, prepare, run_trial
from search_spaces.config import ArchConfig
from search_spaces.pipeline import pipeline_blocks
from search_spaces.presets import get_preset, preset_label
from search_spaces.proxy import to_proxy
from search_spaces.space import get_space

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
STALE_REASON = "stale: the search driver stopped before this trial finished"
INTERRUPTED_REASON = "interrupted: the search driver received {signal} before this trial finished"
SETTLED_ATTRS = ("stale", "interrupted")  # user attributes of trials that are not part of the run's count


@dataclass
class SearchOptions:
    """Everything `nas search` was asked to do (validated by `validate_options`)."""

    run_dir: Path
    space: str = "unet_mobile"
    objectives: tuple[Objective, ...] = ()
    trials: int = 8
    sampler: str = "tpe"
    seed: int = 0
    settings: TrialSettings | None = None  # filled by run_search
    warm_start: tuple[str, ...] = ("sd15", "mobilediffusion")
    storage: str | None = None  # Optuna RDB URL (default: SQLite in the run folder)
    address: str | None = None  # existing Ray cluster ("host:port"); None starts a local Ray
    workers: int = 1  # trials at once
    cpus_per_trial: float = 2.0
    gpus_per_trial: float = 0.0
    max_failures: int = 0  # Ray retries of a trial whose worker died
    rungs: Rungs = field(default_factory=Rungs)  # trial scheduler (early stopping) and its rung budgets
    resume: bool = False
    report: bool = True  # write the HTML report at the end
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class SearchResult:
    run_dir: Path
    n_complete: int
    n_failed: int
    pareto: list[dict[str, Any]]
    seconds: float
    report: Path | None = None
    # wall seconds of this invocation's stages: prepare (evaluator, warm-start LUT blocks), ray_startup,
    # trials (Ray Tune's fit, start-up excluded), report; plus ray_memory_mb (RSS of Ray's processes at start) and,
    # with MO-ASHA, scheduler (seconds its rung decisions took, part of trials)
    timings: dict[str, float] = field(default_factory=dict)
    n_stopped: int = 0  # trials a scheduler stopped at a rung (PRUNED in the study, STOPPED in the table)

    @property
    def ray_startup_seconds(self) -> float:
        return self.timings.get("ray_startup", 0.0)

    def to_dict(self) -> dict[str, Any]:
        return dict(run_dir=str(self.run_dir), n_complete=self.n_complete, n_failed=self.n_failed,
                    n_stopped=self.n_stopped, pareto=self.pareto,
                    seconds=self.seconds, ray_startup_seconds=self.ray_startup_seconds, timings=self.timings,
                    report=str(self.report) if self.report else None)


# ---------------------------------------------------------------------------------------------- define-by-run
def define_by_run(space_name: str, driver: str, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """OptunaSearch's space function (module level: restorable). Marks the trial as `driver`'s, records its
    first heartbeat, and returns the Optuna trial number as a constant (and, for a trial requeued to continue an
    interrupted one, the trial whose rung state it loads and the number its training started as)."""
    config = get_space(space_name).sample(trial)
    trial.set_user_attr(DRIVER_ATTR, driver)
    trial.study._storage.record_heartbeat(trial._trial_id)
    # the config is built once, here; the worker reads it back instead of rebuilding it from the params
    out = {"_number": trial.number, "_config": config.to_json(indent=None), "_label": preset_label(config)}
    if trial.user_attrs.get(rung_resume.RESUMES_ATTR) is not None:
        out |= {"_resumes": trial.user_attrs[rung_resume.RESUMES_ATTR],
                "_lineage": trial.user_attrs[rung_resume.LINEAGE_ATTR]}
    return out


# ---------------------------------------------------------------------------------------------- validation
def _check_address(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except (OSError, ValueError) as err:
        raise UserError(f"cannot reach the Ray cluster at {address!r} ({err})") from None


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage with trial heartbeats; UserError when the database cannot be reached."""
    try:
        return heartbeat_storage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as err:  # sqlalchemy raises many types for bad URLs and refused connections
        raise UserError(f"cannot open storage {url!r}: {str(err).splitlines()[0]}") from None


def _check_run_dir(path: Path) -> None:
    """A usable run folder path: names the filesystem accepts, a folder (not a file), a writable parent."""
    def exists(p: Path) -> bool:
        try:
            return p.exists()
        except OSError:  # e.g. a name too long to stat
            return False

    absolute = Path(os.path.abspath(path))
    existing = absolute
    while not exists(existing) and existing != existing.parent:
        existing = existing.parent
    limit = os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
    for part in absolute.parts:
        if len(part.encode()) > limit:
            raise UserError(f"--run-dir: the name {part[:24]!r}... is {len(part.encode())} bytes long; this "
                            f"filesystem allows {limit}")
    if existing != absolute and not existing.is_dir():
        raise UserError(f"--run-dir {path}: {existing} is a file, not a folder")
    if existing == absolute and not absolute.is_dir():
        raise UserError(f"--run-dir {path} is an existing file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--run-dir {path}: {existing} is not writable")


def validate_options(opts: SearchOptions) -> None:
    """Fail fast, before anything is written, on every input a user can get wrong."""
    _check_run_dir(opts.run_dir)
    space = get_space(opts.space)
    if opts.trials < 1:
        raise UserError(f"--trials must be positive, got {opts.trials}")
    if opts.workers < 1 or opts.cpus_per_trial <= 0 or opts.gpus_per_trial < 0 or opts.max_failures < 0:
        raise UserError("--workers and --cpus-per-trial must be positive; --gpus-per-trial, --max-failures >= 0")
    if not opts.objectives:
        raise UserError("no objectives given")
    make_sampler(opts.sampler, opts.seed, opts.trials)
    s = opts.settings
    for name in opts.warm_start:
        space.params_of(get_preset(name))
        to_proxy(get_preset(name), s.budget.scale)  # the proxy scale can halve its levels (else ConfigError)
    if s.latency_budget_ms is not None and s.latency_budget_ms <= 0:
        raise UserError(f"--latency-budget-ms must be positive, got {s.latency_budget_ms}")
    if s.max_params is not None and s.max_params <= 0:
        raise UserError(f"--max-params must be positive, got {s.max_params}")
    if s.needs_image_latency:  # the text encoder must fit every warm-start anchor's cross-attention
        for name in opts.warm_start:
            pipeline_blocks(get_preset(name), s.sampling)
    for name in opts.warm_start if not opts.address else ():  # trials sharing a local GPU: the anchors must fit
        check_gpu_share(s, get_preset(name))  # their share (each trial checks its own architecture again)
    existing = RunFolder(opts.run_dir)
    manifest = existing.manifest() if existing.exists() else None
    stored = None if manifest is None else manifest.get("scheduler", Rungs().to_dict())
    validate_rungs(opts.rungs, [o.name for o in opts.objectives], s.budget.seconds is not None, stored)
    if manifest is not None:
        _check_same_budget(existing.path, manifest, s)
    if opts.address:
        _check_address(opts.address)


# ---------------------------------------------------------------------------------------------- study
def _settle(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], attr: str, reason: str) -> int:
    """Fail `trials` with `reason`, marked by the user attribute `attr` (not counted as finished trials).
    A trial another process finished meanwhile is left as it is."""
    settled = 0
    for t in trials:
        try:
            study._storage.set_trial_user_attr(t._trial_id, "failure_reason", reason)
            study._storage.set_trial_user_attr(t._trial_id, attr, True)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            settled += 1
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            continue
    return settled


def _settle_stale(study: optuna.Study, exclusive: bool) -> int:
    """Settle as stale the RUNNING trials whose driver is provably gone: every one when this driver holds the
    run folder's lock (`exclusive`: no other driver can be running them), else those whose heartbeat is
    older than the grace period (drivers sharing an external database)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not exclusive:
        gone = set(stale_trial_ids(study))
        running = [t for t in running if t._trial_id in gone]
    return _settle(study, running, "stale", STALE_REASON)


def _counts(study: optuna.Study) -> tuple[int, int, int, int]:
    """(complete, failed, stopped at a rung, counted-as-finished), ignoring stale and interrupted trials."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    live = [t for t in trials if not any(t.user_attrs.get(a) for a in SETTLED_ATTRS)]
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in live)
    stopped = sum(t.state == optuna.trial.TrialState.PRUNED for t in live)
    return complete, len(live) - complete - stopped, stopped, len(live)


@dataclass
class _OpenRun:
    run: RunFolder
    study: optuna.Study
    fresh: bool  # the run was created by this invocation
    lock: RunLock | None  # the folder's lock (None: an external database coordinates the drivers)
    created_folder: bool  # the folder did not exist (or was empty) before: removed again on an early failure

    def release(self) -> None:
        if self.lock:
            self.lock.release()

    def discard(self) -> None:
        """Remove what this invocation created (a run that failed before its first trial started)."""
        self.release()
        if self.created_folder:
            shutil.rmtree(self.run.path, ignore_errors=True)


def _is_empty(path: Path) -> bool:
    return not path.exists() or all(p.name in (LOCK_FILE, HOLDER_FILE) for p in path.iterdir())


def _open_run(opts: SearchOptions) -> _OpenRun:
    """Lock (unless the study lives in an external database), then create or reopen the run and its study.

    Raises:
        UserError: not resumable, a folder in use by another driver, unwritable paths, unreachable storage.
    """
    run = RunFolder(opts.run_dir)
    objectives = [o.to_dict() for o in opts.objectives]
    created_folder = _is_empty(run.path)
    external = (run.manifest().get("storage") is not None) if run.exists() else opts.storage is not None
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the run folder {run.path}: {err.strerror or err}") from None
    lock = None if external else RunLock(run.path).acquire()  # first: another driver may be creating the run
    opened = _OpenRun(run, None, False, lock, created_folder)  # type: ignore[arg-type]
    try:
        if not run.exists() and opts.resume:
            raise UserError(f"{run.path} is not a run folder; nothing to resume")
        if not run.exists() and not created_folder:
            raise UserError(f"{run.path} exists and is not an empty folder or a run folder")
        if run.exists():  # pointing at an existing run resumes it, if it is the same kind of search
            opened.created_folder = False
            manifest = run.manifest()
            if manifest.get("space") != opts.space or manifest.get("objectives") != objectives:
                raise UserError(f"{run.path} is a run of space {manifest.get('space')!r} with objectives "
                                f"{[o['name'] for o in manifest.get('objectives', [])]}; it cannot resume as "
                                f"{opts.space!r} with {[o['name'] for o in objectives]}")
            if manifest.get("scheduler", Rungs().to_dict()) != opts.rungs.to_dict():
                raise UserError(f"{run.path} was run with scheduler settings {manifest.get('scheduler')}; it cannot "
                                f"resume with {opts.rungs.to_dict()}")
            storage_url, study_name = run.storage_url(manifest), manifest["study_name"]
        else:
            opened.fresh = True
            storage_url = opts.storage or run.default_storage()
            study_name = f"nas-{opts.run_dir.name}"
        storage = open_storage(storage_url)
        opened.study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                           directions=[o.direction for o in opts.objectives],
                                           sampler=make_sampler(opts.sampler, opts.seed, opts.trials))
        if opened.fresh:
            run.write_manifest(dict(
                format=FORMAT_VERSION, name=opts.run_dir.name, command=opts.command, space=opts.space,
                objectives=objectives, sampler=opts.sampler, seed=opts.seed, n_trials=opts.trials,
                storage=opts.storage, study_file=None if opts.storage else STUDY_FILE, study_name=study_name,
                warm_start=list(opts.warm_start), budget=opts.settings.budget.to_dict(),
                proxy_scale=regime_name(opts.settings.budget),
                proxy=opts.settings.proxy.to_dict(), scheduler=opts.rungs.to_dict(),
                constraints=dict(latency_budget_ms=opts.settings.latency_budget_ms,
                                 latency_budget_on=opts.settings.latency_budget_on,
                                 max_params=opts.settings.max_params),
                sampling=dataclasses.asdict(opts.settings.sampling),
                metrics=list(opts.settings.metrics), samples=opts.settings.samples,
                provenance=provenance(seed=opts.seed)))
        elif run.manifest().get("format") != FORMAT_VERSION:  # a previous version's run, resumed: relative now
            manifest = run.manifest()
            local = run.storage_url(manifest) == run.default_storage()
            run.write_manifest(manifest | dict(format=FORMAT_VERSION, storage=None if local else manifest["storage"],
                                               study_file=STUDY_FILE if local else None))
    except BaseException:
        opened.discard()
        raise
    return opened


# ---------------------------------------------------------------------------------------------- trials table
def trial_rows(run: RunFolder, study: optuna.Study) -> list[dict[str, Any]]:
    """One row per Optuna trial (`trial_row`)."""
    return [trial_row(run, t) for t in study.get_trials(deepcopy=False)]


def trial_row(run: RunFolder, t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The trials-table row of one Optuna trial: its metrics.json when the trial wrote one, else state + reason;
    the study's word on its state (stale, interrupted, stopped) wins."""
    record = run.read_trial_record(t.number)
    row = record.row() if record is not None else {}
    row.pop("traceback", None)
    row.update(number=t.number, state=row.get("state", t.state.name))
    if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
        row["state"] = t.state.name
    settled = next((a for a in SETTLED_ATTRS if t.user_attrs.get(a)), None)
    if settled:  # its metrics (if any) never reached the study: not part of the run
        row.update(state=settled.upper(), failure_reason=t.user_attrs.get("failure_reason"))
    elif t.user_attrs.get("stopped_at_step") is not None:  # its last intermediate values, never complete
        row.update(t.user_attrs.get("stopped_values") or {})
        row.update(state="STOPPED", stopped_at_step=t.user_attrs["stopped_at_step"],
                   failure_reason=t.user_attrs.get("failure_reason"), stop_reason=t.user_attrs.get("stop_reason"))
    if not row.get("failure_reason"):
        row["failure_reason"] = t.user_attrs.get("failure_reason")
    for k, v in t.params.items():
        row.setdefault(f"p_{k}", v)
    return row


def _pareto_size(study: optuna.Study) -> int:
    try:
        return len(study.best_trials)
    except (ValueError, RuntimeError):
        return 0


def pareto_rows(study: optuna.Study, rows: list[dict[str, Any]], objectives: tuple[Objective, ...]) -> list[dict]:
    """The Pareto-optimal complete trials with their metrics (`reports.pareto.front_numbers`: the same set the
    report and the export use)."""
    from reports.pareto import front_numbers

    by_number = {r["number"]: r for r in rows}
    complete = pd.DataFrame([r for r in rows if r.get("state") == "COMPLETE"])
    if complete.empty:
        return []
    complete = complete.set_index("number", drop=False).dropna(subset=[o.name for o in objectives])
    keys = ("number", "arch_id", "preset", *names())
    return [{k: by_number[n].get(k) for k in keys} for n in front_numbers(study, complete, objectives)]


# ---------------------------------------------------------------------------------------------- Ray side
def _make_searcher(opts: SearchOptions, study: optuna.Study, storage: optuna.storages.BaseStorage,
                   on_told: Callable[[int], None], guard: SignalGuard, driver: str, scheduler: Any = None):
    from ray.tune.search.optuna import OptunaSearch

    run = RunFolder(opts.run_dir)

    class RunOptunaSearch(OptunaSearch):
        """OptunaSearch that records failures as FAIL (with reason) and constraints before telling; a trial the
        trial scheduler stopped at a rung as PRUNED with its rung values and the reason; a trial that ends
        without a final result after a stop signal is settled as interrupted (its rung state is kept for the
        resume, `nas.rung_resume`)."""

        on_told: Callable[[int], None] | None = None  # driver-side hooks; not pickled with Tune's state
        guard: SignalGuard | None = None
        scheduler: Any = None  # the run's trial scheduler (MO-ASHA keeps its rung decisions)

        def __getstate__(self) -> dict:
            return {k: v for k, v in self.__dict__.items() if k not in ("on_told", "guard", "scheduler")}

        def _stop_reason(self, trial_id: str, step: Any) -> str | None:
            """Why the trial scheduler stopped a trial whose last report was a rung's; None if it did not (it
            was promoted there, or a stop signal ended it)."""
            decision = getattr(self.scheduler, "decision", None)
            if decision is not None:  # MO-ASHA says what it decided
                d = decision(trial_id)
                return d.reason if d is not None and not d.promoted else None
            if self.guard and self.guard.received:  # Ray's ASHA keeps no record: the stop signal wins
                return None
            return f"{opts.rungs.scheduler}: stopped at rung {step} steps (outside the top 1/{opts.rungs.eta} there)"

        def save(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "wb") as f:
                pickle.dump(self.__getstate__(), f)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self._completed_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            result = result or {}
            for name, value in (result.get("constraints") or {}).items():
                ot_trial.set_constraint(name, value)
            state = result.get("state", "FAIL")
            values = [result.get(o.name) for o in opts.objectives]
            stop_reason = self._stop_reason(trial_id, result.get("step")) if state == "RUNNING" else None
            interrupted = False
            made = getattr(self.scheduler, "history", None)
            if made is not None and made(trial_id):  # MO-ASHA's decisions at each rung the trial reached
                ot_trial.set_user_attr("rung_decisions", [d.to_dict() for d in made(trial_id)])
            if state == "COMPLETE" and all(v is not None for v in values):
                self._ot_study.tell(ot_trial, values)
            elif stop_reason:  # its last report was a rung's and the trial scheduler stopped it there
                step = result.get("step")
                ot_trial.set_user_attr("stopped_at_step", step)
                ot_trial.set_user_attr("stopped_values", {o.name: result.get(o.name) for o in opts.objectives})
                ot_trial.set_user_attr("rung_values", {k: v for k, v in result.items() if v is not None and (
                    k in METRICS or k in ("step", "train_loss"))})
                ot_trial.set_user_attr("stop_reason", stop_reason)
                ot_trial.set_user_attr("failure_reason", f"stopped early by the {opts.rungs.scheduler} scheduler "
                                                         f"at step {step} of {opts.rungs.steps}")
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            elif self.guard and self.guard.received and (not result or state == "RUNNING"):
                interrupted = True
                ot_trial.set_user_attr("interrupted", True)
                ot_trial.set_user_attr("failure_reason", INTERRUPTED_REASON.format(signal=self.guard.name))
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            else:
                reason = result.get("failure_reason") or (
                    "the trial's worker died" if error else "an objective metric is missing from the result")
                ot_trial.set_user_attr("failure_reason", reason)
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED if state == "INFEASIBLE"
                                    else optuna.trial.TrialState.FAIL)
            if not interrupted:  # it ended by itself: its rung states are no longer needed
                rung_resume.discard_state(run, ot_trial.number, ot_trial.user_attrs)
            self._completed_trials.add(trial_id)
            if self.on_told:
                self.on_told(ot_trial.number)

    searcher = RunOptunaSearch(
        space=functools.partial(define_by_run, opts.space, driver),
        metric=[o.name for o in opts.objectives], mode=[o.ray_mode for o in opts.objectives],
        sampler=study.sampler, storage=storage, study_name=study.study_name)
    searcher.on_told, searcher.guard, searcher.scheduler = on_told, guard, scheduler
    return searcher


def _trainable(tune_config: dict, settings: TrialSettings, seed: int) -> dict:
    """The Ray Tune function trainable: one architecture. With rungs (`settings.report_at`) it reports each
    rung's held-out signals with a checkpoint of its training state (state "RUNNING"), so a scheduler can stop
    it there, and a restored trial continues from its last checkpoint; the final report is the full row."""
    import tempfile

    import ray
    from ray import tune

    from evaluators.training.train import TrainState

    number = tune_config["_number"]
    params = {k: v for k, v in tune_config.items() if not k.startswith("_")}
    config, label = ArchConfig.from_json(tune_config["_config"]), tune_config["_label"]
    context = ray.get_runtime_context()
    run = RunFolder(settings.run_dir)
    extra = dict(ray_node=context.get_node_id(), ray_gcs=context.gcs_address)

    def on_rung(values: dict, state: TrainState) -> None:
        path = rung_resume.save_state(run, number, state)  # survives the driver (resuming the run)
        with tempfile.TemporaryDirectory() as folder:
            shutil.copyfile(path, Path(folder) / rung_resume.TRAIN_STATE)
            # every objective is named (None until the full budget): Tune checks each result has the searcher's
            tune.report(dict.fromkeys(settings.metrics) | values | {"state": "RUNNING"},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    checkpoint = tune.get_checkpoint()
    resume, rungs = None, None
    if checkpoint is not None:  # Ray restarted this trial (its worker died): from its own last rung
        with checkpoint.as_directory() as folder:
            resume = TrainState.load(Path(folder) / rung_resume.TRAIN_STATE)
        rungs = rung_resume.rungs_before(run, number, resume.step)
    elif tune_config.get("_resumes") is not None:  # requeued: continues an interrupted trial from its last rung
        try:
            resume, rungs = rung_resume.load_state(run, int(tune_config["_resumes"]))
            extra |= dict(resumed_from=int(tune_config["_resumes"]), resumed_at_step=resume.step)
        except UserError as err:  # trains from the start instead (nothing is lost but time)
            extra |= dict(resume_failed=str(err))
    row = run_trial(settings, config, number, seed, label=label, params=params, extra=extra,
                    on_rung=on_rung if settings.report_at else None, resume=resume, rungs=rungs)
    result = {k: v for k, v in row.items() if not k.startswith("p_") and k not in ("config_json", "traceback")}
    result["constraints"] = constraint_values(settings, row)
    tune.report(result)


def _check_same_budget(path: Path, manifest: dict, settings: TrialSettings) -> None:
    """A resumed search trains its new trials like its old ones: same budget, same proxy mode and teacher.
    A budget field the run's version did not record counts as unchanged.

    Raises:
        UserError: the run was started with another budget or proxy mode (its trials would not be comparable).
    """
    stored = manifest.get("budget")
    if stored is None:
        return  # a run of a version that recorded no budget: nothing to compare
    changed = []
    for name, value in dataclasses.asdict(settings.budget).items():
        if name in stored:
            before = stored[name]
        elif name in LATER_FIELDS:  # omitted from the record while it holds its default
            before = LATER_FIELDS[name]
        else:  # a field the run's version did not record
            continue
        if before != value:
            changed.append(name)
    if set(changed) & set(REGIME_FIELDS):
        changed.append(f"proxy scale {regime_name({**LATER_FIELDS, **stored})} -> {regime_name(settings.budget)}")
    proxy = manifest.get("proxy", {"mode": "scratch"})
    if proxy != settings.proxy.to_dict():
        changed.append(f"proxy ({proxy.get('mode')} -> {settings.proxy.mode})")
    if changed:
        raise UserError(f"{path} was run with another budget or proxy mode ({', '.join(changed)}); a resumed search "
                        f"keeps them: pass the options it was started with, or use a new --run-dir")


def _start_ray(opts: SearchOptions) -> float:
    import ray

    began = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True)
    if opts.address:
        ray.init(address=opts.address, **kwargs)
    else:
        cpus = max(opts.cpus_per_trial * opts.workers, os.cpu_count() or 1)
        ray.init(address="local", num_cpus=int(cpus + 0.999),  # a new local Ray, even beside a running cluster
                 num_gpus=int(opts.gpus_per_trial * opts.workers + 0.999),
                 object_store_memory=200 * 1024 * 1024, **kwargs)
    return time.perf_counter() - began


def run_search(opts: SearchOptions, progress: Callable[[dict], None] | None = None,
               prepare_progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Run (or resume) a search to `opts.trials` finished trials.

    Args:
        opts: validated options (`validate_options`).
        progress: called after every finished trial with {"done", "total", "complete", "failed", "stopped",
            "pareto", "row"} ("stopped": trials a scheduler stopped at a rung, not counted as failed).
        prepare_progress: called (done, total) while warm-start blocks are measured for the latency table.

    Raises:
        UserError: bad input, a run folder that cannot resume or is in use by another driver, an unreachable
            cluster or storage.
        Interrupted: SIGINT or SIGTERM; the running trials were settled as interrupted and the trials table
            and manifest written (a fresh run interrupted before its first trial is removed instead).
    """
    began = time.perf_counter()
    validate_options(opts)
    opts.run_dir = opts.run_dir.resolve()
    opts.settings = dataclasses.replace(opts.settings, report_at=tuple(opts.rungs.budgets()),
                                        rung_signals=rung_signals(opts.rungs, [o.name for o in opts.objectives]))
    with SignalGuard(hint=f"; resume with: nas search --run-dir {opts.run_dir} --resume") as guard:
        opened = _open_run(opts)
        try:
            return _search(opts, opened, guard, began, progress, prepare_progress)
        finally:
            opened.release()


def _search(opts: SearchOptions, opened: _OpenRun, guard: SignalGuard, began: float,
            progress: Callable[[dict], None] | None,
            prepare_progress: Callable[[int, int], None] | None) -> SearchResult:
    run, study, settings = opened.run, opened.study, opts.settings
    try:
        if opened.fresh:
            for name in opts.warm_start:
                study.enqueue_trial(get_space(opts.space).params_of(get_preset(name)), skip_if_exists=True)
        _settle_stale(study, exclusive=opened.lock is not None)
        if not opened.fresh:  # trials a stop signal or a dead driver interrupted continue from their last rung
            rung_resume.requeue_interrupted(study, run)
        manifest = run.manifest()
        stage = time.perf_counter()
        manifest.update(prepare(settings, [get_preset(n) for n in opts.warm_start], progress=prepare_progress))
        evaluator_id = manifest.get("evaluator", {}).get("model_id")
        manifest["fidelity"] = on_record(settings.budget_hash, evaluator_id)
        manifest["published_agreement"] = agreement_record.on_record(settings.budget_hash)
        if opts.rungs.active:  # each rung's signal ranks by its own fidelity, measured at that budget
            manifest["rung_fidelity"] = {
                str(step): on_record(dataclasses.replace(settings, budget=settings.budget.replace(steps=step))
                                     .budget_hash, evaluator_id)
                for step in opts.rungs.budgets()}
        run.write_manifest(manifest)
        timings = {"prepare": time.perf_counter() - stage}
        *_, finished = _counts(study)
        remaining = opts.trials - finished
        if remaining > 0:
            stage = time.perf_counter()
            ray_startup, timings["ray_memory_mb"] = _run_tuner(opts, run, study, remaining, progress, guard,
                                                               timings)
            timings |= {"ray_startup": ray_startup, "trials": time.perf_counter() - stage - ray_startup}
    except BaseException as err:
        started = any(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))
        if opened.fresh and not started:  # nothing of the run exists yet: leave nothing behind
            opened.discard()
            if isinstance(err, Interrupted):
                raise Interrupted(err.signum, f"interrupted by {err.signal_name} before the first trial; "
                                  f"{run.path} was removed") from None
        raise
    rows = trial_rows(run, study)
    run.write_trials(rows)
    complete, failed, stopped, _ = _counts(study)
    if guard.received:
        n = _settle(study, [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                            if t.user_attrs.get(DRIVER_ATTR) == _DRIVER],
                    "interrupted", INTERRUPTED_REASON.format(signal=guard.name))
        run.write_trials(trial_rows(run, study))
        run.write_manifest(run.manifest() | dict(last_stop=dict(
            reason=f"interrupted by {guard.name}", at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            complete=complete, requested=opts.trials)))
        raise Interrupted(guard.received, f"interrupted by {guard.name}: {complete} of {opts.trials} trials "
                          f"complete, {n} running trial(s) settled as interrupted; resume with: nas search "
                          f"--run-dir {run.path} --resume")
    result = SearchResult(run.path, complete, failed, pareto_rows(study, rows, opts.objectives), 0.0, timings=timings,
                          n_stopped=stopped)
    if opts.report and complete:
        from reports import build_report

        stage = time.perf_counter()
        result.report = build_report(run.path)[0]
        timings["report"] = time.perf_counter() - stage
    result.seconds = time.perf_counter() - began
    return result


_DRIVER = driver_id()


def _run_tuner(opts: SearchOptions, run: RunFolder, study: optuna.Study, remaining: int,
               progress: Callable[[dict], None] | None, guard: SignalGuard,
               timings: dict[str, float]) -> tuple[float, float]:
    """Run `remaining` trials with Ray Tune; returns Ray's start-up seconds and its processes' memory (MB), and
    puts the scheduler's decision seconds in `timings`. A stop signal (recorded by `guard`) stops every running
    trial and returns. With MO-ASHA on a resumed run, the rung records are rebuilt from the trials' records."""
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    class StopOnSignal(tune.Stopper):
        """Stops the whole experiment once the driver received SIGINT/SIGTERM (not pickled with Tune's state)."""

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return guard.received is not None

        def __reduce__(self):
            return (tune.stopper.NoopStopper, ())

    def on_told(number: int) -> None:  # the table grows by the one trial that ended (constant time)
        row = trial_row(run, study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, number)))
        run.append_trial(row)
        if progress:
            complete, failed, stopped, finished = _counts(study)
            progress(dict(done=finished, total=opts.trials, complete=complete, failed=failed, stopped=stopped,
                          pareto=_pareto_size(study), row=row))

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT is this driver's (SignalGuard + StopOnSignal)
    ray_startup = _start_ray(opts)
    guard.install()  # ray.init installed its own SIGTERM handler in this driver
    # A stop can cut Tune's snapshot of its own experiment state mid-copy, and Tune logs that with a traceback
    # (seen once in 2 SIGTERM tests). The run folder (study, trials table, rung states) is this project's record,
    # not that snapshot: after a signal, only the one-line message is said.
    guard.on_first.append(lambda: logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.CRITICAL))
    ray_memory_mb = _children_rss_mb()
    warnings.filterwarnings("ignore", message="Define-by-run function passed")  # first call imports the space
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")  # nas.heartbeat beats for us
    heartbeat = Heartbeat(study, _DRIVER)
    heartbeat.start()
    try:
        storage = open_storage(run.storage_url())  # a plain RDBStorage pickles with Tune's state
        objectives = [o.name for o in opts.objectives]
        scheduler = make_scheduler(opts.rungs, objectives, history=rung_resume.rung_history(run, study)
                                   if opts.rungs.scheduler == "mo-asha" else ())
        searcher = ConcurrencyLimiter(_make_searcher(opts, study, storage, on_told, guard, _DRIVER, scheduler),
                                      max_concurrent=opts.workers)
        trainable = tune.with_parameters(_trainable, settings=opts.settings, seed=opts.seed)
        resources = {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining, reuse_actors=True,
                                        scheduler=scheduler),
            run_config=tune.RunConfig(
                name=f"tune-{int(time.time())}", storage_path=str(run.path / "ray"), verbose=0, stop=StopOnSignal(),
                failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        guard.immediate = False  # from here a signal stops the trials through StopOnSignal
        try:
            with ray_log_to_file(run.path / RAY_LOG):
                tuner.fit()
        finally:
            if hasattr(scheduler, "seconds"):  # MO-ASHA's own decision time (scheduler overhead)
                timings["scheduler"] = scheduler.seconds
    finally:
        heartbeat.stop()
        ray.shutdown()
    return ray_startup, ray_memory_mb


RAY_LOG = "logs/ray.log"  # Ray's and Tune's log records of a search, relative to its run folder


@contextlib.contextmanager
def ray_log_to_file(path: Path) -> Iterator[Path]:
    """Ray's and Tune's log records (a dead worker's `ActorDiedError` traceback, Tune's ERROR lines) go to `path`
    instead of the terminal while the trials run: the terminal gets the search's own lines (progress, the failed
    trials' reasons), the run folder keeps Ray's detail. Ray's `ray` logger does not propagate; its handlers are
    swapped and restored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("ray")
    saved = logger.handlers[:]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    try:
        yield path
    finally:
        logger.handlers = saved
        handler.close()


def _children_rss_mb() -> float:
    """Resident memory of this process's children (a local Ray's GCS, raylet, workers; 0 on a remote cluster)."""
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20
