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


def test_a_speed_probe_cancels_a_machine_that_slows_down_during_the_measurement():
    from evaluators.latency.timing import SpeedProbe, reference_ms

    start = time.thread_time()

    def slowing(ms: float) -> None:  # the machine runs 1x at first, 2x slower after 0.5 s of work
        _spin(ms * (1 + (time.thread_time() - start) / 0.5))

    reference = reference_ms(lambda: _spin(1.0), rounds=3, clock="thread", warmup=1)
    assert 1.0 <= reference <= 1.15
    calls = {"short": lambda: slowing(2.0), "long": lambda: slowing(4.0)}
    plain = measure_interleaved(calls, rounds=8, warmup=1, min_sample_s=0.01, clock="thread")
    assert plain["short"].ms > 2.3 and plain["short"].speed is None  # the slowdown lands in the numbers
    start = time.thread_time()
    probed = measure_interleaved(calls, rounds=8, warmup=1, min_sample_s=0.01, clock="thread",
                                 probe=SpeedProbe(lambda: slowing(1.0), reference))
    for name, ms in (("short", 2.0), ("long", 4.0)):
        t = probed[name]
        assert 0.9 * ms <= t.ms <= 1.12 * ms  # at the reference speed
        assert t.raw_ms > 1.15 * ms and t.speed < 0.87  # what the clock saw, and how much slower it ran
