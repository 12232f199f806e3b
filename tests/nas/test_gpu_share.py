"""Trials that share one GPU (--gpus-per-trial below 1) keep to their share of its memory, checked before
anything is built: the anchors of a search before it starts, each trial's architecture before it trains.

The GPU is simulated by its two numbers (total and free memory); the estimates and the checks are the real ones.
"""

import pytest
from search_helpers import tiny_options, tiny_settings

from evaluators import memory
from evaluators.memory import TooLargeError, format_size, gpu_share
from nas import trial_runner
from nas.search import validate_options
from search_spaces.presets import get_preset

GIB = 1 << 30


@pytest.fixture
def gpu(monkeypatch):
    """A visible GPU of `total` bytes with `free` bytes free now."""
    def make(total: int, free: int | None = None):
        monkeypatch.setattr(trial_runner, "gpu_total_memory", lambda device="cuda": total)
        monkeypatch.setattr(memory, "available_memory", lambda device="cpu": total if free is None else free)
    return make


def test_share_is_the_fraction_of_the_total():
    assert gpu_share(0.25, 80 * GIB) == 20 * GIB
    assert gpu_share(1.0, 80 * GIB) is None and gpu_share(0.0, 80 * GIB) is None  # a whole GPU, or none
    assert gpu_share(0.5, None) is None  # no GPU visible (a CPU-only Ray driver): nothing to divide


def test_a_trial_refused_by_its_share_names_the_share(tmp_path, gpu):
    settings = tiny_settings(tmp_path, device="cuda", gpu_fraction=0.25)
    gpu(total=4 << 20)  # 1 MiB per trial: far below any proxy's training
    with pytest.raises(TooLargeError, match=r"more than its --gpus-per-trial 0.25 share of the GPU \(1.0 MiB of "
                                            r"4.0 MiB\); the largest block is"):
        trial_runner.check_gpu_share(settings, get_preset("sd15"))
    gpu(total=64 * GIB)
    trial_runner.check_gpu_share(settings, get_preset("sd15"))  # 16 GiB each: fits
    gpu(total=64 * GIB, free=2 << 20)  # the share fits the device, but its neighbours took the memory
    with pytest.raises(TooLargeError, match=f"the {format_size(2 << 20)} available on cuda"):
        trial_runner.check_gpu_share(settings, get_preset("sd15"))


def test_nothing_to_check_on_cpu_a_whole_gpu_or_under_a_smaller_max_memory(tmp_path, gpu):
    gpu(total=4 << 20)
    trial_runner.check_gpu_share(tiny_settings(tmp_path, gpu_fraction=0.25), get_preset("sd15"))  # CPU trials
    trial_runner.check_gpu_share(tiny_settings(tmp_path, device="cuda", gpu_fraction=1.0), get_preset("sd15"))
    # --max-memory below the share is the tighter limit: the trial's own check applies it
    trial_runner.check_gpu_share(tiny_settings(tmp_path, device="cuda", gpu_fraction=0.5, max_memory=1 << 20),
                                 get_preset("sd15"))


def test_search_refuses_before_writing_when_its_anchors_exceed_the_share(tmp_path, gpu):
    gpu(total=4 << 20)
    run_dir = tmp_path / "run"
    settings = tiny_settings(run_dir, device="cuda", gpu_fraction=0.25)
    with pytest.raises(TooLargeError, match="share of the GPU"):
        validate_options(tiny_options(run_dir, settings=settings, gpus_per_trial=0.25))
    assert not run_dir.exists()
    gpu(total=64 * GIB)
    validate_options(tiny_options(run_dir, settings=settings, gpus_per_trial=0.25))
