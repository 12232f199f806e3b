"""Measured latency backends: torch eager on CPU or CUDA, and onnxruntime's CPU provider.

A backend turns a block signature (or a whole architecture) into a zero-argument callable that runs one
forward pass on the device, and describes the device by a fingerprint: a LUT is only ever used on the
device whose fingerprint it was measured with. Weights are materialised from the meta device and filled
with small seeded Gaussian values (latency does not depend on the values; zeros could hit fast paths).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from evaluators.latency import onnx_export
from evaluators.latency.signature import BlockSignature
from nas.errors import UserError
from nas.provenance import cpu_model
from search_spaces.blocks import block_inputs, build_block
from search_spaces.config import ArchConfig
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


def materialize(factory: Callable[[], nn.Module], device: str, dtype: torch.dtype) -> nn.Module:
    """Build a module on the meta device, then allocate it on `device` with seeded N(0, 0.02) weights."""
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02, generator=gen)
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

    def __init__(self, threads: int = 1, dtype: str = "float32", batch: int = 1):
        if threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        self.threads, self.dtype, self.batch = threads, dtype, batch
        self.torch_dtype = getattr(torch, dtype)
        self.allocator = steady_allocator()

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
        """Run the enclosed measurements with this backend's torch thread count, then restore the caller's
        (a search worker trains with its own thread count between latency lookups)."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @property
    def clock(self) -> str:
        """`thread` (CPU time of the calling thread) when all work runs on it, else `wall`."""
        return "thread" if self.threads == 1 and self.name in ("cpu", "onnxruntime") else "wall"


class TorchBackend(Backend):
    """Torch eager on `cpu` or `cuda`, in inference mode, with a fixed intra-op thread count."""

    device_type = "cpu"

    def __init__(self, threads: int = 1, dtype: str = "float32", batch: int = 1):
        super().__init__(threads, dtype, batch)
        if self.device_type == "cuda" and not torch.cuda.is_available():
            raise UserError("device 'cuda': no CUDA GPU is available to torch on this machine")

    def fingerprint(self) -> dict:
        fp = {"backend": self.name, "torch": torch.__version__, "threads": self.threads, "clock": self.clock,
              "cpu": cpu_model(), "machine": platform.machine()}
        if self.device_type == "cuda":
            fp |= {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
        return fp

    def _runner(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        def run() -> object:
            with torch.inference_mode():
                return module(*inputs)
        return run

    def block_runner(self, sig: BlockSignature) -> Runner:
        module = materialize(lambda: build_block(sig.spec), self.device_type, self.torch_dtype)
        x, *rest = block_inputs(sig.spec, sig.batch, self.torch_dtype, self.device_type)
        if sig.layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)  # as after a transformer block in the UNet
        return self._runner(module, (x, *rest))

    def model_runner(self, config: ArchConfig) -> Runner:
        module = materialize(lambda: build_unet(config), self.device_type, self.torch_dtype)
        return self._runner(module, model_inputs(config, self.batch, self.torch_dtype, self.device_type))

    def sync(self) -> None:
        if self.device_type == "cuda":
            torch.cuda.synchronize()


class CpuBackend(TorchBackend):
    name = "cpu"
    description = "torch eager on this CPU (fixed threads)"


class CudaBackend(TorchBackend):
    name = "cuda"
    description = "torch eager on the first CUDA GPU (synchronised timing)"
    device_type = "cuda"


class OnnxRuntimeBackend(Backend):
    """Each block (or UNet) exported to ONNX (opset 17) and run by onnxruntime's CPU provider."""

    name = "onnxruntime"
    description = "onnxruntime CPU provider on per-block ONNX exports (a stand-in for a mobile runtime)"
    layout_sensitive = False  # ONNX tensors have no memory format

    def __init__(self, threads: int = 1, dtype: str = "float32", batch: int = 1):
        super().__init__(threads, dtype, batch)
        if dtype != "float32":
            raise UserError("device 'onnxruntime' measures float32 exports only")

    def fingerprint(self) -> dict:
        import onnxruntime as ort

        return {"backend": self.name, "onnxruntime": ort.__version__, "opset": onnx_export.OPSET,
                "provider": "CPUExecutionProvider", "threads": self.threads, "clock": self.clock, "cpu": cpu_model(),
                "machine": platform.machine()}

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
