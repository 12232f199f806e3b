"""How a trial's proxy starts: from scratch, or from a trained teacher (inherit, distil, fine-tune briefly).

`ProxyMode` is plain, frozen and picklable, so it travels with a search's trial settings to every worker; a
worker loads the teacher from the cache (`teacher.load_teacher`) the first time it needs it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from core.errors import UserError
from evaluators.training.budget import Budget
from evaluators.training.distill import POINT_GROUPS, DistillWeights
from evaluators.training.inherit import InheritPolicy
from evaluators.training.teacher import DEFAULT_TEACHER, default_teacher_steps
from search_spaces.config import ArchConfig
from search_spaces.presets import get_preset

PROXY_MODES = ("scratch", "inherit")
FINETUNE_FRACTION = 4  # inherit mode's default fine-tune: 1/4 of the default from-scratch trial's steps


# The search's default training steps from scratch, chosen by the fidelity study (benchmarks/results_fidelity.md,
# rule written down before the analysis): the cheapest budget whose held-out grid loss ranks the paper panel like
# the 2,000-step reference's FID as well as 500 steps do (125 steps: Kendall tau 0.73 [0.42, 1.00]; 500 steps:
# 0.73 [0.27, 1.00]; n = 10), at a quarter of the seconds. `nas evaluate` and `nas ablate` keep the 500-step
# budget (`Budget().steps`): their FID and CLIP columns need the longer training to mean anything.
SEARCH_STEPS = 125
# Fine-tune steps of a search's inherit-mode trial by default, chosen by the inherit fidelity study
# (BENCHMARKS.md, "Teacher-anchored proxies"; rule written before the 32-step rows): 16 steps from the 2,000-step
# sd15 teacher ranked the paper panel against the reference's FID at Kendall tau 0.60 [0.02, 1.00], 32 steps at
# -0.07 [-0.85, 0.61]; 16 steps cost about a quarter of a 125-step scratch trial's seconds (39 s vs 155 s).
INHERIT_SEARCH_STEPS = 16


def default_steps(mode: str) -> int:
    """Training steps of a trial by default: the default budget's from scratch, a quarter of it to fine-tune."""
    return Budget().steps // FINETUNE_FRACTION if mode == "inherit" else Budget().steps


def search_steps(mode: str) -> int:
    """Training steps of a search trial (and of `nas fidelity`'s short budget) by default: SEARCH_STEPS from
    scratch, INHERIT_SEARCH_STEPS of fine-tuning in inherit mode."""
    return INHERIT_SEARCH_STEPS if mode == "inherit" else SEARCH_STEPS


@dataclass(frozen=True)
class ProxyMode:
    """The proxy mode of every trial of a run, with the teacher and the fine-tune recipe of "inherit"."""

    mode: str = "scratch"  # "scratch" (fresh weights) or "inherit" (teacher weights, distilled fine-tune)
    teacher: str = DEFAULT_TEACHER  # the teacher's name: a preset, or the config file it was read from
    teacher_config: str = ""  # the teacher's full-scale ArchConfig JSON ("": the preset named `teacher`)
    teacher_steps: int = 0  # teacher training steps (0: default_teacher_steps(), 4x the default trial's)
    teacher_seed: int = 0  # the teacher's training seed
    train_teacher: bool = True  # False: a missing or invalid cached teacher is an error, never trained here
    distill_output: float = 1.0  # weight of output-level distillation
    distill_feature: float = 1.0  # weight of feature-level distillation
    feature_points: tuple[str, ...] = POINT_GROUPS  # where features are distilled ("down", "mid", "up", ...)
    inherit_fresh: tuple[str, ...] = ()  # kinds of change that start fresh (inherit.FALLBACK_KINDS)
    fresh_reason: str = ""  # why they do (recorded in each trial)

    def __post_init__(self) -> None:
        if self.mode not in PROXY_MODES:
            raise UserError(f"unknown proxy mode {self.mode!r}; choose one of: {', '.join(PROXY_MODES)}")
        if self.teacher_steps < 0:
            raise UserError(f"teacher steps must be positive, got {self.teacher_steps}")
        DistillWeights(self.distill_output, self.distill_feature, tuple(self.feature_points))  # validate now,
        InheritPolicy(fresh=tuple(self.inherit_fresh))  # not in a worker

    @property
    def inherit(self) -> bool:
        return self.mode == "inherit"

    @property
    def teacher_arch(self) -> ArchConfig:
        """The teacher's full-scale architecture."""
        return ArchConfig.from_json(self.teacher_config) if self.teacher_config else get_preset(self.teacher)

    @property
    def steps(self) -> int:
        """Teacher training steps."""
        return self.teacher_steps or default_teacher_steps()

    @property
    def distill(self) -> DistillWeights:
        return DistillWeights(self.distill_output, self.distill_feature, tuple(self.feature_points))

    @property
    def policy(self) -> InheritPolicy:
        return InheritPolicy(fresh=tuple(self.inherit_fresh), reason=self.fresh_reason)

    def to_dict(self) -> dict:
        """Plain data for manifests and records (scratch: the mode alone)."""
        if not self.inherit:
            return {"mode": self.mode}
        return asdict(self) | {"teacher_arch_id": self.teacher_arch.arch_id, "teacher_steps": self.steps,
                               "feature_points": list(self.feature_points), "inherit_fresh": list(self.inherit_fresh)}

    @property
    def key(self) -> str:
        """10 hex digits of everything that changes an inherit-mode trial's result ("" from scratch)."""
        if not self.inherit:
            return ""
        data = self.to_dict()
        data.pop("train_teacher")
        data.pop("teacher")  # the name: the architecture and steps say what it is
        data.pop("teacher_config")
        data.pop("fresh_reason")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def parse_points(text: str) -> tuple[str, ...]:
    """"down,mid,up" -> ("down", "mid", "up"); "" or "none" -> () (no feature distillation)."""
    points = tuple(p.strip() for p in text.split(",") if p.strip() and p.strip() != "none")
    DistillWeights(points=points)
    return points


def budget_hash(budget: Budget, mode: ProxyMode | None = None) -> str:
    """10 hex digits naming what a trial's numbers were measured with: the budget (every field), and for an
    inherit-mode trial also its proxy mode (`ProxyMode.key`), so scratch and inherit results never share a key."""
    data = budget.to_dict()
    if mode is not None and mode.inherit:
        data = {"budget": data, "proxy": mode.key}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]

