"""The metric registry: the one list of metrics a trial can produce.

Objectives, trials tables, reports, export, ablation and fidelity read it; adding a metric is one entry here
plus the evaluator that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric of a trial record."""

    name: str  # column in trial records and tables
    direction: str  # "minimize" or "maximize" when it is an objective
    label: str  # human label (tables, axes)
    unit: str  # "" when dimensionless
    fmt: str  # format spec of one value, e.g. ".2f"
    evaluator: str  # what produces it: "cost", "latency" or "quality" (a proxy training)
    description: str  # one line, for --help and reports
    from_samples: bool = False  # scored on generated images: the trial must sample (tens of seconds on a CPU)

    @property
    def needs_training(self) -> bool:
        return self.evaluator == "quality"

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def format(self, value: float | None) -> str:
        return "-" if value is None else format(value, self.fmt)


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("params", "minimize", "params", "", ",.0f", "cost", "full-scale UNet parameters"),
    Metric("macs", "minimize", "MACs", "", ".4g", "cost", "full-scale multiply-adds per UNet step"),
    Metric("latency_ms", "minimize", "latency (ms)", "ms", ".1f", "latency",
           "predicted full-scale UNet latency per step on the LUT's device"),
    Metric("image_latency_ms", "minimize", "image latency (ms)", "ms", ".0f", "latency",
           "predicted latency of one image on the LUT's device: text encoder + steps x UNet (x2 with "
           "classifier-free guidance) + VAE decoder"),
    Metric("fid", "minimize", "FID", "", ".2f", "quality", "FID of proxy samples vs held-out images", True),
    Metric("kid", "minimize", "KID", "", ".4f", "quality", "KID of proxy samples vs held-out images", True),
    Metric("clip_score", "maximize", "CLIP score", "", ".3f", "quality", "mean image-caption cosine", True),
    Metric("cmmd", "minimize", "CMMD", "", ".3f", "quality",
           "CMMD (Gaussian-kernel MMD on CLIP image embeddings) of proxy samples vs held-out images", True),
    Metric("val_loss", "minimize", "val loss", "", ".4f", "quality",
           "held-out denoising loss, one fixed timestep per image"),
    Metric("val_loss_grid", "minimize", "val loss (grid)", "", ".4f", "quality",
           "held-out denoising loss over a fixed timestep grid, fixed noise"),
    Metric("teacher_distance", "minimize", "teacher distance", "", ".4f", "quality",
           "inherit proxies: mean squared distance of the proxy's held-out predictions to its teacher's "
           "(timestep grid, fixed noise)"),
)}
ALIASES = {"latency": "latency_ms", "clip": "clip_score", "loss": "val_loss", "image_latency": "image_latency_ms"}
METRIC_DIRECTIONS = {n: m.direction for n, m in METRICS.items()}  # how each metric is optimised as an objective


def get_metric(name: str) -> Metric:
    """The registered metric `name` (or an alias); KeyError names the known ones."""
    name = ALIASES.get(name, name)
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]


def sample_metrics() -> tuple[str, ...]:
    """Names of the metrics scored on a trial's generated images (FID, KID, CLIP score, CMMD)."""
    return tuple(n for n, m in METRICS.items() if m.from_samples)


def names(evaluator: str | None = None) -> tuple[str, ...]:
    """Registered metric names, all or those of one evaluator ("cost", "latency", "quality")."""
    return tuple(n for n, m in METRICS.items() if evaluator is None or m.evaluator == evaluator)
