"""Ablation studies: registered design-change steps, the paper's path, seeds with intervals, proxy fidelity."""

from nas.ablation.paper_steps import PAPER_PATH
from nas.ablation.patch import load_patch_steps, patch_step
from nas.ablation.plan import MODES, PlannedRow, apply_path, plan_rows
from nas.ablation.stats import mean_ci
from nas.ablation.step import (
    STEPS,
    AblationStep,
    StepNotApplicable,
    ablation_step,
    get_step,
)

__all__ = [
    "MODES", "PAPER_PATH", "STEPS", "AblationStep", "PlannedRow", "StepNotApplicable", "ablation_step",
    "apply_path", "get_step", "load_patch_steps", "mean_ci", "patch_step", "plan_rows",
]
