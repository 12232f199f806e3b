"""Measured latency backends: torch on CPU (eager) or CUDA (CUDA graphs, fp16), and onnxruntime's CPU provider.

A backend turns a block signature (or a whole architecture) into a zero-argument callable that runs one
forward pass on the device, and describes the device by a fingerprint: a LUT is only ever used on the
device whose fingerprint it was measured with. Weights are materialised from the meta device and filled
with small seeded Gaussian values (latency does not depend on the values; zeros could hit fast paths).

Measurement follows nn-Meter where the OS allows: one thread, pinned to one core (`os.sched_setaffinity`
on the timing thread, restored afterwards; recorded in the fingerprint as `affinity`). On a GPU each block
and each model is captured once in a CUDA graph and timed by replaying it between CUDA events, in fp16 as
deployed: eager batch-1 inference there is bound by the host launching kernels (measured: H200 end to end
repeats within +-10% for only 30-43% of archs), which a phone runtime does not pay.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from core.errors import UserError
from core.hugepages import torch_cpu_pages
from core.provenance import cpu_model
from evaluators.latency import onnx_export
from evaluators.latency.signature import BlockSignature
from search_spaces.blocks import block_inputs, build_block
from search_spaces.config import ArchConfig
from search_spaces.meta_init import no_init_on_meta
from search_spaces.unet import build_unet

Runner = Callable[[], object]


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def steady_allocator() -> str:
    """Keep freed memory in the process between forward passes (glibc only; returns what was set).

    By default glibc hands large freed blocks back to the OS and serves big tensors from fresh mmaps, so
    some forward passes pay tens of thousands of page faults (~6% of a 256 px UNet step here, measured) and
    others none, depending on which sizes were freed before: an isolated block and the same block inside a
    model then time differently. Fixed trim and mmap thresholds (which also switch off glibc's dynamic
    threshold) make every timed call run on already-mapped memory. Process-wide and harmless for training.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 and libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
    except (OSError, AttributeError):
        ok = False
    return "glibc: trim threshold 1 GiB, mmap threshold 32 MiB" if ok else "default"


def timing_core() -> int | None:
    """The core a pinned timing thread runs on (the highest one this process may use), or None where the OS
    cannot pin a thread (no `os.sched_setaffinity`, e.g. macOS)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        return max(os.sched_getaffinity(0))
    except OSError:
        return None


@contextmanager
def pinned_thread(core: int | None):
    """Pin the calling thread to `core` (Linux: pid 0 is the calling thread), then restore its affinity."""
    if core is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


WEIGHT_POOL = 1 << 22  # seeded N(0, 0.02) values that timed modules' weights are copied from


def fill_weights(tensors: Iterable[torch.Tensor], device: str) -> None:
    """Fill `tensors` with values of a seeded N(0, 0.02) pool (repeated when a tensor is larger).

    Drawing every weight afresh (`normal_`) ran at ~15 ns per value on the 2-core CPU: 13 s for SD-1.5,
    most of a whole-model timing at 64 px. A latency does not depend on which finite, normal-range values
    the weights hold, so the weights repeat a 4 M-value pool: a memory copy, ~10x faster.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    pool = torch.empty(WEIGHT_POOL, device=device).normal_(0.0, 0.02, generator=gen)
    with torch.no_grad():
        for t in tensors:
            flat = t.view(-1)
            for start in range(0, flat.numel(), WEIGHT_POOL):
                chunk = flat[start:start + WEIGHT_POOL]
                chunk.copy_(pool[:chunk.numel()])


def materialize(factory: Callable[[], nn.Module], device: str, dtype: torch.dtype) -> nn.Module:
    """Build a module on the meta device, then allocate it on `device` with seeded N(0, 0.02) weights."""
    with torch.device("meta"), no_init_on_meta():
        module = factory()
    module = module.to_empty(device=device)
    fill_weights(module.parameters(), device)
    return module.to(dtype).eval()


