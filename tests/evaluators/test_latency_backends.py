"""Measurement backends: pinned timing thread, fingerprint fields, capture modes, and the no-GPU error."""

import os

import pytest
import torch

from core.errors import UserError
from evaluators.latency import LutStore, get_predictor
from evaluators.latency.backends import CpuBackend, CudaBackend, timing_core
from evaluators.latency.signature import arch_signatures, with_image_size

PINNABLE = hasattr(os, "sched_setaffinity")


def test_cpu_fingerprint_records_affinity_dtype_and_capture():
    fp = CpuBackend().fingerprint()
    assert fp["dtype"] == "float32" and fp["capture"] == "eager" and fp["clock"] == "thread"
    assert fp["affinity"] == ("1 core" if PINNABLE else "unpinned (OS cannot pin)")
    assert CpuBackend(threads=2).fingerprint()["affinity"] == "unpinned"
    assert CpuBackend(pin=False).fingerprint()["affinity"] == ("unpinned" if PINNABLE else "unpinned (OS cannot pin)")
    assert CpuBackend(dtype="bfloat16").fingerprint()["dtype"] == "bfloat16"


@pytest.mark.skipif(not PINNABLE, reason="this OS cannot pin a thread")
def test_measuring_pins_the_calling_thread_and_restores_it():
    before = os.sched_getaffinity(0)
    backend = CpuBackend()
    with backend.measuring():
        assert os.sched_getaffinity(0) == {timing_core()} == {backend.core}
        assert torch.get_num_threads() == 1
    assert os.sched_getaffinity(0) == before
    with CpuBackend(threads=2).measuring():
        assert os.sched_getaffinity(0) == before  # several threads: not pinned to one core


def test_bad_capture_and_dtype_are_user_errors():
    with pytest.raises(UserError, match="CUDA graphs need --device cuda"):
        CpuBackend(capture="graph")
    with pytest.raises(UserError, match="--dtype"):
        CpuBackend(dtype="int8")
    with pytest.raises(UserError, match="float32 exports only"):
        get_predictor("onnxruntime", dtype="float16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_one_clear_line_and_writes_nothing(lut_dir):
    with pytest.raises(UserError) as err:
        get_predictor("cuda", image_size=64)
    assert "no CUDA GPU" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="no CUDA GPU"):
        CudaBackend(capture="graph", dtype="float16")
    assert LutStore(lut_dir).devices() == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_match_eager_and_fingerprint_says_so(tiny):
    backend = CudaBackend()
    fp = backend.fingerprint()
    assert fp["capture"] == "cuda_graph" and fp["dtype"] == "float16" and fp["clock"] == "cuda_event"
    for _, sig in arch_signatures(with_image_size(tiny, 64), dtype="float16"):
        module, inputs, kwargs = backend.block_module(sig)
        with torch.inference_mode():
            expected = module(*inputs, **kwargs).clone()
        replay = backend.block_runner(sig)
        assert torch.allclose(replay().float(), expected.float(), atol=1e-2), sig.key


def test_time_embedding_runs_in_the_backend_dtype(tiny):
    """The UNet calls its time embedding with the model's dtype; a half-precision block must too."""
    backend = CpuBackend(dtype="bfloat16")
    sig = next(s for _, s in arch_signatures(with_image_size(tiny, 64), dtype="bfloat16") if s.spec.kind == "time_embed")
    out = backend.block_runner(sig)()
    assert out.dtype == torch.bfloat16 and out.shape[-1] == sig.spec.out_ch


def test_lut_of_the_unpinned_method_is_refused(lut_dir, tiny):
    """A LUT measured before pinning (no `affinity` in its fingerprint) is another measurement method."""
    from evaluators.latency.store import Entry, Lut

    store = LutStore(lut_dir)
    old = {k: v for k, v in CpuBackend().fingerprint().items() if k not in ("affinity", "dtype", "capture")}
    key = arch_signatures(with_image_size(tiny, 64), layouts=True)[0][1].key
    store.save(Lut("cpu", "measured", old, {}, {key: Entry(1.0, 0.1, 3)}))
    with pytest.raises(UserError, match="another device fingerprint.*affinity"):
        get_predictor("cpu", image_size=64)
