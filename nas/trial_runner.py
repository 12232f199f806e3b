"""One trial: cost, latency and (when an objective needs it) proxy quality of one architecture.

Runs inside Ray workers for searches and ablations. Never raises for a bad architecture or a diverging
training: the returned row has `state="FAIL"` and a `failure_reason`, so the search goes on.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core.console import warn
from core.io import write_failure, write_json
from core.metrics import names
from core.objectives import LATENCY, QUALITY
from core.run_folder import RunFolder
from evaluators.evaluator import CostEvaluator, LatencyEvaluator, ProxyQualityEvaluator
from evaluators.latency import latency_budget_warning, validation_on_record
from evaluators.memory import TooLargeError, gpu_share, gpu_total_memory, share_label
from evaluators.training import Budget, check_proxy_fits
from evaluators.training.proxy_mode import ProxyMode, budget_hash
from evaluators.training.regimes import regime_name
from evaluators.training.rungs import Intermediate
from evaluators.training.train import TrainState
from search_spaces.config import ArchConfig
from search_spaces.pipeline import SamplingConfig

QUALITY_KEYS = names("quality")
RUNG_COSTS = names("cost") + names("latency")  # known before training: part of every rung report


@dataclass(frozen=True)
class TrialSettings:
    """Everything a worker needs to evaluate architectures the same way as every other trial of a run."""

    run_dir: str  # the run folder (absolute)
    metrics: tuple[str, ...]  # metrics to produce (objectives plus what the report shows)
    budget: Budget = field(default_factory=Budget)  # proxy training budget
    latency_device: str = "cpu"  # LUT device name
    image_size: int = 512  # deployment image size of the latency table
    lut_dir: str | None = None  # LUT folder (None: the default cache)
    threads: int = 1  # torch threads per trial
    lut_threads: int = 1  # intra-op threads of a measured LUT (part of its fingerprint; `nas lut`'s default)
    device: str = "cpu"  # where proxies train ("cpu" or "cuda")
    latency_budget_ms: float | None = None  # constraint: <latency_budget_on> <= this
    latency_budget_on: str = "latency_ms"  # the metric the latency budget bounds: latency_ms or image_latency_ms
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # how one image is made (image_latency_ms)
    # Fit the LUT's end-to-end calibration when it has none (minutes: it times 9 archs end to end). A stored
    # calibration always applies. None: only when a latency budget makes absolute milliseconds matter (a
    # calibration is monotone, so it never changes which architectures dominate).
    calibrate_latency: bool | None = None
    max_params: int | None = None  # constraint: params <= this
    max_memory: int | None = None  # bytes a trial may allocate (None: what is available); bigger ones FAIL
    gpu_fraction: float = 0.0  # the share of one GPU a trial gets (--gpus-per-trial); below 1 caps its memory
    evaluator_recipe: dict = field(default_factory=dict)  # domain-CLIP recipe overrides (tests use tiny ones)
    report_at: tuple[int, ...] = ()  # training steps at which a trial reports to its scheduler (rungs)
    rung_signals: tuple[str, ...] = ("val_loss",)  # held-out signals reported at the rungs
    proxy: ProxyMode = field(default_factory=ProxyMode)  # how proxies start: scratch, or inherit from a teacher
    # Sample and score the trained proxy (FID, KID, CLIP score, CMMD). False: held-out losses only, which saves
    # the sampling stage (tens of seconds per CPU trial); the search turns it off when no objective needs it.
    samples: bool = True

    @property
    def needs_quality(self) -> bool:
        return any(m in QUALITY for m in self.metrics)

    @property
    def calibrate(self) -> bool:
        return self.latency_budget_ms is not None if self.calibrate_latency is None else self.calibrate_latency

    @property
    def needs_latency(self) -> bool:
        return any(m in LATENCY for m in self.metrics) or self.latency_budget_ms is not None

    @property
    def needs_image_latency(self) -> bool:
        """Whether trials predict per-image latency (the text encoder and decoder blocks too)."""
        return "image_latency_ms" in self.metrics or (
            self.latency_budget_ms is not None and self.latency_budget_on == "image_latency_ms")

    @property
    def budget_hash(self) -> str:
        """10 hex digits of the budget (every field: steps, scale, data, sampler, ...) and, for inherit-mode
        proxies, of the proxy mode (teacher, its steps, distillation): scratch and inherit never share a key."""
        return budget_hash(self.budget, self.proxy)

    def cache_key(self, arch_id: str, seed: int) -> str:
        """Key of the quality cache: same architecture, seed and budget give the same metrics (a losses-only trial
        is keyed apart: it has no sample metrics)."""
        return f"{arch_id}-s{seed}-{self.budget_hash}" + ("" if self.samples else "-losses")


def constraint_values(settings: TrialSettings, row: dict[str, Any]) -> dict[str, float]:
    """Constraint name -> value (feasible when <= 0)."""
    out = {}
    bounded = settings.latency_budget_on
    if settings.latency_budget_ms is not None and row.get(bounded) is not None:
        out[bounded] = row[bounded] - settings.latency_budget_ms
    if settings.max_params is not None:
        out["params"] = float(row["params"] - settings.max_params)
    return out


def run_trial(settings: TrialSettings, config: ArchConfig, number: int, seed: int, *, label: str = "",
              params: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
              on_rung: Callable[[dict, TrainState], None] | None = None,
              resume: TrainState | None = None, rungs: list[dict] | None = None) -> dict[str, Any]:
    """Evaluate `config` as trial `number` of the run; returns its trials-table row (also in metrics.json).

    Args:
        settings: how every trial of the run is evaluated.
        config: the full-scale architecture.
        number: trial number (names the artifact folder `trials/<NNNN>`).
        seed: proxy-training seed.
        label: preset or ablation-step name shown in tables.
        params: the design-dimension values (stored as `p_<name>` columns).
        extra: more columns for the row (e.g. where the trial ran).
        on_rung: called at each step of `settings.report_at` with the rung's values ({"step", "train_loss",
            <signal>}) and the training state to checkpoint; the trial's metrics.json then holds the row so
            far with state RUNNING and the rung history.
        resume: a training state to continue from (a restored checkpoint).
        rungs: the rung reports made before `resume` (a trial continuing an interrupted one's rung state);
            each new rung report also holds the cost metrics known before training (params, MACs, latency)
            and the training seconds so far.
    """
    run = RunFolder(settings.run_dir)
    out_dir = run.trial_dir(number)
    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    row: dict[str, Any] = dict(number=number, state="COMPLETE", arch_id=config.arch_id, preset=label, seed=seed,
                               cache_key=settings.cache_key(config.arch_id, seed), cached=False,
                               config_json=config.to_json(indent=None), failure_reason=None,
                               proxy_scale=regime_name(settings.budget),
                               **dict.fromkeys(settings.metrics),  # a failed row still names every metric (Tune)
                               **(extra or {}), **{f"p_{k}": v for k, v in (params or {}).items()})
    latency_blocks: list[dict] = []
    try:
        row.update(CostEvaluator().evaluate(config))
        if settings.needs_latency:
            sampling = settings.sampling if settings.needs_image_latency else None
            row.update(LatencyEvaluator(_predictor(settings), settings.calibrate, sampling).evaluate(config))
            latency_blocks = row.pop("latency_blocks")
        violated = {k: v for k, v in constraint_values(settings, row).items() if v > 0}
        if violated:
            row.update(state="INFEASIBLE", failure_reason="infeasible: " + ", ".join(
                f"{k} exceeds the limit by {v:.4g}" for k, v in violated.items()))
        elif settings.needs_quality:
            history: list[dict] = list(rungs or [])

            def rung(values: dict, state: TrainState) -> None:
                values = values | {k: row[k] for k in RUNG_COSTS if row.get(k) is not None} | {
                    "seconds_train": state.seconds}  # training seconds so far (the rung's cost)
                history.append(values)
                run.write_trial_record(row | values | {"state": "RUNNING", "rungs": history})
                if on_rung:
                    on_rung(values, state)

            intermediate = Intermediate(settings.report_at, rung, settings.rung_signals, resume) \
                if settings.report_at or resume else None
            row.update(_quality(settings, run, config, seed, out_dir, intermediate))
            if history:
                row["rungs"] = json.dumps(history)  # one JSON text per table cell
    except TooLargeError as err:  # refused before anything was allocated: the reason says what and why
        row.update(state="FAIL", failure_reason=str(err))
    except Exception as err:  # a broken architecture or evaluator must not stop the search
        reason = write_failure(err, out_dir) or f"{type(err).__name__}: {err}".splitlines()[0][:500]
        row.update(state="FAIL", failure_reason=reason, traceback=traceback.format_exc(limit=8))
    row["seconds_total"] = time.perf_counter() - start
    run.write_trial_record(row | {"latency_blocks": latency_blocks})
    return row


def _quality(settings: TrialSettings, run: RunFolder, config: ArchConfig, seed: int, out_dir: Path,
             intermediate: Intermediate | None = None) -> dict:
    cache_file = run.cache_dir / f"{settings.cache_key(config.arch_id, seed)}.json"
    if cache_file.is_file():
        cached = json.loads(cache_file.read_text())
        return cached | {"cached": True}
    check_gpu_share(settings, config)
    evaluator = ProxyQualityEvaluator(_evaluator(settings) if settings.samples else None, seed, settings.device,
                                      settings.max_memory, proxy_mode=settings.proxy)
    metrics = evaluator.evaluate(config, settings.budget, out_dir=out_dir, intermediate=intermediate,
                                 samples=settings.samples)
    if metrics.get("state") == "FAIL":
        return metrics
    grid = metrics["sample_grid"]
    metrics["sample_grid"] = str(Path(grid).resolve().relative_to(run.path.resolve())) if grid else None
    write_json(cache_file, metrics)
    return metrics


def check_gpu_share(settings: TrialSettings, config: ArchConfig) -> None:
    """A trial given a fraction of a GPU must fit its proxy's training into that share of the visible GPU's
    memory (`evaluators.memory.gpu_share`), checked before anything is built; nothing to check on CPU or a whole
    GPU.

    Raises:
        TooLargeError: the proxy's estimate exceeds the share (the trial FAILs with this reason).
    """
    if not settings.device.startswith("cuda") or not 0 < settings.gpu_fraction < 1:
        return
    total = gpu_total_memory(settings.device)
    share = gpu_share(settings.gpu_fraction, total)
    if share is not None and (settings.max_memory is None or share < settings.max_memory):
        check_proxy_fits(config, settings.budget, settings.device, share, settings.proxy,
                         limit_label=share_label(settings.gpu_fraction, total))


_PROCESS_CACHE: dict[tuple, Any] = {}  # per worker process: predictors and evaluators are loaded once


def _predictor(settings: TrialSettings):
    from evaluators.latency import get_predictor

    key = ("lut", settings.latency_device, settings.image_size, settings.lut_dir, settings.lut_threads,
           settings.max_memory)
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE[key] = get_predictor(settings.latency_device, lut_dir=settings.lut_dir,
                                            image_size=settings.image_size, threads=settings.lut_threads,
                                            max_memory=settings.max_memory)
    return _PROCESS_CACHE[key]


def _evaluator(settings: TrialSettings):
    from evaluators.quality import (
        get_quality_evaluator,  # memoised per process by the factory
    )

    return get_quality_evaluator("domain", image_size=settings.budget.image_size, device=settings.device,
                                 **settings.evaluator_recipe)


def _teacher(settings: TrialSettings) -> dict[str, Any]:
    """Load (or train, with a progress bar) the teacher of an inherit-mode run; its description."""
    from evaluators.training.teacher import load_teacher
    from reports.terminal import teacher_progress

    mode = settings.proxy
    with teacher_progress(mode.teacher) as progress:
        teacher = load_teacher(mode.teacher_arch, settings.budget, label=mode.teacher, steps=mode.steps,
                               seed=mode.teacher_seed, train_allowed=mode.train_teacher, device=settings.device,
                               progress=progress)
    teacher.check_matches(settings.budget)
    return dict(teacher.info)


def prepare(settings: TrialSettings, configs: list[ArchConfig], progress=None) -> dict[str, Any]:
    """Driver-side set-up before trials compete for the CPU: train or load the quality evaluator, measure
    the blocks of `configs` (the warm-start presets) and the latency calibration.

    Args:
        progress: callback (done, total) while blocks are measured.

    Returns:
        The evaluator info and the latency-table description, for the run manifest.
    """
    from evaluators.quality.domain import domain_recipe

    info: dict[str, Any] = {}
    if settings.needs_quality:  # a run that draws no samples scores none: its evaluator is named, not built
        info["evaluator"] = dict(_evaluator(settings).info) if settings.samples else dict(
            source="domain", model_id=domain_recipe(settings.budget.image_size, **settings.evaluator_recipe).key,
            used=False)
        info["proxy"] = settings.proxy.to_dict()
        if settings.proxy.inherit and settings.proxy.train_teacher:  # trained here once, before the workers
            info["proxy"]["teacher_info"] = _teacher(settings)
    if settings.needs_latency:
        predictor = _predictor(settings)
        predictor.ensure(configs, progress=progress)
        if settings.needs_image_latency and configs:  # the text encoder and decoder, once, before the workers
            from evaluators.latency.image import pipeline_signatures

            predictor.block_ms(pipeline_signatures(predictor, configs[0], settings.sampling))
        prediction = predictor.predict(configs[0], calibrate=settings.calibrate) if configs else None
        lut = getattr(predictor, "lut", None)
        record = validation_on_record(predictor)
        info["latency"] = dict(device=settings.latency_device, image_size=settings.image_size,
                               per_image=settings.needs_image_latency,
                               estimate=predictor.estimate, calibrated=bool(prediction and prediction.calibrated),
                               fingerprint=getattr(lut, "fingerprint", None),
                               validation=None if record is None else {k: record.get(k) for k in (
                                   "summary", "repeatability", "at_repeatability_limit")})
        if settings.latency_budget_ms is not None:  # absolute milliseconds matter: say once if untrusted
            warning = latency_budget_warning(predictor)
            if warning:
                warn(warning)
    return info
