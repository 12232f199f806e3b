"""Latency prediction: the sum of an architecture's block latencies plus a calibrated overhead.

`get_predictor(device)` is the public entry point. Three kinds of predictor share one interface:
- `MeasuredPredictor` (cpu, cuda, onnxruntime): looks blocks up in the device's stored LUT, measures missing
  ones on demand (and stores them), and adds an overhead fitted on end-to-end measurements.
- `ImportedPredictor`: a LUT measured elsewhere; a missing block is an error that names it.
- `RooflinePredictor`: phone profiles; every number is an estimate (`estimate=True`).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from core.errors import UserError
from core.hugepages import ENV
from core.provenance import versions
from evaluators.cost import block_macs, block_params
from evaluators.latency.backends import Backend
from evaluators.latency.devices import DEVICES, unknown_device
from evaluators.latency.roofline import RooflineProfile
from evaluators.latency.signature import (
    BlockSignature,
    arch_signatures,
    with_image_size,
)
from evaluators.latency.store import Entry, Lut, LutStore
from evaluators.latency.timing import SpeedProbe, Timing, measure_interleaved, reference_ms
from evaluators.memory import blocks_memory, check_fits, model_memory, together
from search_spaces.blocks import arch_blocks
from search_spaces.config import ArchConfig
from search_spaces.presets import get_preset

Progress = Callable[[int, int], None]  # (done, total)
CALIBRATION_PRESETS = ("sd15", "bk_sdm_tiny", "mobilediffusion")
# Random architectures the overhead is also fitted on: presets alone are three points far from the typical
# sample (measured: a fit on them over-predicted 9 of 10 random archs), so the fit sees the space too. Fixed
# seed, so every LUT calibrates on the same archs; `validate` holds them out of its samples.
CALIBRATION_SPACE, CALIBRATION_SAMPLES, CALIBRATION_SEED = "unet_mobile", 6, 7919
CHUNK_BLOCKS = 8  # blocks timed interleaved together (and saved together)
# nn-Meter's protocol: 10 warm-up runs before timing; capped in time, so a block or model that takes a second
# warms up once or twice rather than for ten seconds.
WARMUP_CALLS, WARMUP_SECONDS = 10, 1.0
DEFAULT_ROUNDS, DEFAULT_MODEL_ROUNDS = 15, 5
CHUNK_BLOCK_PARAMS = 250_000_000  # weights resident at once while timing blocks (1 GB in fp32)
CHUNK_MODEL_PARAMS = 1_000_000_000  # weights resident at once while timing whole models (4 GB in fp32)
# The speed probe of measured CPU tables (`timing.SpeedProbe`): a ResNet block of 320 channels at 16x16 and a
# ReLU-attention transformer of 640 channels at 8x8 (~0.8 GMAC together), in the table's dtype. Fixed keys,
# not taken from a preset, so the probe never changes under a table; a new probe is a new version (and so a
# new fingerprint). GPU tables have none: CUDA-event times do not drift with the host's speed.
PROBE_VERSION = "1"
PROBE_KEYS = (
    "kind=resnet|in_ch=320|out_ch=320|res=16|temb_ch=1280|groups=32|separable=0|depth=0|attention=none|heads=0|"
    "attn_activation=none|shared_kv=0|ff_mult=0|ff_activation=none|context_len=0|context_dim=0",
    "kind=transformer|in_ch=640|out_ch=640|res=8|temb_ch=0|groups=32|separable=0|depth=1|attention=cross|heads=10|"
    "attn_activation=relu|shared_kv=1|ff_mult=3|ff_activation=swish|context_len=77|context_dim=768",
)


@dataclass(frozen=True)
class BlockLatency:
    """One block of a prediction."""

    path: str  # module path in the UNet (e.g. down_blocks.1.attentions.0)
    key: str  # block signature key
    ms: float  # latency of the block


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency of one UNet forward (one denoising step)."""

    latency_ms: float  # sum of blocks + overhead
    blocks: tuple[BlockLatency, ...]  # per-block breakdown in forward order
    overhead_ms: float  # calibrated end-to-end overhead (0 when uncalibrated)
    device: str  # device name
    estimate: bool  # True for roofline profiles: not a measurement
    calibrated: bool  # whether an end-to-end calibration was applied

    def to_dict(self) -> dict:
        return asdict(self) | {"blocks": [asdict(b) for b in self.blocks]}


