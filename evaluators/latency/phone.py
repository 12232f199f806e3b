"""Phone formats of one block: a Core ML model package (coremltools) and a LiteRT/TFLite flatbuffer (litert-torch).

Both converters start from `torch.export` of the block with its fixed deployment shapes. They are optional
(`pip install 'mobile-diffusion-nas[phone]'`): a converter that is not installed, or that cannot handle a
block, is reported with its reason, never skipped silently. Core ML packages are written with float16
compute precision (what the Neural Engine and GPU run) for iOS 17+; they convert on Linux, but only an
Apple device runs them. TFLite files keep float32 weights; the phone's GPU delegate runs them in float16.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
from torch import nn

INSTALL_HINT = "pip install 'mobile-diffusion-nas[phone]'"


@contextlib.contextmanager
def _quiet():
    """Silence the converters' progress bars, prints and warnings (their failures still raise)."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class PhoneFormat:
    """One phone format and its converter."""

    name: str  # "coreml" | "tflite"
    suffix: str  # file (or package directory) suffix
    package: str  # the distribution that converts to it
    runtime: str  # what runs it on the phone
    bytes_per_param: int  # weight bytes per parameter in the written file
    convert: Callable[[nn.Module, tuple[torch.Tensor, ...], Path], list[str]]  # writes the path; returns input names

    def unavailable(self) -> str | None:
        """Why this converter cannot run here, or None."""
        try:
            with _quiet():  # coremltools prints about its macOS-only runtime parts at import
                __import__(self.package.replace("-", "_"))
        except Exception as err:  # an optional converter may fail to import in many ways
            return f"{self.package} cannot be imported ({type(err).__name__}: {str(err).splitlines()[0][:120]}); " \
                   f"{INSTALL_HINT}"
        return None

    def version(self) -> str | None:
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    def write(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> list[str]:
        """Convert into a temporary sibling of `path`, then rename it into place (files and package folders).

        Raises:
            Exception: whatever the converter raises for a block it cannot handle.
        """
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            with _quiet(), torch.no_grad():
                names = self.convert(module.eval(), inputs, tmp / path.name)
            os.replace(tmp / path.name, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return names


def _coreml(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> list[str]:
    import coremltools as ct

    program = torch.export.export(module, inputs).run_decompositions({})
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                       compute_precision=ct.precision.FLOAT16)
    model.save(str(path))
    return [i.name for i in model.get_spec().description.input]


def _tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> list[str]:
    import litert_torch

    edge = litert_torch.convert(module, inputs)
    edge.export(str(path))
    from ai_edge_litert.interpreter import Interpreter

    return [d["name"] for d in Interpreter(model_path=str(path)).get_input_details()]


FORMATS: dict[str, PhoneFormat] = {
    "coreml": PhoneFormat("coreml", ".mlpackage", "coremltools", "Core ML (iPhone, iPad, Mac)", 2, _coreml),
    "tflite": PhoneFormat("tflite", ".tflite", "litert-torch", "LiteRT / TFLite (Android)", 4, _tflite),
}


def failure_reason(err: BaseException) -> str:
    """The converter's own words, one line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300] or 'no message'}"
