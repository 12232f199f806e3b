"""The search-space interface and its registry.

A `SearchSpace` turns an Optuna trial into an `ArchConfig` (define-by-run, so conditional dimensions are
natural), maps a config back to the trial parameters that produce it (to enqueue presets as warm
starts), and lists the finite set of distinct blocks its architectures can contain (for latency tables).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import optuna

from search_spaces.blocks import BlockSpec
from search_spaces.config import ArchConfig
from search_spaces.errors import UserError
from search_spaces.registry import Registry

SPACES: Registry["SearchSpace"] = Registry("search space", builtins=("search_spaces.unet_mobile",))


@dataclass(frozen=True)
class Dimension:
    """One searchable choice."""

    name: str  # Optuna parameter name
    choices: tuple  # allowed values (categorical)
    description: str  # what it changes in the architecture
    condition: str = ""  # when the dimension is active (empty: always)


class NotInSpaceError(UserError, ValueError):
    """A config the space cannot produce; the message names the first mismatching dimension."""


class SearchSpace(ABC):
    """A registered, define-by-run architecture space."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def dimensions(self) -> list[Dimension]:
        """Every dimension with its choices, in sampling order."""

    @abstractmethod
    def sample(self, trial: optuna.trial.BaseTrial) -> ArchConfig:
        """Sample a valid config from an Optuna trial (every dimension suggested with `suggest`)."""

    @abstractmethod
    def params_of(self, config: ArchConfig) -> dict[str, Any]:
        """The active trial parameters that make `sample` return `config` (raises NotInSpaceError)."""

    @abstractmethod
    def enumerate_blocks(self) -> set[BlockSpec]:
        """Every distinct block any config of the space can contain, at full scale."""

    # ------------------------------------------------------------------ shared helpers
    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        return trial.suggest_categorical(name, self._dims()[name].choices)

    def _dims(self) -> dict[str, Dimension]:
        return {d.name: d for d in self.dimensions()}

    def from_params(self, params: dict[str, Any]) -> ArchConfig:
        """The config a trial with these parameter values samples."""
        return self.sample(optuna.trial.FixedTrial(params))

    def contains(self, config: ArchConfig) -> bool:
        try:
            self.params_of(config)
        except NotInSpaceError:
            return False
        return True

    def check_params(self, params: dict[str, Any], config: ArchConfig) -> dict[str, Any]:
        """Validate that `params` are legal choices and reproduce `config`; return them."""
        dims = self._dims()
        for name, value in params.items():
            if value not in dims[name].choices:
                raise NotInSpaceError(f"{name}: {value!r} is not one of {dims[name].choices}")
        if self.from_params(params) != config:
            raise NotInSpaceError(f"{self.name} cannot express this config exactly")
        return params

    def sample_random(self, n: int, seed: int) -> list[ArchConfig]:
        """`n` distinct configs drawn with Optuna's RandomSampler (deterministic by seed)."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        configs: dict[str, ArchConfig] = {}
        for _ in range(1000 * n):
            if len(configs) == n:
                break
            trial = study.ask()
            config = self.sample(trial)
            study.tell(trial, 0.0)
            configs.setdefault(config.arch_id, config)
        if len(configs) < n:
            raise ValueError(f"{self.name} yielded only {len(configs)} distinct configs for n={n}")
        return list(configs.values())


def get_space(name: str) -> SearchSpace:
    """The registered space `name` (raises UnknownNameError listing the known spaces; the package's import
    registered the built-in ones)."""
    return SPACES.create(name)
