"""Named proxy regimes (`--proxy-scale`): the resolution, width and batch a proxy trains at.

A regime sets three budget fields at once (image side, width divisor, batch); the budget hash, and so every
cache key, manifest and trial record, carries them like any other budget field, and the regime's name is
recorded beside them. `fast` is the long-standing default (16 px: levels of 16/8/4/2 pixels); the others keep
more of what a design choice about attention resolution is about, at a measured cost (seconds per 500-step trial
on one core of the 2-core VM, from the committed probe rows in `benchmarks/fidelity/probes.csv`, measured at
`nice 19` beside other jobs: loaded wall times, an upper bound of the quiet cost).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserError
from evaluators.training.budget import Budget


@dataclass(frozen=True)
class ProxyRegime:
    """One named proxy regime."""

    name: str
    image_size: int
    width_divisor: int
    batch_size: int
    summary: str

    def apply(self, budget: Budget) -> Budget:
        """`budget` trained at this regime (its other fields kept)."""
        return budget.replace(image_size=self.image_size, width_divisor=self.width_divisor,
                              batch_size=self.batch_size)

    def matches(self, fields: dict) -> bool:
        """Whether a budget's fields (a dict, e.g. a manifest's stored budget) are this regime's."""
        return all(fields.get(k) == getattr(self, k) for k in REGIME_FIELDS)


REGIME_FIELDS = ("image_size", "width_divisor", "batch_size")  # the budget fields a regime sets


DEFAULT_REGIME = "fast"
REGIMES: dict[str, ProxyRegime] = {r.name: r for r in (
    ProxyRegime("fast", 16, 16, 32, "16 px, width / 16, batch 32: levels 16/8/4/2 px (the default; sd15 about "
                "600-700 s per 500-step trial)"),
    ProxyRegime("px32", 32, 16, 32, "32 px, width / 16, batch 32: levels 32/16/8/4 px (sd15 2,200-3,400 s)"),
    ProxyRegime("latent64", 64, 32, 8, "64 px, width / 32, batch 8: the deployment latent's level resolutions "
                "64/32/16/8 (sd15 2,200-2,300 s; noisy at 2 seeds)"),
    ProxyRegime("latent64b16", 64, 32, 16, "latent64 at batch 16 (less seed noise, about twice its cost)"),
)}


def get_regime(name: str) -> ProxyRegime:
    """The regime called `name`.

    Raises:
        UserError: an unknown name (the message lists the known ones).
    """
    try:
        return REGIMES[name]
    except KeyError:
        raise UserError(f"unknown proxy scale {name!r}; choose from {', '.join(REGIMES)}") from None


def regime_name(budget: Budget | dict) -> str:
    """The name of the regime `budget` (or a stored budget's fields) trains at, or "custom" (a size, width or
    batch no regime names)."""
    fields = budget if isinstance(budget, dict) else {k: getattr(budget, k) for k in REGIME_FIELDS}
    return next((r.name for r in REGIMES.values() if r.matches(fields)), "custom")
