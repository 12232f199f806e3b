"""Robust timing on a shared machine.

Contention from other processes only ever makes a run slower, so the estimate is the median of repeated
samples after dropping slow outliers (beyond median + 3 scaled MADs). Candidates are timed interleaved,
in a shuffled order each round, so a burst of contention spreads over all of them instead of biasing one.
Each sample repeats a short call enough times to last `min_sample_s`, above timer and scheduler jitter.
Every candidate is warmed up first (nn-Meter: 10 warm-up runs), capped in time so big blocks do not pay
seconds of warm-up.

Clocks: `wall` (time.perf_counter) is latency as the user sees it. `thread` (the calling thread's CPU
time) is what the wall time would be if no other process competed for the core: on a shared machine it
removes the time the thread spent descheduled. It is exact only when all the work runs on the calling
thread, i.e. single-threaded CPU backends (torch with 1 intra-op thread, onnxruntime with
intra_op_num_threads=1 run every kernel on the caller); the backends choose it only then. `cuda_event`
times the GPU stream between two CUDA events (what the GPU spent, not what the host spent queueing).

Speed probe: neither clock sees the machine itself running slower, and a shared VM does: its cores ran ~16%
faster during one validation than minutes earlier while the LUT was timed, with nothing else running inside
it, and two passes of one architecture differed by 0.81-1.58x (benchmarks/results_latency.md). A
`SpeedProbe` is a fixed reference workload timed at every round boundary of an interleaved measurement;
each round's samples are scaled by reference / (the mean of the two probe samples around it), so every
latency is expressed at one reference speed (the probe's own time when the LUT was started). Drift slower
than a round cancels; the raw (unscaled) median and the speed are kept beside it.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from scipy.stats import median_abs_deviation

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}
TIMERS = (*CLOCKS, "cuda_event")


class _ClockTimer:
    """Seconds between `start` and `stop` on a host clock (after `sync`)."""

    def __init__(self, clock: str, sync: Callable[[], None]):
        self.now, self.sync = CLOCKS[clock], sync

    def start(self) -> None:
        self.sync()
        self.t0 = self.now()

    def stop(self) -> float:
        self.sync()
        return self.now() - self.t0


class _CudaEventTimer:
    """Seconds of GPU stream time between two CUDA events recorded on the current stream."""

    def __init__(self):
        import torch

        self.events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))

    def start(self) -> None:
        self.events[0].record()

    def stop(self) -> float:
        self.events[1].record()
        self.events[1].synchronize()
        return self.events[0].elapsed_time(self.events[1]) / 1e3


def make_timer(clock: str, sync: Callable[[], None] = lambda: None):
    """A start/stop timer of `clock` (one of TIMERS)."""
    if clock == "cuda_event":
        return _CudaEventTimer()
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; known: {', '.join(TIMERS)}")
    return _ClockTimer(clock, sync)


@dataclass(frozen=True)
class Timing:
    """Robust summary of one candidate's samples (milliseconds per call)."""

    ms: float  # median of the kept samples
    std_ms: float  # standard deviation of the kept samples
    n: int  # samples kept
    rejected: int  # slow outliers dropped
    raw_ms: float | None = None  # with a speed probe: the median of the unscaled samples (ms is at reference speed)
    speed: float | None = None  # with a speed probe: median of reference / probe time (above 1: faster than then)


@dataclass(frozen=True)
class SpeedProbe:
    """A fixed workload timed beside a measurement, to express its latencies at one reference speed."""

    call: Callable[[], object]  # one forward of the reference workload
    reference_ms: float  # its time when the reference was taken (what a speed of 1 means)

    def sampler(self, clock: str, sync: Callable[[], None] = lambda: None, min_sample_s: float = 0.02,
                warmup: int = 10, warmup_s: float = 1.0) -> Callable[[], float]:
        """Warm the probe up; return a function that times one sample of it (ms per call, `clock`)."""
        timer = make_timer(clock, sync)
        number = _calls_per_sample(self.call, timer, warmup, warmup_s, sync, min_sample_s)

        def sample() -> float:
            timer.start()
            for _ in range(number):
                self.call()
            return timer.stop() * 1e3 / number
        return sample

    def speeds(self, samples: Sequence[float]) -> list[float]:
        """Speed of each interval between consecutive probe samples: the reference over their mean."""
        return [self.reference_ms / ((a + b) / 2) for a, b in zip(samples, samples[1:])]


