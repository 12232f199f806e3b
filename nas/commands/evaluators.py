"""`nas evaluators check`: is the quality evaluator's feature space fit to rank architectures?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from core.console import console, err_console, print_json
from core.errors import UserError
from evaluators.quality import SOURCES, get_quality_evaluator
from evaluators.quality.check import (
    BLUR_LEVELS,
    FLOOR_RATIO,
    MILD_BLUR,
    NOISE_LEVELS,
    check_evaluator,
)

evaluators_app = typer.Typer(no_args_is_help=True, help="Check the image-quality evaluators.")


def _load(source: str, image_size: int, cache_dir: Optional[Path], clip_weights: Optional[str],
          inception_weights: Optional[str], recipe: dict):
    if source not in SOURCES:
        raise UserError(f"unknown --source {source!r}; choose one of: {', '.join(SOURCES)}")
    if source == "standard":
        return get_quality_evaluator("standard", cache_dir=cache_dir, clip_weights=clip_weights,
                                     inception_weights=inception_weights)
    with Progress(TextColumn("training the domain CLIP"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"))
        evaluator = get_quality_evaluator("domain", image_size=image_size, cache_dir=cache_dir, **recipe,
                                          progress=lambda s, n, loss: bar.update(task, completed=s, total=n, loss=loss))
    info = evaluator.info
    if info["trained_now"]:
        err_console.print(f"domain CLIP {info['model_id']} trained in {info['train']['seconds']:.1f} s "
                          f"({info['train']['steps']} steps), cached at {info['cache_path']}")
    elif info.get("shipped"):
        err_console.print(f"domain CLIP {info['model_id']}: the package's trained weights, installed in the cache "
                          f"{info['cache_path']}")
    else:
        err_console.print(f"domain CLIP {info['model_id']} loaded from the cache {info['cache_path']}")
    return evaluator


def check(json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
          source: str = typer.Option("domain", "--source", help=f"Feature source: {', '.join(SOURCES)}."),
          image_size: int = typer.Option(16, "--image-size", help="Image side (domain source)."),
          seed: int = typer.Option(0, "--seed", help="Seed of the check data."),
          cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Weights cache (default "
                                                   "$NAS_CACHE_DIR or ~/.cache/mobile-diffusion-nas)."),
          clip_weights: Optional[str] = typer.Option(None, "--clip-weights", help="Standard source: a local "
                                                     "open_clip checkpoint (or $NAS_CLIP_WEIGHTS)."),
          inception_weights: Optional[str] = typer.Option(None, "--inception-weights", help="Standard source: "
                                                          "clean-fid's inception-2015-12-05.pt (or "
                                                          "$NAS_INCEPTION_WEIGHTS)."),
          train_steps: Optional[int] = typer.Option(None, "--train-steps", help="Domain source: train the "
                                                    "domain CLIP for this many steps instead of the recipe's "
                                                    "(a different cache entry).")) -> None:
    """Held-out retrieval top-1 and FID/KID under noise and blur; exit 1 when a goal is missed."""
    if image_size < 8:
        raise UserError(f"--image-size must be at least 8, got {image_size}")
    if train_steps is not None and train_steps < 1:
        raise UserError(f"--train-steps must be positive, got {train_steps}")
    recipe = {} if train_steps is None else {"steps": train_steps}
    evaluator = _load(source, image_size, cache_dir, clip_weights, inception_weights, recipe)
    report = check_evaluator(evaluator, image_size, seed=seed)
    if json_out:
        print_json(report)
    else:
        _print(report)
    if not report["passed"]:
        sys.exit(1)


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def _print(r: dict) -> None:
    info = r["evaluator"]
    console.print(f"feature source: {info['source']} ({info['model']}, id {info.get('model_id', '-')}, "
                  f"image size {info['image_size']})")
    console.print(f"held-out image->text retrieval top-1: {r['retrieval_top1']:.3f} (goal >= "
                  f"{r['retrieval_goal']})  {_mark(r['retrieval_top1'] >= r['retrieval_goal'])}")
    console.print(f"CLIP score: real captions {r['clip_score_real']:.3f}, shuffled {r['clip_score_shuffled']:.3f}")
    for name, levels, unit in (("noise", NOISE_LEVELS, "sigma"), ("blur", BLUR_LEVELS, "px")):
        table = Table(f"{name} ({unit})", "FID", "KID", title=f"{name}: FID monotone "
                      f"{_mark(r[f'fid_monotone_{name}'])}, KID monotone {_mark(r[f'kid_monotone_{name}'])}")
        table.add_row("0 (other real images)", f"{r['fid_floor']:.3f}", f"{r['kid_floor']:.4f}")
        for level, f, k in zip(levels, r[f"fid_{name}"], r[f"kid_{name}"]):
            table.add_row(f"{level:g}", f"{f:.3f}", f"{k:.4f}")
        console.print(table)
    console.print(f"FID floor {r['fid_floor']:.3f} vs mild blur ({MILD_BLUR:g} px) {r['fid_mild_blur']:.3f}: far "
                  f"below (<= {FLOOR_RATIO:g}x) {_mark(r['floor_far_below_blur'])}")
    console.print(f"[bold]{'passed' if r['passed'] else 'FAILED'}[/] in {r['seconds']:.1f} s")


def register(app: typer.Typer) -> None:
    evaluators_app.command("check")(check)
    app.add_typer(evaluators_app, name="evaluators")
