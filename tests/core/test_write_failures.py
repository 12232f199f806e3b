"""A full disk, as the kernel reports it (/dev/full answers every write with ENOSPC), named in one sentence."""

import pytest
import torch

from core.io import write_failure


def test_a_python_write_to_a_full_device_is_named():
    with pytest.raises(OSError) as info:
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 100_000)
    reason = write_failure(info.value, "/runs/r1/trials/0003")
    assert reason.startswith("no space left on the device of /runs/r1/trials/0003 (No space left on device)")


def test_torch_save_to_a_full_device_is_named_with_the_free_space(tmp_path):
    with pytest.raises(RuntimeError) as info:
        torch.save(torch.zeros(10_000), "/dev/full")  # the errno is lost inside torch's C++ stream
    reason = write_failure(info.value, tmp_path)
    assert "stopped short" in reason and "a full disk does this" in reason and "MiB free there now" in reason


def test_other_errors_are_not_write_failures():
    assert write_failure(ValueError("bad channels"), "/runs") is None
