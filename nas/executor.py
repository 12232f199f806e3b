"""Run a fixed list of architectures as Ray Tune trials (ablations, fidelity checks).

Each job is (number, label, config, seed), optionally with its own trial settings (a fidelity study runs its
short and reference budgets as one Ray session). Jobs whose `trials/<NNNN>/metrics.json` already holds a finished
row are not run again (resume), and the quality cache of the run folder makes a repeated (arch, seed,
budget) free. Results come back as trials-table rows, in job order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from core.run_folder import RunFolder
from nas.trial_runner import TrialSettings, run_trial
from search_spaces.config import ArchConfig

DONE_STATES = ("COMPLETE", "FAIL", "INFEASIBLE")


@dataclass(frozen=True)
class Job:
    """One architecture to evaluate."""

    number: int  # trial number in the run folder (names trials/<NNNN>)
    label: str  # row label (ablation step, preset, ...)
    config: ArchConfig  # full-scale architecture
    seed: int  # proxy-training seed
    settings: TrialSettings | None = None  # how this job is evaluated, when not as the run's other jobs


def finished_row(run: RunFolder, job: Job, settings: TrialSettings) -> dict[str, Any] | None:
    """The stored row of a job that already finished with the same architecture, seed and budget, else None."""
    record = run.read_trial_record(job.number)
    if record is None:
        return None
    row = record.row()
    same = row.get("cache_key") == settings.cache_key(job.config.arch_id, job.seed)
    return row if same and row.get("state") in DONE_STATES else None



def _job_trainable(tune_config: dict, settings: TrialSettings, jobs: dict[int, tuple[str, str, int]]) -> None:
    from ray import tune

    label, config_json, seed, own = jobs[tune_config["job"]]
    row = run_trial(own or settings, ArchConfig.from_json(config_json), tune_config["job"], seed, label=label)
    tune.report({k: v for k, v in row.items() if k not in ("config_json", "traceback")})


def run_jobs(jobs: list[Job], settings: TrialSettings, *, address: str | None = None, workers: int = 1,
             cpus_per_trial: float = 2.0, gpus_per_trial: float = 0.0,
             progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate every job (skipping finished ones) with Ray Tune, in one Ray session; returns one row per job,
    in order.

    Args:
        jobs: architectures with their trial numbers, labels and seeds (and settings where a job has its own).
        settings: how trials are evaluated (`settings.run_dir` is the run folder; a job's own settings must
            name the same run folder).
        address: an existing Ray cluster; None starts (and stops) a local Ray.
        workers: trials at once. cpus_per_trial / gpus_per_trial: Ray resources per trial.
        progress: called (done, total) as jobs finish.
    """
    import ray
    from ray import tune

    from nas.search import SearchOptions, _start_ray
    from nas.tune_progress import ProgressCallback

    run = RunFolder(settings.run_dir)
    rows: dict[int, dict[str, Any]] = {}
    for job in jobs:
        row = finished_row(run, job, job.settings or settings)
        if row is not None:
            rows[job.number] = row
    todo = [j for j in jobs if j.number not in rows]
    if progress:
        progress(len(rows), len(jobs))
    if todo:
        opts = SearchOptions(run_dir=run.path, address=address, workers=workers, cpus_per_trial=cpus_per_trial,
                             gpus_per_trial=gpus_per_trial)
        _start_ray(opts)
        try:
            payload = {j.number: (j.label, j.config.to_json(indent=None), j.seed, j.settings) for j in todo}
            trainable = tune.with_parameters(_job_trainable, settings=settings, jobs=payload)

            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
                param_space={"job": tune.grid_search([j.number for j in todo])},
                tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True),
                run_config=tune.RunConfig(storage_path=str(run.path.resolve() / "ray"), verbose=0,
                                          callbacks=[ProgressCallback(progress, len(rows), len(jobs))]),
            )
            tuner.fit()
        finally:
            ray.shutdown()
        for job in todo:
            rows[job.number] = finished_row(run, job, job.settings or settings) or dict(
                number=job.number, state="FAIL", arch_id=job.config.arch_id, preset=job.label, seed=job.seed,
                failure_reason="the trial's worker died before it wrote its metrics")
    return [rows[j.number] for j in jobs]
