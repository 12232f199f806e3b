"""The device registry: every name `--device` accepts, with one factory that fails loudly on unknown names.

Registered devices are measured backends (`cpu`, `cuda`, `onnxruntime`) and roofline phone profiles
(estimates). Names of imported LUTs found in the LUT directory are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.latency.backends import (
    Backend,
    CpuBackend,
    CudaBackend,
    OnnxRuntimeBackend,
)
from evaluators.latency.roofline import PROFILES, RooflineProfile
from evaluators.latency.store import LutStore
from search_spaces.registry import Registry, UnknownNameError

DEVICES: Registry[Backend | RooflineProfile] = Registry("latency device")

for _backend in (CpuBackend, CudaBackend, OnnxRuntimeBackend):
    DEVICES.register(_backend.name)(_backend)
for _name, _profile in PROFILES.items():
    DEVICES.register(_name)(lambda _p=_profile, **_measurement_options: _p)


@dataclass(frozen=True)
class DeviceInfo:
    """One name `--device` accepts."""

    name: str  # the device name
    kind: str  # "measured" | "roofline" (estimate) | "imported"
    description: str  # one line


def list_devices(store: LutStore | None = None) -> list[DeviceInfo]:
    """Registered devices, then imported LUTs present in `store`."""
    out = []
    for name in DEVICES.names():
        target = DEVICES.get(name)
        if name in PROFILES:
            out.append(DeviceInfo(name, "roofline", f"ESTIMATE: roofline of {PROFILES[name].chip}"))
        else:
            out.append(DeviceInfo(name, "measured", target.description))
    for name in (store.devices() if store else []):
        if name not in DEVICES:
            out.append(DeviceInfo(name, "imported", "measurements imported from a CSV"))
    return out


def unknown_device(name: str, store: LutStore) -> UnknownNameError:
    known = [d.name for d in list_devices(store)]
    return UnknownNameError(f"unknown latency device {name!r}; known: {', '.join(known)} "
                            f"(imported LUTs are looked up in {store.dir})")
