"""`nas search`: multi-objective architecture search (Optuna chooses, Ray Tune runs, resumable)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from core.console import console, err_console, print_json, warn
from core.errors import RunFailed, UserError
from core.metrics import METRIC_DIRECTIONS, sample_metrics
from core.objectives import QUALITY, parse_objectives
from core.run_folder import RunFolder
from evaluators.memory import parse_size
from evaluators.training import Budget, fit_heldout
from evaluators.training.proxy_mode import search_steps
from nas.commands import proxy_options
from nas.parallelism import choose_parallelism
from nas.schedulers import DEFAULT_ETA, default_scheduler, resolve_rungs
from nas.search import SearchOptions, run_search, validate_options
from nas.trial_runner import TrialSettings
from search_spaces.pipeline import SamplingConfig
from reports.terminal import PipedProgress, pareto_table

# The proxy's quality signal is the held-out loss on a fixed timestep grid: in the fidelity study (paper panel,
# 10 architectures, benchmarks/results_fidelity.md) it is the one signal of the 500-step proxy that ranks like the
# 4x longer reference's FID (Kendall tau 0.73 [0.27, 1.00]; the 500-step FID itself: -0.38 [-0.89, 0.21]).
# Every trial still records FID, KID, CLIP score and CMMD, and the report shows them.
DEFAULT_OBJECTIVES = "val_loss_grid,latency_ms"


def _split(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")


def _manifest(run_dir: Path | None) -> dict:
    """The manifest of the run being resumed ({} for a new or unreadable run folder: validated later)."""
    if run_dir is None:
        return {}
    try:
        manifest = RunFolder(run_dir).manifest()
    except (UserError, OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _stored_objectives(manifest: dict) -> str | None:
    """The objectives of the run being resumed, comma-separated (None for a new or unreadable run folder)."""
    names = [o.get("name") for o in manifest.get("objectives") or [] if isinstance(o, dict)]
    return ",".join(n for n in names if isinstance(n, str)) or None


def _stored_rungs(manifest: dict) -> dict | None:
    """The scheduler entry of the run being resumed: None for a new run, {} for a run recorded without one (it
    ran without a scheduler)."""
    if not manifest:
        return None
    entry = manifest.get("scheduler")
    return entry if isinstance(entry, dict) else {}


def _stored_budget(manifest: dict) -> dict:
    """The budget of the run being resumed ({} for a new or unreadable run folder)."""
    budget = manifest.get("budget")
    return budget if isinstance(budget, dict) else {}


def _budget_metric(on: str) -> str:
    """The metric --latency-budget-on names."""
    metrics = {"unet": "latency_ms", "image": "image_latency_ms"}
    if on not in metrics:
        raise UserError(f"--latency-budget-on must be unet or image, got {on!r}")
    return metrics[on]


def _sampling(manifest: dict, steps: int | None, guidance: str | None, decoder: str | None) -> SamplingConfig:
    """How one image is made for image_latency_ms: as given, else as the resumed run recorded, else the defaults.

    Raises:
        UserError: a value that differs from the resumed run's (its trials were predicted with its own).
        ConfigError / UnknownNameError: an invalid step count or name.
    """
    stored = manifest.get("sampling") if isinstance(manifest.get("sampling"), dict) else {}
    given = {k: v for k, v in dict(steps=steps, guidance=guidance, decoder=decoder).items() if v is not None}
    changed = {k: (stored[k], v) for k, v in given.items() if k in stored and stored[k] != v}
    if changed:
        raise UserError("this run predicts its images with " + ", ".join(f"{k} {a} (given: {b})" for k, (a, b) in
                        changed.items()) + "; resume with its own values or start a new --run-dir")
    fields = {k: v for k, v in stored.items() if k in SamplingConfig.__dataclass_fields__} | given
    return SamplingConfig(**fields).validate()


def _samples(asked: bool | None, objectives: list[str], manifest: dict) -> bool:
    """Whether trials sample and score their proxies: as asked; else as the resumed run did (a run from before
    the choice existed always sampled); else only when an objective is scored on samples.

    Raises:
        UserError: --no-samples with an objective that is scored on samples.
    """
    needs = [name for name in objectives if name in sample_metrics()]
    if asked is False and needs:
        raise UserError(f"--no-samples: the objective {needs[0]} is scored on generated samples")
    if asked is not None:
        return asked
    if manifest.get("objectives"):
        return bool(manifest.get("samples", True))
    return bool(needs)


def search(
    space: str = typer.Option("unet_mobile", "--space", help="Search space (see `nas spaces`)."),
    trials: int = typer.Option(8, "--trials", help="Trials to finish (a resumed run continues to this count)."),
    objectives: Optional[str] = typer.Option(
        None, "--objectives", help=f"Comma-separated metrics from {', '.join(sorted(METRIC_DIRECTIONS))} "
        f"(aliases: latency, clip, loss). Default: {DEFAULT_OBJECTIVES} (the quality signal that ranked like a 4x "
        "longer training in the fidelity study); a resumed run keeps its own."),
    sampler: str = typer.Option("tpe", "--search-sampler", help="Optuna sampler that proposes architectures: "
                                "tpe | nsga2 | nsga3 | gp | random."),
    old_sampler: Optional[str] = typer.Option(None, "--sampler", hidden=True,
                                              help="Deprecated name of --search-sampler."),
    seed: int = typer.Option(0, "--seed", help="Sampler and training seed."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default runs/<space>-<time>); "
                                           "an existing run folder is resumed."),
    resume: bool = typer.Option(False, "--resume", help="Require --run-dir to be an existing run and continue it."),
    budget_steps: Optional[int] = typer.Option(
        None, "--budget", help=f"Proxy training steps per trial (default {search_steps('scratch')}: as good a "
        f"ranking as {Budget().steps} in the fidelity study, at a quarter of the time; {search_steps('inherit')} with "
        "--proxy inherit; a resumed run keeps its own)."),
    proxy: str = proxy_options.PROXY,
    proxy_scale: Optional[str] = proxy_options.PROXY_SCALE,
    teacher: str = proxy_options.TEACHER,
    teacher_steps: Optional[int] = proxy_options.TEACHER_STEPS,
    inherit_fresh: str = proxy_options.INHERIT_FRESH,
    budget_seconds: Optional[float] = typer.Option(None, "--budget-seconds",
                                                   help="Wall-clock training budget instead of steps."),
    warm_start: str = typer.Option("sd15,mobilediffusion", "--warm-start",
                                   help="Presets evaluated first as anchors of the front ('none' for none)."),
    latency_device: str = typer.Option("cpu", "--latency-device", help="LUT device (see `nas lut show`)."),
    image_size: int = typer.Option(512, "--image-size", help="Deployment image size of the latency table."),
    lut_dir: Optional[Path] = typer.Option(None, "--lut-dir", help="LUT folder (default: user cache)."),
    lut_threads: int = typer.Option(1, "--lut-threads", help="Intra-op threads of a measured CPU LUT (as "
                                    "`nas lut --threads`; part of its fingerprint)."),
    latency_budget_ms: Optional[float] = typer.Option(None, "--latency-budget-ms", help="Constraint on latency "
                                                      "(the metric of --latency-budget-on)."),
    latency_budget_on: str = typer.Option("unet", "--latency-budget-on", help="What --latency-budget-ms bounds: "
                                          "unet (latency_ms, one UNet step) or image (image_latency_ms, one "
                                          "image: text encoder + UNet calls + decoder)."),
    image_steps: Optional[int] = typer.Option(None, "--steps", help="Sampler steps of one image, for image_latency_ms "
                                        "(default 50; not the training budget, which is --budget; a resumed run "
                                        "keeps its own)."),
    guidance: Optional[str] = typer.Option(None, "--guidance", help="cfg | distilled, for image_latency_ms (cfg: "
                                           "two UNet calls per step; default cfg)."),
    decoder: Optional[str] = typer.Option(None, "--decoder", help="VAE decoder of image_latency_ms: sd | half | "
                                          "half_shallow (default sd)."),
    calibrate_latency: Optional[bool] = typer.Option(
        None, "--calibrate-latency/--no-calibrate-latency", help="Fit the LUT's end-to-end overhead if it has none "
        "(times 9 archs end to end; default: only with --latency-budget-ms; a stored fit always applies)."),
    max_params: Optional[int] = typer.Option(None, "--max-params", help="Constraint on full-scale parameters."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Memory a trial may use (e.g. 8GiB; default: "
                                             "the available memory); a bigger estimate makes the trial FAIL."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help=f"Held-out images of the denoising loss (default "
                                        f"{Budget().n_val}, or the held-out split if smaller)."),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", help=f"Images generated and scored per trial "
                                            f"(default {Budget().n_samples}, or the held-out split if smaller)."),
    n_real: Optional[int] = typer.Option(None, "--n-real", help=f"Held-out real images FID/KID compare against "
                                         f"(default {Budget().n_real}, or the held-out split if smaller)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna RDB URL (default: SQLite in the run)."),
    address: Optional[str] = typer.Option(None, "--address", help="Existing Ray cluster host:port."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Trials running at once (default: chosen from "
                                          "the machine's cores, and printed)."),
    cpus_per_trial: Optional[float] = typer.Option(None, "--cpus-per-trial", help="Ray CPUs (and torch threads) per "
                                                   "trial (default: 1 with a scheduler, else 2)."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="Ray GPUs per trial (proxies train on CUDA); below 1, "
                                        "trials share a GPU and each must fit its share of the GPU's memory (checked "
                                        "before anything is built)."),
    max_failures: int = typer.Option(0, "--max-failures", help="Retries of a trial whose worker died."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Trial scheduler: none | mo-asha (multi-objective successive halving: stops trials "
        "outside the top 1/eta of a rung by non-dominated rank) | asha (Ray Tune's ASHA on one objective with an "
        "intermediate signal, e.g. --objectives val_loss). Default: mo-asha when an objective is a quality signal, the "
        "budget is in steps and proxies train from scratch (measured to score about twice the architectures in the "
        "same time: BENCHMARKS.md), else none; a resumed run keeps its own."),
    min_budget: Optional[int] = typer.Option(
        None, "--min-budget", help="Steps at the scheduler's first rung (default: budget / eta rounded to a power "
        "of two: 64 of the default 125 steps, where the fidelity study found the rung signal ranking like the "
        "reference; at 32 steps it carried nothing)."),
    eta: Optional[int] = typer.Option(None, "--eta", help=f"Scheduler reduction factor: the top 1/eta of a rung "
                                      f"continues (default {DEFAULT_ETA})."),
    samples: Optional[bool] = typer.Option(
        None, "--samples/--no-samples", help="Sample and score every trained proxy (FID, KID, CLIP score, CMMD: "
        "shown in the report beside the objectives). Default: only when an objective needs a sample metric (a "
        "resumed run keeps its own choice); without, a trial skips its sampling stage (tens of seconds on a CPU)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables."),
) -> None:
    """Search the space for the best quality per millisecond; writes a run folder and its Pareto set."""
    stored = _manifest(run_dir)  # a resumed run keeps its objectives and budget unless they are given
    objs = parse_objectives(objectives or _stored_objectives(stored) or DEFAULT_OBJECTIVES)
    if old_sampler is not None:
        warn("--sampler is deprecated for nas search (the diffusion sampler of a trial shares that name): use "
             "--search-sampler")
        sampler = old_sampler
    mode = proxy_options.proxy_mode(proxy, teacher, teacher_steps, inherit_fresh=inherit_fresh)
    steps = budget_steps if budget_steps is not None else \
        _stored_budget(stored).get("steps") or search_steps(mode.mode)
    regime = proxy_options.proxy_regime(proxy_scale, stored.get("proxy_scale"))
    budget = fit_heldout(regime.apply(Budget(steps=steps, seconds=budget_seconds)), n_val, n_samples, n_real)
    rungs = resolve_rungs(scheduler, min_budget, eta, budget.steps, _stored_rungs(stored),
                          default=default_scheduler([o.name for o in objs], budget_seconds is not None, mode.mode))
    plan = choose_parallelism(workers, cpus_per_trial, scheduler=rungs.active, gpus_per_trial=gpus_per_trial,
                              address=address)
    samples = _samples(samples, [o.name for o in objs], stored)
    if run_dir is None:
        run_dir = Path("runs") / f"{space}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    settings = TrialSettings(
        run_dir=str(run_dir.resolve()), metrics=tuple(o.name for o in objs), budget=budget,
        latency_device=latency_device, image_size=image_size, lut_dir=str(lut_dir) if lut_dir else None,
        threads=max(1, int(plan.cpus_per_trial)), lut_threads=lut_threads,
        device="cuda" if gpus_per_trial > 0 else "cpu", gpu_fraction=gpus_per_trial,
        latency_budget_ms=latency_budget_ms, calibrate_latency=calibrate_latency, max_params=max_params,
        latency_budget_on=_budget_metric(latency_budget_on),
        sampling=_sampling(stored, image_steps, guidance, decoder),
        max_memory=None if max_memory is None else parse_size(max_memory), proxy=mode, samples=samples)
    opts = SearchOptions(
        run_dir=run_dir, space=space, objectives=objs, trials=trials, sampler=sampler, seed=seed, settings=settings,
        warm_start=_split(warm_start), storage=storage, address=address, workers=plan.workers,
        cpus_per_trial=plan.cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures, resume=resume,
        rungs=rungs)

    validate_options(opts)  # before anything reads the run folder (bad paths end here, in one line)
    out = err_console if json_out else console
    out.print(f"parallelism: {plan.describe()}", soft_wrap=True)
    heartbeat = None if out.is_terminal else PipedProgress(out, run_dir, tuple(o.name for o in objs))  # CI, pipes
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=json_out, disable=heartbeat is not None) as bar:
        prep = bar.add_task("latency table: warm-start blocks", total=None)
        task = bar.add_task("trials", total=trials)

        def on_prepare(done: int, total: int) -> None:
            bar.update(prep, completed=done, total=total)
            if heartbeat:
                heartbeat.prepare(done, total)

        def on_trial(state: dict) -> None:
            bar.update(task, completed=state["done"], description=(
                f"trials ({state['complete']} ok, " + (f"{state['stopped']} stopped, " if state.get("stopped") else "")
                + f"{state['failed']} failed, Pareto {state['pareto']})"))
            if heartbeat:
                heartbeat.trial(state)

        result = run_search(opts, progress=on_trial, prepare_progress=on_prepare)
        bar.update(prep, visible=False)
    trials = RunFolder(result.run_dir).read_trials() if result.n_failed or not result.n_complete else None
    failures = failure_summary(trials) if result.n_failed else ""
    if json_out:
        print_json(result.to_dict())
        _check_some_complete(result, trials, failures)
        return
    console.print(pareto_table(result.pareto, result.n_complete, result.n_failed, tuple(o.name for o in objs),
                               result.n_stopped))
    if any(o.name in QUALITY for o in objs):
        console.print("One seed per trial: quality differences between these designs are not qualified by seed "
                      "spread (`nas ablate --seeds K` measures it).")
    console.print(f"run folder: {result.run_dir}  (trials table: trials.parquet / trials.csv, study: "
                  f"manifest.json 'storage')", soft_wrap=True)
    if result.report:
        console.print(f"report: {result.report}", soft_wrap=True)
    t = result.timings
    console.print(f"{result.seconds:.0f} s in all: prepare {t.get('prepare', 0):.0f} s, Ray start-up "
                  f"{t.get('ray_startup', 0):.1f} s ({t.get('ray_memory_mb', 0):.0f} MB), trials {t.get('trials', 0):.0f} s, "
                  f"report {t.get('report', 0):.0f} s"
                  + (f" (scheduler decisions {t['scheduler']:.3f} s of the trials)" if "scheduler" in t else ""))
    if failures and result.n_complete:
        console.print(f"{result.n_failed} trial(s) failed: {failures}", soft_wrap=True)
    _check_some_complete(result, trials, failures)


def failure_summary(trials: pd.DataFrame, most: int = 3) -> str:
    """The failed trials' reasons, most frequent first, e.g. "2 x training the proxy ... needs about ...; 1 x ..."
    (the first sentence of each, at most `most` reasons; the full text is in each trial's metrics.json)."""
    if not len(trials) or "failure_reason" not in trials.columns:
        return ""
    failed = trials[trials["state"] == "FAIL"]["failure_reason"].fillna("no reason recorded").astype(str)
    counts = failed.map(lambda r: r.split(". ")[0].rstrip(".")[:160]).value_counts()
    parts = [f"{n} x {reason}" for reason, n in counts.iloc[:most].items()]
    if len(counts) > most:
        parts.append(f"{int(counts.iloc[most:].sum())} more with {len(counts) - most} other reason(s)")
    return "; ".join(parts)


def _check_some_complete(result, trials: pd.DataFrame | None, failures: str) -> None:
    """A search that completed no trial did not succeed, whatever its input: exit status 1, one line.

    Raises:
        RunFailed: not one trial completed (the reasons of the failed ones, and that the run folder resumes).
    """
    if result.n_complete == 0:
        states = trials["state"].value_counts()  # read once by the caller whenever nothing completed
        ended = ", ".join(f"{n} {state}" for state, n in states.items()) or "none ran"
        raise RunFailed(f"no trial completed ({ended}" + (f"; failed: {failures}" if failures else "")
                        + f"); {result.run_dir} resumes with `nas search --run-dir {result.run_dir} --resume` once "
                        "the cause is fixed")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
