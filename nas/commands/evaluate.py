"""`nas evaluate`: one proxy trial end to end (train, sample, score) for a preset or a config file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from core.console import console, err_console, human, print_json, warn
from core.errors import UserError
from core.io import write_json
from core.provenance import provenance
from evaluators.memory import parse_size
from evaluators.quality import SOURCES, get_quality_evaluator
from evaluators.training import Budget, check_proxy_fits, evaluate_arch, fit_heldout
from evaluators.training.proxy_mode import default_steps
from nas.arch_input import resolve_arch
from nas.commands import proxy_options

_DEFAULT = Budget()


def evaluate(
    preset: Optional[str] = typer.Option(None, "--preset", help="A preset name (see `nas presets`)."),
    config: Optional[Path] = typer.Option(None, "--config", help="An ArchConfig JSON file (or an export)."),
    steps: Optional[int] = typer.Option(None, "--budget", "--steps", help=f"Optimizer steps of proxy training "
                                        f"(default {_DEFAULT.steps}, {default_steps('inherit')} with --proxy inherit; "
                                        "the same flag as nas search's)."),
    seconds: Optional[float] = typer.Option(None, "--budget-seconds", "--seconds", help="Wall-clock training "
                                            "budget instead of steps (ranks architectures by speed as much as by "
                                            "quality)."),
    seed: int = typer.Option(0, "--seed", help="Seed of weights, batches, noise and sampling."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/evaluate/<arch id>-seed<S>)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    batch_size: int = typer.Option(_DEFAULT.batch_size, "--batch-size", help="Training images per step."),
    lr: float = typer.Option(_DEFAULT.lr, "--lr", help="AdamW learning rate."),
    prediction: str = typer.Option(_DEFAULT.prediction, "--prediction", help="epsilon | v_prediction."),
    ema: Optional[float] = typer.Option(None, "--ema", help="Evaluate an EMA of the weights with this decay."),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", "--samples", help="Images generated and scored "
                                            f"(default {_DEFAULT.n_samples}, or the held-out split if smaller)."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Held-out images of the denoising loss (default "
                                        f"{_DEFAULT.n_val}, or the held-out split if smaller)."),
    n_real: Optional[int] = typer.Option(None, "--n-real", help="Held-out real images FID/KID compare against "
                                         f"(default {_DEFAULT.n_real}, or the held-out split if smaller)."),
    sample_steps: int = typer.Option(_DEFAULT.sample_steps, "--sample-steps", help="Sampler steps."),
    sampler: str = typer.Option(_DEFAULT.sampler, "--diffusion-sampler", help="Diffusion sampler of the "
                                "generated images: dpm | ddim."),
    old_sampler: Optional[str] = typer.Option(None, "--sampler", hidden=True,
                                              help="Deprecated name of --diffusion-sampler."),
    cfg_scale: float = typer.Option(_DEFAULT.cfg_scale, "--cfg-scale", help="Classifier-free guidance scale."),
    image_size: int = typer.Option(_DEFAULT.image_size, "--image-size", help="Proxy image side (pixels)."),
    width_divisor: int = typer.Option(_DEFAULT.width_divisor, "--width-divisor", help="Proxy channel divisor."),
    train_images: Optional[int] = typer.Option(None, "--train-images", help="Training images (default: the "
                                               "dataset's default size)."),
    data: str = typer.Option(_DEFAULT.data, "--data", help="Dataset kind: synthetic | folder | coco."),
    data_path: Optional[str] = typer.Option(None, "--data-path", help="Dataset location (folder and coco)."),
    source: str = typer.Option("domain", "--source", help=f"Quality feature source: {' | '.join(SOURCES)}."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Evaluator weights cache."),
    evaluator_steps: Optional[int] = typer.Option(None, "--evaluator-steps", help="Domain source: train the domain "
                                                  "CLIP for this many steps instead of its recipe's."),
    evaluator_images: Optional[int] = typer.Option(None, "--evaluator-images", help="Domain source: synthetic "
                                                   "training images of the domain CLIP instead of its recipe's."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (bfloat16 autocast on CUDA)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
    proxy: str = proxy_options.PROXY,
    teacher: str = proxy_options.TEACHER,
    teacher_steps: Optional[int] = proxy_options.TEACHER_STEPS,
    distill_output: float = proxy_options.DISTILL_OUTPUT,
    distill_feature: float = proxy_options.DISTILL_FEATURE,
    feature_points: str = proxy_options.FEATURE_POINTS,
    inherit_fresh: str = proxy_options.INHERIT_FRESH,
    train_teacher: bool = typer.Option(True, "--train-teacher/--no-train-teacher", help="--no-train-teacher: a "
                                       "teacher missing from the cache is an error instead of a training."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Refuse a proxy whose estimated training "
                                             "memory exceeds this (e.g. 8GiB; default: the available memory)."),
) -> None:
    """Train an architecture's proxy briefly, sample held-out captions, print FID, KID, CLIP score and losses.

    Sizes are checked before anything is built: a proxy whose estimated memory exceeds the available memory
    (or --max-memory) is refused. The held-out sizes default to the held-out split when it is smaller (with a
    warning); explicit sizes larger than the split are refused.
    """
    arch, label = resolve_arch(preset, config)
    if old_sampler is not None:
        warn("--sampler is deprecated for nas evaluate (nas search's Optuna sampler shares that name): use "
             "--diffusion-sampler")
        sampler = old_sampler
    if steps is not None and seconds is not None:
        raise UserError("give at most one of --budget and --budget-seconds")
    if source not in SOURCES:
        raise UserError(f"unknown --source {source!r}; choose one of: {', '.join(SOURCES)}")
    recipe = {k: v for k, v in (("steps", evaluator_steps), ("n_train", evaluator_images)) if v is not None}
    if any(v < 1 for v in recipe.values()):
        raise UserError("--evaluator-steps and --evaluator-images must be positive")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be positive, got {threads}")
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise UserError(f"device {device!r} is not available here (cpu{', cuda' if torch.cuda.is_available() else ''})")
    limit = None if max_memory is None else parse_size(max_memory)
    mode = proxy_options.proxy_mode(proxy, teacher, teacher_steps, distill_output, distill_feature, feature_points,
                                    inherit_fresh, train_teacher)
    budget = Budget(steps=proxy_options.trial_steps(steps, mode), seconds=seconds, batch_size=batch_size, lr=lr,
                    prediction=prediction, ema_decay=ema, sample_steps=sample_steps, sampler=sampler,
                    cfg_scale=cfg_scale, image_size=image_size, width_divisor=width_divisor, n_train=train_images,
                    data=data, data_path=data_path)
    budget = fit_heldout(budget, n_val, n_samples, n_real)
    check_proxy_fits(arch, budget, device, limit, mode)  # before the domain CLIP is loaded (or trained)
    if threads is not None:
        torch.set_num_threads(threads)
    out = out or Path("runs") / "evaluate" / f"{arch.arch_id}-seed{seed}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output folder {out}: {err.strerror or err}") from None
    evaluator = _evaluator(source, image_size, cache_dir, recipe, device)

    total = budget.seconds or budget.steps
    with Progress(TextColumn("training proxy"), BarColumn(), MofNCompleteColumn() if not budget.seconds else
                  TextColumn("{task.completed:.0f}/{task.total:.0f} s"), TextColumn("loss {task.fields[loss]:.4f}"),
                  TimeElapsedColumn(), console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("train", total=total, loss=float("nan"))

        def report(r: dict) -> None:
            bar.update(task, completed=r["seconds"] if budget.seconds else r["step"], loss=r["loss"])

        with proxy_options.teacher_progress(mode.teacher) as teacher_report:
            result = evaluate_arch(arch, budget, seed=seed, out_dir=out, evaluator=evaluator, report=report,
                                   device=device, max_memory=limit, proxy_mode=mode, teacher_progress=teacher_report)
    record = result.to_dict() | {"arch": label, "provenance": provenance(device=device,
                                                                          threads=torch.get_num_threads())}
    trial_json = write_json(out / "trial.json", record)
    if json_out:
        print_json(record | {"trial_json": str(trial_json)})
    else:
        _print(result, label, trial_json)
    if result.failed:
        sys.exit(1)


def _evaluator(source: str, image_size: int, cache_dir: Optional[Path], recipe: dict, device: str):
    if source == "standard":
        return get_quality_evaluator("standard", cache_dir=cache_dir, device=device)
    with Progress(TextColumn("domain CLIP (first use trains it)"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("clip", total=None)
        return get_quality_evaluator("domain", image_size=image_size, cache_dir=cache_dir, device=device,
                                     progress=lambda s, n, _loss: bar.update(task, completed=s, total=n), **recipe)


def _print(r, label: str, trial_json: Path) -> None:
    console.print(f"{label}: arch {r.arch_id}, proxy {r.proxy_arch_id} ({human(r.proxy_params)} UNet params), "
                  f"seed {r.seed}")
    if r.failed:
        console.print(f"[red]trial failed[/] after {r.steps} steps: {r.failure_reason}")
    else:
        table = Table("metric", "value")
        table.add_row("FID", f"{r.fid:.3f}")
        table.add_row("KID", f"{r.kid:.5f}")
        table.add_row("CLIP score", f"{r.clip_score:.4f}")
        table.add_row("held-out denoising loss", f"{r.val_loss:.5f}")
        table.add_row("final training loss", f"{r.train_loss:.5f}")
        table.add_row("training steps", str(r.steps))
        if r.teacher_distance is not None:
            table.add_row("teacher distance", f"{r.teacher_distance:.5f}")
        console.print(table)
    if r.proxy_mode == "inherit":
        t = r.teacher
        trained = f"trained now in {t['seconds_now']:.0f} s" if t["trained_now"] else "cached"
        console.print(f"proxy: inherit from teacher {t['label']} (arch {t['arch_id']}, {t['steps']} steps, {trained}); "
                      f"{r.inherited_fraction:.1%} of the proxy UNet's parameters inherited, distilled at "
                      f"{', '.join(r.inherit.get('feature_points', [])) or 'the output only'}")
        for line in r.inherit_fallbacks:
            console.print(f"  fallback: {line}")
    timings = "  ".join(f"{stage} {s:.1f} s" for stage, s in r.seconds.items())
    console.print(f"time: {timings}  (total {r.total_seconds:.1f} s)")
    console.print(f"features: {r.evaluator.get('source')} ({r.evaluator.get('model', '-')})")
    if r.sample_grid:
        console.print(f"sample grid: {r.sample_grid}")
    console.print(f"trial record: {trial_json}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
