"""The proxy-mode options shared by `nas evaluate`, `nas search`, `nas ablate` and `nas fidelity`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evaluators.training.inherit import FALLBACK_KINDS
from evaluators.training.proxy_mode import (
    FINETUNE_FRACTION,
    PROXY_MODES,
    ProxyMode,
    default_steps,
    parse_points,
)
from evaluators.training.regimes import DEFAULT_REGIME, REGIMES, ProxyRegime, get_regime
from evaluators.training.teacher import DEFAULT_TEACHER, default_teacher_steps
from nas.arch_input import load_config_file
from reports.terminal import teacher_progress  # noqa: F401 (`nas evaluate` calls it as proxy_options.teacher_progress)
from search_spaces.presets import get_preset

PROXY = typer.Option("scratch", "--proxy", help=f"How each proxy starts: {' | '.join(PROXY_MODES)}. inherit: from "
                     "the trained --teacher's weights (trained on first use and cached), fine-tuned with "
                     f"distillation for 1/{FINETUNE_FRACTION} of the default steps unless the steps are given.")
TEACHER = typer.Option(DEFAULT_TEACHER, "--teacher", help="Teacher of --proxy inherit: a preset name or an "
                       "ArchConfig JSON file.")
TEACHER_STEPS = typer.Option(None, "--teacher-steps", help="Training steps of the teacher (default "
                             f"{default_teacher_steps()}, 4x the default trial's); part of its cache key.")
DISTILL_OUTPUT = typer.Option(1.0, "--distill-output", help="Weight of output-level distillation (inherit).")
DISTILL_FEATURE = typer.Option(1.0, "--distill-feature", help="Weight of feature-level distillation (inherit).")
FEATURE_POINTS = typer.Option("down,mid,up", "--feature-points", help="Where features are distilled: down, mid, "
                              "up and/or single stage outputs down<i>, up<i>; 'none' for none.")
INHERIT_FRESH = typer.Option("", "--inherit-fresh", help="Kinds of change that start fresh instead of inheriting "
                             f"(comma-separated: {', '.join(FALLBACK_KINDS)}); recorded in every trial.")

PROXY_SCALE = typer.Option(None, "--proxy-scale", help="Proxy regime (resolution, width, batch) every proxy trains "
                           f"at: {' | '.join(REGIMES)} (default {DEFAULT_REGIME}; a resumed run keeps its own). "
                           + "; ".join(f"{r.name}: {r.summary}" for r in REGIMES.values()) + ".")


def proxy_regime(asked: Optional[str], stored: Optional[str] = None) -> ProxyRegime:
    """The regime of --proxy-scale: as asked; else the resumed run's (when it is a named one); else the default.

    Raises:
        UserError: an unknown regime name.
    """
    if asked is not None:
        return get_regime(asked)
    return REGIMES.get(stored or "", REGIMES[DEFAULT_REGIME])


def proxy_mode(proxy: str, teacher: str, teacher_steps: Optional[int] = None, distill_output: float = 1.0,
               distill_feature: float = 1.0, feature_points: str = "down,mid,up", inherit_fresh: str = "",
               train_teacher: bool = True) -> ProxyMode:
    """The ProxyMode of the flags; a teacher that is a file is read as an ArchConfig, else as a preset name.

    Raises:
        UserError: an unknown mode, preset, fallback kind or feature point; an unreadable teacher file.
    """
    if proxy != "inherit":
        return ProxyMode(mode=proxy)
    config = load_config_file(teacher) if Path(teacher).is_file() else get_preset(teacher)
    fresh = tuple(k.strip() for k in inherit_fresh.split(",") if k.strip())
    return ProxyMode(mode=proxy, teacher=teacher, teacher_config=config.to_json(indent=None),
                     teacher_steps=teacher_steps or 0, train_teacher=train_teacher, distill_output=distill_output,
                     distill_feature=distill_feature, feature_points=parse_points(feature_points),
                     inherit_fresh=fresh, fresh_reason="--inherit-fresh" if fresh else "")


def trial_steps(steps: Optional[int], mode: ProxyMode) -> int:
    """The trial's training steps: the given ones, else the mode's default (a quarter of scratch's to fine-tune)."""
    return default_steps(mode.mode) if steps is None else steps


