"""Proxy training: a short text-to-image diffusion training of an architecture's proxy, sampled and scored.

The search calls `evaluate_arch(config, budget, seed)` once per trial and gets a `TrialResult` back.
"""

from evaluators.training.budget import Budget
from evaluators.training.trial import TrialResult, evaluate_arch

__all__ = ["Budget", "TrialResult", "evaluate_arch"]
