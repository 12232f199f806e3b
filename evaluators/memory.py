"""Memory estimates made before anything is allocated, and the check that refuses what cannot fit.

Everything here is closed form over an architecture's block specs (`evaluators.cost`): no module is built.
Three places allocate models whose size the user controls, and each checks its estimate first:
- proxy training (`nas evaluate`, search and ablation trials): weights, gradients, AdamW moments (and the
  EMA copy), plus the activations autograd keeps for one training batch, or the activations of one
  sampling batch (conditional + unconditional) when those are larger;
- full-scale models built for end-to-end latency timing and `nas export --onnx`: weight copies plus the
  peak activations of one forward;
- latency-table blocks timed together in one chunk: their weights plus the largest block's working set.

The estimates are generous on purpose (attention scores materialised, every saved tensor counted): a
refusal names the estimate so a user who knows better can raise `--max-memory`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import psutil

from core.errors import UserError
from evaluators.cost import activation_bytes, block_params, block_working_elements
from search_spaces.blocks import BlockSpec, arch_blocks, part_of
from search_spaces.config import ArchConfig

FP32 = 4
TRAIN_BYTES_PER_PARAM = 4 * FP32  # weight, gradient and AdamW's two moments
TRAIN_RUNTIME_BYTES = 256 << 20  # kernel workspaces and allocator slack of a training process (measured ~250 MiB)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")


class TooLargeError(UserError):
    """The memory estimate of what a command is about to build exceeds the memory it may use."""


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """'8GiB', '8G' (binary), '8GB' (decimal), '512MiB', '1.5T' or plain bytes -> bytes.

    Raises:
        UserError: not a positive size.
    """
    match = _SIZE.match(text.lower())
    if not match or match.group(2) not in _UNITS or not float(match.group(1)) * _UNITS[match.group(2)] >= 1:
        raise UserError(f"{flag} must be a positive size such as 8GiB, 512MiB or 2000000000, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_size(n: float) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB'."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{int(n)} B"


def available_memory(device: str = "cpu") -> int:
    """Bytes free for new allocations now: the GPU's free memory for a CUDA device, else the machine's
    available RAM (psutil)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class MemoryEstimate:
    """What one allocation step is expected to need, and the part of the user's architecture that dominates."""

    what: str  # what would be allocated, e.g. "training the proxy of arch 3f2a... (batch 32)"
    weight_bytes: int  # weights and the state kept per weight (gradients, optimizer moments, copies)
    activation_bytes: int  # activations held at the peak
    largest: str  # the block that needs the most, described with the user's (full-scale) values
    weight_label: str = "weights"  # what `weight_bytes` holds, for messages

    @property
    def total(self) -> int:
        return self.weight_bytes + self.activation_bytes


def _describe_spec(spec: BlockSpec) -> str:
    """A block by its values: 'a transformer block (1024 channels, depth 50, 64x64)'."""
    channels = f"{spec.out_ch}" if spec.in_ch == spec.out_ch else f"{spec.in_ch} -> {spec.out_ch}"
    depth = f", depth {spec.depth}" if spec.kind == "transformer" else ""
    return f"a {spec.kind} block ({channels} channels{depth}, {spec.res}x{spec.res})"


def _describe_block(config: ArchConfig, path: str) -> str:
    """A block of `config` with the config fields that size it, as the user wrote them:
    'up_blocks.2.resnets.1 (levels[0].channels 102400)'."""
    n = len(config.levels)
    part = part_of(path, n)
    i = n - 1 if part == "mid" else int(part[len("level"):]) if part.startswith("level") else 0
    fields = [f"levels[{i}].channels {config.levels[i].channels}"]
    if ".attentions." in path:
        depth = config.mid.transformer_depth if part == "mid" else config.levels[i].transformer_depth
        fields.append(f"{'mid' if part == 'mid' else f'levels[{i}]'}.transformer_depth {depth}")
    return f"{path} ({', '.join(fields)})"


def _largest(config: ArchConfig, cost: dict[str, int]) -> str:
    return _describe_block(config, max(cost, key=cost.get))


def _saved_elements(s: BlockSpec) -> int:
    """Elements autograd keeps for the backward pass of one block at batch 1 (every saved tensor counted)."""
    hw = s.res * s.res
    if s.kind == "resnet":
        separable = (s.in_ch + s.out_ch) * hw if s.separable else 0
        shortcut = s.out_ch * hw if s.in_ch != s.out_ch else 0
        return 2 * s.in_ch * hw + 5 * s.out_ch * hw + separable + shortcut
    if s.kind == "transformer":
        c, inner = s.in_ch, s.in_ch * s.ff_mult
        layer = 2 * c * hw + 4 * inner * hw  # norm, GLU projection, gate, product, output
        # ReLU attention keeps its scores (and the backward pass adds their gradients); softmax attention runs
        # as a fused SDPA kernel that keeps one log-sum-exp per query instead.
        scores = 4 * s.heads * hw if s.attn_activation == "relu" else 0
        if s.attention in ("self", "self_cross"):
            layer += 6 * c * hw + s.heads * hw + scores * hw
        if s.attention in ("cross", "self_cross"):
            layer += 4 * c * hw + s.heads * hw + scores * s.context_len
        return 4 * c * hw + s.depth * layer
    if s.kind == "time_embed":
        return 3 * s.out_ch
    return 2 * block_working_elements(s)