def model_inputs(config: ArchConfig, batch: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    """(sample (B, Cl, S, S), timestep (B,), text (B, L, D)) for a full UNet forward."""
    s = config.latent_size
    return (torch.randn(batch, config.latent_channels, s, s, dtype=dtype, device=device),
            torch.full((batch,), 500.0, device=device),
            torch.randn(batch, config.context_len, config.context_dim, dtype=dtype, device=device))


class Backend(ABC):
    """A device that measures latencies (one per process: thread settings are global)."""

    name = ""
    description = ""
    layout_sensitive = True  # whether the input memory layout changes latency (part of the block key)
    device_type = "cpu"  # where the timed modules and their inputs live
    weight_copies = 1  # copies of a module's weights held while its runner is built (for memory estimates)
    default_dtype = "float32"
    captures: tuple[str, ...] = ("eager",)  # execution modes; the first is the default
    profiles_blocks_in_model = True  # whether `inmodel.profile_model` can time blocks inside a forward

    def __init__(self, threads: int = 1, dtype: str | None = None, batch: int = 1, capture: str | None = None,
                 pin: bool = True):
        if threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        dtype = dtype or self.default_dtype
        if dtype not in ("float32", "float16", "bfloat16"):
            raise UserError(f"--dtype must be float32, float16 or bfloat16, got {dtype!r}")
        capture = capture or self.captures[0]
        if capture not in self.captures:
            raise UserError(f"device {self.name!r} supports --capture {' or '.join(self.captures)}, not {capture!r}"
                            + (" (CUDA graphs need --device cuda)" if capture == "graph" else ""))
        self.threads, self.dtype, self.batch, self.capture = threads, dtype, batch, capture
        self.torch_dtype = getattr(torch, dtype)
        self.allocator = steady_allocator()
        self.core = timing_core() if pin and threads == 1 else None

    @property
    def affinity(self) -> str:
        """How the timing thread runs: `1 core` when pinned, else why not (part of the fingerprint)."""
        if self.core is not None:
            return "1 core"
        return "unpinned (OS cannot pin)" if self.threads == 1 and timing_core() is None else "unpinned"

    @abstractmethod
    def fingerprint(self) -> dict:
        """What identifies this device and runtime; a stored LUT must match it exactly."""

    @abstractmethod
    def block_runner(self, sig: BlockSignature) -> Runner:
        """A callable running one forward of the block (resources live as long as the callable)."""

    @abstractmethod
    def model_runner(self, config: ArchConfig) -> Runner:
        """A callable running one forward of the whole UNet of `config` (at its latent size)."""

    def sync(self) -> None:
        """Wait for queued work (no-op on synchronous devices)."""

    @contextmanager
    def measuring(self):
        """Run the enclosed measurements with this backend's torch thread count, on the pinned core, then
        restore the caller's threads and affinity (a search worker trains between latency lookups)."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with pinned_thread(self.core):
                yield
        finally:
            torch.set_num_threads(before)

    @property
    def clock(self) -> str:
        """`thread` (CPU time of the calling thread) when all work runs on it, else `wall`."""
        return "thread" if self.threads == 1 and self.name in ("cpu", "onnxruntime") else "wall"

    def conditions(self) -> dict:
        """How this backend measures, beyond the fingerprint (for the LUT's conditions)."""
        return {"allocator": self.allocator, "core": self.core, "capture": self.capture}


class TorchBackend(Backend):
    """Torch on `cpu` (eager) or `cuda` (CUDA graphs or eager), in inference mode, with fixed intra-op threads."""

    def __init__(self, threads: int = 1, dtype: str | None = None, batch: int = 1, capture: str | None = None,
                 pin: bool = True):
        if self.device_type == "cuda" and not torch.cuda.is_available():
            raise UserError("device 'cuda': no CUDA GPU is available to torch on this machine "
                            "(measure on a machine with an NVIDIA GPU, or use --device cpu)")
        super().__init__(threads, dtype, batch, capture, pin)

    def fingerprint(self) -> dict:
        fp = {"backend": self.name, "torch": torch.__version__, "threads": self.threads, "clock": self.clock,
              "cpu": cpu_model(), "machine": platform.machine(), "affinity": self.affinity, "dtype": self.dtype,
              "capture": "cuda_graph" if self.capture == "graph" else "eager"}
        if self.device_type == "cuda":
            fp |= {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
        else:  # large-weight blocks run up to 2x faster on huge pages (core/hugepages.py)
            fp["pages"] = torch_cpu_pages()
        return fp

    @staticmethod
    def _forward(module: nn.Module, inputs: tuple[torch.Tensor, ...], kwargs: dict) -> Runner:
        def run() -> object:
            with torch.inference_mode():
                return module(*inputs, **kwargs)
        return run

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], what: str,
                kwargs: dict | None = None) -> Runner:
        forward = self._forward(module, inputs, kwargs or {})
        return graphed(forward, what) if self.capture == "graph" else forward

    def block_module(self, sig: BlockSignature) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict]:
        """The block on this device and dtype, its inputs (in the signature's layout) and keyword arguments."""
        module = materialize(lambda: build_block(sig.spec), self.device_type, self.torch_dtype)
        x, *rest = block_inputs(sig.spec, sig.batch, self.torch_dtype, self.device_type)
        if sig.layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)  # as after a transformer block in the UNet
        kwargs = {"dtype": self.torch_dtype} if sig.spec.kind == "time_embed" else {}  # as the UNet calls it
        return module, (x, *rest), kwargs

    def block_runner(self, sig: BlockSignature) -> Runner:
        module, inputs, kwargs = self.block_module(sig)
        return self._runner(module, inputs, f"block {sig.spec.kind} ({sig.key[:60]}...)", kwargs)

    def model_module(self, config: ArchConfig) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """The whole UNet of `config` on this device and dtype, and its inputs."""
        module = materialize(lambda: build_unet(config), self.device_type, self.torch_dtype)
        return module, model_inputs(config, self.batch, self.torch_dtype, self.device_type)

    def model_runner(self, config: ArchConfig) -> Runner:
        module, inputs = self.model_module(config)
        return self._runner(module, inputs, f"the UNet of {config.arch_id}")

    def sync(self) -> None:
        if self.device_type == "cuda":
            torch.cuda.synchronize()


