"""Provenance attached to every number that leaves the program: versions, machine, time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform

PACKAGES = ("mobile-diffusion-nas", "torch", "optuna", "ray", "diffusers", "fvcore", "open_clip_torch",
            "clean-fid", "torchmetrics", "onnxruntime", "pandas", "plotly")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(**extra) -> dict:
    """Versions, host and time, plus whatever the caller adds (device, evaluator, seed, ...)."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "versions": versions(), **extra,
    }
