"""Proxy training: a short text-to-image diffusion training of an architecture's proxy, sampled and scored.

The search calls `evaluate_arch(config, budget, seed)` once per trial and gets a `TrialResult` back.
"""

from evaluators.training.budget import Budget
from evaluators.training.trial import (
    TrialResult,
    check_proxy_fits,
    evaluate_arch,
    fit_heldout,
)

__all__ = ["Budget", "TrialResult", "check_proxy_fits", "evaluate_arch", "fit_heldout"]
