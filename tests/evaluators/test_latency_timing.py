"""Robust timing: outlier rejection and interleaved measurement of real calls."""

import time

from evaluators.latency.timing import measure_interleaved, robust_stats


def test_slow_outliers_are_rejected_fast_samples_kept():
    t = robust_stats([10.0, 10.2, 9.9, 10.1, 10.0, 55.0, 10.3])
    assert t.rejected == 1 and t.n == 6
    assert 9.9 <= t.ms <= 10.3
    assert t.std_ms < 1.0


def _spin(ms: float) -> None:
    """Burn `ms` milliseconds of this thread's CPU time."""
    end = time.thread_time() + ms / 1e3
    while time.thread_time() < end:
        pass


def test_thread_clock_ignores_contention_and_orders_real_calls():
    calls = {"short": lambda: _spin(2.0), "long": lambda: _spin(8.0)}
    timings = measure_interleaved(calls, rounds=5, warmup=1, min_sample_s=0.01, clock="thread")
    assert 2.0 <= timings["short"].ms <= 2.3  # CPU time: the same however loaded the machine is
    assert 8.0 <= timings["long"].ms <= 8.5
    assert timings["short"].n + timings["short"].rejected == 5
    wall = measure_interleaved(calls, rounds=3, warmup=0, min_sample_s=0.01, clock="wall")
    assert wall["short"].ms >= 2.0 and wall["long"].ms >= 8.0  # wall time includes waiting for the core


def test_warm_up_runs_the_calls_it_is_given_unless_time_runs_out():
    from evaluators.latency.timing import warm_up

    calls = []
    warm_up(lambda: calls.append(1), 10, max_s=60.0, sync=lambda: None)
    assert len(calls) == 10
    slow = []
    warm_up(lambda: (slow.append(1), _spin(30.0)), 10, max_s=0.05, sync=lambda: None)
    assert 1 <= len(slow) < 10  # a slow candidate warms up for about max_s, not ten calls


def test_unknown_clock_is_refused():
    import pytest

    from evaluators.latency.timing import make_timer

    with pytest.raises(ValueError, match="cuda_event"):
        make_timer("sundial")
