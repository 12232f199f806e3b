"""Ablation steps: named, pure `ArchConfig -> ArchConfig` transformations in one registry.

A step either returns a changed, valid config or raises `StepNotApplicable` (a one-line user error) when
its input is not something it can change (ReLU attention on a config that already uses it, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.errors import UserError
from search_spaces.config import ArchConfig
from search_spaces.registry import Registry


class StepNotApplicable(UserError):
    """An ablation step cannot change the config it was given; the message says why."""


@dataclass(frozen=True)
class AblationStep:
    """A named design change: calling it applies `transform` and checks that something changed."""

    name: str  # short identifier used on the command line (`--steps a,b,c`)
    description: str  # one line for tables and `--help`
    transform: Callable[[ArchConfig], ArchConfig]  # the pure transformation

    def __call__(self, config: ArchConfig) -> ArchConfig:
        """Apply the step to `config`.

        Raises:
            StepNotApplicable: the step does not apply to `config` (or would leave it unchanged).
            ConfigError: the step produced an unbuildable config.
        """
        new = self.transform(config)
        new.validate()
        if new == config:
            raise StepNotApplicable(f"ablation step {self.name!r} does not apply: it leaves the config unchanged")
        return new


STEPS: Registry[ArchConfig] = Registry("ablation step")  # name -> AblationStep (callable on a config)


def ablation_step(name: str, description: str) -> Callable[[Callable[[ArchConfig], ArchConfig]], AblationStep]:
    """Decorator registering a pure `ArchConfig -> ArchConfig` function as the ablation step `name`.

    The decorated name becomes the `AblationStep` (still callable on a config). The function raises
    `StepNotApplicable` when its input is not something it can change.

    Args:
        name: identifier used in `nas ablate --steps`; must be new.
        description: one line shown in tables.
    """
    def decorator(fn: Callable[[ArchConfig], ArchConfig]) -> AblationStep:
        step = AblationStep(name=name, description=description, transform=fn)
        STEPS.register(name)(step)
        return step
    return decorator


def get_step(name: str) -> AblationStep:
    """The registered step `name` (raises UnknownNameError listing the known steps)."""
    import nas.ablation.paper_steps  # noqa: F401  (registers the shipped steps)

    return STEPS.get(name)


def not_applicable(step: str, reason: str) -> StepNotApplicable:
    """The error a step raises when it does not apply (message: `ablation step 'x' does not apply: ...`)."""
    return StepNotApplicable(f"ablation step {step!r} does not apply: {reason}")
