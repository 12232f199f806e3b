"""`nas fidelity`: does the short proxy budget rank a panel of architectures like a reference budget does?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress
from rich.table import Table

from core.console import console, err_console, print_json
from core.metrics import ALIASES
from evaluators.training import Budget
from evaluators.training.proxy_mode import ProxyMode, search_steps
from nas.commands import proxy_options
from nas.commands.ablate import PROGRESS_COLUMNS, BarProgress, _run_dir
from nas.trial_runner import QUALITY_KEYS, TrialSettings


def _ci(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None or value != value:
        return "-"
    return f"{value:.2f} [{row[f'{key}_low']:.2f}, {row[f'{key}_high']:.2f}]"


def fidelity(
    panel: str = typer.Option("paper", "--panel", help="paper (sd15, each cumulative paper step, bk_sdm_tiny) | "
                              "random (--archs samples of --space) | published (the proxy's call on each published "
                              "full-scale outcome beside the paper's; short budget only) | a file of ArchConfigs (JSON "
                              "list, object or JSON lines)."),
    published_file: Optional[Path] = typer.Option(None, "--published-file", help="With --panel published: a file of "
                                                  "published outcomes (default: the shipped nas/ablation/"
                                                  "published.json)."),
    signal: str = typer.Option("val_loss_grid", "--signal", help="With --panel published: the proxy signal whose "
                               "calls are counted first (FID and CLIP score are called too where samples were drawn)."),
    space: str = typer.Option("unet_mobile", "--space", help="Search space of the random panel."),
    archs: int = typer.Option(10, "--archs", help="Architectures of the random panel."),
    sample_seed: int = typer.Option(0, "--sample-seed", help="Seed of the random panel."),
    short_steps: Optional[int] = typer.Option(None, "--short-steps", "--short",
                                              help="Short budget under test: training steps (default: the search's, "
                                              f"{search_steps('scratch')}; {search_steps('inherit')} with --proxy "
                                              f"inherit; {Budget().steps} for --panel published, the budget of the "
                                              "committed trials)."),
    proxy: str = typer.Option("scratch", "--proxy", help="How the short budget's proxies start: scratch | inherit "
                              "(from the trained --teacher, distilled; the reference always trains from scratch)."),
    proxy_scale: Optional[str] = typer.Option(None, "--proxy-scale", help="Proxy regime of the short budget (as "
                                              "`nas search --proxy-scale`; default fast)."),
    reference_proxy_scale: Optional[str] = typer.Option(
        None, "--reference-proxy-scale", help="Proxy regime of the reference (default: the short's): scale "
        "fidelity, e.g. --proxy-scale fast --reference-proxy-scale px32 --reference-steps <short's>: does the "
        "short regime rank like a larger one? --reference-image-size / --reference-width-divisor override it."),
    teacher: str = proxy_options.TEACHER,
    teacher_steps: Optional[int] = proxy_options.TEACHER_STEPS,
    inherit_fresh: str = proxy_options.INHERIT_FRESH,
    short_seeds: int = typer.Option(2, "--short-seeds", help="Seeds per architecture at the short budget (2+ "
                                    "gives the seed ceiling)."),
    reference_steps: int = typer.Option(4 * Budget().steps, "--reference-steps", "--long",
                                        help="Reference budget: training steps."),
    reference_image_size: Optional[int] = typer.Option(None, "--reference-image-size",
                                                       help="Reference proxy image side (default: the short's)."),
    reference_width_divisor: Optional[int] = typer.Option(
        None, "--reference-width-divisor", help="Reference proxy width divisor (default: the short's; smaller is "
        "wider)."),
    reference_seeds: int = typer.Option(1, "--reference-seeds", help="Seeds per architecture at the reference."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds at both budgets (overrides the two above)."),
    imports: list[Path] = typer.Option([], "--import", help="CSV of trials recorded earlier (e.g. the committed "
                                       "benchmarks/fidelity/trials.csv): rows of the same architecture, seed, "
                                       "budget and evaluator are used instead of training again. Repeatable."),
    train: bool = typer.Option(True, "--train/--no-train", help="--no-train: only analyse what is on record."),
    confidence: float = typer.Option(0.95, "--confidence", help="Bootstrap interval level."),
    target: str = typer.Option("fid", "--target", help="The reference's quality metric every short signal is also "
                               "ranked against (does the cheap signal predict the quality the reference measures?)."),
    record_shipped: bool = typer.Option(False, "--record-shipped", help="Maintainers: also put a complete study "
                                        "on the package's shipped record (core/fidelity_record.json; with --panel "
                                        "published, core/agreement_record.json)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default runs/fidelity-<time>); "
                                           "an existing fidelity run folder is resumed."),
    address: Optional[str] = typer.Option(None, "--address", help="Existing Ray cluster host:port."),
    workers: int = typer.Option(1, "--workers", help="Trials running at once."),
    cpus_per_trial: float = typer.Option(2.0, "--cpus-per-trial", help="Ray CPUs (and torch threads) per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="Ray GPUs per trial (proxies train on CUDA); below 1, "
                                        "trials share a GPU and each must fit its share of the GPU's memory (checked "
                                        "before anything is built)."),
    json_out: bool = typer.Option(False, "--json", help="Print the study as JSON instead of a table."),
) -> None:
    """Rank agreement (Kendall tau, Spearman rho, bootstrap intervals) of the short proxy budget with a reference,
    the seed ceiling, the seed spread and the cost of every quality signal."""
    from core.errors import UserError
    from nas.ablation.fidelity import StudyPlan, run_fidelity
    from nas.ablation.panels import load_panel

    if not 0 < confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {confidence}")
    if published_file is not None and panel != "published":
        raise UserError("--published-file goes with --panel published")
    if panel != "published":
        chosen = load_panel(panel, space, archs, sample_seed)  # bad panels fail before anything is written
    mode = proxy_options.proxy_mode(proxy, teacher, teacher_steps, inherit_fresh=inherit_fresh, train_teacher=train)
    regime = proxy_options.proxy_regime(proxy_scale)
    reference_regime = proxy_options.proxy_regime(reference_proxy_scale) if reference_proxy_scale else regime
    if panel == "published":
        from nas.commands.fidelity_published import published

        return published(published_file=published_file, short_steps=short_steps, seeds=seeds or short_seeds,
                         signal=signal, mode=mode, imports=imports, train=train, run_dir=run_dir, json_out=json_out,
                         address=address, workers=workers, cpus_per_trial=cpus_per_trial,
                         gpus_per_trial=gpus_per_trial, regime=regime, record_shipped=record_shipped)
    short_steps = search_steps(mode.mode) if short_steps is None else short_steps
    short = regime.apply(Budget(steps=short_steps))
    reference = reference_regime.apply(short).replace(steps=reference_steps)
    reference = reference.replace(image_size=reference_image_size or reference.image_size,
                                  width_divisor=reference_width_divisor or reference.width_divisor)
    base = TrialSettings(run_dir=str(_run_dir(run_dir, "fidelity")), metrics=QUALITY_KEYS, budget=short,
                         threads=max(1, int(cpus_per_trial)), device="cuda" if gpus_per_trial > 0 else "cpu",
                         gpu_fraction=gpus_per_trial,
                         proxy=mode)
    reference_settings = TrialSettings(**{**base.__dict__, "budget": reference, "proxy": ProxyMode()})
    plan = StudyPlan(panel, chosen, base, reference_settings,
                     short_seeds=seeds or short_seeds, reference_seeds=seeds or reference_seeds,
                     target=ALIASES.get(target, target))  # an unknown name is refused by run_fidelity
    total = len(chosen) * (plan.short_seeds + plan.reference_seeds)
    with Progress(*PROGRESS_COLUMNS, console=err_console if json_out else console, transient=json_out) as bar:
        task = bar.add_task(f"fidelity trials ({len(chosen)} archs, {plan.short_seeds}+{plan.reference_seeds} "
                            "seeds)", total=total)
        result = run_fidelity(plan, imports=imports, train=train, confidence=confidence, record_shipped=record_shipped,
                              command=["nas", *sys.argv[1:]], address=address, workers=workers,
                              cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                              progress=BarProgress(bar, task))
    if json_out:
        print_json(result.to_dict())
        return
    table = Table("metric", "n", "tau [95% CI]", "rho [95% CI]", "ceiling tau", "seed sd", "s/trial",
                  f"tau vs ref {plan.target}",
                  title=f"Proxy fidelity ({panel}): {short_steps} steps"
                        f"{f' (inherit from {mode.teacher})' if mode.inherit else ''} vs reference {reference_steps} steps, "
                        f"{reference.image_size} px, width/{reference.width_divisor}")
    for row in result.correlations:
        seconds = row.get("seconds_short")
        table.add_row(row["metric"], str(row["n"]), _ci(row, "tau"), _ci(row, "rho"),
                      _ci(row, "ceiling_short_tau"), "-" if row.get("seed_sd_short") is None
                      else f"{row['seed_sd_short']:.3g}", "-" if seconds is None else f"{seconds:.0f}",
                      _ci(row, "target_tau"))
    console.print(table)
    if result.missing:
        console.print(f"{result.missing} planned trial(s) have no result yet"
                      + ("" if train else " (--no-train); run without it to train them"))
    console.print(f"run folder: {result.run_dir}; files in fidelity/: {', '.join(f.name for f in result.files)}")


def register(app: typer.Typer) -> None:
    app.command("fidelity")(fidelity)