def training_memory(config: ArchConfig, proxy: ArchConfig, batch_size: int, sample_batch_size: int,
                    guided: bool = True, ema: bool = False) -> MemoryEstimate:
    """Training and sampling memory of the proxy `proxy` of the full-scale `config` (fp32).

    Args:
        config: the full-scale architecture (named in the estimate).
        proxy: its proxy-scale config (what is built).
        batch_size: training images per optimizer step.
        sample_batch_size: captions per sampling forward (doubled when `guided`: cond + uncond).
        guided: classifier-free guidance at sampling time.
        ema: an EMA copy of the weights is kept.
    """
    blocks = arch_blocks(proxy)
    per_param = TRAIN_BYTES_PER_PARAM + (FP32 if ema else 0)
    cost = {path: block_params(s) * per_param + _saved_elements(s) * batch_size * FP32 for path, s in blocks}
    weights = sum(block_params(s) for _, s in blocks) * per_param
    train = sum(_saved_elements(s) for _, s in blocks) * batch_size * FP32
    sampling = activation_bytes(proxy) * sample_batch_size * (2 if guided else 1)
    what = f"training the proxy of arch {config.arch_id} (batch {batch_size})"
    return MemoryEstimate(what, weights, TRAIN_RUNTIME_BYTES + max(train, sampling), _largest(config, cost),
                          "weights, gradients and optimizer state")


def with_teacher(student: MemoryEstimate, teacher: ArchConfig, teacher_proxy: ArchConfig,
                 batch_size: int) -> MemoryEstimate:
    """Distilled training (`--proxy inherit`): the student's training with the teacher's proxy resident for its
    forwards at the training batch (fp32 weights, no gradients or optimizer state, activations not kept)."""
    weights = sum(block_params(s) for _, s in arch_blocks(teacher_proxy)) * FP32
    return MemoryEstimate(f"{student.what}, with its teacher (arch {teacher.arch_id}) resident",
                          student.weight_bytes + weights,
                          student.activation_bytes + activation_bytes(teacher_proxy) * batch_size, student.largest,
                          f"{student.weight_label}, and the teacher's weights")


def model_memory(config: ArchConfig, what: str, weight_copies: int = 1, batch: int = 1,
                 bytes_per_el: int = FP32) -> MemoryEstimate:
    """One full-scale model built with `weight_copies` copies of its weights and run forward at `batch`."""
    blocks = arch_blocks(config)
    cost = {path: block_params(s) * bytes_per_el * weight_copies + block_working_elements(s) * batch * bytes_per_el
            for path, s in blocks}
    weights = sum(block_params(s) for _, s in blocks) * bytes_per_el * weight_copies
    return MemoryEstimate(what, weights, activation_bytes(config, bytes_per_el) * batch, _largest(config, cost))


def together(estimates: list[MemoryEstimate], what: str) -> MemoryEstimate:
    """Models resident at once and run one after another: weights add up, activations peak once."""
    biggest = max(estimates, key=lambda e: e.total)
    return MemoryEstimate(what, sum(e.weight_bytes for e in estimates), max(e.activation_bytes for e in estimates),
                          biggest.largest, biggest.weight_label)


def blocks_memory(specs: Iterable[BlockSpec], what: str, weight_copies: int = 1, batch: int = 1,
                  bytes_per_el: int = FP32) -> MemoryEstimate:
    """Blocks resident together (a latency-table chunk): every block's weights plus the largest working set
    (input, output and transients of one forward)."""
    specs = list(specs)
    weights = sum(block_params(s) for s in specs) * bytes_per_el * weight_copies
    working = max(block_working_elements(s) for s in specs) * batch * bytes_per_el
    largest = max(specs, key=lambda s: block_params(s) * weight_copies + block_working_elements(s) * batch)
    return MemoryEstimate(what, weights, working, _describe_spec(largest))


def gpu_total_memory(device: str = "cuda") -> int | None:
    """Total bytes of a CUDA device, or None where no GPU is visible (e.g. a Ray driver on a CPU-only head)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)


def gpu_share(fraction: float, total: int | None) -> int | None:
    """Bytes one trial may use when it is given `fraction` of a GPU (`--gpus-per-trial` below 1): that share of
    the device's `total` memory. Ray packs 1 / fraction such trials onto one GPU and does not police memory, so
    each trial keeps to its share or one trial's allocation starves its neighbours mid-training. None for a
    whole GPU (or more), or when the total is unknown."""
    if total is None or not 0 < fraction < 1:
        return None
    return int(total * fraction)


def share_label(fraction: float, total: int) -> str:
    """How a GPU-share limit is named in a refusal."""
    return f"its --gpus-per-trial {fraction:g} share of the GPU ({format_size(gpu_share(fraction, total))} of " \
           f"{format_size(total)})"


def check_fits(estimate: MemoryEstimate, max_memory: int | None = None, device: str = "cpu",
               limit_label: str | None = None) -> None:
    """Refuse, before anything is allocated, an estimate above the available memory or `max_memory`
    (named `limit_label` in the message; default "--max-memory <size>").

    Raises:
        TooLargeError: one line naming what would be built, the estimate, the limit and the largest block.
    """
    available = available_memory(device)
    if max_memory is not None and max_memory < available:
        limit = limit_label or f"--max-memory {format_size(max_memory)}"
        allowed = max_memory
    else:
        limit, allowed = f"the {format_size(available)} available on {device}", available
    if estimate.total > allowed:
        raise TooLargeError(
            f"{estimate.what} needs about {format_size(estimate.total)} ({format_size(estimate.weight_bytes)} for "
            f"{estimate.weight_label}, {format_size(estimate.activation_bytes)} for activations), more than "
            f"{limit}; the largest block is {estimate.largest}")