@dataclass(frozen=True)
class Calibration:
    """End-to-end overhead model of one latent size: measured = scale * sum(blocks) + offset_ms."""

    scale: float
    offset_ms: float
    points: tuple[tuple[str, float, float], ...]  # (arch id, sum of blocks ms, measured ms)

    def overhead(self, block_sum: float) -> float:
        return (self.scale - 1.0) * block_sum + self.offset_ms

    @classmethod
    def fit(cls, points: Sequence[tuple[str, float, float]]) -> "Calibration":
        """Robust line through (sum of blocks, measured) points; a constant offset when it cannot be fitted.

        With >= 3 points whose sums spread, the Theil-Sen estimator (median of pairwise slopes, scipy): one
        noisy end-to-end measurement on a shared machine moves it far less than a least-squares line. A slope
        outside [0.5, 2] (implausible for an overhead) or too few points fall back to the median offset.
        """
        from scipy.stats import theilslopes

        sums = np.array([p[1] for p in points])
        measured = np.array([p[2] for p in points])
        if len(points) >= 3 and np.ptp(sums) > 0.2 * sums.mean():
            scale, offset = theilslopes(measured, sums)[:2]
            if 0.5 <= scale <= 2.0:
                return cls(float(scale), float(offset), tuple(points))
        return cls(1.0, float(np.median(measured - sums)), tuple(points))


def probe_signatures(dtype: str) -> list[BlockSignature]:
    """The speed probe's blocks in `dtype` (batch 1, contiguous)."""
    return [BlockSignature.from_key(f"{key}|batch=1|dtype={dtype}|layout=nchw") for key in PROBE_KEYS]


class Predictor(ABC):
    """Predicts UNet latency on one device at one image size."""

    estimate = False
    layouts = False  # whether block keys carry the input layout seen in the model (torch backends)

    def __init__(self, device: str, image_size: int = 512, batch: int = 1, dtype: str = "float32"):
        self.device, self.image_size, self.batch, self.dtype = device, image_size, batch, dtype

    def signatures(self, config: ArchConfig) -> list[tuple[str, BlockSignature]]:
        """The blocks of `config` at this predictor's image size, batch and dtype."""
        return arch_signatures(with_image_size(config, self.image_size), self.batch, self.dtype, self.layouts)

    def ensure(self, configs: Iterable[ArchConfig], progress: Progress | None = None) -> int:
        """Make every block of `configs` available; returns how many blocks were measured now."""
        return 0

    @abstractmethod
    def block_ms(self, sigs: Sequence[tuple[str, BlockSignature]]) -> list[float]:
        """Latency of each block."""

    def overhead_ms(self, block_sum: float, calibrate: bool) -> tuple[float, bool]:
        return 0.0, False

    def predict(self, config: ArchConfig, calibrate: bool = True) -> LatencyPrediction:
        """Predicted latency of one forward of `config` at this image size.

        Args:
            config: the architecture (its own latent size is replaced by this predictor's).
            calibrate: run the end-to-end calibration of this image size if it is missing (measured
                devices only; it times the calibration presets end to end once and stores the fit).
        """
        sigs = self.signatures(config)
        times = self.block_ms(sigs)
        total = float(sum(times))
        overhead, calibrated = self.overhead_ms(total, calibrate)
        blocks = tuple(BlockLatency(path, sig.key, ms) for (path, sig), ms in zip(sigs, times))
        return LatencyPrediction(total + overhead, blocks, overhead, self.device, self.estimate, calibrated)


class RooflinePredictor(Predictor):
    """Analytic ESTIMATES from a phone's public peak figures."""

    estimate = True

    def __init__(self, profile: RooflineProfile, image_size: int = 512, batch: int = 1):
        super().__init__(profile.name, image_size, batch, "float16")
        self.profile = profile

    def block_ms(self, sigs):
        return [self.profile.block_ms(sig.spec, sig.batch) for _, sig in sigs]


