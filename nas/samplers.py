"""Optuna samplers by name.

Constraints (latency budget, parameter cap) reach every sampler through `Trial.set_constraint`, which
the search's Optuna adapter calls before telling a result (Optuna 5's replacement of `constraints_func`).
"""

from __future__ import annotations

import warnings

import optuna

from search_spaces.registry import Registry

SAMPLERS: Registry[optuna.samplers.BaseSampler] = Registry("sampler")


def _startup(n_trials: int) -> int:
    return max(3, min(10, n_trials // 4))


@SAMPLERS.register("tpe")
def _tpe(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    # multivariate + group: models the conditional dimensions of define-by-run spaces jointly
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(n_trials), multivariate=True, group=True)


@SAMPLERS.register("nsga2")
def _nsga2(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 4)))


@SAMPLERS.register("nsga3")
def _nsga3(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=max(4, min(50, n_trials // 4)))


@SAMPLERS.register("gp")
def _gp(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup(n_trials))


@SAMPLERS.register("random")
def _random(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def make_sampler(name: str, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler `name` (UnknownNameError lists the known ones)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS.create(name, seed, n_trials)
