"""Validation: predicted vs measured end-to-end latency, judged against the measurement's own repeatability.

Every validation architecture is timed end to end in two passes: the first times all of them (interleaved
within memory-bounded chunks), the second does it again with fresh model instances, in reverse order and
another shuffle. How well the second pass reproduces the first (within +-10%, Kendall tau) is the device's
repeatability: the best any predictor can be judged to reach against one measurement. Each source of
block latencies is scored against pass 1, pass 2 and their mean:
- `isolated`: the LUT (blocks timed alone) plus its calibrated overhead, as `predict` answers;
- `inmodel`: blocks timed inside whole forwards (`inmodel`), leave-one-out, with its own overhead fit on
  the calibration archs (torch backends only).
A source whose within-10% rate against the mean reaches the repeatability rate, and whose tau reaches the
repeatability tau, is as good as this device's measurements allow.

`run_validation` computes a `ValidationInfo`; `scatter_figure` draws it; `save_record` stores it beside the
LUT, where `record.validation_on_record` finds it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.io import atomic_path
from evaluators.latency.inmodel import (
    InModelTable,
    load_table,
    profile_model,
    save_table,
)
from evaluators.latency.predictor import (
    WARMUP_CALLS,
    WARMUP_SECONDS,
    Calibration,
    MeasuredPredictor,
    Progress,
)
from evaluators.latency.signature import with_image_size
from search_spaces.config import ArchConfig

SOURCES = ("isolated", "inmodel")
PROFILE_ROUNDS = 3  # whole forwards per in-model profile (after warm-up)


@dataclass(frozen=True)
class Scores:
    """Agreement of one set of latencies with another (the reference)."""

    n: int
    mape: float  # mean absolute percentage error vs the reference, in percent
    within_10pct: float  # fraction within +-10% of the reference
    kendall_tau: float | None  # rank agreement (None for fewer than 2 points or no variation)

    @classmethod
    def of(cls, values: Sequence[float], reference: Sequence[float]) -> "Scores":
        from scipy.stats import kendalltau

        v, ref = np.asarray(values, float), np.asarray(reference, float)
        errors = np.abs(v - ref) / ref
        tau = kendalltau(v, ref).statistic if len(v) >= 2 else math.nan
        return cls(len(v), float(100 * errors.mean()), float((errors <= 0.10).mean()),
                   None if math.isnan(tau) else float(tau))


@dataclass(frozen=True)
class ValidationPoint:
    """One architecture."""

    arch_id: str  # ArchConfig.arch_id
    predicted_ms: float  # isolated-block LUT prediction (blocks + calibrated overhead), as `predict` answers
    inmodel_ms: float | None  # in-model source prediction (leave-one-out), None where unavailable
    pass1_ms: float  # end-to-end robust median, first pass
    pass2_ms: float  # end-to-end robust median, second pass
    measured_std_ms: float  # mean of the two passes' sample spreads
    # With the table's speed probe, pass1_ms and pass2_ms are at its reference speed; what the clock saw, and
    # the machine's speed during each pass (reference / probe time), are kept here (None without a probe).
    pass1_raw_ms: float | None = None
    pass2_raw_ms: float | None = None
    pass1_speed: float | None = None
    pass2_speed: float | None = None

    @property
    def measured_ms(self) -> float:
        """Mean of the two passes."""
        return (self.pass1_ms + self.pass2_ms) / 2


@dataclass(frozen=True)
class ValidationInfo:
    """Accuracy of one device's predictor on a set of architectures, beside the measurement's repeatability."""

    device: str
    image_size: int
    points: tuple[ValidationPoint, ...]
    calibration: dict  # the isolated source's overhead fit
    inmodel_calibration: dict | None = None  # the in-model source's overhead fit
    inmodel_note: str = ""  # why the in-model source is missing, if it is

    @property
    def n(self) -> int:
        return len(self.points)

    def _column(self, name: str) -> list[float]:
        return [getattr(p, name) for p in self.points]

    @property
    def repeatability(self) -> Scores:
        """Pass 2 scored against pass 1: what a second measurement achieves as a 'prediction'."""
        return Scores.of(self._column("pass2_ms"), self._column("pass1_ms"))

    @property
    def raw_repeatability(self) -> Scores | None:
        """The repeatability of the unscaled clock times (None without a speed probe): what the probe buys."""
        raw1, raw2 = self._column("pass1_raw_ms"), self._column("pass2_raw_ms")
        return None if None in raw1 + raw2 else Scores.of(raw2, raw1)

    def scores(self, source: str, against: str = "mean") -> Scores | None:
        """Scores of a source ("isolated" | "inmodel") against "pass1", "pass2" or "mean" (None if missing)."""
        values = self._column("predicted_ms" if source == "isolated" else "inmodel_ms")
        if any(v is None for v in values):
            return None
        reference = self._column({"pass1": "pass1_ms", "pass2": "pass2_ms", "mean": "measured_ms"}[against])
        return Scores.of(values, reference)

    def at_repeatability_limit(self, source: str) -> bool | None:
        """Whether `source` against the mean is within +-10% as often as the measurement repeats, and ranks
        at least as well (None if the source is missing)."""
        s, r = self.scores(source), self.repeatability
        if s is None:
            return None
        return s.within_10pct >= r.within_10pct and (s.kendall_tau or -1.0) >= (r.kendall_tau or -1.0)

    @property
    def better_source(self) -> str:
        """The source closer to the mean of the passes: more within +-10%, then higher tau, then lower MAPE."""
        available = [s for s in SOURCES if self.scores(s) is not None]
        return max(available, key=lambda s: (self.scores(s).within_10pct, self.scores(s).kendall_tau or -1.0,
                                             -self.scores(s).mape))

    # The isolated source against the mean of the passes (what `predict` answers), as before two passes.
    @property
    def mape(self) -> float:
        return self.scores("isolated").mape

    @property
    def within_10pct(self) -> float:
        return self.scores("isolated").within_10pct

    @property
    def kendall_tau(self) -> float | None:
        return self.scores("isolated").kendall_tau

    def summary(self) -> str:
        """One sentence per source and one for the repeatability, ending with the verdict."""
        r = self.repeatability
        lines = [f"the measurement repeats (pass 2 vs pass 1) within +-10% for {r.within_10pct:.0%} of "
                 f"{self.n} archs, Kendall tau {_tau(r.kendall_tau)}."]
        raw = self.raw_repeatability
        if raw is not None:
            speeds = self._column("pass1_speed") + self._column("pass2_speed")
            lines.append(f"(at the table's reference speed; the machine ran at {min(speeds):.2f}-{max(speeds):.2f}x "
                         f"of it, and the unscaled times repeat within +-10% for {raw.within_10pct:.0%}, tau "
                         f"{_tau(raw.kendall_tau)}.)")
        for source in SOURCES:
            s = self.scores(source)
            if s is None:
                lines.append(f"{source}: not available ({self.inmodel_note}).")
                continue
            limit = self.at_repeatability_limit(source)
            lines.append(f"{source} blocks vs the mean of the passes: within +-10% {s.within_10pct:.0%}, Kendall tau "
                         f"{_tau(s.kendall_tau)}, MAPE {s.mape:.1f}%: " + (
                             "as close as a second measurement is, as good as this device allows." if limit else
                             "less close than a second measurement is."))
        lines.append(f"better source: {self.better_source}.")
        return " ".join(lines)

    def to_dict(self) -> dict:
        sources = {}
        for source in SOURCES:
            if self.scores(source) is None:
                sources[source] = {"available": False, "note": self.inmodel_note}
                continue
            sources[source] = {"available": True, **{f"vs_{a}": asdict(self.scores(source, a))
                                                     for a in ("pass1", "pass2", "mean")},
                               "at_repeatability_limit": self.at_repeatability_limit(source)}
        return {"n": self.n, "mape": self.mape, "within_10pct": self.within_10pct, "kendall_tau": self.kendall_tau,
                "repeatability": asdict(self.repeatability),
                "raw_repeatability": None if self.raw_repeatability is None else asdict(self.raw_repeatability),
                "sources": sources,
                "better_source": self.better_source,
                "at_repeatability_limit": self.at_repeatability_limit(self.better_source),
                "summary": self.summary(), "device": self.device, "image_size": self.image_size,
                "calibration": self.calibration, "inmodel_calibration": self.inmodel_calibration,
                "points": [asdict(p) | {"measured_ms": p.measured_ms} for p in self.points]}


def _tau(tau: float | None) -> str:
    return "n/a" if tau is None else f"{tau:.3f}"


def held_out_sample(space: str, n: int, seed: int) -> list[ArchConfig]:
    """`n` distinct random archs of `space` (by seed) that are not among the calibration architectures."""
    from search_spaces.space import get_space

    calibration = {c.arch_id for c in MeasuredPredictor.calibration_configs()}
    drawn = get_space(space).sample_random(n + len(calibration), seed)
    return [c for c in drawn if c.arch_id not in calibration][:n]


def profile_archs(predictor: MeasuredPredictor, table: InModelTable, configs: Sequence[ArchConfig],
                  progress: Progress | None = None, rounds: int = PROFILE_ROUNDS) -> int:
    """Profile the configs the table lacks (at the predictor's image size), saving after each; returns how many."""
    todo = [c for c in configs if c.arch_id not in table.archs()]
    for i, config in enumerate(todo):
        sized = with_image_size(config, predictor.image_size)
        with predictor.backend.measuring():
            ms = profile_model(predictor.backend, sized, rounds, WARMUP_CALLS, WARMUP_SECONDS, predictor.speed_probe())
        table.add(config.arch_id, predictor.signatures(config), ms)
        save_table(predictor.store, table)
        if progress:
            progress(i + 1, len(todo))
    return len(todo)


def inmodel_calibration(predictor: MeasuredPredictor, table: InModelTable,
                        configs: Sequence[ArchConfig]) -> Calibration | None:
    """The in-model source's overhead: a Theil-Sen fit of the calibration archs' measured end-to-end times
    (stored with the LUT's calibration) on their leave-one-out in-model block sums."""
    stored = predictor.calibration()
    if stored is None:
        return None
    by_id = {c.arch_id: c for c in configs}
    points = [(arch, float(sum(table.block_ms(predictor.signatures(by_id[arch]), predictor.lut.entries, arch))),
               measured) for arch, _, measured in stored.points if arch in by_id]
    return Calibration.fit(points) if points else None


def inmodel_predict(predictor: MeasuredPredictor, table: InModelTable, calibration: Calibration | None,
                    config: ArchConfig) -> float:
    """The in-model source's latency of `config`, without its own profile."""
    total = float(sum(table.block_ms(predictor.signatures(config), predictor.lut.entries, config.arch_id)))
    return total + (calibration.overhead(total) if calibration else 0.0)


def run_validation(predictor: MeasuredPredictor, configs: Sequence[ArchConfig], progress: Progress | None = None,
                   inmodel: bool = True, calibration_configs: Sequence[ArchConfig] | None = None) -> ValidationInfo:
    """Measure `configs` end to end in two passes and score both block sources against them.

    Blocks, calibration and in-model profiles are measured first (before the end-to-end passes); `progress`
    reports (done, total) over blocks, calibration models, profiles, then the two passes.

    Args:
        predictor: the measured device's predictor (its LUT and calibration grow as needed).
        configs: the validation architectures (held out from the calibration).
        progress: callback (done, total).
        inmodel: also profile blocks inside whole forwards and score that source (torch backends).
        calibration_configs: the archs the overhead is (or was) fitted on (default: the predictor's); the
            in-model source profiles those of them in the stored calibration.
    """
    configs = list(configs)
    calib_configs = list(calibration_configs or predictor.calibration_configs())
    stored = predictor.calibration()
    calib = None if stored else calib_configs
    if stored:  # profile only the archs the stored overhead was fitted on
        calib_configs = [c for c in calib_configs if c.arch_id in {arch for arch, _, _ in stored.points}]
    missing = predictor.missing(configs + (calib or []))
    n_cal = len(calib or [])
    note = ""
    table = None
    if not inmodel:
        note = "in-model profiling switched off"
    elif not predictor.backend.profiles_blocks_in_model:
        note = f"{predictor.device} runs each model as one graph: no per-block hooks"
    else:
        table = load_table(predictor.store, predictor.device, predictor.lut.fingerprint)
    to_profile = [] if table is None else [c for c in calib_configs + configs if c.arch_id not in table.archs()]
    total = len(missing) + n_cal + len(to_profile) + 2 * len(configs)
    offset = 0

    def step(start: int):
        return (lambda done, _t: progress(start + done, total)) if progress else None

    predictor.measure_blocks(missing, step(offset))
    offset += len(missing)
    if calib:
        predictor.calibrate(calib, step(offset))
    offset += n_cal
    if table is not None:
        profile_archs(predictor, table, to_profile, step(offset))
    offset += len(to_profile)
    first = predictor.measure_models(configs, step(offset), seed=1)
    offset += len(configs)
    second = predictor.measure_models(configs[::-1], step(offset), seed=2)[::-1]
    cal_inmodel = None if table is None else inmodel_calibration(predictor, table, calib_configs)
    points = tuple(ValidationPoint(
        c.arch_id, predictor.predict(c).latency_ms,
        None if table is None else inmodel_predict(predictor, table, cal_inmodel, c),
        a.ms, b.ms, (a.std_ms + b.std_ms) / 2, a.raw_ms, b.raw_ms, a.speed, b.speed)
        for c, a, b in zip(configs, first, second))
    return ValidationInfo(predictor.device, predictor.image_size, points, asdict(predictor.calibration()),
                          None if cal_inmodel is None else asdict(cal_inmodel), note)


def scatter_figure(info: ValidationInfo):
    """Plotly scatter of each source's prediction vs the mean of the two passes (the bars span the passes),
    with the identity line and the +-10% band; the title carries the repeatability."""
    import plotly.graph_objects as go

    xs = [p.measured_ms for p in info.points]
    ys = [p.predicted_ms for p in info.points] + [p.inmodel_ms for p in info.points if p.inmodel_ms is not None]
    lo, hi = min(xs + ys) * 0.85, max(xs + ys) * 1.15
    fig = go.Figure()
    for factor, label in ((1.1, "+10%"), (0.9, "-10%")):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * factor, hi * factor], mode="lines",
                                 line=dict(dash="dot", color="grey"), name=label))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="black"), name="predicted = measured"))
    spread = [abs(p.pass1_ms - p.pass2_ms) / 2 for p in info.points]
    for source, column in (("isolated blocks", "predicted_ms"), ("in-model blocks", "inmodel_ms")):
        values = [getattr(p, column) for p in info.points]
        if any(v is None for v in values):
            continue
        fig.add_trace(go.Scatter(x=xs, y=values, mode="markers", name=source, text=[p.arch_id for p in info.points],
                                 error_x=dict(type="data", array=spread)))
    r = info.repeatability
    fig.update_layout(
        title=f"LUT latency on {info.device} at {info.image_size}px, n={info.n}: isolated within 10% "
              f"{info.within_10pct:.0%} (tau {_tau(info.kendall_tau)}); the measurement repeats within 10% "
              f"{r.within_10pct:.0%} (tau {_tau(r.kendall_tau)})",
        xaxis_title="measured end to end, mean of two passes (ms)", yaxis_title="predicted (ms)",
        template="plotly_white")
    return fig


def write_scatter(info: ValidationInfo, path: str | Path) -> Path:
    """Write the scatter as a self-contained HTML page (atomically)."""
    with atomic_path(path, suffix=".html") as tmp:
        scatter_figure(info).write_html(str(tmp), include_plotlyjs=True)
    return Path(path)
