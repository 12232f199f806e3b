"""The evaluator interface: `evaluate(arch, budget) -> record`, in the style of Archai's evaluators.

Cost, latency and proxy quality are evaluators. Each takes a full-scale ArchConfig (and, for quality, the proxy
training budget) and returns a dict whose keys are metric names of the registry (`core.metrics`) plus the
evaluator's own record fields (seconds, per-block breakdown, sample grid). The search, ablation and fidelity
executors call them through `nas.trial_runner.run_trial`, which composes the three into one trial record.

    for evaluator in (CostEvaluator(), LatencyEvaluator(predictor), ProxyQualityEvaluator(clip)):
        record |= evaluator.evaluate(arch, budget)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from core.metrics import names
from evaluators.cost import analytic_cost
from evaluators.training.budget import Budget
from evaluators.training.rungs import Intermediate
from search_spaces.config import ArchConfig


class Evaluator(Protocol):
    """Something that measures registry metrics of an architecture."""

    kind: str  # the registry's `evaluator` field of the metrics it produces: "cost", "latency" or "quality"

    def evaluate(self, arch: ArchConfig, budget: Budget | None = None) -> dict[str, Any]:
        """Registry metrics (and the evaluator's record fields) of `arch`."""
        ...


class CostEvaluator:
    """Parameters and multiply-adds of the full-scale UNet, counted analytically (no budget needed)."""

    kind = "cost"

    def evaluate(self, arch: ArchConfig, budget: Budget | None = None) -> dict[str, Any]:
        cost = analytic_cost(arch)
        return dict(params=cost.params, macs=cost.macs, macs_no_attention=cost.macs_no_attention)


class LatencyEvaluator:
    """Predicted per-step latency of the full-scale UNet from a latency predictor (a device's LUT or the
    roofline estimate), with its per-block breakdown; given a `SamplingConfig`, also the latency of one image
    (`image_latency_ms`) and its parts (`text_encoder_ms`, `unet_calls`, `decoder_ms`)."""

    kind = "latency"

    def __init__(self, predictor, calibrate: bool = False, sampling=None):
        self.predictor = predictor
        self.calibrate = calibrate
        self.sampling = sampling  # search_spaces.pipeline.SamplingConfig, or None: per step only

    def evaluate(self, arch: ArchConfig, budget: Budget | None = None) -> dict[str, Any]:
        import dataclasses

        from evaluators.latency.image import predict_image

        began = time.perf_counter()
        if self.sampling is None:
            prediction, image = self.predictor.predict(arch, calibrate=self.calibrate), {}
        else:
            per_image = predict_image(self.predictor, arch, self.sampling, calibrate=self.calibrate)
            prediction = per_image.unet
            parts = {p.part: p for p in per_image.parts}
            image = dict(image_latency_ms=per_image.latency_ms, text_encoder_ms=parts["text_encoder"].ms,
                         unet_calls=parts["unet"].calls, decoder_ms=parts["vae_decoder"].ms)
        return dict(latency_ms=prediction.latency_ms, seconds_latency=time.perf_counter() - began,
                    latency_blocks=[dataclasses.asdict(b) for b in prediction.blocks]) | image


class ProxyQualityEvaluator:
    """Proxy quality: train the architecture's proxy for `budget`, then score its samples (FID, KID, CLIP
    score, CMMD) and its held-out losses with a quality evaluator (the domain CLIP or a standard one)."""

    kind = "quality"

    def __init__(self, scorer, seed: int = 0, device: str = "cpu", max_memory: int | None = None,
                 proxy_mode=None):
        self.scorer = scorer  # the quality evaluator (evaluators.quality)
        self.seed = seed
        self.device = device
        self.max_memory = max_memory
        self.proxy_mode = proxy_mode  # evaluators.training.proxy_mode.ProxyMode (None: scratch)

    def evaluate(self, arch: ArchConfig, budget: Budget | None = None, *, out_dir: Path | None = None,
                 intermediate: Intermediate | None = None, samples: bool = True) -> dict[str, Any]:
        """The quality metrics, per-stage seconds, steps and sample grid; `{"state": "FAIL", "failure_reason"}`
        when the trial failed (a diverging or too-large proxy is a result, not an exception). `samples` False:
        held-out losses only (the sample metrics are None; `evaluate_arch`)."""
        from evaluators.training.trial import evaluate_arch

        result = evaluate_arch(arch, budget or Budget(), seed=self.seed, out_dir=out_dir, evaluator=self.scorer,
                               device=self.device, max_memory=self.max_memory, intermediate=intermediate,
                               proxy_mode=self.proxy_mode, samples=samples)
        if result.failed:
            return {"state": "FAIL", "failure_reason": result.failure_reason}
        return {k: getattr(result, k, None) for k in names("quality")} | {
            f"seconds_{stage}": seconds for stage, seconds in result.seconds.items()} | dict(
            steps=result.steps, proxy_params=result.proxy_params, sample_grid=result.sample_grid,
            sample_captions=result.sample_captions) | _proxy_fields(result)


def _proxy_fields(result) -> dict[str, Any]:
    """How the proxy started, for the trial record: the mode and, for inherit, the teacher and what it gave."""
    if result.proxy_mode != "inherit":
        return dict(proxy_mode=result.proxy_mode)
    return dict(proxy_mode=result.proxy_mode, teacher=result.teacher.get("label"),
                teacher_key=result.teacher.get("key"), inherited_fraction=result.inherited_fraction,
                inherit_fallbacks="; ".join(result.inherit_fallbacks) or None)