def graphed(forward: Runner, what: str, warmup: int = 3) -> Runner:
    """Capture `forward` (a CUDA forward pass on static inputs) in a CUDA graph; returns a replaying runner.

    Warm-up runs on a side stream first (lazy initialisation, cuBLAS workspaces and autotuning must not
    happen during capture), as torch's CUDA-graph recipe requires. The graph keeps a private memory pool;
    its output tensor is overwritten by every replay.

    Raises:
        UserError: `what` cannot be captured (an op that synchronises with the host, or a dynamic shape).
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                forward()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = forward()
    except RuntimeError as err:
        raise UserError(f"CUDA graph capture of {what} failed ({str(err).splitlines()[0][:160]}); "
                        "measure it eagerly with --capture eager") from None

    def replay() -> object:
        graph.replay()
        return out
    return replay


class CpuBackend(TorchBackend):
    name = "cpu"
    description = "torch eager on this CPU (fixed threads, timing thread pinned to one core)"


class CudaBackend(TorchBackend):
    name = "cuda"
    description = "the first CUDA GPU: CUDA-graph replays in float16, timed with CUDA events"
    device_type = "cuda"
    default_dtype = "float16"
    captures = ("graph", "eager")

    @property
    def clock(self) -> str:
        return "cuda_event"


class OnnxRuntimeBackend(Backend):
    """Each block (or UNet) exported to ONNX (opset 17) and run by onnxruntime's CPU provider."""

    name = "onnxruntime"
    description = "onnxruntime CPU provider on per-block ONNX exports (a stand-in for a mobile runtime)"
    layout_sensitive = False  # ONNX tensors have no memory format
    weight_copies = 3  # the torch module, its ONNX export and the onnxruntime session being built
    profiles_blocks_in_model = False  # one ONNX graph per model: no per-block hooks

    def __init__(self, threads: int = 1, dtype: str | None = None, batch: int = 1, capture: str | None = None,
                 pin: bool = True):
        super().__init__(threads, dtype, batch, capture, pin)
        if self.dtype != "float32":
            raise UserError("device 'onnxruntime' measures float32 exports only")

    def fingerprint(self) -> dict:
        import onnxruntime as ort

        return {"backend": self.name, "onnxruntime": ort.__version__, "opset": onnx_export.OPSET,
                "provider": "CPUExecutionProvider", "threads": self.threads, "clock": self.clock, "cpu": cpu_model(),
                "machine": platform.machine(), "affinity": self.affinity, "dtype": self.dtype}

    def _session(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str]) -> Runner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        with tempfile.TemporaryDirectory(prefix="nas-lut-onnx-") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx_export.export(module, inputs, names, path)
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        feeds = {n: t.numpy() for n, t in zip(names, inputs) if n in wanted}
        return lambda: session.run(None, feeds)

    def block_runner(self, sig: BlockSignature) -> Runner:
        module = materialize(lambda: build_block(sig.spec), "cpu", torch.float32)
        inputs = block_inputs(sig.spec, sig.batch, torch.float32)
        return self._session(module, inputs, onnx_export.input_names(sig.spec.kind))

    def model_runner(self, config: ArchConfig) -> Runner:
        module = materialize(lambda: build_unet(config), "cpu", torch.float32)
        return self._session(module, model_inputs(config, self.batch, torch.float32, "cpu"), onnx_export.UNET_INPUTS)
