"""Measurement backends: pinned timing thread, fingerprint fields, capture modes, and the no-GPU error."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import UserError
from evaluators.latency import LutStore, get_predictor
from core.hugepages import ENV, kernel_mode
from evaluators.latency.backends import CpuBackend, CudaBackend, OnnxRuntimeBackend, timing_core
from evaluators.latency.signature import arch_signatures, with_image_size

PINNABLE = hasattr(os, "sched_setaffinity")


def test_cpu_fingerprint_records_affinity_dtype_and_capture():
    fp = CpuBackend().fingerprint()
    assert fp["dtype"] == "float32" and fp["capture"] == "eager" and fp["clock"] == "thread"
    assert fp["affinity"] == ("1 core" if PINNABLE else "unpinned (OS cannot pin)")
    assert CpuBackend(threads=2).fingerprint()["affinity"] == "unpinned"
    assert CpuBackend(pin=False).fingerprint()["affinity"] == ("unpinned" if PINNABLE else "unpinned (OS cannot pin)")
    assert CpuBackend(dtype="bfloat16").fingerprint()["dtype"] == "bfloat16"


HUGE_PAGES = kernel_mode() in ("always", "madvise")


def test_cpu_fingerprint_records_the_page_size_of_large_tensors():
    """The test process asks for huge pages before torch's first allocation (conftest), as `nas` does."""
    pages = CpuBackend().fingerprint()["pages"]
    assert pages == ("2 MiB" if HUGE_PAGES else f"4 KiB (kernel THP {kernel_mode()})")
    assert "pages" not in OnnxRuntimeBackend().fingerprint()  # onnxruntime allocates through its own arena


def _pages_in_fresh_process(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != ENV} | env
    out = subprocess.run([sys.executable, "-c", code + "\nfrom core.hugepages import torch_cpu_pages\n"
                          "print(torch_cpu_pages())"], env=clean, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    return out.stdout.strip()


@pytest.mark.skipif(not HUGE_PAGES, reason="the kernel's transparent huge pages are off")
def test_importing_the_project_before_torch_puts_large_tensors_on_huge_pages():
    assert _pages_in_fresh_process("import nas, torch") == "2 MiB"
    assert _pages_in_fresh_process("import evaluators.latency") == "2 MiB"
    late = _pages_in_fresh_process("import torch\ntorch.ones(8)\nimport nas")  # torch allocated first: too late
    assert late == f"4 KiB ({ENV} not set before torch's first allocation)"
    assert _pages_in_fresh_process("import nas", **{ENV: "0"}) == f"4 KiB ({ENV}=0)"  # the user's opt-out stands


def test_lut_measured_on_other_pages_is_refused(lut_dir, tiny):
    """Tables from before the page size was recorded, or on other pages, are another measurement."""
    from evaluators.latency.store import Entry, Lut

    store = LutStore(lut_dir)
    now = CpuBackend().fingerprint()
    key = arch_signatures(with_image_size(tiny, 64), layouts=True)[0][1].key
    for stored, remedy in ((now | {"pages": "2 MiB" if now["pages"] != "2 MiB" else "4 KiB (x)"}, "pages"),
                           ({k: v for k, v in now.items() if k != "pages"}, "unrecorded")):
        store.save(Lut("cpu", "measured", stored | {"speed_probe": "v1"}, {}, {key: Entry(1.0, 0.1, 3)}))
        with pytest.raises(UserError, match=f"another device fingerprint.*{remedy}"):
            get_predictor("cpu", image_size=64)


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
