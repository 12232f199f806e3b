"""`nas ablate`: the paper-style ablation table with seeds and intervals (and the progress helpers `nas fidelity`
shares)."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.console import console, err_console, human, print_json
from evaluators.training import Budget, fit_heldout
from evaluators.training.proxy_mode import default_steps
from nas.commands import proxy_options
from nas.trial_runner import QUALITY_KEYS, TrialSettings

PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn())


class BarProgress:
    """A `progress(done, total)` callback drawing on a rich progress bar.

    Ray Tune pickles the executor's progress callback with its experiment state; a rich bar holds locks and
    cannot be pickled, so a pickled copy of this callback restores as one that draws nothing.
    """

    def __init__(self, bar: Progress, task: int):
        self.bar, self.task = bar, task

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __reduce__(self):
        return _silent, ()


def _silent() -> Callable[[int, int], None]:
    return lambda done, total: None


def _split(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _run_dir(run_dir: Optional[Path], prefix: str) -> Path:
    return (run_dir or Path("runs") / f"{prefix}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}").resolve()


def _fmt(value, ci=None, spec="{:.3f}") -> str:
    if value is None:
        return "-"
    return spec.format(value) + ("" if ci is None else " ± " + spec.format(ci))


def ablate(
    space: str = typer.Option("unet_mobile", "--space", help="Search space (rows say whether it contains them)."),
    baseline: str = typer.Option("sd15", "--baseline", help="Preset the path starts from."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Comma-separated steps in order (default: the "
                                        "MobileDiffusion path, then every --patch step)."),
    patch: Optional[list[Path]] = typer.Option(None, "--patch", help="JSON patch file of extra steps "
                                               "(repeatable)."),
    mode: str = typer.Option("cumulative", "--mode", help="cumulative | leave-one-out | both."),
    seeds: int = typer.Option(2, "--seeds", help="Proxy-training seeds per row (1: no intervals)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Coverage of the t-intervals."),
    require_ci: bool = typer.Option(False, "--require-ci", help="Fail unless intervals can be computed."),
    budget_steps: Optional[int] = typer.Option(None, "--budget", help=f"Proxy training steps per trial (default "
                                               f"{Budget().steps}; {default_steps('inherit')} with --proxy inherit)."),
    proxy: str = proxy_options.PROXY,
    proxy_scale: Optional[str] = proxy_options.PROXY_SCALE,
    teacher: str = proxy_options.TEACHER,
    teacher_steps: Optional[int] = proxy_options.TEACHER_STEPS,
    inherit_fresh: str = proxy_options.INHERIT_FRESH,
    n_val: Optional[int] = typer.Option(None, "--n-val", help=f"Held-out images of the denoising loss (default "
                                        f"{Budget().n_val}, or the held-out split if smaller)."),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", help=f"Images generated and scored per trial "
                                            f"(default {Budget().n_samples}, or the held-out split if smaller)."),
    n_real: Optional[int] = typer.Option(None, "--n-real", help=f"Held-out real images FID/KID compare against "
                                         f"(default {Budget().n_real}, or the held-out split if smaller)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default runs/ablate-<time>); "
                                           "an existing ablation run folder is resumed."),
    latency_devices: str = typer.Option("iphone15pro,pixel8", "--latency-devices",
                                        help="Comma-separated LUT devices; latency_ms is the first."),
    image_size: int = typer.Option(512, "--image-size", help="Deployment image size of the latency tables."),
    lut_dir: Optional[Path] = typer.Option(None, "--lut-dir", help="LUT folder (default: user cache)."),
    lut_threads: int = typer.Option(1, "--lut-threads", help="Intra-op threads of measured CPU LUTs (as "
                                    "`nas lut --threads`; part of their fingerprint)."),
    address: Optional[str] = typer.Option(None, "--address", help="Existing Ray cluster host:port."),
    workers: int = typer.Option(1, "--workers", help="Trials running at once."),
    cpus_per_trial: float = typer.Option(2.0, "--cpus-per-trial", help="Ray CPUs (and torch threads) per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="Ray GPUs per trial (proxies train on CUDA); below 1, "
                                        "trials share a GPU and each must fit its share of the GPU's memory (checked "
                                        "before anything is built)."),
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
) -> None:
    """Evaluate a path of design changes (cumulative and/or leave-one-out) with seeds and 95% intervals."""
    from nas.ablation import load_patch_steps, plan_rows
    from nas.ablation.plan import resolve_steps
    from nas.ablation.study import AblationSpec, run_ablation, validate_spec
    from search_spaces.presets import get_preset

    extra = [s for path in (patch or []) for s in load_patch_steps(path)]
    chosen = resolve_steps(_split(steps) if steps is not None else None, extra)
    devices = tuple(_split(latency_devices))
    spec = AblationSpec(space=space, baseline=baseline, rows=(), seeds=seeds, confidence=confidence,
                        require_ci=require_ci, latency_devices=devices, command=["nas", *sys.argv[1:]])
    validate_spec(spec)
    spec = AblationSpec(**{**spec.__dict__, "rows": tuple(plan_rows(baseline, get_preset(baseline), chosen, mode))})
    mode = proxy_options.proxy_mode(proxy, teacher, teacher_steps, inherit_fresh=inherit_fresh)
    settings = TrialSettings(
        run_dir=str(_run_dir(run_dir, "ablate")), metrics=("latency_ms",) + QUALITY_KEYS, proxy=mode,
        budget=fit_heldout(proxy_options.proxy_regime(proxy_scale).apply(Budget(steps=proxy_options.trial_steps(
            budget_steps, mode))), n_val, n_samples, n_real),
        latency_device=devices[0],
        image_size=image_size,
        lut_dir=str(lut_dir) if lut_dir else None, threads=max(1, int(cpus_per_trial)), lut_threads=lut_threads,
        calibrate_latency=True, device="cuda" if gpus_per_trial > 0 else "cpu", gpu_fraction=gpus_per_trial)
    with Progress(*PROGRESS_COLUMNS, console=err_console if json_out else console, transient=json_out) as bar:
        task = bar.add_task(f"ablation trials ({len(spec.rows)} rows x {seeds} seeds)", total=None)
        result = run_ablation(spec, settings, address=address, workers=workers, cpus_per_trial=cpus_per_trial,
                              gpus_per_trial=gpus_per_trial,
                              progress=BarProgress(bar, task))
    if json_out:
        print_json(result.to_dict())
        return
    for table_mode in dict.fromkeys(r["mode"] for r in result.rows):
        table = Table("step", "params", "MACs", *(f"{d} ms" for d in devices), "FID", "CLIP", "val loss",
                      "grid loss", "Δ FID", "Δ ms", title=f"{table_mode} ablation from {baseline} ({seeds} seeds, "
                      f"mean ± {confidence:.0%} CI)")
        for r in (r for r in result.rows if r["mode"] == table_mode):
            table.add_row(r["step"], human(r["params"] or 0), human(r["macs"] or 0),
                          *(_fmt(r[f"latency_ms_{d}"], spec="{:.1f}") for d in devices),
                          _fmt(r["fid"], r["fid_ci"], "{:.2f}"), _fmt(r["clip_score"], r["clip_score_ci"]),
                          _fmt(r["val_loss"], r["val_loss_ci"], "{:.4f}"),
                          _fmt(r["val_loss_grid"], r["val_loss_grid_ci"], "{:.4f}"),
                          _fmt(r["delta_prev_fid"], spec="{:+.2f}"),
                          _fmt(r["delta_prev_latency_ms"], spec="{:+.1f}"))
        console.print(table)
    console.print(f"run folder: {result.run_dir}; tables: {', '.join(f.name for f in result.files)} in ablation/; "
                  f"{result.ray_trials} trial(s) ran this time")


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate)
