"""Validation: predicted vs measured end-to-end latency on sampled architectures.

`run_validation` computes a `ValidationInfo` (the numbers); `scatter_figure` draws it (Plotly).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from evaluators.latency.predictor import MeasuredPredictor, Progress
from nas.io import atomic_path
from search_spaces.config import ArchConfig


@dataclass(frozen=True)
class ValidationPoint:
    """One architecture."""

    arch_id: str  # ArchConfig.arch_id
    predicted_ms: float  # LUT prediction (blocks + calibrated overhead)
    measured_ms: float  # end-to-end robust median
    measured_std_ms: float  # spread of the end-to-end samples


@dataclass(frozen=True)
class ValidationInfo:
    """Accuracy of one device's predictor on a set of architectures."""

    device: str
    image_size: int
    points: tuple[ValidationPoint, ...]
    calibration: dict  # the overhead fit used

    @property
    def n(self) -> int:
        return len(self.points)

    def _errors(self) -> list[float]:
        return [abs(p.predicted_ms - p.measured_ms) / p.measured_ms for p in self.points]

    @property
    def mape(self) -> float:
        """Mean absolute percentage error, in percent."""
        return 100.0 * sum(self._errors()) / self.n

    @property
    def within_10pct(self) -> float:
        """Fraction of architectures predicted within +-10% of the measurement."""
        return sum(e <= 0.10 for e in self._errors()) / self.n

    @property
    def kendall_tau(self) -> float | None:
        """Rank agreement of predicted and measured latency (None for fewer than 2 points)."""
        from scipy.stats import kendalltau

        if self.n < 2:
            return None
        tau = kendalltau([p.predicted_ms for p in self.points], [p.measured_ms for p in self.points]).statistic
        return None if math.isnan(tau) else float(tau)

    def to_dict(self) -> dict:
        return {"n": self.n, "mape": self.mape, "within_10pct": self.within_10pct, "kendall_tau": self.kendall_tau,
                "device": self.device, "image_size": self.image_size, "calibration": self.calibration,
                "points": [asdict(p) for p in self.points]}


def held_out_sample(space: str, n: int, seed: int) -> list[ArchConfig]:
    """`n` distinct random archs of `space` (by seed) that are not among the calibration architectures."""
    from search_spaces.space import get_space

    calibration = {c.arch_id for c in MeasuredPredictor.calibration_configs()}
    drawn = get_space(space).sample_random(n + len(calibration), seed)
    return [c for c in drawn if c.arch_id not in calibration][:n]


def run_validation(predictor: MeasuredPredictor, configs: Sequence[ArchConfig],
                   progress: Progress | None = None) -> ValidationInfo:
    """Measure `configs` end to end and compare with their predictions.

    Blocks and calibration are measured first (before the end-to-end runs); `progress` reports
    (done, total) over blocks, then calibration models, then validation models.
    """
    calib = None if predictor.calibration() else predictor.calibration_configs()
    missing = predictor.missing(list(configs) + (calib or []))
    n_cal = len(calib or [])
    total = len(missing) + n_cal + len(configs)
    step = (lambda offset: (lambda done, _t: progress(offset + done, total))) if progress else (lambda offset: None)
    predictor.measure_blocks(missing, step(0))
    if calib:
        predictor.calibrate(calib, step(len(missing)))
    measured = predictor.measure_models(configs, step(len(missing) + n_cal))
    points = tuple(ValidationPoint(c.arch_id, predictor.predict(c).latency_ms, t.ms, t.std_ms)
                   for c, t in zip(configs, measured))
    return ValidationInfo(predictor.device, predictor.image_size, points, asdict(predictor.calibration()))


def scatter_figure(info: ValidationInfo):
    """Plotly scatter of predicted vs measured, with the identity line and the +-10% band."""
    import plotly.graph_objects as go

    xs = [p.measured_ms for p in info.points]
    ys = [p.predicted_ms for p in info.points]
    lo, hi = min(xs + ys) * 0.85, max(xs + ys) * 1.15
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * 1.1, hi * 1.1], mode="lines", line=dict(dash="dot", color="grey"),
                             name="+10%"))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * 0.9, hi * 0.9], mode="lines", line=dict(dash="dot", color="grey"),
                             name="-10%"))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="black"), name="predicted = measured"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="architectures", text=[p.arch_id for p in info.points],
                             error_x=dict(type="data", array=[p.measured_std_ms for p in info.points])))
    tau = "n/a" if info.kendall_tau is None else f"{info.kendall_tau:.3f}"
    fig.update_layout(
        title=f"LUT latency on {info.device} at {info.image_size}px: n={info.n}, MAPE {info.mape:.1f}%, "
              f"within 10% {info.within_10pct:.0%}, Kendall tau {tau}",
        xaxis_title="measured end-to-end (ms)", yaxis_title="predicted by LUT (ms)", template="plotly_white")
    return fig


def write_scatter(info: ValidationInfo, path: str | Path) -> Path:
    """Write the scatter as a self-contained HTML page (atomically)."""
    with atomic_path(path, suffix=".html") as tmp:
        scatter_figure(info).write_html(str(tmp), include_plotlyjs=True)
    return Path(path)
