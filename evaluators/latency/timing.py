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
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping

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
                        seed: int = 0, clock: str = "wall", warmup_s: float = 1.0) -> dict[str, Timing]:
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

    Returns:
        name -> Timing, in milliseconds per call.
    """
    timer = make_timer(clock, sync)
    numbers: dict[str, int] = {}
    for name, call in calls.items():
        warm_up(call, warmup, warmup_s, sync)
        timer.start()
        call()
        once = max(timer.stop(), 1e-6)
        numbers[name] = max(1, min(1000, math.ceil(min_sample_s / once)))
    samples: dict[str, list[float]] = {name: [] for name in calls}
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
    return {name: robust_stats(s) for name, s in samples.items()}