def _calls_per_sample(call: Callable[[], object], timer, warmup: int, warmup_s: float, sync: Callable[[], None],
                      min_sample_s: float) -> int:
    """Warm `call` up, time it once, and return how many calls make a sample of about `min_sample_s`."""
    warm_up(call, warmup, warmup_s, sync)
    timer.start()
    call()
    once = max(timer.stop(), 1e-6)
    return max(1, min(1000, math.ceil(min_sample_s / once)))


def robust_stats(samples_ms: list[float]) -> Timing:
    """Median and spread after dropping samples slower than median + 3 * 1.4826 * MAD."""
    med = statistics.median(samples_ms)
    mad = float(median_abs_deviation(samples_ms, scale="normal"))  # 1.4826 * MAD: a normal sd's estimate
    limit = med + 3 * max(mad, 0.01 * med)
    kept = [s for s in samples_ms if s <= limit]
    std = statistics.pstdev(kept) if len(kept) > 1 else 0.0
    return Timing(statistics.median(kept), std, len(kept), len(samples_ms) - len(kept))


def warm_up(call: Callable[[], object], calls: int, max_s: float, sync: Callable[[], None]) -> None:
    """Run `call` `calls` times, or fewer once `max_s` wall seconds have passed (at least once if calls > 0)."""
    start = time.perf_counter()
    for i in range(calls):
        call()
        if i == 0 or (i + 1) % 4 == 0:
            sync()
            if time.perf_counter() - start >= max_s:
                break
    sync()


def measure_interleaved(calls: Mapping[str, Callable[[], object]], rounds: int = 5, warmup: int = 10,
                        min_sample_s: float = 0.02, sync: Callable[[], None] = lambda: None,
                        seed: int = 0, clock: str = "wall", warmup_s: float = 1.0,
                        probe: SpeedProbe | None = None) -> dict[str, Timing]:
    """Time every call, interleaved round by round.

    Args:
        calls: name -> a zero-argument callable running one forward pass.
        rounds: samples per call.
        warmup: untimed calls per candidate first (allocator, caches, lazy initialisation, clocks).
        min_sample_s: a sample repeats the call until it lasts about this long.
        sync: waits for queued device work (torch.cuda.synchronize on a GPU).
        seed: seed of the per-round shuffles.
        clock: "wall", "thread" or "cuda_event" (see the module docstring).
        warmup_s: the warm-up of one candidate stops after this many seconds even if calls remain.
        probe: a speed probe timed before the first round and after every round; each round's samples
            are scaled to the probe's reference speed (see the module docstring).

    Returns:
        name -> Timing, in milliseconds per call (at the probe's reference speed when there is one).
    """
    timer = make_timer(clock, sync)
    numbers = {name: _calls_per_sample(call, timer, warmup, warmup_s, sync, min_sample_s)
               for name, call in calls.items()}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    probe_sample = probe.sampler(clock, sync, min_sample_s, warmup, warmup_s) if probe else None
    probes = [probe_sample()] if probe else []
    order = list(calls)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            call, number = calls[name], numbers[name]
            timer.start()
            for _ in range(number):
                call()
            samples[name].append(timer.stop() * 1e3 / number)
        if probe:
            probes.append(probe_sample())
    if not probe:
        return {name: robust_stats(s) for name, s in samples.items()}
    speeds = probe.speeds(probes)  # round r ran between probe samples r and r + 1
    out = {}
    for name, raw in samples.items():
        scaled = robust_stats([ms * speed for ms, speed in zip(raw, speeds)])
        out[name] = replace(scaled, raw_ms=robust_stats(raw).ms, speed=statistics.median(speeds))
    return out


def reference_ms(call: Callable[[], object], rounds: int, sync: Callable[[], None] = lambda: None,
                 clock: str = "wall", warmup: int = 10, warmup_s: float = 1.0) -> float:
    """A probe's reference time: its robust median over `rounds` samples, now."""
    return measure_interleaved({"probe": call}, rounds, warmup, sync=sync, clock=clock, warmup_s=warmup_s)["probe"].ms
