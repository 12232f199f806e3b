"""In-model block profile: every block timed inside a whole-UNet forward, a second source of block latencies.

A block timed alone (the LUT) runs with its own weights and input hot in cache; inside the model it runs
after its neighbours, whose outputs it reads and whose weights evicted its own. The profile times each block
inside a whole forward with forward pre/post hooks on the backend's clock (the thread's CPU time on 1-thread
CPU backends; CUDA events on a GPU, where the model runs eagerly because hooks cannot fire inside a replayed
CUDA graph), median over rounds, so cache and fusion effects between blocks are in the numbers.

The table maps block key -> {arch id -> ms} and is stored beside the LUT as `<device>.inmodel.json` with the
LUT's fingerprint (a table of another fingerprint is ignored and replaced). An architecture is predicted
from the table without its own profile: each block takes the median over the *other* profiled archs that
contain it; a block no other arch contains takes its isolated LUT latency times the median in-model/isolated
ratio of its kind. So validating the source is leave-one-out: it predicts archs the table has not seen.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from core.errors import UserError
from core.io import write_json
from evaluators.latency.signature import BlockSignature
from evaluators.latency.store import Entry, LutStore
from evaluators.latency.timing import CLOCKS, SpeedProbe, warm_up
from search_spaces.blocks import arch_blocks
from search_spaces.config import ArchConfig

SCHEMA = "nas-lut-inmodel/1"


def profile_model(backend, config: ArchConfig, rounds: int = 5, warmup: int = 10,
                  warmup_s: float = 1.0, probe: SpeedProbe | None = None) -> dict[str, float]:
    """Median milliseconds of every block of `config` (at its own latent size) inside whole forwards.

    Args:
        backend: a torch backend (`backend.profiles_blocks_in_model`); its measuring context (threads,
            pinned core) is the caller's to enter.
        config: the architecture.
        rounds: timed forwards; warmup, warmup_s: untimed forwards first (calls, seconds cap).
        probe: the LUT's speed probe (timed before the first forward and after each; a forward's block times
            are scaled to the probe's reference speed, as `timing.measure_interleaved` does).

    Returns:
        module path -> median milliseconds of that block over the rounds.
    """
    module, inputs = backend.model_module(config)
    paths = [path for path, _ in arch_blocks(config)]
    samples: dict[str, list[float]] = {p: [] for p in paths}
    pending: list[tuple[str, object, object]] = []
    cuda = backend.clock == "cuda_event"
    now = None if cuda else CLOCKS[backend.clock]
    started: dict[str, object] = {}
    recording = [False]

    def before(path: str) -> Callable:
        def hook(_module, _args):
            if recording[0]:
                if cuda:
                    event = torch.cuda.Event(enable_timing=True)
                    event.record()
                    started[path] = event
                else:
                    started[path] = now()
        return hook

    def after(path: str) -> Callable:
        def hook(_module, _args, _out):
            if recording[0]:
                if cuda:
                    event = torch.cuda.Event(enable_timing=True)
                    event.record()
                    pending.append((path, started.pop(path), event))
                else:
                    samples[path].append((now() - started.pop(path)) * 1e3)
        return hook

    handles = []
    for path in paths:
        block = module.get_submodule(path)
        handles += [block.register_forward_pre_hook(before(path)), block.register_forward_hook(after(path))]

    def forward() -> None:
        with torch.inference_mode():
            module(*inputs)

    probe_sample = probe.sampler(backend.clock, backend.sync, warmup=warmup, warmup_s=warmup_s) if probe else None
    probes = []
    try:
        warm_up(forward, warmup, warmup_s, backend.sync)
        if probe_sample:
            probes.append(probe_sample())
        recording[0] = True
        for _ in range(rounds):
            forward()
            backend.sync()
            for path, start, end in pending:
                samples[path].append(start.elapsed_time(end))
            pending.clear()
            if probe_sample:
                probes.append(probe_sample())
    finally:
        for handle in handles:
            handle.remove()
    speeds = probe.speeds(probes) if probe else [1.0] * rounds
    return {path: statistics.median(ms * speed for ms, speed in zip(values, speeds))
            for path, values in samples.items()}


@dataclass
class InModelTable:
    """In-model block latencies of one device: block key -> {arch id -> ms}."""

    device: str  # device name (as the LUT's)
    fingerprint: dict  # the LUT's fingerprint the profiles were measured with
    samples: dict[str, dict[str, float]] = field(default_factory=dict)

    def archs(self) -> set[str]:
        """Ids of the architectures profiled."""
        return {arch for by_arch in self.samples.values() for arch in by_arch}

    def add(self, arch_id: str, sigs: Sequence[tuple[str, BlockSignature]], ms_by_path: dict[str, float]) -> None:
        """Record one profiled architecture (a key met several times in it takes the median of its blocks)."""
        by_key: dict[str, list[float]] = {}
        for path, sig in sigs:
            by_key.setdefault(sig.key, []).append(ms_by_path[path])
        for key, values in by_key.items():
            self.samples.setdefault(key, {})[arch_id] = statistics.median(values)

    def _seen(self, key: str, exclude: str | None) -> list[float]:
        return [ms for arch, ms in self.samples.get(key, {}).items() if arch != exclude]

    def kind_ratios(self, isolated: dict[str, Entry], exclude: str | None = None) -> dict[str, float]:
        """Block kind -> median in-model / isolated latency over the keys other archs profiled."""
        ratios: dict[str, list[float]] = {}
        for key in self.samples:
            seen = self._seen(key, exclude)
            if seen and key in isolated:
                ratios.setdefault(BlockSignature.from_key(key).spec.kind, []).append(
                    statistics.median(seen) / isolated[key].ms)
        return {kind: statistics.median(values) for kind, values in ratios.items()}

    def block_ms(self, sigs: Sequence[tuple[str, BlockSignature]], isolated: dict[str, Entry],
                 exclude: str | None = None) -> list[float]:
        """Each block's in-model latency, predicted without the profile of arch `exclude`.

        Raises:
            KeyError: a block neither profiled by another arch nor in the isolated LUT (measure it first).
        """
        ratios = self.kind_ratios(isolated, exclude)
        out = []
        for _, sig in sigs:
            seen = self._seen(sig.key, exclude)
            out.append(statistics.median(seen) if seen else isolated[sig.key].ms * ratios.get(sig.spec.kind, 1.0))
        return out

    def coverage(self, sigs: Sequence[tuple[str, BlockSignature]], exclude: str | None = None) -> float:
        """Fraction of the blocks of `sigs` that other profiled archs contain."""
        return sum(bool(self._seen(sig.key, exclude)) for _, sig in sigs) / max(len(sigs), 1)


def table_path(store: LutStore, device: str) -> Path:
    return store.dir / f"{device}.inmodel.json"


def load_table(store: LutStore, device: str, fingerprint: dict) -> InModelTable:
    """The stored in-model table of `device`, or an empty one if there is none or it has another fingerprint.

    Raises:
        UserError: the file exists but is not a readable in-model table.
    """
    path = table_path(store, device)
    if not path.exists():
        return InModelTable(device, fingerprint)
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA or data.get("device") != device:
            raise ValueError(f"schema {data.get('schema')!r} of device {data.get('device')!r}")
        samples = {str(k): {str(a): float(ms) for a, ms in v.items()} for k, v in data["samples"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"in-model profile {path} is corrupt ({str(err)[:120]}); delete it to re-profile") from None
    if data.get("fingerprint") != fingerprint:
        return InModelTable(device, fingerprint)
    return InModelTable(device, fingerprint, samples)


def save_table(store: LutStore, table: InModelTable) -> Path:
    """Write the table atomically beside the LUT."""
    return write_json(table_path(store, table.device), {"schema": SCHEMA, "device": table.device,
                                                        "fingerprint": table.fingerprint, "samples": table.samples})
