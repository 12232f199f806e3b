"""Which architectures an ablation study evaluates: the cumulative path and the leave-one-out variants."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserError
from nas.ablation.step import AblationStep
from search_spaces.config import ArchConfig

MODES = ("cumulative", "leave-one-out", "both")
FULL_PATH = "full_path"  # step label of the leave-one-out reference row (every step applied)


@dataclass(frozen=True)
class PlannedRow:
    """One row of an ablation table before it is evaluated."""

    mode: str  # "cumulative" or "leave-one-out"
    step: str  # step applied last (cumulative), step left out (leave-one-out), "baseline" or FULL_PATH
    description: str  # what the row changes
    config: ArchConfig  # the architecture of the row
    previous: int | None  # index (in the plan) of the row "delta vs previous" compares with


def apply_path(config: ArchConfig, steps: list[AblationStep]) -> ArchConfig:
    """`config` with every step applied in order (a non-applicable step raises StepNotApplicable)."""
    for step in steps:
        config = step(config)
    return config


def plan_rows(baseline_name: str, baseline: ArchConfig, steps: list[AblationStep], mode: str) -> list[PlannedRow]:
    """The rows of a study, cumulative rows first.

    Cumulative: the baseline, then each step applied on top of the previous row. Leave-one-out: the full
    path, then the full path without one step at a time ("delta vs previous" compares with the full path).

    Raises:
        UserError: unknown mode, no steps, a repeated step, or a step that does not apply on its path.
    """
    if mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not steps:
        raise UserError("no ablation steps given")
    names = [s.name for s in steps]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"ablation step {repeated[0]!r} is listed twice")
    rows: list[PlannedRow] = []
    if mode in ("cumulative", "both"):
        rows.append(PlannedRow("cumulative", "baseline", f"the {baseline_name} preset", baseline, None))
        config = baseline
        for step in steps:
            config = step(config)
            rows.append(PlannedRow("cumulative", step.name, step.description, config, len(rows) - 1))
    if mode in ("leave-one-out", "both"):
        full = len(rows)
        rows.append(PlannedRow("leave-one-out", FULL_PATH, f"{baseline_name} with every step applied",
                               apply_path(baseline, steps), None))
        for i, step in enumerate(steps):
            others = steps[:i] + steps[i + 1:]
            rows.append(PlannedRow("leave-one-out", step.name, f"every step but: {step.description}",
                                   apply_path(baseline, others), full))
    return rows


def resolve_steps(names: list[str] | None, extra: list[AblationStep] = ()) -> list[AblationStep]:
    """The steps called `names` among the registered ones and `extra` (patch-file steps).

    Args:
        names: step names in order; None means the paper's path followed by every `extra` step.
        extra: steps not in the registry.

    Raises:
        UnknownNameError: a name that is neither registered nor in `extra`.
        UserError: an `extra` step reuses a registered name.
    """
    from nas.ablation.paper_steps import PAPER_PATH
    from nas.ablation.step import STEPS, get_step

    get_step(PAPER_PATH[0])  # make sure the shipped steps are registered
    by_name = {s.name: s for s in extra}
    for name in by_name:
        if name in STEPS:
            raise UserError(f"patch step {name!r} reuses the name of a registered ablation step")
    if names is None:
        return [get_step(n) for n in PAPER_PATH] + list(extra)
    return [by_name[n] if n in by_name else get_step(n) for n in names]
