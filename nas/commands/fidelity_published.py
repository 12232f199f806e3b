"""`nas fidelity --panel published`: the proxy's call on each published outcome, beside the paper's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rich.progress import Progress
from rich.table import Table

from core.console import console, err_console, print_json
from evaluators.training import Budget
from evaluators.training.proxy_mode import ProxyMode
from evaluators.training.regimes import DEFAULT_REGIME, REGIMES, ProxyRegime
from nas.commands.ablate import PROGRESS_COLUMNS, BarProgress, _run_dir
from nas.trial_runner import QUALITY_KEYS, TrialSettings

if TYPE_CHECKING:
    from nas.ablation.published_study import PublishedResult


def published(*, published_file: Optional[Path], short_steps: Optional[int], seeds: int, signal: str,
              mode: ProxyMode, imports: list[Path], train: bool, run_dir: Optional[Path], json_out: bool,
              regime: ProxyRegime = REGIMES[DEFAULT_REGIME], record_shipped: bool = False,
              **resources: Any) -> None:
    """Load the published panel, train or import its architectures at the short budget and print the calls.

    Args:
        short_steps: training steps (default: the evaluator's default budget, the one the committed
            `benchmarks/fidelity/trials.csv` short rows were trained at).
        regime: the proxy regime the panel trains at (`--proxy-scale`).
        record_shipped: also put the agreement on the package's shipped record (core/agreement_record.json).
        resources: address, workers, cpus_per_trial and gpus_per_trial, as `nas fidelity` takes them.

    Raises:
        UserError: a malformed published file, a row the space cannot express, a bad signal or seed count.
    """
    from core.metrics import ALIASES
    from nas.ablation.published import load_published
    from nas.ablation.published_study import published_jobs, run_published

    panel = load_published(published_file)  # a bad file fails before anything is written
    budget = regime.apply(Budget() if short_steps is None else Budget(steps=short_steps))
    cpus = resources.get("cpus_per_trial", 2.0)
    gpus = resources.get("gpus_per_trial", 0.0)
    settings = TrialSettings(run_dir=str(_run_dir(run_dir, "fidelity")), metrics=QUALITY_KEYS, budget=budget,
                             threads=max(1, int(cpus)), device="cuda" if gpus > 0 else "cpu", gpu_fraction=gpus,
                             proxy=mode)
    total = len(published_jobs(panel, max(seeds, 1)))
    with Progress(*PROGRESS_COLUMNS, console=err_console if json_out else console, transient=json_out) as bar:
        task = bar.add_task(f"published panel ({len(panel.architectures())} archs, {seeds} seeds)", total=total)
        result = run_published(panel, settings, seeds=seeds, signal=ALIASES.get(signal, signal), imports=imports,
                               train=train, command=["nas", *sys.argv[1:]], progress=BarProgress(bar, task),
                               record_shipped=record_shipped, **resources)
    if json_out:
        print_json(result.to_dict())
        return
    print_result(result, budget, seeds, train)


def print_result(result: PublishedResult, budget: Budget, seeds: int, train: bool = True) -> None:
    """The published panel's table, the rule, the agreement counts and where the files went, on the console."""
    from nas.ablation.published_table import paper_numbers, proxy_cell, summary_lines

    table = Table("outcome", "vs", "paper", "paper's numbers", *(f"proxy {s}" for s in result.signals),
                  title=f"Published panel: proxy ({budget.steps} steps, {budget.image_size} px, width/"
                        f"{budget.width_divisor}, {seeds} seeds) vs the papers")
    for call in result.calls:
        basis = "" if call.get("call_basis") == "paper" else " (numbers)"
        table.add_row(call["label"], call["base"], call["paper_call"] + basis, paper_numbers(call),
                      *(proxy_cell(call, s) for s in result.signals))
    console.print(table)
    console.print("neutral: |mean(row) - mean(base)| <= the larger seed range (max - min) of the two; x: a call "
                  "that is not the paper's")
    for line in summary_lines(result):
        console.print(line)
    if result.missing:
        console.print(f"{result.missing} planned trial(s) have no result yet"
                      + ("" if train else " (--no-train); run without it to train them"))
    console.print(f"wrote {', '.join(f.name for f in result.files)} to {result.run_dir / 'published'}")
