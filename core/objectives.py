"""Objectives a search can optimise (registry metrics with a direction): the one Objective class of the project,
used by the search, the manifest and the reports."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserError
from core.metrics import ALIASES, METRIC_DIRECTIONS, METRICS, names

QUALITY = frozenset(names("quality"))  # need a proxy training
LATENCY = frozenset(names("latency"))  # need the latency table


@dataclass(frozen=True)
class Objective:
    """One optimised metric."""

    name: str  # metric column in the trials table
    direction: str  # "minimize" or "maximize"

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def label(self) -> str:
        """Axis and table label with the direction, e.g. "FID ↓"."""
        return f"{METRICS[self.name].label if self.name in METRICS else self.name} {'↑' if self.maximize else '↓'}"

    @property
    def ray_mode(self) -> str:
        return "min" if self.direction == "minimize" else "max"

    def to_dict(self) -> dict:
        return {"name": self.name, "direction": self.direction}


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """`"fid,clip_score,latency"` -> objectives; unknown or repeated names raise UserError."""
    names = [ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--objectives is empty")
    unknown = [n for n in names if n not in METRIC_DIRECTIONS]
    if unknown:
        raise UserError(f"unknown objective {unknown[0]!r}; known: {', '.join(sorted(METRIC_DIRECTIONS))} "
                        f"(aliases: {', '.join(f'{k}={v}' for k, v in ALIASES.items())})")
    if len(set(names)) != len(names):
        raise UserError(f"--objectives repeats a metric: {text}")
    return tuple(Objective(n, METRIC_DIRECTIONS[n]) for n in names)
