"""How the proxies of a run started (from scratch, or inherited from a teacher), in one line for report headers."""

from __future__ import annotations

import pandas as pd


def is_inherit(proxy: dict | None) -> bool:
    """Whether a manifest's proxy description is the teacher-anchored (inherit) mode."""
    return bool(proxy) and proxy.get("mode") == "inherit"


def proxy_summary(proxy: dict | None, trials: pd.DataFrame | None = None) -> str:
    """One line from a manifest's `proxy` entry (and the trials' `inherited_fraction`, when given): the mode,
    the teacher, its training, the distillation and the range of inherited fractions."""
    if not is_inherit(proxy):
        return "from scratch (fresh weights)"
    teacher = proxy.get("teacher_info") or {}
    trained = teacher.get("train") or {}
    line = (f"inherited from teacher {proxy.get('teacher')} (arch {proxy.get('teacher_arch_id')}, "
            f"{proxy.get('teacher_steps')} training steps")
    if trained.get("seconds") is not None:
        line += f" in {trained['seconds']:.0f} s, once"
    line += (f"), fine-tuned with distillation (output weight {proxy.get('distill_output')}, feature weight "
             f"{proxy.get('distill_feature')} at {', '.join(proxy.get('feature_points') or []) or 'no points'})")
    if proxy.get("inherit_fresh"):
        line += f"; {', '.join(proxy['inherit_fresh'])} changes start fresh"
    if trials is not None and "inherited_fraction" in trials.columns:
        fractions = pd.to_numeric(trials["inherited_fraction"], errors="coerce").dropna()
        if len(fractions):
            line += (f"; {fractions.min():.0%} to {fractions.max():.0%} of each proxy UNet's parameters "
                     "inherited")
    return line
