"""`nas search`: multi-objective architecture search (Optuna chooses, Ray Tune runs, resumable)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from evaluators.training import Budget
from nas.console import console, err_console, human, print_json
from nas.objectives import parse_objectives
from nas.run_folder import METRIC_DIRECTIONS
from nas.search import SearchOptions, run_search
from nas.trial_runner import TrialSettings

DEFAULT_OBJECTIVES = "fid,clip_score,latency_ms"


def _split(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")


def search(
    space: str = typer.Option("unet_mobile", "--space", help="Search space (see `nas spaces`)."),
    trials: int = typer.Option(8, "--trials", help="Trials to finish (a resumed run continues to this count)."),
    objectives: str = typer.Option(DEFAULT_OBJECTIVES, "--objectives",
                                   help=f"Comma-separated metrics from {', '.join(sorted(METRIC_DIRECTIONS))} "
                                        "(aliases: latency, clip, loss)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe | nsga2 | nsga3 | gp | random."),
    seed: int = typer.Option(0, "--seed", help="Sampler and training seed."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default runs/<space>-<time>); "
                                           "an existing run folder is resumed."),
    resume: bool = typer.Option(False, "--resume", help="Require --run-dir to be an existing run and continue it."),
    budget_steps: int = typer.Option(Budget().steps, "--budget", help="Proxy training steps per trial."),
    budget_seconds: Optional[float] = typer.Option(None, "--budget-seconds",
                                                   help="Wall-clock training budget instead of steps."),
    warm_start: str = typer.Option("sd15,mobilediffusion", "--warm-start",
                                   help="Presets evaluated first as anchors of the front ('none' for none)."),
    latency_device: str = typer.Option("cpu", "--latency-device", help="LUT device (see `nas lut show`)."),
    image_size: int = typer.Option(512, "--image-size", help="Deployment image size of the latency table."),
    lut_dir: Optional[Path] = typer.Option(None, "--lut-dir", help="LUT folder (default: user cache)."),
    lut_threads: int = typer.Option(1, "--lut-threads", help="Intra-op threads of a measured CPU LUT (as "
                                    "`nas lut --threads`; part of its fingerprint)."),
    latency_budget_ms: Optional[float] = typer.Option(None, "--latency-budget-ms", help="Constraint on latency."),
    calibrate_latency: Optional[bool] = typer.Option(
        None, "--calibrate-latency/--no-calibrate-latency", help="Fit the LUT's end-to-end overhead if it has none "
        "(times 9 archs end to end; default: only with --latency-budget-ms; a stored fit always applies)."),
    max_params: Optional[int] = typer.Option(None, "--max-params", help="Constraint on full-scale parameters."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna RDB URL (default: SQLite in the run)."),
    address: Optional[str] = typer.Option(None, "--address", help="Existing Ray cluster host:port."),
    workers: int = typer.Option(1, "--workers", help="Trials running at once."),
    cpus_per_trial: float = typer.Option(2.0, "--cpus-per-trial", help="Ray CPUs (and torch threads) per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="Ray GPUs per trial (proxies train on CUDA)."),
    max_failures: int = typer.Option(0, "--max-failures", help="Retries of a trial whose worker died."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables."),
) -> None:
    """Search the space for the best quality per millisecond; writes a run folder and its Pareto set."""
    objs = parse_objectives(objectives)
    budget = Budget(steps=budget_steps, seconds=budget_seconds)
    if run_dir is None:
        run_dir = Path("runs") / f"{space}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    settings = TrialSettings(
        run_dir=str(run_dir.resolve()), metrics=tuple(o.name for o in objs), budget=budget,
        latency_device=latency_device, image_size=image_size, lut_dir=str(lut_dir) if lut_dir else None,
        threads=max(1, int(cpus_per_trial)), lut_threads=lut_threads, device="cuda" if gpus_per_trial > 0 else "cpu",
        latency_budget_ms=latency_budget_ms, calibrate_latency=calibrate_latency, max_params=max_params)
    opts = SearchOptions(
        run_dir=run_dir, space=space, objectives=objs, trials=trials, sampler=sampler, seed=seed, settings=settings,
        warm_start=_split(warm_start), storage=storage, address=address, workers=workers,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures, resume=resume)

    out = err_console if json_out else console
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=json_out) as bar:
        prep = bar.add_task("latency table: warm-start blocks", total=None)
        task = bar.add_task("trials", total=trials)

        def on_prepare(done: int, total: int) -> None:
            bar.update(prep, completed=done, total=total)

        def on_trial(state: dict) -> None:
            bar.update(task, completed=state["done"], description=(
                f"trials ({state['complete']} ok, {state['failed']} failed, Pareto {state['pareto']})"))

        result = run_search(opts, progress=on_trial, prepare_progress=on_prepare)
        bar.update(prep, visible=False)
    if json_out:
        print_json(result.to_dict())
        return
    table = Table("trial", "arch id", "preset", "params", "MACs", "latency ms", "FID", "KID", "CLIP",
                  title=f"Pareto set ({len(result.pareto)} of {result.n_complete} complete, {result.n_failed} failed)")
    for p in result.pareto:
        fmt = lambda v, f="{:.3f}": "-" if v is None else f.format(v)  # noqa: E731
        table.add_row(str(p["number"]), p["arch_id"] or "-", p["preset"] or "", human(p["params"] or 0),
                      human(p["macs"] or 0), fmt(p["latency_ms"], "{:.1f}"), fmt(p["fid"], "{:.2f}"),
                      fmt(p["kid"], "{:.4f}"), fmt(p["clip_score"]))
    console.print(table)
    console.print(f"run folder: {result.run_dir}  (trials table: trials.parquet / trials.csv, study: "
                  f"manifest.json 'storage')")
    if result.report:
        console.print(f"report: {result.report}")
    t = result.timings
    console.print(f"{result.seconds:.0f} s in all: prepare {t.get('prepare', 0):.0f} s, Ray start-up "
                  f"{t.get('ray_startup', 0):.1f} s ({t.get('ray_memory_mb', 0):.0f} MB), trials {t.get('trials', 0):.0f} s, "
                  f"report {t.get('report', 0):.0f} s")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