class ImportedPredictor(Predictor):
    """A LUT measured elsewhere and imported: lookups only."""

    def __init__(self, lut: Lut, image_size: int = 512, batch: int = 1, dtype: str = "float32"):
        super().__init__(lut.device, image_size, batch, dtype)
        self.lut = lut

    def block_ms(self, sigs):
        missing = sorted({sig.key for _, sig in sigs if sig.key not in self.lut.entries})
        if missing:
            paths = [path for path, sig in sigs if sig.key in missing]
            raise UserError(f"imported LUT {self.device!r} lacks {len(missing)} block(s) this architecture needs "
                            f"at image size {self.image_size} ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''};"
                            f" first key: {missing[0]}); measure them (nas lut kit --config ...) and import again")
        return [self.lut.entries[sig.key].ms for _, sig in sigs]


class MeasuredPredictor(Predictor):
    """A LUT measured on this machine by `backend`; missing blocks are measured and stored on demand."""

    def __init__(self, backend: Backend, store: LutStore, image_size: int = 512, rounds: int = DEFAULT_ROUNDS,
                 model_rounds: int = DEFAULT_MODEL_ROUNDS, replace: bool = False, max_memory: int | None = None,
                 speed_probe: bool | None = None):
        super().__init__(backend.name, image_size, backend.batch, backend.dtype)
        self.backend, self.store, self.max_memory = backend, store, max_memory
        self.layouts = backend.layout_sensitive
        self.rounds, self.model_rounds = rounds, model_rounds
        self._replacing = replace  # until the first save replaced the stored table
        lut = None if replace else store.load(backend.name)
        if speed_probe is None:  # as the stored table was measured, else on
            speed_probe = lut is None or lut.fingerprint.get("speed_probe", "off") != "off"
        self.probed = speed_probe and backend.device_type == "cpu"
        self._probe: SpeedProbe | None = None
        fingerprint = backend.fingerprint() | {"speed_probe": f"v{PROBE_VERSION}" if self.probed else "off"}
        # Tables from before the speed probe, the dtype, the capture mode and the CPU page size were recorded were
        # measured without a probe, in float32, eagerly, on pages nobody chose (their timing thread was not
        # pinned: `affinity` has no such default). Only keys this backend's fingerprint has are filled in.
        legacy = {"speed_probe": "off", "dtype": "float32", "capture": "eager", "pages": "unrecorded"}
        stored = None if lut is None else {k: v for k, v in legacy.items() if k in fingerprint} | lut.fingerprint
        if stored is not None and stored != fingerprint:
            diff = {k: (stored.get(k), v) for k, v in fingerprint.items() if stored.get(k) != v}
            hint = (f" ({ENV}=1 must be set before this process's first torch allocation: import the project's "
                    "packages before torch)") if stored.get("pages") == "2 MiB" != fingerprint.get("pages") else ""
            raise UserError(f"the stored LUT {store.path(backend.name)} was measured on another device fingerprint "
                            f"(stored vs now: {diff}){hint}; use another --lut-dir, or rebuild it with `nas lut build "
                            f"--device {backend.name} --replace`")
        self.lut = lut or Lut(backend.name, "measured", fingerprint, self._conditions())

    def _take_stored(self) -> None:
        """Take in what another process stored since this table was loaded (a parallel trial's blocks, a `nas lut
        build`, a calibration): the same fingerprint, so the same device's measurements. Without it a process
        re-measures what the file already holds, and its next save drops the other process's entries."""
        if self._replacing:
            return
        stored = self.store.load(self.device)
        if stored is None or stored.fingerprint != self.lut.fingerprint:
            return
        for key, entry in stored.entries.items():
            self.lut.entries.setdefault(key, entry)
        for size, fit in stored.calibration.items():
            self.lut.calibration.setdefault(size, fit)

    def _save(self) -> None:
        self._take_stored()
        self.store.save(self.lut)
        self._replacing = False

    def _conditions(self) -> dict:
        return {"rounds": self.rounds, "model_rounds": self.model_rounds, "warmup": f"{WARMUP_CALLS} calls (at most "
                f"{WARMUP_SECONDS:g} s) per candidate", "estimator": "median after MAD outlier rejection, interleaved "
                "rounds", "versions": versions()} | self.backend.conditions()

    @property
    def path(self):
        return self.store.path(self.device)

    def speed_probe(self) -> SpeedProbe | None:
        """This table's speed probe (None when it has none); the first call on a new table times the probe's
        reference, stored in the table's conditions (`probe_reference_ms`). Call inside `backend.measuring()`."""
        if not self.probed:
            return None
        if self._probe is None:
            runners = [self.backend.block_runner(sig) for sig in probe_signatures(self.backend.dtype)]

            def call() -> None:
                for run in runners:
                    run()
            reference = self.lut.conditions.get("probe_reference_ms")
            if reference is None:
                reference = reference_ms(call, self.rounds, self.backend.sync, self.backend.clock, WARMUP_CALLS,
                                         WARMUP_SECONDS)
                self.lut.conditions |= {"probe_reference_ms": reference,
                                        "probe_reference_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self._probe = SpeedProbe(call, reference)
        return self._probe

    def missing(self, configs: Iterable[ArchConfig]) -> list[BlockSignature]:
        """Distinct blocks of `configs` not yet in the LUT."""
        seen: dict[str, BlockSignature] = {}
        for config in configs:
            for _, sig in self.signatures(config):
                if sig.key not in self.lut.entries:
                    seen.setdefault(sig.key, sig)
        return list(seen.values())

    def ensure(self, configs, progress=None):
        return self.measure_blocks(self.missing(configs), progress)

    def measure_blocks(self, sigs: Sequence[BlockSignature], progress: Progress | None = None) -> int:
        """Time `sigs` in interleaved chunks, saving the LUT after each chunk (so builds resume).

        Raises:
            TooLargeError: a chunk's estimated memory exceeds the limit (checked before any is measured).
        """
        self._take_stored()
        sigs = [s for s in sigs if s.key not in self.lut.entries]
        chunks = _chunks(sigs, lambda s: block_params(s.spec), CHUNK_BLOCKS, CHUNK_BLOCK_PARAMS)
        if chunks:
            largest = max((blocks_memory([s.spec for s in chunk], f"timing {len(chunk)} latency-table block(s) on "
                                         f"{self.device}", self.backend.weight_copies, self.batch,
                                         self.backend.torch_dtype.itemsize) for chunk in chunks),
                          key=lambda e: e.total)
            check_fits(largest, self.max_memory, self.backend.device_type)
        done = 0
        for chunk in chunks:
            with self.backend.measuring():
                runners = {s.key: self.backend.block_runner(s) for s in chunk}
                timings = measure_interleaved(runners, self.rounds, warmup=WARMUP_CALLS, sync=self.backend.sync,
                                              clock=self.backend.clock, warmup_s=WARMUP_SECONDS,
                                              probe=self.speed_probe())
            del runners
            for key, t in timings.items():
                self.lut.entries[key] = Entry(t.ms, t.std_ms, t.n)
            self._save()
            done += len(chunk)
            if progress:
                progress(done, len(sigs))
        return done

    def measure_models(self, configs: Sequence[ArchConfig], progress: Progress | None = None,
                       seed: int = 0) -> list[Timing]:
        """End-to-end latency of each config at this image size, timed interleaved in memory-bounded chunks
        (`seed`: of the per-round shuffles; every call builds fresh model instances).

        Raises:
            TooLargeError: a chunk's estimated memory exceeds the limit (checked before any is built).
        """
        out: dict[int, Timing] = {}
        self.check_models_fit(configs)
        for chunk in self._model_chunks(configs):
            with self.backend.measuring():
                runners = {str(i): self.backend.model_runner(c) for i, c in chunk}
                timings = measure_interleaved(runners, self.model_rounds, warmup=WARMUP_CALLS, sync=self.backend.sync,
                                              seed=seed, clock=self.backend.clock, warmup_s=WARMUP_SECONDS,
                                              probe=self.speed_probe())
            del runners
            out.update({int(i): t for i, t in timings.items()})
            if progress:
                progress(len(out), len(configs))
        return [out[i] for i in range(len(configs))]

    def _model_chunks(self, configs: Sequence[ArchConfig]) -> list[list[tuple[int, ArchConfig]]]:
        """(index, config at this image size) groups timed together: at most CHUNK_MODEL_PARAMS resident."""
        indexed = list(enumerate(with_image_size(c, self.image_size) for c in configs))
        return _chunks(indexed, lambda ic: sum(block_params(s) for _, s in arch_blocks(ic[1])), len(indexed),
                       CHUNK_MODEL_PARAMS)

    def check_models_fit(self, configs: Sequence[ArchConfig]) -> None:
        """Refuse whole-UNet timings of `configs` that would not fit in memory, before anything is measured.

        Raises:
            TooLargeError: a chunk's estimated memory exceeds `max_memory` or the available memory.
        """
        for chunk in self._model_chunks(configs):
            check_fits(together([model_memory(c, f"arch {c.arch_id}", self.backend.weight_copies, self.batch,
                                              self.backend.torch_dtype.itemsize) for _, c in chunk],
                                f"timing arch {', '.join(c.arch_id for _, c in chunk)} end to end on {self.device} "
                                f"at {self.image_size}px"), self.max_memory, self.backend.device_type)

    @staticmethod
    def calibration_configs() -> list[ArchConfig]:
        """The architectures the overhead is fitted on by default: the presets and a fixed random sample."""
        from search_spaces.space import get_space

        return [get_preset(name) for name in CALIBRATION_PRESETS] + get_space(CALIBRATION_SPACE).sample_random(
            CALIBRATION_SAMPLES, CALIBRATION_SEED)

    def seconds_estimate(self, configs: Sequence[ArchConfig]) -> float | None:
        """Expected seconds to time `configs` end to end after measuring their missing blocks: every block
        and model is built once (its weights initialised at the speed of a short probe on this machine),
        warmed up and timed for `rounds` (blocks) or `model_rounds` (models) samples at this table's speed:
        stored blocks at their latency, missing ones at the median milliseconds per MAC of the stored
        blocks. CPU time: a busy machine takes longer. None for an empty table (no speed to go by)."""
        per_mac = [e.ms / macs for key, e in self.lut.entries.items()
                   if (macs := block_macs(BlockSignature.from_key(key).spec)[0]) > 0]
        if not per_mac:
            return None
        rate = float(np.median(per_mac))

        def ms(sig: BlockSignature) -> float:
            entry = self.lut.entries.get(sig.key)
            return entry.ms if entry else rate * block_macs(sig.spec, sig.batch)[0]

        sigs = [self.signatures(c) for c in configs]
        missing = {sig.key: sig for arch in sigs for _, sig in arch if sig.key not in self.lut.entries}
        run_ms = sum(_timing_ms(ms(sig), self.rounds) for sig in missing.values()) + sum(
            _timing_ms(sum(ms(sig) for _, sig in arch), self.model_rounds) for arch in sigs)
        if self.probed:  # the probe: its warm-up and one sample per round boundary, per chunk
            probe_ms = self.lut.conditions.get("probe_reference_ms") or sum(
                rate * block_macs(sig.spec)[0] for sig in probe_signatures(self.backend.dtype))
            run_ms += (math.ceil(len(missing) / CHUNK_BLOCKS) * _timing_ms(probe_ms, self.rounds + 1)
                       + len(self._model_chunks(configs)) * _timing_ms(probe_ms, self.model_rounds + 1))
        params = sum(block_params(sig.spec) for sig in missing.values()) + sum(
            block_params(sig.spec) for arch in sigs for _, sig in arch)
        return run_ms / 1000 + params * _init_seconds_per_param(self.backend.device_type)

    def calibrate(self, configs: Sequence[ArchConfig] | None = None, progress: Progress | None = None) -> Calibration:
        """Fit and store the end-to-end overhead of this image size (default: the calibration presets)."""
        configs = list(configs) if configs else self.calibration_configs()
        self.check_models_fit(configs)  # before minutes of block measurements
        self.ensure(configs)
        measured = self.measure_models(configs, progress)
        points = []
        for config, timing in zip(configs, measured):
            block_sum = float(sum(self.block_ms(self.signatures(config))))
            points.append((config.arch_id, block_sum, timing.ms))
        calibration = Calibration.fit(points)
        self.lut.calibration[str(self.image_size // 8)] = asdict(calibration)
        self._save()
        return calibration

    def calibration(self) -> Calibration | None:
        raw = self.lut.calibration.get(str(self.image_size // 8))
        if raw is None:
            return None
        return Calibration(raw["scale"], raw["offset_ms"], tuple(tuple(p) for p in raw["points"]))

    def block_ms(self, sigs):
        missing = [sig for _, sig in sigs if sig.key not in self.lut.entries]
        if missing:
            self.measure_blocks(list({s.key: s for s in missing}.values()))
        return [self.lut.entries[sig.key].ms for _, sig in sigs]

    def overhead_ms(self, block_sum, calibrate):
        calibration = self.calibration()
        if calibration is None:  # another process may have fitted it since
            self._take_stored()
            calibration = self.calibration()
        if calibration is None and calibrate:
            calibration = self.calibrate()
        return (calibration.overhead(block_sum), True) if calibration else (0.0, False)


INIT_PROBE = 1 << 24  # weights initialised to time this machine's initialisation speed
SAMPLE_MS = 20.0  # `measure_interleaved` repeats a call within one sample until it lasts about this long


def _timing_ms(ms: float, rounds: int) -> float:
    """Milliseconds `measure_interleaved` spends on a candidate that runs in `ms`: warm-up, one probe call,
    then `rounds` samples of at least SAMPLE_MS."""
    return min(WARMUP_CALLS * ms, WARMUP_SECONDS * 1000 + ms) + ms + rounds * max(ms, SAMPLE_MS)


def _init_seconds_per_param(device: str) -> float:
    """Seconds to initialise one weight as `materialize` does (`backends.fill_weights`)."""
    from evaluators.latency.backends import fill_weights

    probe = torch.empty(INIT_PROBE, device=device)
    start = time.perf_counter()
    fill_weights([probe], device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / INIT_PROBE


def _chunks(items: list, size_of: Callable, max_items: int, max_size: int) -> list[list]:
    """Consecutive groups of at most `max_items` items whose sizes add up to at most `max_size` (>= 1 item)."""
    out, current, total = [], [], 0
    for item in items:
        size = size_of(item)
        if current and (len(current) >= max_items or total + size > max_size):
            out.append(current)
            current, total = [], 0
        current.append(item)
        total += size
    return out + ([current] if current else [])


def get_predictor(device: str, lut_dir: str | None = None, image_size: int = 512, threads: int = 1,
                  dtype: str | None = None, batch: int = 1, rounds: int = DEFAULT_ROUNDS,
                  model_rounds: int = DEFAULT_MODEL_ROUNDS, replace: bool = False, max_memory: int | None = None,
                  capture: str | None = None, speed_probe: bool | None = None) -> Predictor:
    """The latency predictor of a device.

    Args:
        device: a registered device (`cpu`, `cuda`, `onnxruntime`, a roofline phone such as `iphone15pro`)
            or the name of an imported LUT in the LUT directory.
        lut_dir: the LUT directory (default `$NAS_LUT_DIR` or the user cache directory).
        image_size: image side in pixels; blocks are measured at its latent size (image_size // 8).
        threads: intra-op threads of measured CPU backends (part of the device fingerprint).
        dtype: dtype of measured blocks (default: the backend's, `float32` on cpu/onnxruntime, `float16` on
            cuda as deployed; part of the fingerprint).
        batch: batch of the timed forward passes.
        rounds: interleaved timing rounds per block; model_rounds: per end-to-end measurement.
        replace: start a measured device's LUT afresh, ignoring (and, at the first save, replacing) the
            stored one; the way to rebuild after the fingerprint changed (or a corrupt file).
        max_memory: bytes a measured device may allocate for the blocks or models it times (None: what is
            available); a larger estimate raises TooLargeError before anything is built.
        capture: how a torch backend runs what it times: `eager`, or `graph` (CUDA graphs; cuda's default).
        speed_probe: scale measured CPU latencies to the table's reference speed with the speed probe
            (`PROBE_KEYS`; part of the fingerprint). None: as the stored table was measured, else on.

    Raises:
        UnknownNameError: an unknown device name (the message lists the known ones).
        UserError: an unusable stored LUT (corrupt, or measured on another device fingerprint).
    """
    store = LutStore(lut_dir)
    if image_size < 8 or image_size % 8:
        raise UserError(f"--image-size must be a positive multiple of 8, got {image_size}")
    if device in DEVICES:
        target = DEVICES.create(device, threads=threads, dtype=dtype, batch=batch, capture=capture)
        if isinstance(target, RooflineProfile):
            return RooflinePredictor(target, image_size, batch)
        return MeasuredPredictor(target, store, image_size, rounds, model_rounds, replace, max_memory, speed_probe)
    lut = store.load(device)
    if lut is None:
        raise unknown_device(device, store)
    return ImportedPredictor(lut, image_size, batch, dtype or "float32")
